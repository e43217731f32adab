"""Every layer family of issue 16 through the whole-model format (`model.save` / `load_model`):
recurrent (incl. masks, `return_state`, wrappers), convolution and pooling, attention and
normalisation, preprocessing and utility layers (incl. `Normalization.adapt`'s statistics),
regularizers and constraints. Each round trip must give the same layer configs, the same
weights in the same order, and identical predictions; one model per family also trains a step
after loading exactly as the original does."""
import json
import zipfile

import numpy as np
import pytest

import graphjit as gj
from graphjit import constraints, layers, losses, optimizers, regularizers

RNG = np.random.default_rng(0)


def recurrent_model():
    x = layers.Input((6, 3), name="seq_in")
    h = layers.LSTM(4, return_sequences=True, name="lstm")(x)
    h = layers.GRU(3, return_sequences=True, reset_after=False, name="gru_classic")(h)
    h = layers.TimeDistributed(layers.Dense(3, activation="relu", name="td_dense"))(h)
    h = layers.Bidirectional(layers.SimpleRNN(2, return_sequences=True, name="rnn"),
                             merge_mode="sum")(h)
    h = layers.GRU(3, go_backwards=True, name="gru")(h)
    return gj.Model(x, layers.Dense(2, name="head")(h), name="recurrent"), \
        RNG.normal(size=(5, 6, 3)).astype(np.float32)


def masked_recurrent_model():
    ids = layers.Input((7,), dtype=np.int64, name="ids")
    h = layers.Embedding(12, 4, mask_zero=True, name="embed")(ids)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True, name="bi_lstm"))(h)
    h = layers.SimpleRNN(2, name="last")(h)
    ids_data = RNG.integers(1, 12, (5, 7))
    ids_data[:, 4:] = 0  # padding the mask must skip
    ids_data[0, 2:] = 0
    return gj.Model(ids, layers.Dense(2, name="head")(h), name="masked"), ids_data


def return_state_model():
    x = layers.Input((5, 2))
    sequence, h, c = layers.LSTM(3, return_sequences=True, return_state=True, name="enc")(x)
    pooled = layers.GlobalAveragePooling1D(name="pool")(sequence)
    merged = layers.Concatenate(name="cat")([pooled, h, c])
    return gj.Model(x, layers.Dense(2, name="head")(merged), name="states"), \
        RNG.normal(size=(4, 5, 2)).astype(np.float32)


