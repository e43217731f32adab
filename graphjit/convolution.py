"""Convolution, pooling and resizing layers as Keras 3 defines them (channels-last only).

Every convolution is im2col written in NumPy: the window's strided slices, concatenated along
the channels, and one matmul whose bias and activation fuse into the matmul's epilogue. A 1-D
layer is the 2-D one over a height of 1. Depthwise convolutions are a sum of window slices times
per-channel weights (one fused elementwise kernel), and the transposed convolution is the
stride-1 convolution of the zero-dilated input with the flipped kernel.

Kernel shapes are Keras': Conv1D (k, in, filters); Conv2DTranspose (kh, kw, filters, in);
DepthwiseConv2D (kh, kw, in, depth_multiplier); SeparableConv2D depthwise (kh, kw, in, m) then
pointwise (1, 1, in * m, filters). 'same' padding follows TensorFlow (extra padding at the end).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from .layer_tools import check_rank
from .layers import Layer, _pad_axis, get_activation, get_constraint, get_regularizer


def _tuple(value: int | Sequence[int], rank: int, what: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise GraphjitError(f"{what} must be an int or {rank} ints, got {value}")
    return value


def _check_format(layer: Layer, data_format: str | None) -> None:
    if data_format not in (None, "channels_last"):
        raise GraphjitError(f"{type(layer).__name__}: only data_format='channels_last' is "
                            f"supported, got {data_format!r}; transpose the inputs instead")


def _padding(layer: Layer, padding: str, allowed: tuple[str, ...] = ("valid", "same")) -> str:
    padding = padding.lower()
    if padding not in allowed:
        raise GraphjitError(f"{type(layer).__name__} padding must be one of {allowed}, got "
                            f"{padding!r}")
    return padding


def _same_pads(size: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same': output ceil(size / stride), the odd padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _effective(window: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    return tuple((k - 1) * d + 1 for k, d in zip(window, dilation))


def _pad_2d(x: Any, window: Sequence[int], strides: Sequence[int], padding: str,
            value: float = 0.0) -> Any:
    """x (n, h, w, c) padded for a window (already dilated) under 'valid'/'same'/'causal'."""
    if padding == "valid":
        return x
    for axis in (1, 2):
        if padding == "causal":  # 1-D only (axis 2), all padding before
            before, after = (window[axis - 1] - 1, 0) if axis == 2 else (0, 0)
        else:
            before, after = _same_pads(x.shape[axis], window[axis - 1], strides[axis - 1])
        x = _pad_axis(x, axis, before, after, value)
    return x


def _window_slices(x: Any, window: Sequence[int], strides: Sequence[int],
                   dilation: Sequence[int] = (1, 1)) -> list[Any]:
    """The strided slices of x (n, h, w, c) at each window offset, row-major."""
    span = _effective(window, dilation)
    out_h = (x.shape[1] - span[0]) // strides[0] + 1
    out_w = (x.shape[2] - span[1]) // strides[1] + 1
    if out_h <= 0 or out_w <= 0:
        raise GraphjitError(f"a window of {tuple(window)} (dilation {tuple(dilation)}) does not "
                            f"fit inputs of spatial shape {tuple(x.shape[1:3])}")
    slices = []
    for i in range(window[0]):
        for j in range(window[1]):
            top, left = i * dilation[0], j * dilation[1]
            slices.append(x[:, top: top + (out_h - 1) * strides[0] + 1: strides[0],
                            left: left + (out_w - 1) * strides[1] + 1: strides[1], :])
    return slices


def _im2col_matmul(x: Any, kernel: Any, window: Sequence[int], strides: Sequence[int],
                   dilation: Sequence[int]) -> Any:
    """Valid correlation of x (n, h, w, c) with kernel (kh, kw, c, f): (n, oh, ow, f)."""
    slices = _window_slices(x, window, strides, dilation)
    patches = slices[0] if len(slices) == 1 else np.concatenate(slices, axis=-1)
    n, out_h, out_w, depth = patches.shape
    filters = kernel.shape[-1]
    flat = patches.reshape(n * out_h * out_w, depth) @ kernel.reshape(depth, filters)
    return flat.reshape(n, out_h, out_w, filters)


class _Conv(Layer):
    """What Conv1D, Conv2DTranspose and friends share: arguments, bias, activation."""

    rank = 2

    def __init__(self, filters: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] = 1, padding: str = "valid",
                 data_format: str | None = None, dilation_rate: int | Sequence[int] = 1,
                 activation: str | Callable | None = None, use_bias: bool = True,
                 kernel_initializer: str | Callable = "glorot_uniform",
                 bias_initializer: str | Callable = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        _check_format(self, data_format)
        self.filters = int(filters)
        self.kernel_size = _tuple(kernel_size, self.rank, "kernel_size")
        self.strides = _tuple(strides, self.rank, "strides")
        self.dilation_rate = _tuple(dilation_rate, self.rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise GraphjitError(f"{type(self).__name__}: strides > 1 with dilation_rate > 1 is "
                                "not supported (as in Keras)")
        self.padding = _padding(self, padding, self._paddings())
        self.activation = get_activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self.bias_constraint = get_constraint(bias_constraint)

    def _paddings(self) -> tuple[str, ...]:
        return ("valid", "same")

    def _finish(self, y: Any) -> Any:
        if self.use_bias:
            y = y + self.params["bias"]
        return self.activation(y)


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels); padding 'valid', 'same' or 'causal'."""

    rank = 1

    def _paddings(self):
        return ("valid", "same", "causal")

    def build(self, input_shape):
        check_rank(self, input_shape, 3, "(batch, steps, channels)")
        self.add_weight("kernel", (*self.kernel_size, input_shape[-1], self.filters),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def call(self, x):
        window, strides = (1, *self.kernel_size), (1, *self.strides)
        dilation = (1, *self.dilation_rate)
        x2 = _pad_2d(x[:, None], _effective(window, dilation), strides, self.padding)
        kernel = self.params["kernel"][None]
        y = _im2col_matmul(x2, kernel, window, strides, dilation)
        return self._finish(y[:, 0])


def _dilate(x: Any, axis: int, stride: int) -> Any:
    """stride - 1 zeros between the entries of x along `axis` (reshape and stack, no scatter)."""
    if stride == 1:
        return x
    zeros = np.zeros_like(x)
    stacked = np.stack([x] + [zeros] * (stride - 1), axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = shape[axis] * stride
    merged = stacked.reshape(shape)
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, (x.shape[axis] - 1) * stride + 1)
    return merged[tuple(index)]


def _crop_or_pad(x: Any, axis: int, start: int, length: int) -> Any:
    """x[start:start + length] along `axis`, zero-filled past the end."""
    available = x.shape[axis] - start
    if available < length:
        x = _pad_axis(x, axis, 0, length - available, 0.0)
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + length)
    return x[tuple(index)]


