"""The Keras surface of fit/evaluate/predict: argument order and defaults, every bad input as a
clear error naming the argument or layer, optimizer state kept by parameter path, sample and class
weights against hand-computed losses, generator and Sequence input, uint8 input, verbosity."""
import numpy as np
import pytest

import graphjit as gj
from graphjit import layers, losses, optimizers

SPARSE_LOGITS = losses.SparseCategoricalCrossentropy(from_logits=True)


def classifier(features=6, classes=4, seed=0, name_a="a", name_b="b"):
    layers.set_seed(seed)
    return gj.Sequential([layers.Input((features,)), layers.Dense(8, activation="tanh",
                                                                  name=name_a),
                          layers.Dense(classes, name=name_b)])


def data(n=40, features=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, classes, n)


def compiled(model=None, optimizer="sgd", **kwargs):
    model = model or classifier()
    model.compile(optimizer=optimizer, loss=SPARSE_LOGITS, **kwargs)
    return model


# ---------------------------------------------------------------- signatures and defaults


def test_positional_order_is_keras_batch_size_then_epochs():
    model = compiled()
    x, y = data(n=64)
    history = model.fit(x, y, 16, 2, 0)
    assert history.epoch == [0, 1]
    assert history.params["steps"] == 4 and history.params["epochs"] == 2
    assert model.history is history


def test_batch_size_none_means_32():
    model = compiled()
    x, y = data(n=70)
    assert model.fit(x, y, verbose=0).params["steps"] == 3  # ceil(70 / 32)


def test_evaluate_and_predict_signatures():
    model = compiled(metrics=["accuracy"])
    x, y = data()
    loss, accuracy = model.evaluate(x, y, 8, 0)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs == {"loss": pytest.approx(loss), "accuracy": pytest.approx(accuracy)}
    assert model.predict(x, 7, 0).shape == (40, 4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=-5), "batch_size must be a positive integer"),
    (dict(batch_size=2.5), "batch_size must be a positive integer"),
    (dict(validation_split=1.0), "validation_split must be a fraction"),
    (dict(validation_split=1.5), "validation_split must be a fraction"),
    (dict(validation_split=-0.2), "validation_split must be a fraction"),
    (dict(validation_split=0.99), "leaves 0 for training and 40 for validation"),
    (dict(epochs=-1), "epochs must be an integer"),
    (dict(steps_per_epoch=0), "steps_per_epoch must be an integer >= 1"),
    (dict(verbose=3), "verbose must be"),
    (dict(validation_freq=0), "validation_freq"),
    (dict(validation_data=[1, 2, 3, 4]), "validation_data must be a tuple"),
    (dict(sample_weight=np.ones(3)), r"sample_weight .* must have shape \(40,\)"),
    (dict(sample_weight=np.ones(40), class_weight={0: 1.0}), "not both"),
    (dict(class_weight=[1.0, 2.0]), "class_weight must be a dict"),
])
def test_bad_fit_arguments_name_themselves(kwargs, match):
    model = compiled()
    x, y = data()
    with pytest.raises(gj.GraphjitError, match=match):
        model.fit(x, y, **{"verbose": 0, **kwargs})


def test_empty_and_mismatched_data():
    model = compiled()
    x, y = data()
    with pytest.raises(gj.GraphjitError, match="0 samples"):
        model.fit(x[:0], y[:0], verbose=0)
    with pytest.raises(gj.GraphjitError, match="different numbers of samples"):
        model.fit(x, y[:10], verbose=0)
    with pytest.raises(gj.GraphjitError, match="y is None"):
        model.fit(x, verbose=0)
    with pytest.raises(gj.GraphjitError, match="x is None"):
        model.fit(verbose=0)


@pytest.mark.parametrize("label", [4, -1, 2 ** 40])
def test_sparse_labels_out_of_range(label):
    model = compiled()
    x, y = data()
    y = y.astype(np.int64)
    y[3] = label
    with pytest.raises(gj.GraphjitError, match=f"label {label} is out of range.*4 classes"):
        model.fit(x, y, verbose=0)
    with pytest.raises(gj.GraphjitError, match="out of range"):
        model.evaluate(x, y, verbose=0)