def conv1d_model():
    return gj.Sequential([
        layers.Input((12, 3)),
        layers.Conv1D(4, 3, padding="same", dilation_rate=2, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(4, 2, strides=1, padding="valid"),
        layers.AveragePooling1D(2, padding="same"),
        layers.UpSampling1D(2),
        layers.ZeroPadding1D((1, 2)),
        layers.Cropping1D((2, 1)),
        layers.GlobalMaxPooling1D(),
        layers.Dense(2),
    ], name="conv1d"), RNG.normal(size=(3, 12, 3)).astype(np.float32)


def conv2d_model():
    return gj.Sequential([
        layers.Input((6, 6, 2)),
        layers.Conv2D(3, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.Conv2DTranspose(3, 3, strides=2, padding="same"),
        layers.DepthwiseConv2D(3, depth_multiplier=2),
        layers.SeparableConv2D(4, 3, padding="same", activation="tanh"),
        layers.MaxPooling2D(2),
        layers.AveragePooling2D(2, strides=1),
        layers.UpSampling2D((2, 1)),
        layers.ZeroPadding2D(((1, 0), (0, 1))),
        layers.Cropping2D(((0, 1), (1, 0))),
        layers.GlobalMaxPooling2D(),
        layers.Dense(2),
    ], name="conv2d"), RNG.normal(size=(3, 6, 6, 2)).astype(np.float32)


def attention_model():
    query = layers.Input((4, 6), name="query")
    value = layers.Input((5, 6), name="value")
    attended = layers.MultiHeadAttention(2, 3, name="mha")(query, value, use_causal_mask=True)
    attended = layers.LayerNormalization(name="ln")(layers.Add(name="res")([query, attended]))
    dot = layers.Attention(use_scale=True, score_mode="concat", name="att")([attended, value])
    grouped = layers.GroupNormalization(groups=2, name="gn")(dot)
    unit = layers.UnitNormalization(name="unit")(grouped)
    pooled = layers.GlobalAveragePooling1D(name="pool")(unit)
    return gj.Model([query, value], layers.Dense(2, name="head")(pooled), name="attention"), \
        [RNG.normal(size=(3, 4, 6)).astype(np.float32),
         RNG.normal(size=(3, 5, 6)).astype(np.float32)]


def preprocessing_model():
    features = layers.Input((4,), name="features")
    tokens = layers.Input((3,), dtype=np.int64, name="tokens")
    normalization = layers.Normalization(name="norm")
    normalization.adapt(RNG.normal(3.0, 2.0, size=(50, 4)))  # state the archive must keep
    x = normalization(features)
    x = layers.Rescaling(0.5, offset=0.1, name="rescale")(x)
    x = layers.Identity(name="identity")(x)
    a = layers.Dense(4, activation="relu", name="a")(x)
    b = layers.Dense(4, name="b")(x)
    encoded = layers.CategoryEncoding(4, output_mode="count", name="counts")(tokens)
    merged = [layers.Multiply(name="mul")([a, b]), layers.Subtract(name="sub")([a, b]),
              layers.Average(name="avg")([a, encoded]), layers.Maximum(name="max")([a, b]),
              layers.Minimum(name="min")([a, b])]
    dot = layers.Dot(axes=1, normalize=True, name="dot")([a, b])
    stacked = layers.Concatenate(name="cat")([*merged, dot])
    stacked = layers.ActivityRegularization(l1=0.01, l2=0.01, name="act_reg")(stacked)
    repeated = layers.RepeatVector(3, name="repeat")(stacked)
    permuted = layers.Permute((2, 1), name="permute")(repeated)
    masked = layers.Masking(0.0, name="masking")(permuted)
    flat = layers.Flatten(name="flat")(layers.Reshape((3, -1), name="reshape")(masked))
    out = layers.Dense(2, name="head")(layers.Dropout(0.2, name="drop")(
        layers.Activation("tanh", name="act")(flat)))
    return gj.Model([features, tokens], out, name="preprocessing"), \
        [RNG.normal(3.0, 2.0, size=(5, 4)).astype(np.float32), RNG.integers(0, 4, (5, 3))]


def regularized_model():
    return gj.Sequential([
        layers.Input((5, 3)),
        layers.Conv1D(3, 2, kernel_regularizer=regularizers.l1(0.02),
                      bias_regularizer="l2", kernel_constraint=constraints.unit_norm(axis=0)),
        layers.LSTM(3, recurrent_regularizer=regularizers.l1_l2(0.01, 0.02),
                    kernel_constraint=constraints.max_norm(1.5), bias_constraint="non_neg",
                    return_sequences=True),
        layers.Flatten(),
        layers.Dense(2, kernel_regularizer=regularizers.OrthogonalRegularizer(0.05),
                     kernel_constraint=constraints.MinMaxNorm(0.1, 0.9, axis=0),
                     activity_regularizer=regularizers.l2(0.003)),
    ], name="regularized"), RNG.normal(size=(4, 5, 3)).astype(np.float32)


BUILDERS = [recurrent_model, masked_recurrent_model, return_state_model, conv1d_model,
            conv2d_model, attention_model, preprocessing_model, regularized_model]


def _layer_configs(model):
    return [(type(layer).__name__, json.dumps(layer.get_config(), sort_keys=True))
            for layer in model.layers]


def _outputs_shape(model):
    return model.outputs[0].shape[-1]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_round_trip_keeps_configs_weights_and_predictions(build, tmp_path):
    layers.set_seed(1)
    model, x = build()
    expected = model.predict(x, verbose=0, jit=False)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        json.loads(archive.read("config.json"))  # plain JSON, nothing pickled
    loaded = gj.models.load_model(path)
    assert type(loaded) is type(model) and loaded.name == model.name
    assert _layer_configs(loaded) == _layer_configs(model)
    assert len(loaded.get_weights()) == len(model.get_weights())
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0, jit=False), expected)


