"""Convolution, pooling and resizing layers (issue 16) against direct loops written here in NumPy,
eagerly and compiled; gradients against finite differences; Keras' kernel shapes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit import layers
from layer_checks import check_forward, check_gradients, weight_shapes

DTYPES = st.sampled_from([np.float32, np.float64])


def same_pads(size, window, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def direct_conv2d(x, kernel, strides, dilation, padding):
    """out[n, i, j, f] = sum x[n, i*s + a*d, j*s + b*d, c] * kernel[a, b, c, f]."""
    kh, kw, _, filters = kernel.shape
    span = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    if padding == "same":
        pads = [same_pads(x.shape[1 + a], span[a], strides[a]) for a in range(2)]
        x = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    elif padding == "causal":
        x = np.pad(x, [(0, 0), (0, 0), (span[1] - 1, 0), (0, 0)])
    out_h = (x.shape[1] - span[0]) // strides[0] + 1
    out_w = (x.shape[2] - span[1]) // strides[1] + 1
    out = np.zeros((x.shape[0], out_h, out_w, filters))
    for i in range(out_h):
        for j in range(out_w):
            for a in range(kh):
                for b in range(kw):
                    pixel = x[:, i * strides[0] + a * dilation[0], j * strides[1] + b * dilation[1]]
                    out[:, i, j] += pixel @ kernel[a, b]
    return out


def with_random_bias(layer, seed=3):
    if "bias" in layer.params:
        bias = layer.params["bias"]
        layer.params["bias"] = np.random.default_rng(seed).normal(size=bias.shape).astype(
            bias.dtype)
    return layer


@settings(max_examples=5, deadline=None)
@given(steps=st.integers(4, 7), channels=st.integers(1, 2), kernel=st.integers(1, 3),
       stride=st.integers(1, 2), dilation=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same", "causal"]), dtype=DTYPES)
def test_conv1d(steps, channels, kernel, stride, dilation, padding, dtype):
    if stride > 1 and dilation > 1:
        dilation = 1
    layer = layers.Conv1D(3, kernel, strides=stride, padding=padding, dilation_rate=dilation,
                          activation="relu", dtype=dtype)
    x = np.random.default_rng(steps).normal(size=(2, steps, channels))
    layer(x.astype(dtype))
    with_random_bias(layer)
    assert weight_shapes(layer) == [("kernel", (kernel, channels, 3)), ("bias", (3,))]

    def reference(p, x):
        out = direct_conv2d(x[:, None], p["kernel"][None], (1, stride), (1, dilation), padding)
        return np.maximum(out[:, 0] + p["bias"], 0)

    check_forward(layer, x, reference, dtype)


def direct_conv_transpose(x, kernel, strides, padding):
    """Scatter each input pixel times the kernel into the output, then crop like Keras."""
    kh, kw, filters, _ = kernel.shape
    n, h, w, _ = x.shape
    full = np.zeros((n, (h - 1) * strides[0] + kh, (w - 1) * strides[1] + kw, filters))
    for i in range(h):
        for j in range(w):
            contribution = np.einsum("nc,abfc->nabf", x[:, i, j], kernel)
            full[:, i * strides[0]: i * strides[0] + kh,
                 j * strides[1]: j * strides[1] + kw] += contribution
    sizes, starts = [], []
    for size, k, s in zip((h, w), (kh, kw), strides):
        if padding == "same":
            sizes.append(size * s)
            starts.append(max(k - s, 0) // 2)
        else:
            sizes.append(size * s + max(k - s, 0))
            starts.append(0)
    pad_h = max(starts[0] + sizes[0] - full.shape[1], 0)
    pad_w = max(starts[1] + sizes[1] - full.shape[2], 0)
    full = np.pad(full, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)])
    return full[:, starts[0]: starts[0] + sizes[0], starts[1]: starts[1] + sizes[1]]


@settings(max_examples=5, deadline=None)
@given(size=st.tuples(st.integers(2, 4), st.integers(2, 4)),
       kernel=st.sampled_from([(1, 1), (2, 2), (3, 3), (3, 2)]),
       stride=st.sampled_from([(1, 1), (2, 2), (2, 1), (3, 3)]),
       padding=st.sampled_from(["valid", "same"]), dtype=DTYPES)
def test_conv2d_transpose(size, kernel, stride, padding, dtype):
    layer = layers.Conv2DTranspose(2, kernel, strides=stride, padding=padding, dtype=dtype)
    x = np.random.default_rng(sum(size)).normal(size=(2, *size, 3))
    layer(x.astype(dtype))
    with_random_bias(layer)
    assert weight_shapes(layer) == [("kernel", (*kernel, 2, 3)), ("bias", (2,))]
    check_forward(layer, x, lambda p, x: direct_conv_transpose(x, p["kernel"], stride, padding)
                  + p["bias"], dtype)


def direct_depthwise(x, kernel, strides, dilation, padding):
    _, _, channels, multiplier = kernel.shape
    outs = []
    for c in range(channels):
        per_channel = direct_conv2d(x[..., c:c + 1], kernel[:, :, c:c + 1, :], strides,
                                    dilation, padding)
        outs.append(per_channel)
    return np.concatenate(outs, axis=-1)  # channel c's multiplier outputs stay together


@settings(max_examples=5, deadline=None)
@given(size=st.integers(3, 6), kernel=st.integers(1, 3), stride=st.integers(1, 2),
       dilation=st.integers(1, 2), multiplier=st.integers(1, 2),
       padding=st.sampled_from(["valid", "same"]), dtype=DTYPES)
def test_depthwise_and_separable(size, kernel, stride, dilation, multiplier, padding, dtype):
    if stride > 1:
        dilation = 1
    args = dict(strides=stride, padding=padding, dilation_rate=dilation,
                depth_multiplier=multiplier, dtype=dtype)
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 2))
    depthwise = with_random_bias(layers.DepthwiseConv2D(kernel, **args))
    depthwise(x.astype(dtype))
    with_random_bias(depthwise)
    assert weight_shapes(depthwise) == [("kernel", (kernel, kernel, 2, multiplier)),
                                        ("bias", (2 * multiplier,))]
    check_forward(depthwise, x, lambda p, x: direct_depthwise(
        x, p["kernel"], (stride,) * 2, (dilation,) * 2, padding) + p["bias"], dtype)

    separable = layers.SeparableConv2D(3, kernel, **args)
    separable(x.astype(dtype))
    with_random_bias(separable)
    assert weight_shapes(separable) == [
        ("depthwise_kernel", (kernel, kernel, 2, multiplier)),
        ("pointwise_kernel", (1, 1, 2 * multiplier, 3)), ("bias", (3,))]

    def separable_reference(p, x):
        mid = direct_depthwise(x, p["depthwise_kernel"], (stride,) * 2, (dilation,) * 2, padding)
        return mid @ p["pointwise_kernel"][0, 0] + p["bias"]

    check_forward(separable, x, separable_reference, dtype)


@pytest.mark.parametrize("layer", [
    layers.Conv1D(2, 2, padding="same"),
    layers.Conv2DTranspose(2, 2, strides=2),
    layers.DepthwiseConv2D(2, depth_multiplier=2),
    layers.SeparableConv2D(2, 2, padding="same"),
], ids=lambda layer: type(layer).__name__)
def test_convolution_gradients(layer):
    layer.dtype = np.dtype(np.float64)
    rank = 3 if isinstance(layer, layers.Conv1D) else 4
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 2)[:rank])
    layer(x)
    with_random_bias(layer)
    check_gradients(layer, x, entries=3)


# ---------------------------------------------------------------- pooling


def direct_pool(x, pool, strides, padding, reduce):
    """Pool over valid (unpadded) cells only: what Keras does for 'same' max and average."""
    n, h, w, c = x.shape
    if padding == "same":
        (top, _), (left, _) = same_pads(h, pool[0], strides[0]), same_pads(w, pool[1], strides[1])
        out_h, out_w = -(-h // strides[0]), -(-w // strides[1])
    else:
        top = left = 0
        out_h, out_w = (h - pool[0]) // strides[0] + 1, (w - pool[1]) // strides[1] + 1
    out = np.zeros((n, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            r0, c0 = i * strides[0] - top, j * strides[1] - left
            window = x[:, max(r0, 0): r0 + pool[0], max(c0, 0): c0 + pool[1]]
            out[:, i, j] = reduce(window, axis=(1, 2))
    return out


@settings(max_examples=6, deadline=None)
@given(size=st.tuples(st.integers(2, 5), st.integers(2, 5)), pool=st.integers(1, 3),
       stride=st.sampled_from([None, 1, 2]), padding=st.sampled_from(["valid", "same"]),
       kind=st.sampled_from(["avg1d", "avg2d", "max1d"]), dtype=DTYPES)
def test_pooling(size, pool, stride, padding, kind, dtype):
    strides = stride or pool
    if padding == "valid" and pool > min(size):
        pool = min(size)
        strides = stride or pool
    if kind == "avg2d":
        layer = layers.AveragePooling2D(pool, strides=stride, padding=padding, dtype=dtype)
        x = np.random.default_rng(size[0]).normal(size=(2, *size, 2))
        reference = lambda p, x: direct_pool(x, (pool, pool), (strides, strides), padding,  # noqa
                                             np.mean)
    else:
        cls = layers.AveragePooling1D if kind == "avg1d" else layers.MaxPooling1D
        layer = cls(pool, strides=stride, padding=padding, dtype=dtype)
        x = np.random.default_rng(size[0]).normal(size=(2, size[0] + size[1], 2))
        op = np.mean if kind == "avg1d" else np.max
        reference = lambda p, x: direct_pool(x[:, None], (1, pool), (1, strides), padding,  # noqa
                                             op)[:, 0]
    check_forward(layer, x, reference, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_pooling_upsampling_padding_cropping(dtype):
    x3 = np.random.default_rng(1).normal(size=(2, 4, 3))
    x4 = np.random.default_rng(2).normal(size=(2, 4, 5, 3))
    cases = [
        (layers.GlobalAveragePooling1D(), x3, lambda x: x.mean(1)),
        (layers.GlobalMaxPooling1D(), x3, lambda x: x.max(1)),
        (layers.GlobalMaxPooling2D(), x4, lambda x: x.max((1, 2))),
        (layers.GlobalMaxPooling2D(keepdims=True), x4, lambda x: x.max((1, 2), keepdims=True)),
        (layers.UpSampling1D(3), x3, lambda x: np.repeat(x, 3, axis=1)),
        (layers.UpSampling2D((2, 3)), x4, lambda x: np.repeat(np.repeat(x, 2, 1), 3, 2)),
        (layers.ZeroPadding1D((1, 2)), x3, lambda x: np.pad(x, [(0, 0), (1, 2), (0, 0)])),
        (layers.ZeroPadding2D(((1, 0), (2, 1))), x4,
         lambda x: np.pad(x, [(0, 0), (1, 0), (2, 1), (0, 0)])),
        (layers.ZeroPadding2D(1), x4, lambda x: np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])),
        (layers.Cropping1D((1, 2)), x3, lambda x: x[:, 1:-2]),
        (layers.Cropping2D(((1, 0), (1, 2))), x4, lambda x: x[:, 1:, 1:-2]),
    ]
    for layer, x, reference in cases:
        layer.dtype = np.dtype(dtype)
        check_forward(layer, x, lambda p, x, reference=reference: reference(x), dtype)


def test_pooling_and_resizing_gradients():
    x = np.random.default_rng(3).normal(size=(1, 4, 4, 2))
    for layer in (layers.AveragePooling2D(2, padding="same", strides=1), layers.UpSampling2D(),
                  layers.Cropping2D(1), layers.ZeroPadding2D(1), layers.GlobalMaxPooling2D()):
        check_gradients(layer, x, entries=3)


def test_convolution_errors():
    with pytest.raises(gj.GraphjitError, match="channels_last"):
        layers.Conv1D(2, 3, data_format="channels_first")
    with pytest.raises(gj.GraphjitError, match="padding must be one of"):
        layers.SeparableConv2D(2, 3, padding="causal")
    with pytest.raises(gj.GraphjitError, match=r"\(batch, steps, channels\)"):
        layers.Conv1D(2, 3)(np.zeros((2, 5, 5, 1), np.float32))
    with pytest.raises(gj.GraphjitError, match="does not fit"):
        layers.Conv1D(2, 4)(np.zeros((1, 3, 1), np.float32))
    with pytest.raises(gj.GraphjitError, match="interpolation"):
        layers.UpSampling2D(interpolation="bilinear")


def test_small_cnn_trains_compiled_like_eager():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 6, 6, 1)).astype(np.float32)
    y = rng.integers(0, 2, 12)

    def build():
        layers.set_seed(0)
        model = gj.Sequential([
            layers.Input((6, 6, 1)),
            layers.SeparableConv2D(4, 3, padding="same", activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2DTranspose(2, 2, strides=2),
            layers.GlobalMaxPooling2D(),
            layers.Dense(2),
        ])
        model.compile("adam", gj.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    compiled, eager = build(), build()
    a = compiled.fit(x, y, batch_size=6, shuffle=False, verbose=0, epochs=2)
    b = eager.fit(x, y, batch_size=6, shuffle=False, verbose=0, epochs=2, jit=False)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-4)
