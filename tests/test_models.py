"""Models: gradients against hand-written NumPy backprop, the Functional API with two inputs and
two outputs, fit/evaluate/predict, the step cache, eager vs compiled, save/load, summary."""
import numpy as np
import pytest

import graphjit as gj
from graphjit import layers, losses, optimizers

F64 = np.float64


def mlp(hidden=6, classes=3, features=4, activation="relu", dtype=F64, seed=0):
    layers.set_seed(seed)
    return gj.Sequential([
        layers.Input((features,), dtype=dtype),
        layers.Dense(hidden, activation=activation, dtype=dtype),
        layers.Dense(classes, dtype=dtype),
    ])


def classification_data(n=24, features=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = rng.integers(0, classes, n)
    return x, y


# ---------------------------------------------------------------- gradients of whole models


def numpy_backprop_softmax_mlp(params, x, y):
    """Loss and gradients of mean softmax cross-entropy over relu(x W1 + b1) W2 + b2, by hand."""
    (w1, b1), (w2, b2) = params
    pre = x @ w1 + b1
    hidden = np.maximum(pre, 0)
    logits = hidden @ w2 + b2
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = len(x)
    loss = -np.log(probs[np.arange(n), y]).mean()
    d_logits = probs.copy()
    d_logits[np.arange(n), y] -= 1
    d_logits /= n
    d_hidden = d_logits @ w2.T
    d_pre = d_hidden * (pre > 0)
    return loss, [(x.T @ d_pre, d_pre.sum(0)), (hidden.T @ d_logits, d_logits.sum(0))]


def numpy_backprop_tanh_mse(params, x, target):
    (w1, b1), (w2, b2) = params
    hidden = np.tanh(x @ w1 + b1)
    out = hidden @ w2 + b2
    loss = np.mean(np.mean((out - target) ** 2, axis=-1))
    d_out = 2 * (out - target) / out.size
    d_pre = (d_out @ w2.T) * (1 - hidden ** 2)
    return loss, [(x.T @ d_pre, d_pre.sum(0)), (hidden.T @ d_out, d_out.sum(0))]


def as_pairs(model, params):
    return [(params[layer.name]["kernel"], params[layer.name]["bias"]) for layer in model.layers]


@pytest.mark.parametrize("compiled", [False, True], ids=["grad-eager", "grad-inside-jit"])
def test_model_gradient_matches_numpy_backprop_classification(compiled):
    model = mlp()
    x, y = classification_data()
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)

    def objective(params, x, y):
        return loss(y, model.apply(params, {}, [x])[0][0])

    value_and_grad = gj.value_and_grad(objective)
    if compiled:
        value_and_grad = gj.jit(value_and_grad)
    value, grads = value_and_grad(model.params, x, y)
    expected_loss, expected = numpy_backprop_softmax_mlp(as_pairs(model, model.params), x, y)
    np.testing.assert_allclose(value, expected_loss, rtol=1e-12)
    for (gk, gb), (ek, eb) in zip(as_pairs(model, grads), expected):
        np.testing.assert_allclose(gk, ek, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gb, eb, rtol=1e-9, atol=1e-12)


def test_model_gradient_matches_numpy_backprop_regression():
    model = mlp(hidden=5, classes=2, activation="tanh")
    rng = np.random.default_rng(3)
    x, target = rng.normal(size=(10, 4)), rng.normal(size=(10, 2))
    value, grads = gj.value_and_grad(
        lambda p: losses.MeanSquaredError()(target, model.apply(p, {}, [x])[0][0]))(model.params)
    expected_loss, expected = numpy_backprop_tanh_mse(as_pairs(model, model.params), x, target)
    np.testing.assert_allclose(value, expected_loss, rtol=1e-12)
    for got, want in zip(as_pairs(model, grads), expected):
        np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12)


