"""Layers: each forward pass against a direct NumPy reference, eagerly and compiled."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit import layers


def compiled(layer, training=False):
    """The layer's forward pass as a jitted function of (params, state, x)."""

    def forward(params, state, x):
        saved = layer.params, layer.state
        layer.params, layer.state = params, dict(state)
        try:
            return layer(x, training=training), layer.state
        finally:
            layer.params, layer.state = saved

    return gj.jit(forward)


def check_layer(layer, x, expected, rtol=1e-5, atol=1e-6):
    """Eager and compiled outputs both match `expected` (shape, dtype and values)."""
    eager = layer(x)
    out, _ = compiled(layer)(layer.params, layer.state, x)
    for result in (eager, out):
        assert result.shape == expected.shape
        assert result.dtype == expected.dtype
        np.testing.assert_allclose(result, expected, rtol=rtol, atol=atol)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- dense and activations


@pytest.mark.parametrize("activation,reference", [
    ("relu", lambda z: np.maximum(z, 0)),
    ("tanh", np.tanh),
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
    ("softmax", lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)),
    ("silu", lambda z: z / (1 + np.exp(-z))),
    ("gelu", lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))),
    ("linear", lambda z: z),
])
def test_dense_with_activation(activation, reference):
    layer = layers.Dense(5, activation=activation)
    x = rand(4, 3)
    layer(x)  # build
    z = x.astype(np.float64) @ layer.params["kernel"] + layer.params["bias"]
    check_layer(layer, x, reference(z).astype(np.float32))


def test_dense_on_rank3_inputs_and_without_bias():
    layer = layers.Dense(2, use_bias=False)
    x = rand(2, 3, 4)
    layer(x)
    assert set(layer.params) == {"kernel"}
    check_layer(layer, x, (x @ layer.params["kernel"]).astype(np.float32))


def test_activation_layer_and_unknown_name():
    x = rand(3, 4)
    check_layer(layers.Activation("relu"), x, np.maximum(x, 0))
    with pytest.raises(gj.GraphjitError, match="unknown activation"):
        layers.Activation("relux")


@pytest.mark.parametrize("name", sorted(layers.INITIALIZERS))
def test_initializers_have_the_right_scale(name):
    shape = (200, 300)
    w = layers.initialize(name, shape, np.float32, np.random.default_rng(0))
    assert w.shape == shape and w.dtype == np.float32
    fan_in, fan_out = shape
    expected_std = {
        "zeros": 0.0, "ones": 0.0, "random_normal": 0.05, "random_uniform": 0.05 / np.sqrt(3),
        "glorot_uniform": np.sqrt(2 / (fan_in + fan_out)),
        "glorot_normal": np.sqrt(2 / (fan_in + fan_out)), "he_uniform": np.sqrt(2 / fan_in),
        "he_normal": np.sqrt(2 / fan_in), "lecun_uniform": np.sqrt(1 / fan_in),
        "lecun_normal": np.sqrt(1 / fan_in),
    }[name]
    assert w.std() == pytest.approx(expected_std, rel=0.03, abs=1e-9)
    if name == "glorot_uniform":
        assert np.abs(w).max() <= np.sqrt(6 / (fan_in + fan_out))


# ---------------------------------------------------------------- shape layers


def test_flatten_reshape_lambda():
    x = rand(2, 3, 4)
    check_layer(layers.Flatten(), x, x.reshape(2, 12))
    check_layer(layers.Reshape((4, 3)), x, x.reshape(2, 4, 3))
    check_layer(layers.Lambda(lambda t: t * 2 + 1), x, x * 2 + 1)


# ---------------------------------------------------------------- normalization


def test_layer_normalization():
    layer = layers.LayerNormalization(epsilon=1e-3)
    x = rand(4, 6)
    layer(x)
    layer.params = {"gamma": rand(6, seed=1), "beta": rand(6, seed=2)}
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-3) * layer.params["gamma"] + layer.params["beta"]
    check_layer(layer, x, expected.astype(np.float32), rtol=1e-4, atol=1e-5)