def test_normalization_adapt_statistics_survive_the_archive(tmp_path):
    data = RNG.normal(5.0, 3.0, size=(40, 3)).astype(np.float32)
    normalization = layers.Normalization(name="norm")
    normalization.adapt(data)
    model = gj.Sequential([layers.Input((3,)), normalization], name="norm_only")
    model.save(tmp_path / "n.keras")
    loaded = gj.models.load_model(tmp_path / "n.keras")
    out = loaded.predict(data, verbose=0, jit=False)
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-4)
    assert loaded.layers[0].state["mean"].shape == (1, 3)


@pytest.mark.parametrize("build", [regularized_model, masked_recurrent_model],
                         ids=lambda b: b.__name__)
def test_loaded_model_trains_on_exactly_like_the_original(build, tmp_path):
    """Penalties, constraints and masks come back with the model: the same loss (penalties
    included) and the same weights after a further training step."""
    layers.set_seed(2)
    model, x = build()
    y = RNG.normal(size=(len(x), 2)).astype(np.float32)
    model.compile(optimizer=optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False, jit=False)
    model.save(tmp_path / "m.keras")
    loaded = gj.models.load_model(tmp_path / "m.keras")
    assert loaded.evaluate(x, y, verbose=0, jit=False) == model.evaluate(x, y, verbose=0,
                                                                        jit=False)
    for m in (model, loaded):
        m.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False, jit=False)
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- Keras' .weights.h5 layout


def keras_style_model(seed):
    """Layers whose Keras 3 weight paths nest: an RNN's cell, Bidirectional's two layers,
    TimeDistributed's layer, MultiHeadAttention's four EinsumDense layers."""
    layers.set_seed(seed)
    x = layers.Input((4, 3))
    h = layers.Normalization()(x)
    h = layers.LSTM(5, return_sequences=True)(h)
    h = layers.Bidirectional(layers.GRU(2, return_sequences=True))(h)
    h = layers.TimeDistributed(layers.Dense(6))(h)
    h = layers.MultiHeadAttention(2, 3)(h, h)
    h = layers.BatchNormalization()(layers.GlobalAveragePooling1D()(h))
    return gj.Model(x, layers.Dense(2)(layers.Dense(3)(h)))


