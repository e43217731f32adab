"""Arrays made from others and dtype conversion: astype, copy, zeros_like, ones_like, empty_like,
full_like."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError

from .numpy_api import METHODS, implements, lift_all
from .shapes import broadcast_to
from .source import user_source
from .tracer import Tracer, _nearest_supported, broadcast_node, cast_node


def astype(x: Tracer, dtype: Any, order="K", casting="unsafe", subok=True, copy=True) -> Tracer:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise DTypeError(f"graphjit does not compile dtype {dtype}; use float32, float64, "
                         "int32, int64 or bool", user_source())
    target = _nearest_supported(dtype)
    if target != dtype:
        raise DTypeError(f"graphjit does not compile dtype {dtype}; use float32, float64, int32, "
                         "int64 or bool", user_source())
    return Tracer(x._ctx, cast_node(x._ctx, x._id, dtype))


METHODS["astype"] = astype


@implements(np.copy, method="copy")
def copy(x, order="K", subok=False):
    x = lift_all([x])[0]
    return Tracer(x._ctx, x._id, weak=x._weak)


def _like(x, fill, dtype=None, shape=None):
    x = lift_all([x])[0]
    ctx = x._ctx
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    shape = x.shape if shape is None else ((shape,) if isinstance(shape, int) else tuple(shape))
    scalar = ctx.node_of(np.asarray(fill, dtype=dtype))
    return Tracer(ctx, broadcast_node(ctx, scalar, shape))


@implements(np.zeros_like)
def zeros_like(x, dtype=None, order="K", subok=True, shape=None, **kwargs):
    return _like(x, 0, dtype, shape)


@implements(np.empty_like)
def empty_like(x, dtype=None, order="K", subok=True, shape=None, **kwargs):
    return _like(x, 0, dtype, shape)


@implements(np.ones_like)
def ones_like(x, dtype=None, order="K", subok=True, shape=None, **kwargs):
    return _like(x, 1, dtype, shape)


@implements(np.full_like)
def full_like(x, fill_value, dtype=None, order="K", subok=True, shape=None, **kwargs):
    if isinstance(fill_value, Tracer):
        return broadcast_to(astype(fill_value, dtype or x.dtype), x.shape if shape is None
                            else shape) + zeros_like(x, dtype, shape=shape)
    return _like(x, fill_value, dtype, shape)