def test_sparse_labels_with_a_trailing_axis_of_one_train_as_flat_ones():
    """Keras takes (n, 1) class ids (how CIFAR's labels arrive) for the sparse losses."""
    x, y = data()
    results = []
    for labels in (y, y[:, None], y[:, None].astype(np.float32)):
        model = compiled(metrics=["accuracy"])
        history = model.fit(x, labels, batch_size=8, epochs=2, verbose=0, shuffle=False,
                            class_weight={0: 2.0})
        results.append((history.history["loss"], model.evaluate(x, labels, verbose=0),
                        model.get_weights()))
    for losses_, evaluated, weights in results[1:]:
        np.testing.assert_allclose(losses_, results[0][0], rtol=1e-6)
        np.testing.assert_allclose(evaluated, results[0][1], rtol=1e-6)
        for got, expected in zip(weights, results[0][2]):
            np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(gj.GraphjitError, match="out of range"):
        compiled().fit(x, np.full((40, 1), 4), verbose=0)
    with pytest.raises(gj.GraphjitError, match=r"integer class ids of shape \(batch,\)"):
        compiled().fit(x, np.zeros((40, 2), np.int64), verbose=0)


def test_target_shapes_against_the_loss():
    model = compiled()
    x, y = data()
    with pytest.raises(gj.GraphjitError, match="look one-hot.*categorical_crossentropy"):
        model.fit(x, np.eye(4)[y], verbose=0)
    with pytest.raises(gj.GraphjitError, match="non-integer"):
        model.fit(x, y + 0.5, verbose=0)
    categorical = classifier()
    categorical.compile(loss="categorical_crossentropy")
    with pytest.raises(gj.GraphjitError, match="sparse_categorical_crossentropy"):
        categorical.fit(x, y, verbose=0)
    regression = classifier(classes=3)
    regression.compile(loss="mse")
    with pytest.raises(gj.GraphjitError, match=r"output 'b' .* must have shape \(batch, 3\)"):
        regression.fit(x, np.zeros(40), verbose=0)


def test_accuracy_with_mse_resolves_from_shapes():
    model = classifier(classes=3)
    model.compile(loss="mse", metrics=["accuracy"])
    x, _ = data()
    target = np.eye(3)[np.arange(40) % 3].astype(np.float32)
    logs = model.evaluate(x, target, verbose=0, return_dict=True)
    expected = (model.predict(x, verbose=0).argmax(1) == target.argmax(1)).mean()
    assert logs["accuracy"] == pytest.approx(expected)


def test_a_metric_that_does_not_fit_the_output_names_itself():
    model = classifier()
    model.compile(loss="mse", metrics=["sparse_categorical_accuracy"])
    x, _ = data()
    with pytest.raises(gj.GraphjitError,
                       match=r"metric 'sparse_categorical_accuracy' of output 'b' \(targets of "
                             r"shape \(32, 4\), outputs of shape \(32, 4\)\)"):
        model.fit(x, np.zeros((40, 4), np.float32), verbose=0)


def test_inputs_checked_against_the_model():
    model = compiled()
    x, y = data()
    with pytest.raises(gj.GraphjitError, match=r"expects arrays of shape \(batch, 6\).*\(40, 5\)"):
        model.predict(x[:, :5], verbose=0)
    with pytest.raises(gj.GraphjitError, match=r"one sample\? add the batch axis"):
        model.predict(x[0], verbose=0)
    with pytest.raises(gj.GraphjitError, match="numeric"):
        model.predict(np.array([["a"] * 6]), verbose=0)


def test_predict_on_empty_input_keeps_the_output_shape():
    model = compiled()
    out = model.predict(np.zeros((0, 6), np.float32), verbose=0)
    assert out.shape == (0, 4) and out.dtype == np.float32


def test_uint8_images_are_cast_for_the_first_layer():
    layers.set_seed(0)
    model = gj.Sequential([layers.Flatten(), layers.Dense(3)])
    images = np.random.default_rng(0).integers(0, 255, (10, 4, 4), dtype=np.uint8)
    model.compile(loss=SPARSE_LOGITS)
    model.fit(images, np.arange(10) % 3, verbose=0)
    assert model.inputs[0].dtype == np.float32
    expected = images.reshape(10, 16).astype(np.float32) @ model.layers[1].params["kernel"] \
        + model.layers[1].params["bias"]
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-4)
    ids = gj.Sequential([layers.Embedding(5, 2), layers.Flatten(), layers.Dense(1)])
    ids.predict(np.array([[1, 4]], np.uint8), verbose=0)
    assert ids.inputs[0].dtype == np.int64