def write_keras_h5(path, entries):
    """A .weights.h5 file as Keras 3 writes it: {group path: [arrays in variable order]}."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as handle:
        handle.create_group("vars")
        for group_path, arrays in entries.items():
            group = handle.require_group(group_path).require_group("vars")
            for index, array in enumerate(arrays):
                group[str(index)] = array


def test_keras_weights_h5_layout_loads_into_the_same_architecture(tmp_path):
    pytest.importorskip("h5py")
    model = keras_style_model(seed=1)
    rng = np.random.default_rng(3)
    w = {layer.name: [rng.normal(size=v.shape).astype(np.float32) for v in layer.get_weights()]
         for layer in model.layers}
    names = [layer.name for layer in model.layers]
    norm, lstm, bi, td, mha, bn, dense, dense_1 = [
        n for n in names if not n.startswith(("input", "global"))]
    mean, variance = w[norm]
    entries = {
        "layers/normalization": [mean.reshape(3), np.abs(variance).reshape(3) + 0.5],  # (3,)
        "layers/lstm/cell": w[lstm],
        "layers/bidirectional/forward_layer/cell": w[bi][:3],
        "layers/bidirectional/backward_layer/cell": w[bi][3:],
        "layers/bidirectional/layer/cell": [],  # Keras keeps the unbuilt original: no vars
        "layers/time_distributed/layer": w[td],
        "layers/multi_head_attention/_query_dense": w[mha][0:2],
        "layers/multi_head_attention/_key_dense": w[mha][2:4],
        "layers/multi_head_attention/_value_dense": w[mha][4:6],
        "layers/multi_head_attention/_output_dense": w[mha][6:8],
        "layers/batch_normalization": w[bn][:3] + [np.abs(w[bn][3]) + 0.5],
        "layers/dense": w[dense],
        "layers/dense_1": w[dense_1],
    }
    path = tmp_path / "model.weights.h5"
    write_keras_h5(path, entries)
    model.load_weights(path)
    by_layer = {}
    for key, arrays in entries.items():
        by_layer.setdefault(key.split("/")[1], []).extend(arrays)
    for keras_name, layer_name in (("normalization", norm), ("lstm", lstm),
                                   ("bidirectional", bi), ("time_distributed", td),
                                   ("multi_head_attention", mha), ("batch_normalization", bn),
                                   ("dense", dense), ("dense_1", dense_1)):
        got = model.get_layer(layer_name).get_weights()
        assert len(got) == len(by_layer[keras_name]), keras_name
        for array, want in zip(got, by_layer[keras_name]):
            np.testing.assert_array_equal(array.reshape(want.shape), want)
    assert model.get_layer(norm).state["mean"].shape == (1, 1, 3)

    # and back: our .weights.h5 has the same layout, loads into a second build (other names)
    x = RNG.normal(size=(3, 4, 3)).astype(np.float32)
    ours = tmp_path / "ours.weights.h5"
    model.save_weights(ours)
    twin = keras_style_model(seed=2)
    assert [layer.name for layer in twin.layers] != names
    twin.load_weights(ours)
    np.testing.assert_array_equal(twin.predict(x, verbose=0, jit=False),
                                  model.predict(x, verbose=0, jit=False))
    import h5py
    with h5py.File(ours) as handle:
        assert sorted(handle["layers/multi_head_attention"]) == [
            "_key_dense", "_output_dense", "_query_dense", "_value_dense", "vars"]
        assert handle["layers/lstm/cell/vars/1"].shape == (5, 20)


def test_keras_archives_and_mismatched_h5_files(tmp_path):
    pytest.importorskip("h5py")
    layers.set_seed(4)
    model = gj.Sequential([layers.Input((3,)), layers.Dense(4), layers.Dense(2)])
    kernel, bias = np.ones((3, 4), np.float32), np.full(4, 0.5, np.float32)
    h5 = tmp_path / "keras.weights.h5"
    write_keras_h5(h5, {"layers/dense": [kernel, bias], "layers/dense_1": [np.ones((4, 2)),
                                                                             np.zeros(2)]})
    archive = tmp_path / "from_keras.keras"
    with zipfile.ZipFile(archive, "w") as zf:  # Keras' .keras: config.json + model.weights.h5
        zf.writestr("config.json", "{}")
        zf.write(h5, "model.weights.h5")
    model.load_weights(archive)
    np.testing.assert_array_equal(model.layers[0].params["kernel"], kernel)
    ours = tmp_path / "ours.keras"
    model.save(ours)
    other = gj.Sequential([layers.Input((3,)), layers.Dense(4), layers.Dense(2)])
    other.load_weights(ours)  # Keras' load_weights takes a .keras archive too
    np.testing.assert_array_equal(other.layers[1].params["kernel"], np.ones((4, 2)))
    bad = tmp_path / "bad.weights.h5"
    write_keras_h5(bad, {"layers/dense": [np.ones((5, 4)), bias], "layers/dense_1": []})
    before = model.get_weights()
    with pytest.raises(gj.GraphjitError, match=r"weight 'kernel': the file has shape \(5, 4\)"):
        model.load_weights(bad)
    with pytest.raises(gj.GraphjitError, match="holds 0 weights, this layer has 2"):
        model.load_weights(bad)
    for got, want in zip(model.get_weights(), before):  # nothing changed
        np.testing.assert_array_equal(got, want)
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(gj.GraphjitError, match="not an HDF5 weights file"):
        model.load_weights(tmp_path / "junk.weights.h5")


def test_h5_without_h5py_is_a_clear_error(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if not installed
    model = gj.Sequential([layers.Input((2,)), layers.Dense(1)])
    with pytest.raises(gj.GraphjitError, match=r"needs h5py: pip install 'graphjit\[h5\]'"):
        model.save_weights(tmp_path / "m.weights.h5")