def test_one_fit_step_is_one_sgd_step_on_the_backprop_gradient():
    model = mlp()
    x, y = classification_data()
    before = as_pairs(model, model.params)
    _, expected = numpy_backprop_softmax_mlp(before, x, y)
    model.compile(optimizer=optimizers.SGD(0.5),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    for (k, b), (k0, b0), (gk, gb) in zip(as_pairs(model, model.params), before, expected):
        np.testing.assert_allclose(k, k0 - 0.5 * gk, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b0 - 0.5 * gb, rtol=1e-9, atol=1e-12)


def test_cnn_gradient_matches_central_differences():
    layers.set_seed(1)
    model = gj.Sequential([
        layers.Input((5, 5, 2), dtype=F64),
        layers.Conv2D(3, 3, padding="same", activation="tanh", dtype=F64),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(2, dtype=F64),
    ])
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(3, 5, 5, 2)), np.array([0, 1, 1])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)

    def objective(params):
        return loss(y, model.apply(params, {}, [x])[0][0])

    grads = gj.grad(objective)(model.params)
    params = model.params
    kernel = params[model.layers[0].name]["kernel"]
    for index in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 1, 0, 1)]:
        shifted = {}
        for sign in (1, -1):
            bumped = kernel.copy()
            bumped[index] += sign * 1e-6
            trial = {**params, model.layers[0].name: {**params[model.layers[0].name],
                                                      "kernel": bumped}}
            shifted[sign] = objective(trial)
        numeric = (shifted[1] - shifted[-1]) / 2e-6
        np.testing.assert_allclose(grads[model.layers[0].name]["kernel"][index], numeric,
                                   rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- the Functional API


def two_in_two_out():
    layers.set_seed(2)
    a = layers.Input((4,), name="a")
    b = layers.Input((3,), name="b")
    hidden = layers.Dense(16, activation="relu", name="hidden")(a)
    joined = layers.Concatenate(name="join")([hidden, b])
    reg = layers.Dense(1, name="reg")(joined)
    cls = layers.Dense(3, activation="softmax", name="cls")(joined)
    return gj.Model([a, b], [reg, cls], name="two_by_two")


def two_in_two_out_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 4)).astype(np.float32)
    b = rng.normal(size=(n, 3)).astype(np.float32)
    reg = (a[:, :1] - 2 * b[:, 1:2]).astype(np.float32)
    cls = np.argmax(np.concatenate([a[:, :2], b[:, :1]], axis=1), axis=1)
    return [a, b], [reg, cls]


def test_functional_two_inputs_two_outputs_forward():
    model = two_in_two_out()
    (a, b), _ = two_in_two_out_data(5)
    reg, cls = model.predict([a, b])
    p = model.params
    hidden = np.maximum(a @ p["hidden"]["kernel"] + p["hidden"]["bias"], 0)
    joined = np.concatenate([hidden, b], axis=1)
    np.testing.assert_allclose(reg, joined @ p["reg"]["kernel"] + p["reg"]["bias"], rtol=1e-5,
                               atol=1e-6)
    logits = joined @ p["cls"]["kernel"] + p["cls"]["bias"]
    softmax = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(cls, softmax, rtol=1e-5, atol=1e-6)
    assert [layer.name for layer in model.layers] == ["hidden", "join", "reg", "cls"]


def test_functional_two_inputs_two_outputs_training():
    model = two_in_two_out()
    xs, ys = two_in_two_out_data()
    model.compile(optimizer=optimizers.Adam(0.03),
                  loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                  loss_weights=[1.0, 0.5], metrics={"cls": ["accuracy"], "reg": ["mae"]})
    history = model.fit({"a": xs[0], "b": xs[1]}, ys, epochs=15, batch_size=24, verbose=0,
                        validation_split=0.25, seed=0)
    assert set(history.history) == {"loss", "reg_loss", "cls_loss", "reg_mae", "cls_accuracy",
                                    "val_loss", "val_reg_loss", "val_cls_loss", "val_reg_mae",
                                    "val_cls_accuracy"}
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    logs = model.evaluate(xs, ys, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["reg_loss"] + 0.5 * logs["cls_loss"], rel=1e-5)
    reg, cls = model.predict(xs)
    assert logs["reg_mae"] == pytest.approx(np.abs(reg - ys[0]).mean(), rel=1e-5)
    assert logs["cls_accuracy"] == pytest.approx((cls.argmax(1) == ys[1]).mean())


