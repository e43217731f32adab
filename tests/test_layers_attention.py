"""Attention, normalisation, preprocessing and merge layers (issue 16) against NumPy written here,
eagerly and compiled; gradients against finite differences; Keras' weights; masks; fit with
regularizers and constraints."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit import constraints, layers, regularizers
from layer_checks import check_forward, check_gradients, weight_shapes

DTYPES = st.sampled_from([np.float32, np.float64])


def softmax(z, mask=None):
    if mask is not None:
        z = np.where(mask, z, z - 1e9)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_mha(p, query, value, key=None, mask=None, heads=2, key_dim=3):
    key = value if key is None else key
    q = np.einsum("nsd,dhk->nhsk", query, p["query/kernel"]) + p["query/bias"][None, :, None]
    k = np.einsum("nsd,dhk->nhsk", key, p["key/kernel"]) + p["key/bias"][None, :, None]
    v = np.einsum("nsd,dhk->nhsk", value, p["value/kernel"]) + p["value/bias"][None, :, None]
    scores = np.einsum("nhqk,nhvk->nhqv", q / np.sqrt(key_dim), k)
    weights = softmax(scores, None if mask is None else mask[:, None])
    context = np.einsum("nhqv,nhvk->nqhk", weights, v)
    out = np.einsum("nqhk,hko->nqo", context, p["attention_output/kernel"])
    return out + p["attention_output/bias"]


def random_biases(layer, seed=1):
    rng = np.random.default_rng(seed)
    for name, value in layer.params.items():
        if name.endswith("bias"):
            layer.params[name] = rng.normal(size=value.shape).astype(value.dtype)


@settings(max_examples=4, deadline=None)
@given(batch=st.integers(1, 2), q_steps=st.integers(1, 4), v_steps=st.integers(1, 4),
       causal=st.booleans(), with_key=st.booleans(), with_mask=st.booleans(), dtype=DTYPES)
def test_multi_head_attention(batch, q_steps, v_steps, causal, with_key, with_mask, dtype):
    if causal:
        v_steps = q_steps
    rng = np.random.default_rng(q_steps * 5 + v_steps)
    query = rng.normal(size=(batch, q_steps, 4))
    value = rng.normal(size=(batch, v_steps, 5))
    key = rng.normal(size=(batch, v_steps, 3)) if with_key else None
    mask = rng.random((batch, q_steps, v_steps)) > 0.3 if with_mask else None
    if mask is not None:
        mask[..., 0] = True  # every query sees something
    layer = layers.MultiHeadAttention(2, 3, dtype=dtype)
    inputs = [query, value] + ([key] if with_key else []) + ([mask] if with_mask else [])

    def apply(layer, inputs, training):
        k = inputs[2] if with_key else None
        m = inputs[-1] if with_mask else None
        return layer(inputs[0], inputs[1], k, attention_mask=m, use_causal_mask=causal,
                     training=training)

    apply(layer, [np.asarray(a, dtype) if a.dtype.kind == "f" else a for a in inputs], False)
    random_biases(layer)
    assert weight_shapes(layer) == [
        ("query/kernel", (4, 2, 3)), ("query/bias", (2, 3)),
        ("key/kernel", (3 if with_key else 5, 2, 3)), ("key/bias", (2, 3)),
        ("value/kernel", (5, 2, 3)), ("value/bias", (2, 3)),
        ("attention_output/kernel", (2, 3, 4)), ("attention_output/bias", (4,))]
    full_mask = mask
    if causal:
        tri = np.tril(np.ones((q_steps, v_steps), bool))[None]
        full_mask = tri if full_mask is None else full_mask & tri
    check_forward(layer, inputs, lambda p, x: reference_mha(
        p, x[0], x[1], x[2] if with_key else None, full_mask), dtype, apply=apply)


def test_multi_head_attention_gradients_and_functional_use():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4))
    layer = layers.MultiHeadAttention(2, 3, value_dim=2, output_shape=5, dtype=np.float64)
    apply = lambda layer, inputs, training: layer(inputs[0], inputs[1],  # noqa: E731
                                                  use_causal_mask=True)
    apply(layer, [x, x], False)
    assert layer.params["attention_output/kernel"].shape == (2, 2, 5)
    check_gradients(layer, [x, x], apply=apply, entries=2)
    # self-attention in a model: masks from Embedding(mask_zero=True) hide the padding
    ids_in = layers.Input((4,), dtype=np.int64)
    embedded = layers.Embedding(6, 4, mask_zero=True, dtype=np.float64)(ids_in)
    mha = layers.MultiHeadAttention(2, 3, dtype=np.float64)
    model = gj.Model(ids_in, mha(embedded, embedded))
    ids = np.array([[1, 2, 0, 0], [3, 4, 5, 0]])
    embedded_values = model.layers[0].params["embeddings"][ids]
    mask = (ids != 0)[:, :, None] & (ids != 0)[:, None, :]
    expected = reference_mha(mha.params, embedded_values, embedded_values, mask=mask)
    out = model.predict(ids)
    valid = ids != 0  # padded queries attend to nothing; Keras leaves their rows uniform
    np.testing.assert_allclose(out[valid], expected[valid], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.predict(ids, jit=False)[valid], expected[valid],
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("score_mode,use_scale", [("dot", False), ("dot", True),
                                                  ("concat", True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention(score_mode, use_scale, dtype):
    rng = np.random.default_rng(2)
    q, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    layer = layers.Attention(use_scale=use_scale, score_mode=score_mode, dtype=dtype)
    layer([q.astype(dtype), v.astype(dtype)])
    if use_scale:
        layer.params["scale"] = np.asarray(1.7, dtype)
    expected_names = (["scale"] if use_scale else []) + (
        ["concat_score_weight"] if score_mode == "concat" else [])
    assert [n for n, _ in weight_shapes(layer)] == expected_names

    def reference(p, x):
        q, v = x
        if score_mode == "dot":
            scores = q @ v.transpose(0, 2, 1) * p.get("scale", 1.0)
        else:
            scores = p["concat_score_weight"] * np.sum(
                p.get("scale", 1.0) * np.tanh(q[:, :, None] + v[:, None]), axis=-1)
        return softmax(scores) @ v

    check_forward(layer, [q, v], reference, dtype,
                  apply=lambda layer, x, training: layer(x, training=training))


def test_attention_masks_and_causal():
    rng = np.random.default_rng(3)
    q, v = rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 3, 2))
    q_mask = np.array([[True, True, False], [True, True, True]])
    v_mask = np.array([[True, False, True], [True, True, False]])
    out = layers.Attention(dtype=np.float64)([q, v], query_mask=q_mask, value_mask=v_mask,
                                             use_causal_mask=True)
    causal = np.tril(np.ones((3, 3), bool))
    expected = softmax(q @ v.transpose(0, 2, 1), v_mask[:, None] & causal) @ v
    expected = expected * q_mask[:, :, None]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@settings(max_examples=4, deadline=None)
@given(groups=st.sampled_from([1, 2, 4]), rank=st.integers(2, 4), dtype=DTYPES)
def test_group_and_unit_normalization(groups, rank, dtype):
    shape = (2, 3, 2, 4)[:rank - 1] + (4,)
    x = np.random.default_rng(rank).normal(size=shape) * 3 + 1
    layer = layers.GroupNormalization(groups=groups, epsilon=1e-3, dtype=dtype)
    layer(x.astype(dtype))
    layer.params = {"gamma": np.linspace(0.5, 2, 4).astype(dtype),
                    "beta": np.linspace(-1, 1, 4).astype(dtype)}
    assert weight_shapes(layer) == [("gamma", (4,)), ("beta", (4,))]

    def reference(p, x):
        g = x.reshape(*x.shape[:-1], groups, 4 // groups)
        axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)
        mean, var = g.mean(axes, keepdims=True), g.var(axes, keepdims=True)
        return ((g - mean) / np.sqrt(var + 1e-3)).reshape(x.shape) * p["gamma"] + p["beta"]

    check_forward(layer, x, reference, dtype, rtol=1e-3 if dtype == np.float32 else None)
    check_forward(layers.UnitNormalization(dtype=dtype), x,
                  lambda p, x: x / np.linalg.norm(x, axis=-1, keepdims=True), dtype)


def test_normalization_gradients():
    x = np.random.default_rng(4).normal(size=(2, 3, 4))
    layer = layers.GroupNormalization(2, dtype=np.float64)
    layer(x)
    layer.params["gamma"] = np.linspace(0.5, 2, 4)
    check_gradients(layer, x, entries=3)
    check_gradients(layers.UnitNormalization(dtype=np.float64), x, entries=3)
    attention = layers.Attention(use_scale=True, dtype=np.float64)
    apply = lambda layer, inputs, training: layer(inputs)  # noqa: E731
    attention([x, x])
    check_gradients(attention, [x, x], apply=apply, entries=3)


# ---------------------------------------------------------------- preprocessing and merging


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_preprocessing_and_merge_layers(dtype):
    rng = np.random.default_rng(5)
    a, b, c = (rng.normal(size=(2, 3, 4)) for _ in range(3))
    v2 = rng.normal(size=(2, 4))
    cases = [
        (layers.Rescaling(1 / 255, offset=-0.5), a, lambda x: x / 255 - 0.5),
        (layers.Identity(), a, lambda x: x),
        (layers.Permute((2, 1)), a, lambda x: x.transpose(0, 2, 1)),
        (layers.RepeatVector(3), v2, lambda x: np.repeat(x[:, None], 3, axis=1)),
        (layers.Multiply(), [a, b, c], lambda x: x[0] * x[1] * x[2]),
        (layers.Subtract(), [a, b], lambda x: x[0] - x[1]),
        (layers.Average(), [a, b, c], lambda x: (x[0] + x[1] + x[2]) / 3),
        (layers.Maximum(), [a, b], lambda x: np.maximum(x[0], x[1])),
        (layers.Minimum(), [a, b, c], lambda x: np.minimum(np.minimum(x[0], x[1]), x[2])),
        (layers.Dot(axes=2), [a, b], lambda x: np.einsum("nid,njd->nij", x[0], x[1])),
        (layers.Dot(axes=(1, 1)), [a, b], lambda x: np.einsum("ndi,ndj->nij", x[0], x[1])),
        (layers.Dot(axes=1), [v2, v2[::-1]], lambda x: np.sum(x[0] * x[1], 1, keepdims=True)),
        (layers.Dot(axes=-1, normalize=True), [v2, v2[::-1]], lambda x: np.sum(
            x[0] * x[1], 1, keepdims=True) / np.linalg.norm(x[0], axis=1, keepdims=True)
            / np.linalg.norm(x[1], axis=1, keepdims=True)),
        (layers.ActivityRegularization(l1=0.1), a, lambda x: x),
    ]
    for layer, x, reference in cases:
        layer.dtype = np.dtype(dtype)
        check_forward(layer, x, lambda p, x, reference=reference: reference(x), dtype,
                      apply=lambda layer, x, training: layer(x, training=training))


def test_merge_layer_gradients():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    apply = lambda layer, x, training: layer(x)  # noqa: E731
    for layer in (layers.Multiply(), layers.Maximum(), layers.Dot(axes=2),
                  layers.Dot(axes=2, normalize=True), layers.Permute((2, 1))):
        inputs = [a, b] if not isinstance(layer, layers.Permute) else a
        check_gradients(layer, inputs, apply=apply if isinstance(inputs, list) else
                        lambda layer, x, training: layer(x), entries=3)


def test_normalization_adapt_and_invert():
    data = np.random.default_rng(7).normal(size=(50, 3)) * [1, 2, 3] + [0, 5, -5]
    layer = layers.Normalization()
    layer.adapt(data)
    assert weight_shapes(layer) == [("mean", (1, 3)), ("variance", (1, 3))]
    assert layer.count_params() == 0  # the statistics are not trained
    np.testing.assert_allclose(layer.state["mean"][0], data.mean(0), rtol=1e-5)
    x = data[:4].astype(np.float32)
    expected = (x - data.mean(0)) / data.std(0)
    check_forward(layer, x, lambda p, x: (x - p["mean"]) / np.sqrt(p["variance"]), np.float32,
                  rtol=1e-4)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-5)
    inverse = layers.Normalization(mean=layer.state["mean"], variance=layer.state["variance"],
                                   invert=True)
    np.testing.assert_allclose(inverse(layer(x)), x, rtol=1e-4, atol=1e-4)
    batches = [data[:20], data[20:]]
    by_batches = layers.Normalization(axis=None)
    by_batches.adapt(batches)
    np.testing.assert_allclose(by_batches.state["mean"], data.mean(keepdims=True), rtol=1e-5)


def test_category_encoding():
    ids = np.array([[0, 3, 3], [1, 1, 2]])
    for mode, expected in [
        ("multi_hot", np.array([[1, 0, 0, 1], [0, 1, 1, 0]])),
        ("count", np.array([[1, 0, 0, 2], [0, 2, 1, 0]])),
        ("one_hot", np.eye(4)[ids]),
    ]:
        layer = layers.CategoryEncoding(4, output_mode=mode)
        check_forward(layer, ids, lambda p, x, expected=expected: expected, np.float32)
    check_forward(layers.CategoryEncoding(3, output_mode="one_hot"), np.array([[2], [0]]),
                  lambda p, x: np.eye(3)[[2, 0]], np.float32)


# ---------------------------------------------------------------- regularizers and constraints


def test_regularizers_and_constraints_values():
    w = np.array([[3.0, -4.0], [0.0, 1.0]])
    assert regularizers.l1(0.1)(w) == pytest.approx(0.8)
    assert regularizers.l2(0.1)(w) == pytest.approx(2.6)
    assert regularizers.l1_l2(0.1, 0.1)(w) == pytest.approx(3.4)
    assert regularizers.get("l2").l2 == 0.01
    assert regularizers.get({"class_name": "L1", "config": {"l1": 0.5}})(w) == pytest.approx(4)
    np.testing.assert_allclose(constraints.NonNeg()(w), [[3, 0], [0, 1]])
    norms = np.linalg.norm(w, axis=0)
    np.testing.assert_allclose(constraints.MaxNorm(2.0)(w), w * np.minimum(norms, 2) /
                               (1e-7 + norms))
    np.testing.assert_allclose(constraints.UnitNorm(axis=0)(w), w / (1e-7 + norms))
    with pytest.raises(gj.GraphjitError, match="unknown regularizer"):
        regularizers.get("l3")
    with pytest.raises(gj.GraphjitError, match="unknown constraint"):
        constraints.get("positive")


def test_fit_minimises_loss_plus_penalties_and_applies_constraints():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 3, 4)).astype(np.float64)
    y = rng.normal(size=(16, 2)).astype(np.float64)
    layers.set_seed(3)
    model = gj.Sequential([
        layers.Input((3, 4), dtype=np.float64),
        layers.Conv1D(3, 2, kernel_regularizer=regularizers.l2(0.5),
                      kernel_constraint=constraints.MaxNorm(0.5), dtype=np.float64),
        layers.ActivityRegularization(l1=0.01),
        layers.GlobalAveragePooling1D(),
        layers.Dense(2, dtype=np.float64),
    ])
    model.compile(gj.optimizers.SGD(0.0), "mse")  # no update: the loss is what we can check
    conv = model.layers[0]
    out = model.predict(x)
    hidden = model.layers[1](conv(x))
    expected = np.mean((out - y) ** 2) + 0.5 * np.sum(conv.params["kernel"] ** 2) + \
        0.01 * np.sum(np.abs(hidden))
    assert np.sqrt((conv.params["kernel"] ** 2).sum(axis=0)).max() > 0.5
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)
    norms = np.sqrt((conv.params["kernel"] ** 2).sum(axis=0))
    assert norms.max() <= 0.5 + 1e-6  # max_norm projected the kernel after the step


def test_configs_round_trip():
    for layer in (layers.LSTM(3, return_sequences=True, kernel_regularizer="l2"),
                  layers.Conv2DTranspose(2, 3, strides=2, padding="same"),
                  layers.MultiHeadAttention(2, 4), layers.CategoryEncoding(5, "count"),
                  layers.Bidirectional(layers.GRU(2, reset_after=False), merge_mode="sum"),
                  layers.TimeDistributed(layers.Dense(3)), layers.Embedding(4, 2, mask_zero=True),
                  layers.Dot(axes=(1, 2)), layers.ZeroPadding2D(((1, 2), (3, 4)))):
        config = layer.get_config()
        again = type(layer).from_config(config)
        assert again.get_config() == config, type(layer).__name__