def test_batch_normalization_training_and_inference():
    layer = layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    x = rand(8, 2, 3) * 3 + 1
    layer(x)
    assert set(layer.state) == {"moving_mean", "moving_variance"}
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    out, new_state = compiled(layer, training=True)(layer.params, layer.state, x)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new_state["moving_mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state["moving_variance"], 0.9 + 0.1 * var, rtol=1e-5)
    # inference uses the moving statistics, and leaves them alone
    layer.state = {k: np.asarray(v) for k, v in new_state.items()}
    expected = (x - new_state["moving_mean"]) / np.sqrt(new_state["moving_variance"] + 1e-3)
    check_layer(layer, x, expected.astype(np.float32), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- convolution and pooling


def reference_conv(x, kernel, bias, stride, padding):
    kh, kw, _, filters = kernel.shape
    if padding == "same":
        pads = []
        for size, k, s in zip(x.shape[1:3], (kh, kw), stride):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    n, h, w, _ = x.shape
    out_h, out_w = (h - kh) // stride[0] + 1, (w - kw) // stride[1] + 1
    out = np.zeros((n, out_h, out_w, filters))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * stride[0]: i * stride[0] + kh, j * stride[1]: j * stride[1] + kw]
            out[:, i, j] = np.tensordot(window, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out + bias


@settings(max_examples=12, deadline=None)
@given(size=st.tuples(st.integers(3, 7), st.integers(3, 7)), channels=st.integers(1, 3),
       kernel=st.sampled_from([(1, 1), (2, 2), (3, 3), (3, 2)]),
       stride=st.sampled_from([(1, 1), (2, 2), (1, 2)]),
       padding=st.sampled_from(["valid", "same"]))
def test_conv2d_matches_direct_convolution(size, channels, kernel, stride, padding):
    layer = layers.Conv2D(4, kernel, strides=stride, padding=padding)
    x = rand(2, *size, channels)
    layer(x)
    layer.params["bias"] = rand(4, seed=3)
    expected = reference_conv(x.astype(np.float64), layer.params["kernel"],
                              layer.params["bias"], stride, padding).astype(np.float32)
    check_layer(layer, x, expected, rtol=1e-4, atol=1e-5)


def reference_max_pool(x, pool, stride):
    n, h, w, c = x.shape
    out_h, out_w = (h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1
    out = np.empty((n, out_h, out_w, c), x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * stride[0]: i * stride[0] + pool[0],
                       j * stride[1]: j * stride[1] + pool[1]]
            out[:, i, j] = window.max(axis=(1, 2))
    return out


@pytest.mark.parametrize("pool,stride,size", [((2, 2), None, (4, 6)), ((2, 2), None, (5, 5)),
                                              ((3, 3), (1, 1), (5, 4)), ((3, 2), (2, 1), (7, 5))])
def test_max_pooling(pool, stride, size):
    x = rand(2, *size, 3)
    layer = layers.MaxPooling2D(pool, strides=stride)
    check_layer(layer, x, reference_max_pool(x, pool, stride or pool))


def test_max_pooling_same_padding_ignores_the_padding():
    x = -np.abs(rand(1, 3, 3, 1)) - 1  # all negative: zero padding would win the max
    out = layers.MaxPooling2D(2, padding="same")(x)
    assert out.shape == (1, 2, 2, 1)
    assert out[0, 1, 1, 0] == x[0, 2, 2, 0]


def test_conv2d_rejects_rank2_inputs():
    with pytest.raises(gj.GraphjitError, match="Conv2D expects"):
        layers.Conv2D(2, 3)(rand(4, 5))


# ---------------------------------------------------------------- embedding and dropout


def test_embedding_gathers_rows():
    layer = layers.Embedding(10, 3)
    ids = np.array([[1, 2, 2], [9, 0, 4]])
    layer(ids)
    check_layer(layer, ids, layer.params["embeddings"][ids])


def test_dropout_only_while_training():
    layer = layers.Dropout(0.5)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(layer(x), x)
    out, _ = compiled(layer, training=False)({}, {}, x)
    np.testing.assert_array_equal(out, x)
    layer._key = gj.random.key(0)
    dropped = layer(x, training=True)
    assert set(np.unique(dropped)) <= {0.0, 2.0}
    assert 0.45 < (dropped == 0).mean() < 0.55
    layer._key = gj.random.key(1)
    assert not np.array_equal(layer(x, training=True), dropped), "a new key drops other units"
    layer._key = None
    with pytest.raises(gj.GraphjitError, match="random key"):
        layer(x, training=True)


# ---------------------------------------------------------------- custom layers


class Scale(layers.Layer):
    def build(self, input_shape):
        self.add_weight("scale", (input_shape[-1],), "ones")

    def call(self, x):
        return x * self.params["scale"]


def test_custom_layer_by_subclassing():
    layer = Scale()
    x = rand(3, 4)
    np.testing.assert_array_equal(layer(x), x)
    assert layer.name.startswith("scale") and layer.count_params() == 4
    layer.params["scale"] = np.arange(4, dtype=np.float32)
    check_layer(layer, x, x * np.arange(4, dtype=np.float32))


# ---------------------------------------------------------------- the base-class contract

CONFIG_CASES = [
    lambda: layers.Dense(3, activation="relu", use_bias=False, name="d"),
    lambda: layers.Activation("tanh"),
    lambda: layers.Dropout(0.3, seed=4),
    lambda: layers.Flatten(),
    lambda: layers.Reshape((2, 6)),
    lambda: layers.LayerNormalization(axis=[-1], epsilon=1e-5),
    lambda: layers.BatchNormalization(momentum=0.9),
    lambda: layers.Conv2D(4, (3, 2), strides=2, padding="SAME", activation=np.tanh),
    lambda: layers.MaxPooling2D(3, strides=1),
    lambda: layers.GlobalAveragePooling2D(),
    lambda: layers.Embedding(7, 2),
]


@pytest.mark.parametrize("make", CONFIG_CASES)
def test_get_config_is_json_and_rebuilds_the_same_layer(make):
    import json

    layer = make()
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config["name"] == layer.name and config["trainable"] is True
    cls = layers.get_registered(type(layer).__name__)
    clone = cls.from_config(json.loads(json.dumps(config)))
    assert type(clone) is type(layer) and clone.get_config() == config


def test_tanh_activation_is_saved_by_name():
    assert layers.Dense(2, activation=np.tanh).get_config()["activation"] == "tanh"


def test_custom_layer_registers_by_name():
    @layers.register
    class Scaled(layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

    assert layers.get_registered("Scaled") is Scaled
    assert Scaled(3.0, name="s").get_config()["factor"] == 3.0

    @layers.register(package="mine")
    class Other(layers.Layer):
        def call(self, x):
            return x

    assert layers.registered_name(Other) == "mine>Other"
    with pytest.raises(gj.GraphjitError, match="register"):
        layers.get_registered("NeverRegistered")


def test_weights_in_keras_order_and_set_weights():
    bn = layers.BatchNormalization()
    bn(rand(4, 3))
    assert [w.shape for w in bn.get_weights()] == [(3,)] * 4
    np.testing.assert_array_equal(bn.get_weights()[0], np.ones(3))  # gamma, beta, mean, var
    np.testing.assert_array_equal(bn.get_weights()[3], np.ones(3))
    new = [np.full(3, i, np.float64) for i in range(4)]
    bn.set_weights(new)
    assert bn.state["moving_mean"].dtype == np.float32
    np.testing.assert_array_equal(bn.state["moving_mean"], np.full(3, 2))
    bn.trainable = False
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4
    with pytest.raises(gj.GraphjitError, match="has 4 weights"):
        bn.set_weights(new[:3])
    with pytest.raises(gj.GraphjitError, match="shape"):
        bn.set_weights([np.ones(2)] * 4)


def test_dense_names_itself_on_a_wrong_input_width():
    layer = layers.Dense(2, name="dense_w")
    layer(rand(3, 4))
    with pytest.raises(gj.ShapeError, match="Dense 'dense_w' expects input width 4, got"):
        layer(rand(3, 5))


def test_regularization_losses_and_add_loss_join_the_training_loss():
    def l2(w):
        return 0.5 * np.sum(w * w)

    class Penalised(layers.Layer):
        def call(self, x):
            self.add_loss(np.sum(x) * 0.0 + 1.5)
            return x

    layers.set_seed(0)
    dense = layers.Dense(2, kernel_regularizer=l2, use_bias=False)
    model = gj.Sequential([layers.Input((3,)), dense, Penalised()])
    model.compile(optimizer=gj.optimizers.SGD(0.0), loss="mse")
    x, y = rand(4, 3), rand(4, 2, seed=1)
    kernel = dense.params["kernel"].astype(np.float64)
    history = model.fit(x, y, batch_size=4, verbose=0, shuffle=False)
    expected = np.mean((x @ kernel - y) ** 2) + 0.5 * np.sum(kernel ** 2) + 1.5
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_constraints_project_weights_after_each_step():
    dense = layers.Dense(2, kernel_constraint=lambda w: np.clip(w, -0.01, 0.01))
    model = gj.Sequential([layers.Input((3,)), dense])
    model.compile(optimizer=gj.optimizers.SGD(1.0), loss="mse")
    model.fit(rand(8, 3), rand(8, 2) * 10, batch_size=4, verbose=0)
    assert np.abs(dense.params["kernel"]).max() <= 0.01 + 1e-7


def test_layers_pickle():
    import pickle

    layer = layers.Dense(3, name="pickled")
    layer(rand(2, 4))
    clone = pickle.loads(pickle.dumps(layer))
    np.testing.assert_array_equal(clone(rand(2, 4)), layer(rand(2, 4)))
    assert clone.get_config() == layer.get_config()