def test_functional_errors():
    a = layers.Input((3,))
    stray = layers.Input((3,))
    out = layers.Add()([layers.Dense(3)(a), stray])
    with pytest.raises(gj.GraphjitError, match="not among the model's inputs"):
        gj.Model(a, out)
    model = gj.Model([a, stray], out)
    with pytest.raises(gj.GraphjitError, match="not compiled"):
        model.fit([np.zeros((2, 3))] * 2, np.zeros((2, 3)))
    model.compile(loss="mse")
    with pytest.raises(gj.GraphjitError, match="2 inputs"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(gj.GraphjitError, match="different numbers of samples"):
        model.fit([np.zeros((2, 3)), np.zeros((3, 3))], np.zeros((2, 3)), verbose=0)


# ---------------------------------------------------------------- fit: caching, eager, state


def test_last_smaller_batch_compiles_once_not_every_epoch():
    model = mlp(dtype=np.float32)
    x, y = classification_data(n=50)
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_data=(x[:10], y[:10]))
    info = model.cache_info()
    assert info["train"]["misses"] == 2, info  # batches of 16 and the last one of 2
    assert info["train"]["hits"] == 3 * 4 - 2
    assert info["eval"]["misses"] == 1


def test_eager_fit_matches_compiled_fit():
    def build():
        layers.set_seed(5)
        model = gj.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"),
                               layers.Dropout(0.25), layers.BatchNormalization(),
                               layers.Dense(3, activation="softmax")])
        model.compile(optimizer=optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    x, y = classification_data(n=40)
    compiled, eager = build(), build()
    h1 = compiled.fit(x, y, epochs=3, batch_size=16, verbose=0, seed=7)
    h2 = eager.fit(x, y, epochs=3, batch_size=16, verbose=0, seed=7, jit=False)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-4)
    for compiled_layer, eager_layer in zip(compiled.layers, eager.layers):
        for key, value in compiled_layer.params.items():
            np.testing.assert_allclose(value, eager_layer.params[key], rtol=1e-3, atol=1e-5)
    assert compiled.cache_info()["train"]["misses"] == 2
    bn = compiled.layers[2]
    assert np.abs(bn.state["moving_mean"]).max() > 0, "moving statistics were updated"
    np.testing.assert_allclose(bn.state["moving_mean"], eager.layers[2].state["moving_mean"],
                               rtol=1e-3, atol=1e-6)


def test_sequential_builds_from_data_and_prints_a_summary():
    model = gj.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)])
    with pytest.raises(gj.GraphjitError, match="no input shape"):
        model.summary()
    out = model.predict(np.ones((3, 5)))
    assert out.shape == (3, 2) and out.dtype == np.float32
    text = model.summary(print_fn=None)
    assert "(None, 4)" in text and "(None, 2)" in text
    assert f"Total params: {5 * 4 + 4 + 4 * 2 + 2}" in text
    assert all(layer.name in text for layer in model.layers)