def test_an_input_declared_uint8_takes_uint8_images():
    """Keras' Input(dtype="uint8") (the compiled step runs on int64, Rescaling casts)."""
    layers.set_seed(0)
    model = gj.Sequential([layers.Input((4, 4), dtype=np.uint8), layers.Rescaling(1 / 255),
                           layers.Flatten(), layers.Dense(3)])
    images = np.random.default_rng(0).integers(0, 255, (10, 4, 4), dtype=np.uint8)
    model.compile(loss=SPARSE_LOGITS)
    model.fit(images, np.arange(10) % 3, verbose=0)
    dense = model.layers[-1].params
    expected = (images.reshape(10, 16) / np.float32(255)) @ dense["kernel"] + dense["bias"]
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- optimizer state by path


def adam_moment(m, g, beta_1=0.9):
    return m + (g - m) * (1 - beta_1)


def test_freezing_a_layer_keeps_each_weight_its_own_adam_state():
    model = compiled(optimizer=optimizers.Adam(0.01))
    x, y = data(n=16)
    model.fit(x, y, batch_size=16, verbose=0, shuffle=False)
    first = {slot: {k: {w: v.copy() for w, v in d.items()} for k, d in model._opt_state[slot].items()}
             for slot in ("m", "v")}
    model.get_layer("a").trainable = False
    params_before = model.params

    def objective(p):
        return SPARSE_LOGITS(y, model.apply(p, model.state, [x])[0][0])

    grads = gj.grad(objective)(params_before)
    assert set(grads) == {"b"}
    model.fit(x, y, batch_size=16, verbose=0, shuffle=False)  # no shape error, no mixing
    state = model._opt_state
    for weight in ("kernel", "bias"):
        np.testing.assert_allclose(state["m"]["b"][weight],
                                   adam_moment(first["m"]["b"][weight], grads["b"][weight]),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(state["m"]["a"][weight], first["m"]["a"][weight])
    assert int(state["step"]) == 2
    model.get_layer("a").trainable = True
    model.fit(x, y, batch_size=16, verbose=0, shuffle=False)
    assert int(model._opt_state["step"]) == 3
    model.compile(optimizer="adam", loss=SPARSE_LOGITS)
    assert model._opt_state is None, "compile() again resets the optimizer state"


def test_learning_rate_changes_do_not_recompile():
    model = compiled(optimizer=optimizers.SGD(0.1))
    x, y = data(n=32)
    model.fit(x, y, batch_size=16, verbose=0)
    model.optimizer.learning_rate = 0.0
    before = model.get_weights()
    model.fit(x, y, batch_size=16, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.cache_info()["train"]["misses"] == 1


# ---------------------------------------------------------------- sample and class weights


def per_sample_crossentropy(model, x, y):
    logits = model.predict(x, verbose=0).astype(np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return -log_p[np.arange(len(y)), y]


def test_sample_weight_loss_and_weighted_metrics_match_keras_formulas():
    model = compiled(metrics=["accuracy"], weighted_metrics=["accuracy"])
    x, y = data(n=24)
    sw = np.random.default_rng(1).uniform(0, 2, 24).astype(np.float32)
    logs = model.evaluate(x, y, batch_size=10, verbose=0, sample_weight=sw, return_dict=True)
    per_sample = per_sample_crossentropy(model, x, y)
    correct = (model.predict(x, verbose=0).argmax(1) == y)
    assert logs["loss"] == pytest.approx(np.mean(per_sample * sw), rel=1e-5)
    assert logs["accuracy"] == pytest.approx(correct.mean())
    assert logs["weighted_accuracy"] == pytest.approx((correct * sw).sum() / sw.sum(), rel=1e-5)


def test_one_weighted_step_is_sgd_on_the_weighted_loss():
    x, y = data(n=12)
    sw = np.linspace(0.0, 2.0, 12).astype(np.float32)
    model = compiled(optimizer=optimizers.SGD(0.5))
    params = model.params

    def weighted(p):
        logits = model.apply(p, {}, [x])[0][0]
        return np.mean(losses.sparse_categorical_crossentropy(y, logits, from_logits=True) * sw)

    grads = gj.grad(weighted)(params)
    model.fit(x, y, batch_size=12, verbose=0, shuffle=False, sample_weight=sw)
    for name in ("a", "b"):
        np.testing.assert_allclose(model.params[name]["kernel"],
                                   params[name]["kernel"] - 0.5 * grads[name]["kernel"],
                                   rtol=1e-5, atol=1e-6)


def test_class_weight_is_sample_weight_by_label():
    x, y = data(n=20)
    class_weight = {0: 0.5, 1: 2.0, 3: 4.0}  # class 2 missing: weight 1, as in Keras
    model = compiled()
    weights = np.array([class_weight.get(int(c), 1.0) for c in y], np.float32)
    expected = np.mean(per_sample_crossentropy(model, x, y) * weights)
    model.compile(optimizer=optimizers.SGD(0.0), loss=SPARSE_LOGITS)
    history = model.fit(x, y, batch_size=20, verbose=0, class_weight=class_weight)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_multi_output_sample_weights_per_output():
    a = layers.Input((3,), name="in")
    out1 = layers.Dense(1, name="o1")(a)
    out2 = layers.Dense(1, name="o2")(a)
    model = gj.Model(a, [out1, out2])
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y1, y2 = rng.normal(size=(8, 1)), rng.normal(size=(8,))
    w1, w2 = rng.uniform(size=8), rng.uniform(size=8)
    logs = model.evaluate(x, [y1, y2], verbose=0, sample_weight={"o1": w1, "o2": w2},
                          return_dict=True)
    p1, p2 = model.predict(x, verbose=0)
    e1 = np.mean((p1[:, 0] - y1[:, 0]) ** 2 * w1)
    e2 = np.mean((p2[:, 0] - y2) ** 2 * w2)
    assert logs["o1_loss"] == pytest.approx(e1, rel=1e-4)
    assert logs["o2_loss"] == pytest.approx(e2, rel=1e-4)
    assert logs["loss"] == pytest.approx(e1 + e2, rel=1e-4)


# ---------------------------------------------------------------- generators and sequences


def test_generator_input_with_steps_per_epoch_matches_array_input():
    x, y = data(n=32)

    def batches():
        while True:
            for start in range(0, 32, 8):
                yield x[start:start + 8], y[start:start + 8]

    from_arrays = compiled(optimizer=optimizers.SGD(0.1))
    from_arrays.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    from_generator = compiled(optimizer=optimizers.SGD(0.1))
    history = from_generator.fit(batches(), epochs=2, steps_per_epoch=4, verbose=0)
    assert history.params["steps"] == 4
    for a, b in zip(from_arrays.get_weights(), from_generator.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    logs = from_generator.evaluate(batches(), steps=4, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(from_arrays.evaluate(x, y, verbose=0), rel=1e-5)
    out = from_generator.predict((xb for xb, _ in [(x[:5], None), (x[5:], None)]), verbose=0)
    np.testing.assert_allclose(out, from_arrays.predict(x, verbose=0), rtol=1e-5)


class IterableDataset:
    """tf.data / DataLoader-like: each iter() starts a new pass over (x, y) batches."""

    def __init__(self, x, y, batch):
        self.x, self.y, self.batch, self.passes = x, y, batch, 0

    def __iter__(self):
        self.passes += 1
        for start in range(0, len(self.x), self.batch):
            yield self.x[start:start + self.batch], self.y[start:start + self.batch]


class SizedDataset(IterableDataset):
    def __len__(self):
        return -(-len(self.x) // self.batch)


def dataset(x, y, batch, with_len=True):
    return (SizedDataset if with_len else IterableDataset)(x, y, batch)


@pytest.mark.parametrize("with_len", [True, False])
def test_reiterable_datasets_are_one_pass_per_epoch(with_len):
    x, y = data(n=32)
    from_arrays = compiled(optimizer=optimizers.SGD(0.1))
    from_arrays.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                    validation_data=(x[:8], y[:8]))
    batches = dataset(x, y, 8, with_len)
    model = compiled(optimizer=optimizers.SGD(0.1))
    history = model.fit(batches, epochs=3, verbose=0,
                        validation_data=dataset(x[:8], y[:8], 8, with_len))
    assert batches.passes == 3 and history.params["steps"] == (4 if with_len else None)
    for a, b in zip(from_arrays.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert history.history["val_loss"] == pytest.approx(
        from_arrays.history.history["val_loss"], rel=1e-5)
    assert model.evaluate(batches, verbose=0) == pytest.approx(
        from_arrays.evaluate(x, y, verbose=0), rel=1e-5)
    np.testing.assert_allclose(model.predict(dataset(x, y, 5, with_len), verbose=0),
                               from_arrays.predict(x, verbose=0), rtol=1e-5)


def test_steps_per_epoch_continues_a_dataset_across_epochs_and_restarts_it():
    x, y = data(n=24)
    batches = dataset(x, y, 8)  # three batches a pass
    model = compiled(optimizer=optimizers.SGD(0.1))
    model.fit(batches, epochs=2, steps_per_epoch=2, verbose=0)  # batches 0 1 | 2 0
    reference = compiled(optimizer=optimizers.SGD(0.1))
    order = np.concatenate([np.arange(24), np.arange(8)])
    reference.fit(x[order], y[order], batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert batches.passes == 2
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(gj.GraphjitError, match="yielded no batches"):
        compiled().fit(dataset(x[:0], y[:0], 8, with_len=False), verbose=0)


def test_sequence_input_with_sample_weights_and_epoch_end():
    x, y = data(n=30)

    class Batches:
        ends = 0

        def __len__(self):
            return 3

        def __getitem__(self, i):
            s = slice(10 * i, 10 * i + 10)
            return x[s], y[s], np.ones(10, np.float32)

        def on_epoch_end(self):
            Batches.ends += 1

    model = compiled()
    history = model.fit(Batches(), epochs=3, verbose=0, validation_data=Batches())
    assert history.params["steps"] == 3 and len(history.history["val_loss"]) == 3
    assert Batches.ends >= 3


def test_generator_errors_name_the_problem():
    model = compiled()
    x, y = data(n=8)
    with pytest.raises(gj.GraphjitError, match="do not pass batch_size"):
        model.fit(iter([(x, y)]), batch_size=4, verbose=0)
    with pytest.raises(gj.GraphjitError, match="yielded no batches"):
        model.fit(iter([]), verbose=0)
    with pytest.raises(gj.GraphjitError, match="validation_split needs arrays"):
        model.fit(iter([(x, y)]), validation_split=0.5, verbose=0)

    def broken():
        yield x, y
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        model.fit(broken(), verbose=0)
    with pytest.raises(gj.GraphjitError, match="out of range"):
        model.fit(iter([(x, y + 10)]), verbose=0)
    with pytest.warns(RuntimeWarning, match="ran out of data"):
        history = model.fit(iter([(x, y)] * 3), epochs=5, steps_per_epoch=2, verbose=0)
    assert len(history.epoch) == 2


# ---------------------------------------------------------------- progress output


def test_verbose_2_prints_one_line_per_epoch_without_a_bar(capsys):
    model = compiled()
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2" and len(out) == 4
    assert out[1].startswith("5/5 - ") and "/step - loss: " in out[1] and "[" not in out[1]


def test_auto_verbose_prints_the_bar_and_evaluate_too(capsys):
    model = compiled()
    x, y = data()
    model.fit(x, y, batch_size=8)
    model.evaluate(x, y, batch_size=8)
    out = capsys.readouterr().out
    assert out.count("5/5 [==============================]") == 2


def test_progress_bar_redraws_with_an_eta_on_a_terminal():
    import io

    from graphjit.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = ProgressBar(4, 1, stream=stream)
    bar._last_draw = -1e9
    bar.update(1, {"loss": 0.5})
    bar.finish({"loss": 0.25})
    text = stream.getvalue()
    assert "\r1/4 [=======>" in text and "ETA: " in text and "loss: 0.5000" in text
    assert text.rstrip().endswith("loss: 0.2500") or "loss: 0.2500" in text


# ---------------------------------------------------------------- pickling


def test_models_pickle_and_train_after_loading():
    import pickle

    model = compiled(metrics=["accuracy"])
    x, y = data()
    model.fit(x, y, verbose=0)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    a = model.fit(x, y, verbose=0, shuffle=False).history["loss"]
    b = clone.fit(x, y, verbose=0, shuffle=False).history["loss"]
    assert a == pytest.approx(b, rel=1e-6)
