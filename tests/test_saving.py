"""Whole-model save/load: round trips (Sequential; Functional with two inputs and two outputs; a
custom layer; a Lambda stored as IR and loaded in a process without its source), training that
continues exactly, clear errors for damaged archives, missing custom layers and other
architectures, and the IR serialiser itself."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import graphjit as gj
from graphjit import layers, losses, optimizers
from graphjit.compiler import serialize
from graphjit.saving import SavingError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPARSE_LOGITS = losses.SparseCategoricalCrossentropy(from_logits=True)


def sequential(seed=0):
    layers.set_seed(seed)
    model = gj.Sequential([layers.Input((5,)), layers.Dense(6, activation="relu"),
                           layers.BatchNormalization(), layers.Dropout(0.1),
                           layers.Dense(3)], name="seq")
    model.compile(optimizer=optimizers.Adam(0.01), loss=SPARSE_LOGITS, metrics=["accuracy"])
    return model


def classification(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n)


def assert_same_weights(a, b):
    assert len(a.get_weights()) == len(b.get_weights())
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)


def test_sequential_round_trip_continues_training_exactly(tmp_path):
    model = sequential()
    x, y = classification()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1)
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert {"config.json", "metadata.json", "model.weights.npz",
                "optimizer.npz"} <= set(archive.namelist())
    loaded = gj.models.load_model(path)
    assert type(loaded) is gj.Sequential and loaded.name == "seq"
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert_same_weights(loaded, model)
    assert isinstance(loaded.optimizer, optimizers.Adam)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for key in ("step", "learning_rate"):
        np.testing.assert_array_equal(loaded._opt_state[key], model._opt_state[key])
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # the next step: same loss, same weights, same optimizer moments
    h1 = model.fit(x, y, batch_size=24, verbose=0, shuffle=False, seed=3)
    h2 = loaded.fit(x, y, batch_size=24, verbose=0, shuffle=False, seed=3)
    assert h1.history == h2.history
    assert_same_weights(loaded, model)
    for layer in model.layers:
        for name, value in model._opt_state["m"].get(layer.name, {}).items():
            np.testing.assert_array_equal(loaded._opt_state["m"][layer.name][name], value)


def two_by_two():
    layers.set_seed(2)
    a, b = layers.Input((4,), name="a"), layers.Input((3,), name="b")
    hidden = layers.Dense(8, activation="tanh", name="hidden")(a)
    joined = layers.Concatenate(name="join")([hidden, b])
    reg = layers.Dense(1, name="reg")(joined)
    cls = layers.Dense(3, name="cls")(layers.Add(name="skip")([
        layers.Dense(3, name="left")(joined), layers.Dense(3, name="right")(hidden)]))
    model = gj.Model([a, b], [reg, cls], name="two_by_two")
    model.compile(optimizer=optimizers.SGD(0.05, momentum=0.9),
                  loss={"reg": "mse", "cls": SPARSE_LOGITS}, loss_weights=[1.0, 0.5],
                  metrics={"cls": ["accuracy"]})
    return model


def test_functional_two_inputs_two_outputs_round_trip(tmp_path):
    model = two_by_two()
    rng = np.random.default_rng(0)
    xs = {"a": rng.normal(size=(16, 4)), "b": rng.normal(size=(16, 3))}
    ys = [rng.normal(size=(16, 1)), rng.integers(0, 3, 16)]
    model.fit(xs, ys, batch_size=8, verbose=0)
    model.save(tmp_path / "f.keras")
    loaded = gj.models.load_model(tmp_path / "f.keras")
    assert [t.name for t in loaded.inputs] == ["a", "b"] and loaded.output_names == ["reg", "cls"]
    for got, want in zip(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0)):
        np.testing.assert_array_equal(got, want)
    assert model.fit(xs, ys, batch_size=16, verbose=0, shuffle=False).history == \
        loaded.fit(xs, ys, batch_size=16, verbose=0, shuffle=False).history
    assert_same_weights(loaded, model)


@layers.register(package="tests")
class Scale(layers.Layer):
    def __init__(self, init=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        self.add_weight("scale", (input_shape[-1],), lambda shape, dtype: np.full(shape,
                                                                                 self.init))

    def call(self, x):
        return x * self.params["scale"]


def test_custom_layer_round_trip_and_missing_registration(tmp_path):
    layers.set_seed(0)
    model = gj.Sequential([layers.Input((3,)), Scale(2.0, name="scale"), layers.Dense(2)])
    model.compile(loss="mse")
    x = np.ones((4, 3), np.float32)
    model.fit(x, np.zeros((4, 2)), verbose=0)
    model.save(tmp_path / "c.keras")
    loaded = gj.models.load_model(tmp_path / "c.keras")
    assert type(loaded.layers[0]) is Scale and loaded.layers[0].init == 2.0
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    registry = layers._REGISTRY
    saved = registry.pop("tests>Scale")
    try:
        with pytest.raises(gj.GraphjitError, match="unknown layer class 'tests>Scale'.*register"):
            gj.models.load_model(tmp_path / "c.keras")
        via_argument = gj.models.load_model(tmp_path / "c.keras",
                                            custom_objects={"tests>Scale": Scale})
        assert type(via_argument.layers[0]) is Scale
    finally:
        registry["tests>Scale"] = saved


def lambda_model():
    layers.set_seed(1)
    a = layers.Input((4,), name="a")
    b = layers.Input((4,), name="b")
    mixed = layers.Lambda(lambda ts: ts[0] * np.tanh(ts[1]) + 0.5, name="mix")([a, b])
    cut = layers.Lambda(lambda t: np.concatenate([t[:, :2] ** 2, t[:, 2:]], axis=1),
                        name="cut")(mixed)
    out = layers.Dense(2, name="out")(cut)
    model = gj.Model([a, b], out)
    model.compile(optimizer="sgd", loss="mse")
    return model


LOAD_IN_A_FRESH_PROCESS = """
import sys, numpy as np, graphjit as gj
model = gj.models.load_model(sys.argv[1])
data = np.load(sys.argv[2])
out = model.predict([data["a"], data["b"]], verbose=0)
assert model.cache_info()["predict"]["misses"] == 1, model.cache_info()  # ran compiled
np.testing.assert_allclose(out, data["expected"], rtol=1e-6, atol=1e-6)
history = model.fit([data["a"], data["b"]], data["y"], batch_size=7, verbose=0, shuffle=False)
np.testing.assert_allclose(history.history["loss"], data["next_loss"], rtol=1e-6)
print("ok")
"""


def test_lambda_saves_as_ir_and_loads_without_its_source(tmp_path):
    model = lambda_model()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 4)).astype(np.float32), rng.normal(size=(7, 4)).astype(np.float32)
    y = rng.normal(size=(7, 2)).astype(np.float32)
    model.save(tmp_path / "l.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "l.keras").read("config.json"))
    mix = next(r for r in config["model"]["config"]["layers"] if r["config"]["name"] == "mix")
    assert mix["config"]["function"]["ir"]["format"] == "graphjit-ir"
    assert "lambda" not in json.dumps(mix["config"]["function"]["ir"]["nodes"])
    expected = model.predict([a, b], verbose=0)
    loaded = gj.models.load_model(tmp_path / "l.keras")
    np.testing.assert_allclose(loaded.predict([a, b], verbose=0, jit=False), expected,
                               rtol=1e-6, atol=1e-6)
    next_loss = model.fit([a, b], y, batch_size=7, verbose=0, shuffle=False).history["loss"]
    np.savez(tmp_path / "data.npz", a=a, b=b, y=y, expected=expected, next_loss=next_loss)
    script = tmp_path / "load.py"
    script.write_text(LOAD_IN_A_FRESH_PROCESS)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "l.keras"),
                             str(tmp_path / "data.npz")], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
    loaded.save(tmp_path / "again.keras")  # a loaded Lambda saves again
    gj.models.load_model(tmp_path / "again.keras")


def test_lambda_depending_on_the_batch_size_refuses_to_save(tmp_path):
    model = gj.Sequential([layers.Input((3,)), layers.Lambda(
        lambda t: t + np.arange(t.shape[0], dtype=np.float32)[:, None])])
    model.predict(np.zeros((2, 3)), verbose=0)
    with pytest.raises(SavingError, match="depends on the batch size"):
        model.save(tmp_path / "bad.keras")
    assert not os.path.exists(tmp_path / "bad.keras")


def test_lambda_layers_pickle_as_ir():
    import pickle

    model = lambda_model()
    a = np.ones((3, 4), np.float32)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(clone.predict([a, a], verbose=0), model.predict([a, a], verbose=0),
                               rtol=1e-6)


# ---------------------------------------------------------------- damaged and foreign archives


def test_corrupt_archives_are_clear_errors(tmp_path):
    model = sequential()
    model.save(tmp_path / "good.keras")
    good = (tmp_path / "good.keras").read_bytes()
    cases = {
        "noise.keras": (os.urandom(200), "not a saved model archive"),
        "truncated.keras": (good[: len(good) // 2], "not a saved model archive"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(SavingError, match=match):
            gj.models.load_model(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(SavingError, match="no .*config.json"):
        gj.models.load_model(tmp_path / "empty.keras")
    rewrite(tmp_path / "good.keras", tmp_path / "json.keras", {"config.json": b"{not json"})
    with pytest.raises(SavingError, match="not valid JSON"):
        gj.models.load_model(tmp_path / "json.keras")
    rewrite(tmp_path / "good.keras", tmp_path / "pickled.keras",
            {"model.weights.npz": npz_bytes(w=np.array([object()], dtype=object))})
    with pytest.raises(SavingError, match="damaged or holds pickled"):
        gj.models.load_model(tmp_path / "pickled.keras")
    with pytest.raises(SavingError, match="no saved model"):
        gj.models.load_model(tmp_path / "missing.keras")


def rewrite(source, target, replace):
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, replace.get(name, old.read(name)))


def npz_bytes(**arrays):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_weights_of_another_architecture_are_a_clear_error(tmp_path):
    model = sequential()
    model.save(tmp_path / "m.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))
    config["model"]["config"]["layers"][0]["config"]["units"] = 7
    rewrite(tmp_path / "m.keras", tmp_path / "other.keras",
            {"config.json": json.dumps(config).encode()})
    with pytest.raises(SavingError, match="(?s)architectures differ.*shape"):
        gj.models.load_model(tmp_path / "other.keras")


def test_load_weights_refuses_foreign_files_clearly(tmp_path):
    model = sequential()
    (tmp_path / "noise.npz").write_bytes(os.urandom(100))
    np.save(tmp_path / "single.npy", np.zeros(3))
    np.savez(tmp_path / "objects.npz", w=np.array([object()], dtype=object))
    for name, match in [("noise.npz", "not a weights file"), ("single.npy", "single .npy"),
                        ("objects.npz", "pickled"), ("absent.npz", "no weights file")]:
        with pytest.raises(gj.GraphjitError, match=match):
            model.load_weights(tmp_path / name)


def test_unsaveable_configs_say_why(tmp_path):
    model = gj.Sequential([layers.Input((2,)), layers.Dense(2, activation=lambda t: t * 2)])
    with pytest.raises(SavingError, match="'activation' is a Python function"):
        model.save(tmp_path / "x.keras")
    compiled = sequential()
    compiled.compile(loss=lambda y_true, y_pred: np.mean(y_pred, axis=-1))
    compiled.save(tmp_path / "custom_loss.keras")
    with pytest.raises(SavingError, match="custom loss '<lambda>'.*custom_objects"):
        gj.models.load_model(tmp_path / "custom_loss.keras")
    assert gj.models.load_model(tmp_path / "custom_loss.keras", compile=False)._compiled is None


# ---------------------------------------------------------------- the IR serialiser


def traced_graph():
    def fn(x, w):
        h = np.maximum(x @ w, 0.0)
        return np.concatenate([np.sum(h[:, :2], axis=1, keepdims=True), h[:, 1:] * 0.5], axis=1)

    return gj.jit(fn).lower(np.ones((3, 4)), np.ones((4, 5))).traced.graph


def test_ir_round_trips_through_json():
    graph = traced_graph()
    data = json.loads(json.dumps(serialize.graph_to_json(graph)))
    again = serialize.graph_from_json(data)
    assert serialize.same_program(graph, again)
    from graphjit.compiler.interpret import interpret

    rng = np.random.default_rng(0)
    args = [rng.normal(size=(3, 4)), rng.normal(size=(4, 5))]
    np.testing.assert_array_equal(interpret(graph, args)[0], interpret(again, args)[0])


def test_damaged_ir_is_refused():
    data = serialize.graph_to_json(traced_graph())
    bad_shape = json.loads(json.dumps(data))
    bad_shape["nodes"][-1]["shape"] = [99]
    bad_op = json.loads(json.dumps(data))
    bad_op["nodes"][-1]["op"] = "frobnicate"
    forward = json.loads(json.dumps(data))
    forward["nodes"][2]["args"] = [5]
    objects = json.loads(json.dumps(data))
    objects["nodes"].append({"op": "const", "args": [], "shape": [1], "dtype": "|O",
                             "attrs": {"value": {"const": {"dtype": "|O", "shape": [1],
                                                           "data": ""}}}})
    for case, match in [(bad_shape, "recorded"), (bad_op, "unknown op 'frobnicate'"),
                        (forward, "earlier nodes"), (objects, "object dtype"),
                        ({"format": "x"}, "not a serialised")]:
        with pytest.raises(serialize.SerializeError, match=match):
            serialize.graph_from_json(case)


def test_layer_outputs_extract_features_and_json_and_clone_rebuild_the_architecture():
    model = sequential()
    x, _ = classification(n=6)
    hidden = model.layers[0]
    features = gj.Model(model.input, hidden.output)  # Keras' feature-extraction idiom
    assert hidden.input is model.input and model.output is model.outputs[0]
    expected = np.maximum(x @ hidden.params["kernel"] + hidden.params["bias"], 0)
    np.testing.assert_allclose(features.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    hidden.params["kernel"] = hidden.params["kernel"] * 2  # the weights are shared
    np.testing.assert_allclose(features.predict(x, verbose=0),
                               np.maximum(x @ hidden.params["kernel"] + hidden.params["bias"], 0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(gj.GraphjitError, match="never been called on Input tensors"):
        layers.Dense(2).output
    for rebuilt in (gj.models.model_from_json(model.to_json()), gj.models.clone_model(model)):
        assert rebuilt.get_config() == model.get_config()
        assert all(r is not m for r, m in zip(rebuilt.layers, model.layers))
        rebuilt.set_weights(model.get_weights())
        np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(SavingError, match="model_from_json"):
        gj.models.model_from_json("{not json")