class Conv2DTranspose(_Conv):
    """The transpose of Conv2D (a 'deconvolution'): output (in - 1) * stride + kernel for
    'valid' padding (at least in * stride), in * stride for 'same'. Kernel (kh, kw, filters, in)."""

    def __init__(self, filters: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] = 1, padding: str = "valid",
                 output_padding: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, **kwargs)
        if output_padding is not None:
            raise GraphjitError("Conv2DTranspose(output_padding=...) is not supported; crop or "
                                "pad the output with Cropping2D / ZeroPadding2D")

    def build(self, input_shape):
        check_rank(self, input_shape, 4, "(batch, height, width, channels)")
        self.add_weight("kernel", (*self.kernel_size, self.filters, input_shape[-1]),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def call(self, x):
        span = _effective(self.kernel_size, self.dilation_rate)
        full = x
        for axis, (stride, k) in enumerate(zip(self.strides, span), start=1):
            full = _pad_axis(_dilate(full, axis, stride), axis, k - 1, k - 1, 0.0)
        kernel = self.params["kernel"][::-1, ::-1].transpose(0, 1, 3, 2)
        y = _im2col_matmul(full, kernel, self.kernel_size, (1, 1), self.dilation_rate)
        for axis, (stride, k) in enumerate(zip(self.strides, span), start=1):
            size = x.shape[axis]
            if self.padding == "same":
                length = size * stride
                start = max(k - stride, 0) // 2
            else:
                length = size * stride + max(k - stride, 0)
                start = 0
            y = _crop_or_pad(y, axis, start, length)
        return self._finish(y)


def _depthwise(x: Any, kernel: Any, window: Sequence[int], strides: Sequence[int],
               dilation: Sequence[int]) -> Any:
    """Per-channel correlation: kernel (kh, kw, c, m) gives (n, oh, ow, c * m)."""
    slices = _window_slices(x, window, strides, dilation)
    channels, multiplier = kernel.shape[2], kernel.shape[3]
    weights = kernel.reshape(window[0] * window[1], channels * multiplier)
    terms = []
    for index, piece in enumerate(slices):
        if multiplier > 1:
            n, h, w, _ = piece.shape
            piece = np.broadcast_to(piece[..., None], (n, h, w, channels, multiplier)).reshape(
                n, h, w, channels * multiplier)
        terms.append(piece * weights[index])
    return reduce(lambda a, b: a + b, terms)


class DepthwiseConv2D(Layer):
    """Each input channel convolved with its own `depth_multiplier` filters."""

    def __init__(self, kernel_size: int | Sequence[int], strides: int | Sequence[int] = 1,
                 padding: str = "valid", depth_multiplier: int = 1,
                 data_format: str | None = None, dilation_rate: int | Sequence[int] = 1,
                 activation: str | Callable | None = None, use_bias: bool = True,
                 depthwise_initializer: str | Callable = "glorot_uniform",
                 bias_initializer: str | Callable = "zeros", depthwise_regularizer: Any = None,
                 bias_regularizer: Any = None, depthwise_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        _check_format(self, data_format)
        self.kernel_size = _tuple(kernel_size, 2, "kernel_size")
        self.strides = _tuple(strides, 2, "strides")
        self.dilation_rate = _tuple(dilation_rate, 2, "dilation_rate")
        self.padding = _padding(self, padding)
        self.depth_multiplier = int(depth_multiplier)
        self.activation = get_activation(activation)
        self.use_bias = use_bias
        self.depthwise_initializer, self.bias_initializer = depthwise_initializer, \
            bias_initializer
        self.depthwise_kernel_regularizer = get_regularizer(depthwise_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.depthwise_kernel_constraint = get_constraint(depthwise_constraint)
        self.bias_constraint = get_constraint(bias_constraint)

    def build(self, input_shape):
        check_rank(self, input_shape, 4, "(batch, height, width, channels)")
        self.add_weight("kernel", (*self.kernel_size, input_shape[-1], self.depth_multiplier),
                        self.depthwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (input_shape[-1] * self.depth_multiplier,),
                            self.bias_initializer)

    # Keras names this weight "kernel" in DepthwiseConv2D
    @property
    def kernel_regularizer(self):
        return self.depthwise_kernel_regularizer

    @property
    def kernel_constraint(self):
        return self.depthwise_kernel_constraint

    def call(self, x):
        x = _pad_2d(x, _effective(self.kernel_size, self.dilation_rate), self.strides,
                    self.padding)
        y = _depthwise(x, self.params["kernel"], self.kernel_size, self.strides,
                       self.dilation_rate)
        if self.use_bias:
            y = y + self.params["bias"]
        return self.activation(y)


class SeparableConv2D(_Conv):
    """A depthwise convolution followed by a 1x1 (pointwise) one; weights depthwise_kernel
    (kh, kw, in, m), pointwise_kernel (1, 1, in * m, filters), bias (filters,)."""

    def __init__(self, filters: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] = 1, padding: str = "valid",
                 data_format: str | None = None, dilation_rate: int | Sequence[int] = 1,
                 depth_multiplier: int = 1, activation: str | Callable | None = None,
                 use_bias: bool = True, depthwise_initializer: str | Callable = "glorot_uniform",
                 pointwise_initializer: str | Callable = "glorot_uniform",
                 bias_initializer: str | Callable = "zeros", depthwise_regularizer: Any = None,
                 pointwise_regularizer: Any = None, bias_regularizer: Any = None,
                 depthwise_constraint: Any = None, pointwise_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(filters, kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         activation=activation, use_bias=use_bias,
                         bias_initializer=bias_initializer, bias_regularizer=bias_regularizer,
                         bias_constraint=bias_constraint, **kwargs)
        self.depth_multiplier = int(depth_multiplier)
        self.depthwise_initializer = depthwise_initializer
        self.pointwise_initializer = pointwise_initializer
        self.depthwise_kernel_regularizer = get_regularizer(depthwise_regularizer)
        self.pointwise_kernel_regularizer = get_regularizer(pointwise_regularizer)
        self.depthwise_kernel_constraint = get_constraint(depthwise_constraint)
        self.pointwise_kernel_constraint = get_constraint(pointwise_constraint)

    def build(self, input_shape):
        check_rank(self, input_shape, 4, "(batch, height, width, channels)")
        channels = input_shape[-1]
        self.add_weight("depthwise_kernel", (*self.kernel_size, channels, self.depth_multiplier),
                        self.depthwise_initializer)
        self.add_weight("pointwise_kernel", (1, 1, channels * self.depth_multiplier,
                                             self.filters), self.pointwise_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def call(self, x):
        x = _pad_2d(x, _effective(self.kernel_size, self.dilation_rate), self.strides,
                    self.padding)
        y = _depthwise(x, self.params["depthwise_kernel"], self.kernel_size, self.strides,
                       self.dilation_rate)
        n, h, w, depth = y.shape
        pointwise = self.params["pointwise_kernel"].reshape(depth, self.filters)
        y = (y.reshape(n * h * w, depth) @ pointwise).reshape(n, h, w, self.filters)
        return self._finish(y)


# ---------------------------------------------------------------- pooling


class _Pool(Layer):
    rank = 2
    supports_masking = False

    def __init__(self, pool_size: int | Sequence[int] = 2, strides: Any = None,
                 padding: str = "valid", data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        _check_format(self, data_format)
        self.pool_size = _tuple(pool_size, self.rank, "pool_size")
        self.strides = _tuple(strides, self.rank, "strides") if strides is not None else \
            self.pool_size
        self.padding = _padding(self, padding)

    def _as_2d(self, x: Any) -> tuple[Any, tuple[int, int], tuple[int, int]]:
        if self.rank == 1:
            return x[:, None], (1, *self.pool_size), (1, *self.strides)
        return x, self.pool_size, self.strides

    def _back(self, y: Any) -> Any:
        return y[:, 0] if self.rank == 1 else y


class _MaxPool(_Pool):
    def call(self, x):
        x2, window, strides = self._as_2d(x)
        x2 = _pad_2d(x2, window, strides, self.padding, value=-np.inf)
        return self._back(reduce(np.maximum, _window_slices(x2, window, strides)))


class _AveragePool(_Pool):
    """The mean over each window; with 'same' padding the padded cells are not counted."""

    def call(self, x):
        x2, window, strides = self._as_2d(x)
        padded = _pad_2d(x2, window, strides, self.padding)
        total = reduce(lambda a, b: a + b, _window_slices(padded, window, strides))
        if self.padding == "valid":
            return self._back(total / (window[0] * window[1]))
        ones = np.ones((1, *x2.shape[1:3], 1), x.dtype)
        counts = reduce(lambda a, b: a + b, _window_slices(
            _pad_2d(ones, window, strides, self.padding), window, strides))
        return self._back(total / counts)


class MaxPooling1D(_MaxPool):
    rank = 1


class AveragePooling1D(_AveragePool):
    rank = 1


class AveragePooling2D(_AveragePool):
    pass


class _GlobalPool(Layer):
    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        _check_format(self, data_format)
        self.keepdims = keepdims

    def compute_mask(self, inputs, mask):
        return None


class GlobalAveragePooling1D(_GlobalPool):
    """The mean over the steps of (batch, steps, features); masked steps do not count."""

    def call(self, x):
        mask = getattr(self, "input_mask", None)
        if mask is None:
            return np.mean(x, axis=1, keepdims=self.keepdims)
        weights = mask.astype(x.dtype)[:, :, None]
        total = np.sum(x * weights, axis=1, keepdims=self.keepdims)
        count = np.sum(weights, axis=1, keepdims=self.keepdims)
        return total / count


class GlobalMaxPooling1D(_GlobalPool):
    def call(self, x):
        return np.max(x, axis=1, keepdims=self.keepdims)


class GlobalMaxPooling2D(_GlobalPool):
    def call(self, x):
        return np.max(x, axis=(1, 2), keepdims=self.keepdims)


# ---------------------------------------------------------------- resizing


class UpSampling1D(Layer):
    def __init__(self, size: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, x):
        return np.repeat(x, self.size, axis=1)


class UpSampling2D(Layer):
    """Each pixel repeated size[0] x size[1] times ('nearest')."""

    def __init__(self, size: int | Sequence[int] = (2, 2), data_format: str | None = None,
                 interpolation: str = "nearest", **kwargs: Any):
        super().__init__(**kwargs)
        _check_format(self, data_format)
        if interpolation != "nearest":
            raise GraphjitError(f"UpSampling2D interpolation {interpolation!r} is not "
                                "supported; use 'nearest'")
        self.size = _tuple(size, 2, "size")

    def call(self, x):
        return np.repeat(np.repeat(x, self.size[0], axis=1), self.size[1], axis=2)


def _pairs(value: Any, rank: int, what: str) -> tuple[tuple[int, int], ...]:
    """Keras' padding/cropping argument: int, one int per axis, or (before, after) per axis."""
    if isinstance(value, (int, np.integer)):
        return ((int(value), int(value)),) * rank
    value = tuple(value)
    if rank == 1 and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        return ((int(value[0]), int(value[1])),)
    if len(value) != rank:
        raise GraphjitError(f"{what} must be an int, {rank} ints or {rank} (before, after) "
                            f"pairs, got {value}")
    pairs = []
    for item in value:
        if isinstance(item, (int, np.integer)):
            pairs.append((int(item), int(item)))
        else:
            before, after = item
            pairs.append((int(before), int(after)))
    return tuple(pairs)


class _Padding(Layer):
    rank = 2

    def __init__(self, padding: Any = 1, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        _check_format(self, data_format)
        self.padding = _pairs(padding, self.rank, "padding")

    def call(self, x):
        for axis, (before, after) in enumerate(self.padding, start=1):
            x = _pad_axis(x, axis, before, after, 0.0)
        return x


class ZeroPadding1D(_Padding):
    rank = 1


class ZeroPadding2D(_Padding):
    pass


class _Cropping(Layer):
    rank = 2

    def __init__(self, cropping: Any = 1, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        _check_format(self, data_format)
        self.cropping = _pairs(cropping, self.rank, "cropping")

    def call(self, x):
        index = [slice(None)]
        for axis, (before, after) in enumerate(self.cropping, start=1):
            if before + after >= x.shape[axis]:
                raise GraphjitError(f"{type(self).__name__} {self.name!r} crops {before + after} "
                                    f"of {x.shape[axis]} entries along axis {axis}")
            index.append(slice(before, x.shape[axis] - after))
        return x[tuple(index)]


class Cropping1D(_Cropping):
    rank = 1


class Cropping2D(_Cropping):
    pass


__all__ = ["Conv1D", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
           "MaxPooling1D", "AveragePooling1D", "AveragePooling2D",
           "GlobalAveragePooling1D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "UpSampling1D", "UpSampling2D", "ZeroPadding1D",
           "ZeroPadding2D", "Cropping1D", "Cropping2D"]