def test_sequential_compiles_before_it_knows_its_input_shape():
    model = gj.Sequential([layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = classification_data(n=16)
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert model.layers[0].params["kernel"].shape == (4, 3)
    assert set(history.history) == {"loss", "accuracy"}


# ---------------------------------------------------------------- weights on disk


def test_save_load_round_trip(tmp_path):
    def build():
        return gj.Sequential([layers.Input((4,)), layers.Dense(5, activation="tanh"),
                              layers.BatchNormalization(), layers.Dense(3)])

    model = build()
    x, y = classification_data(n=32)
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "weights.npz"
    model.save_weights(path)
    other = build()
    assert not np.allclose(other.predict(x), model.predict(x))
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("different", [
    lambda: [layers.Input((4,)), layers.Dense(6, activation="tanh"), layers.BatchNormalization(),
             layers.Dense(3)],
    lambda: [layers.Input((4,)), layers.Dense(5, activation="tanh"), layers.Dense(3)],
    lambda: [layers.Input((4,)), layers.Dense(5), layers.LayerNormalization(), layers.Dense(3)],
], ids=["other-width", "missing-layer", "other-layer-type"])
def test_load_into_another_architecture_is_a_clear_error(tmp_path, different):
    model = gj.Sequential([layers.Input((4,)), layers.Dense(5, activation="tanh"),
                           layers.BatchNormalization(), layers.Dense(3)])
    path = tmp_path / "weights.npz"
    model.save_weights(path)
    with pytest.raises(gj.GraphjitError, match="architectures differ"):
        gj.Sequential(different()).load_weights(path)


# ---------------------------------------------------------------- losses, metrics, embedding


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_losses_match_their_formulas(compiled):
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(8, 4)) * 3
    probs = softmax(logits)
    labels = rng.integers(0, 4, 8)
    one_hot = np.eye(4)[labels]
    binary = (rng.random((8, 4)) > 0.5).astype(np.float64)
    sig = 1 / (1 + np.exp(-logits))
    cases = [
        ("mse", one_hot, probs, np.mean(np.mean((probs - one_hot) ** 2, -1))),
        ("mae", one_hot, probs, np.mean(np.mean(np.abs(probs - one_hot), -1))),
        ("categorical_crossentropy", one_hot, probs, -np.mean(np.log(probs[range(8), labels]))),
        (losses.CategoricalCrossentropy(from_logits=True), one_hot, logits,
         -np.mean(np.log(probs[range(8), labels]))),
        ("sparse_categorical_crossentropy", labels, probs,
         -np.mean(np.log(probs[range(8), labels]))),
        (losses.SparseCategoricalCrossentropy(from_logits=True), labels[:, None], logits,
         -np.mean(np.log(probs[range(8), labels]))),
        ("binary_crossentropy", binary, sig,
         -np.mean(binary * np.log(sig) + (1 - binary) * np.log(1 - sig))),
        (losses.BinaryCrossentropy(from_logits=True), binary, logits,
         -np.mean(binary * np.log(sig) + (1 - binary) * np.log(1 - sig))),
    ]
    for identifier, y_true, y_pred, expected in cases:
        loss = losses.get(identifier)
        fn = gj.jit(loss.__call__) if compiled else loss
        assert fn(y_true, y_pred) == pytest.approx(expected, rel=1e-6), identifier


def test_metrics_and_accuracy_resolution():
    from graphjit import metrics

    y_pred = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    labels = np.array([1, 1, 1])
    sparse = metrics.get("accuracy", losses.get("sparse_categorical_crossentropy"))
    np.testing.assert_array_equal(sparse(labels, y_pred), [1, 0, 1])
    categorical = metrics.get("accuracy", losses.get("categorical_crossentropy"))
    np.testing.assert_array_equal(categorical(np.eye(2)[labels], y_pred), [1, 0, 1])
    binary = metrics.get("accuracy", losses.get("binary_crossentropy"))
    np.testing.assert_allclose(binary(np.array([[1.0, 1.0]] * 3), y_pred), [0.5, 0.5, 0.5])
    from_logits = metrics.get("accuracy", losses.BinaryCrossentropy(from_logits=True))
    np.testing.assert_allclose(from_logits(np.ones((1, 2)), np.array([[-0.2, 0.3]])), [0.5])
    np.testing.assert_allclose(metrics.get("mae")(np.zeros((1, 2)), np.array([[1.0, -3.0]])),
                               [2.0])
    with pytest.raises(gj.GraphjitError, match="unknown metric"):
        metrics.get("precision@k")
    with pytest.raises(gj.GraphjitError, match="unknown loss"):
        losses.get("hinge-typo")


def test_embedding_gradient_accumulates_repeated_ids():
    layers.set_seed(3)
    ids = layers.Input((3,), dtype=np.int64)
    model = gj.Model(ids, layers.Dense(1, dtype=F64)(layers.Flatten()(
        layers.Embedding(5, 2, dtype=F64)(ids))))
    x = np.array([[0, 2, 2], [4, 0, 1]])
    grads = gj.grad(lambda p: np.sum(model.apply(p, {}, [x])[0][0]))(model.params)
    kernel = model.params[model.layers[2].name]["kernel"].reshape(3, 2)
    expected = np.zeros((5, 2))
    for row in x:
        np.add.at(expected, row, kernel)
    np.testing.assert_allclose(grads[model.layers[0].name]["embeddings"], expected, rtol=1e-12)


def test_fit_prints_a_progress_line_per_epoch(capsys):
    model = mlp(dtype=np.float32)
    x, y = classification_data(n=20)
    model.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert out.count("3/3 [==============================]") == 2
    assert "/step - loss: " in out and "accuracy: " in out


# ---------------------------------------------------------------- nested models


def pretrained_base(seed=5):
    layers.set_seed(seed)
    base = gj.Sequential([layers.Input((4,)), layers.Dense(5, activation="relu"),
                          layers.BatchNormalization(momentum=0.5), layers.Dense(3)], name="base")
    base.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(seed).normal(size=(32, 4)).astype(np.float32)
    base.fit(x, np.zeros((32, 3), np.float32), batch_size=8, epochs=1, verbose=0)
    return base, x


def test_a_frozen_base_model_called_with_training_false_stays_frozen_and_in_inference(tmp_path):
    """Keras' transfer-learning recipe: base.trainable = False; base(inputs, training=False)."""
    base, x = pretrained_base()
    base.trainable = False
    inputs = layers.Input((4,))
    outputs = layers.Dense(2, name="head")(base(inputs, training=False))
    model = gj.Model(inputs, outputs, name="transfer")
    assert [layer.name for layer in model.layers[:3]] == [layer.name for layer in base.layers]
    frozen = base.get_weights()  # kernels and the BatchNormalization statistics
    model.compile(optimizer="adam", loss="mse")
    y = np.random.default_rng(6).normal(size=(32, 2)).astype(np.float32)
    head_before = model.get_layer("head").get_weights()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for got, want in zip(base.get_weights(), frozen):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(model.get_layer("head").get_weights()[0], head_before[0])
    head = model.get_layer("head").params
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               base.predict(x, verbose=0) @ head["kernel"] + head["bias"],
                               rtol=1e-5, atol=1e-6)
    # fine-tuning: the base trains, its BatchNormalization still in inference mode
    base.trainable = True
    model.compile(optimizer=optimizers.SGD(0.05), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    bn = base.layers[1]
    np.testing.assert_array_equal(bn.state["moving_mean"], frozen[4])
    assert not np.array_equal(base.layers[0].params["kernel"], frozen[0])
    # the nesting (and training=False) survives the archive
    model.save(tmp_path / "transfer.keras")
    loaded = gj.models.load_model(tmp_path / "transfer.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.layers[1].state["moving_mean"], frozen[4])


def test_nested_sequentials_and_a_shared_functional_encoder():
    layers.set_seed(7)
    augment = gj.Sequential([layers.Rescaling(0.5, offset=1.0)], name="augment")  # no Input
    model = gj.Sequential([layers.Input((4,)), augment, layers.Dense(2)])
    assert len(model.layers) == 2 and model.layers[0] is augment.layers[0]
    x = np.random.default_rng(8).normal(size=(5, 4)).astype(np.float32)
    dense = model.layers[1].params
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               (x * 0.5 + 1) @ dense["kernel"] + dense["bias"], rtol=1e-5)
    # a siamese pair: one encoder model applied to two inputs, its weights shared
    encoder_in = layers.Input((4,))
    encoder = gj.Model(encoder_in, layers.Dense(3, activation="tanh", name="enc")(encoder_in))
    a, b = layers.Input((4,)), layers.Input((4,))
    distance = layers.Subtract()([encoder(a), encoder(b)])
    siamese = gj.Model([a, b], distance)
    enc = encoder.get_layer("enc").params
    code = (lambda v: np.tanh(v @ enc["kernel"] + enc["bias"]))
    np.testing.assert_allclose(siamese.predict([x, x[::-1]], verbose=0),
                               code(x) - code(x[::-1]), rtol=1e-5, atol=1e-6)
    assert sum(layer.name == "enc" for layer in siamese.layers) == 1
    with pytest.raises(gj.GraphjitError, match="cannot be a layer of a Sequential"):
        gj.Sequential([layers.Input((4,)), encoder])
    with pytest.raises(gj.GraphjitError, match=r"expects inputs of shape \(batch, 4\)"):
        encoder(layers.Input((5,)))
