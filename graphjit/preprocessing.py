"""Preprocessing, merging and utility layers as Keras 3 defines them: Rescaling, Normalization
(with `adapt`), CategoryEncoding, Identity, Permute, RepeatVector, Multiply, Subtract, Average,
Maximum, Minimum, Dot, ActivityRegularization, Masking, and Embedding with `mask_zero`.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from . import layers as _layers
from .layers import Layer, get_regularizer

_EPSILON = 1e-7  # Keras' backend epsilon


class Embedding(_layers.Embedding):
    """Rows of a (input_dim, output_dim) table gathered by integer ids; with `mask_zero=True`
    id 0 is padding and its timesteps are masked for the layers that follow (LSTM, pooling,
    attention), as in Keras."""

    def __init__(self, input_dim: int, output_dim: int, mask_zero: bool = False,
                 **kwargs: Any):
        super().__init__(input_dim, output_dim, **kwargs)
        self.mask_zero = bool(mask_zero)

    def compute_mask(self, inputs, mask):
        if not self.mask_zero:
            return None
        return inputs != 0


class Masking(Layer):
    """Masks the timesteps of (batch, steps, features) whose features all equal `mask_value`
    (and zeroes them)."""

    def __init__(self, mask_value: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)

    def compute_mask(self, inputs, mask):
        return np.any(inputs != self.mask_value, axis=-1)

    def call(self, x):
        keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        return x * keep.astype(x.dtype)


class Rescaling(Layer):
    """x * scale + offset (e.g. scale=1/255 for uint8 images)."""

    def __init__(self, scale: float, offset: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset
        self.supports_masking = True

    def call(self, x):
        if x.dtype.kind != "f":
            x = x.astype(self.dtype)
        scale = np.asarray(self.scale, x.dtype)
        offset = np.asarray(self.offset, x.dtype)
        return x * scale + offset


class Normalization(Layer):
    """(x - mean) / sqrt(variance) per feature along `axis`; the statistics come from the
    constructor or from `adapt(data)` and are non-trainable weights `mean` and `variance`."""

    def __init__(self, axis: int | Sequence[int] | None = -1, mean: Any = None,
                 variance: Any = None, invert: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if axis is None:
            self.axis: tuple[int, ...] = ()
        else:
            self.axis = tuple(axis) if isinstance(axis, Sequence) else (int(axis),)
        if (mean is None) != (variance is None):
            raise GraphjitError("Normalization needs both mean and variance, or neither "
                                "(then call adapt(data))")
        self.initial_mean, self.initial_variance = mean, variance
        self.invert = invert
        self.supports_masking = True

    def get_config(self):
        config = super().get_config()
        for name in ("mean", "variance"):
            value = config.get(name)
            if isinstance(value, np.ndarray):
                config[name] = value.tolist()
        return config

    def _stat_shape(self, input_shape: Sequence[int | None]) -> tuple[int, ...]:
        rank = len(input_shape)
        kept = {a % rank for a in self.axis}
        for a in kept:
            if input_shape[a] is None:
                raise GraphjitError(f"Normalization {self.name!r}: axis {a} of the input has no "
                                    "static size")
        return tuple(int(input_shape[a]) if a in kept else 1 for a in range(rank))

    def build(self, input_shape):
        shape = self._stat_shape(input_shape)
        self.add_weight("mean", shape, "zeros", trainable=False)
        self.add_weight("variance", shape, "ones", trainable=False)
        if self.initial_mean is not None:
            self.state["mean"] = np.broadcast_to(np.asarray(self.initial_mean, self.dtype),
                                                 shape).copy()
            self.state["variance"] = np.broadcast_to(
                np.asarray(self.initial_variance, self.dtype), shape).copy()

    def adapt(self, data: Any, batch_size: Any = None, steps: Any = None) -> None:
        """Set the mean and variance from `data` (an array, or an iterable of batches)."""
        if not isinstance(data, np.ndarray):
            data = np.concatenate([np.asarray(b) for b in data], axis=0)
        data = np.asarray(data, np.float64)
        if data.size == 0:
            raise GraphjitError(f"Normalization {self.name!r}.adapt got no data")
        shape = self._stat_shape(data.shape)
        if not self.built:
            self.input_shape = (None, *data.shape[1:])
            self.build(self.input_shape)
            self.built = True
        reduce_axes = tuple(i for i, d in enumerate(shape) if d == 1)
        self.state["mean"] = np.mean(data, axis=reduce_axes, keepdims=True).astype(self.dtype)
        self.state["variance"] = np.var(data, axis=reduce_axes, keepdims=True).astype(self.dtype)

    def call(self, x):
        if x.dtype.kind != "f":
            x = x.astype(self.dtype)
        mean = self.state["mean"]
        std = np.maximum(np.sqrt(self.state["variance"]), _EPSILON)
        if self.invert:
            return mean + x * std
        return (x - mean) / std


class CategoryEncoding(Layer):
    """Integer ids in [0, num_tokens) as 'one_hot', 'multi_hot' or 'count' vectors."""

    def __init__(self, num_tokens: int, output_mode: str = "multi_hot", sparse: bool = False,
                 **kwargs: Any):
        kwargs.setdefault("dtype", np.float32)
        super().__init__(**kwargs)
        if output_mode not in ("one_hot", "multi_hot", "count"):
            raise GraphjitError(f"CategoryEncoding output_mode must be 'one_hot', 'multi_hot' or "
                                f"'count', got {output_mode!r}")
        if sparse:
            raise GraphjitError("CategoryEncoding(sparse=True) is not supported")
        self.num_tokens, self.output_mode = int(num_tokens), output_mode

    def call(self, ids):
        if ids.ndim == 0:
            raise GraphjitError("CategoryEncoding needs inputs with a batch dimension")
        tokens = np.arange(self.num_tokens)
        if self.output_mode == "one_hot":
            if ids.ndim >= 2 and ids.shape[-1] == 1:
                ids = ids.reshape(ids.shape[:-1])
            return (ids[..., None] == tokens).astype(self.dtype)
        if ids.ndim == 1:
            ids = ids[:, None]
        hits = (ids[..., None] == tokens).astype(self.dtype)
        if self.output_mode == "multi_hot":
            return np.max(hits, axis=-2)
        return np.sum(hits, axis=-2)


class Identity(Layer):
    supports_masking = True

    def call(self, x):
        return x


class Permute(Layer):
    """Reorders the non-batch axes: `dims` are 1-based, e.g. (2, 1) swaps the first two."""

    def __init__(self, dims: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        self.dims = tuple(int(d) for d in dims)
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise GraphjitError(f"Permute dims must be a permutation of 1..{len(self.dims)}, "
                                f"got {self.dims}")

    def call(self, x):
        if x.ndim != len(self.dims) + 1:
            raise GraphjitError(f"Permute {self.name!r} with dims {self.dims} needs inputs of "
                                f"rank {len(self.dims) + 1}, got {tuple(x.shape)}")
        return x.transpose(0, *self.dims)


class RepeatVector(Layer):
    """(batch, features) -> (batch, n, features)."""

    def __init__(self, n: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.n = int(n)

    def call(self, x):
        if x.ndim != 2:
            raise GraphjitError(f"RepeatVector {self.name!r} expects (batch, features), got "
                                f"{tuple(x.shape)}")
        return np.broadcast_to(x[:, None, :], (x.shape[0], self.n, x.shape[1]))


class _Merge(Layer):
    """A layer over a list of same-shaped inputs."""

    minimum_inputs = 2

    def call(self, inputs):
        inputs = list(inputs)
        if len(inputs) < self.minimum_inputs:
            raise GraphjitError(f"{type(self).__name__} {self.name!r} needs a list of at least "
                                f"{self.minimum_inputs} inputs, got {len(inputs)}")
        return self._merge(inputs)

    def compute_mask(self, inputs, mask):
        if not isinstance(mask, list):
            return None
        present = [m for m in mask if m is not None]
        return reduce(np.logical_and, present) if present else None


class Multiply(_Merge):
    def _merge(self, inputs):
        return reduce(lambda a, b: a * b, inputs)


class Subtract(_Merge):
    def _merge(self, inputs):
        if len(inputs) != 2:
            raise GraphjitError(f"Subtract {self.name!r} takes exactly 2 inputs, got "
                                f"{len(inputs)}")
        return inputs[0] - inputs[1]


class Average(_Merge):
    def _merge(self, inputs):
        return reduce(lambda a, b: a + b, inputs) / len(inputs)


class Maximum(_Merge):
    def _merge(self, inputs):
        return reduce(np.maximum, inputs)


class Minimum(_Merge):
    def _merge(self, inputs):
        return reduce(np.minimum, inputs)


class Dot(_Merge):
    """The dot product of two inputs along `axes` (batch_dot): (batch, n) . (batch, n) ->
    (batch, 1); (batch, n, d) . (batch, m, d) with axes=2 -> (batch, n, m). `normalize=True`
    L2-normalises along the axes first (cosine similarity)."""

    def __init__(self, axes: int | Sequence[int], normalize: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.axes = tuple(axes) if isinstance(axes, Sequence) else (int(axes), int(axes))
        self.normalize = normalize

    def compute_mask(self, inputs, mask):
        return None

    def _merge(self, inputs):
        if len(inputs) != 2:
            raise GraphjitError(f"Dot {self.name!r} takes exactly 2 inputs, got {len(inputs)}")
        a, b = inputs
        axis_a, axis_b = (ax % t.ndim for ax, t in zip(self.axes, (a, b)))
        if 0 in (axis_a, axis_b):
            raise GraphjitError("Dot cannot contract the batch axis")
        if a.ndim > 3 or b.ndim > 3:
            raise GraphjitError(f"Dot supports inputs of rank 2 or 3, got {a.ndim} and {b.ndim}")
        if self.normalize:
            a = a / np.sqrt(np.maximum(np.sum(np.square(a), axis=axis_a, keepdims=True), 1e-12))
            b = b / np.sqrt(np.maximum(np.sum(np.square(b), axis=axis_b, keepdims=True), 1e-12))
        if a.ndim == 2 and b.ndim == 2:
            return np.sum(a * b, axis=1, keepdims=True)
        left = np.moveaxis(a, axis_a, -1) if a.ndim == 3 else a[:, None, :]
        right = np.moveaxis(b, axis_b, 1) if b.ndim == 3 else b[:, :, None]
        out = left @ right
        if a.ndim == 2:
            out = out[:, 0]
        elif b.ndim == 2:
            out = out[:, :, 0]
        return out


class ActivityRegularization(Layer):
    """Passes its input through and adds l1 * sum(|x|) + l2 * sum(x**2) to the training loss."""

    supports_masking = True

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs: Any):
        kwargs.pop("activity_regularizer", None)
        super().__init__(activity_regularizer=get_regularizer(
            {"class_name": "L1L2", "config": {"l1": l1, "l2": l2}}), **kwargs)
        self.l1, self.l2 = float(l1), float(l2)

    def get_config(self):
        config = super().get_config()
        config.pop("activity_regularizer", None)
        return config

    def call(self, x):
        return x


__all__ = ["Embedding", "Masking", "Rescaling", "Normalization", "CategoryEncoding", "Identity",
           "Permute", "RepeatVector", "Multiply", "Subtract", "Average", "Maximum", "Minimum",
           "Dot", "ActivityRegularization"]
