"""Reductions: sum, prod, max, min, any, all, mean, var, std, argmax, argmin, ufunc.reduce."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError
from graphjit.compiler.ops import Op, reduce_shape

from .creation import astype
from .numpy_api import UFUNC_METHODS, implements, lift_all
from .shapes import _axes, reshape
from .source import user_source
from .tracer import Tracer, _nearest_supported, broadcast_node, cast_node


# ---------------------------------------------------------------- reductions

REDUCE_UFUNCS: dict[np.ufunc, Op] = {
    np.add: Op.SUM, np.multiply: Op.PROD, np.maximum: Op.REDUCE_MAX, np.minimum: Op.REDUCE_MIN,
    np.logical_and: Op.REDUCE_MIN, np.logical_or: Op.REDUCE_MAX,
}


# logical reductions over an empty axis give their identity (NumPy's max/min would raise)
EMPTY_REDUCTION_RESULT: dict[str, bool] = {
    "any": False, "logical_or": False, "all": True, "logical_and": True,
}


def reduce_with(op: Op, x: Any, axis: Any, keepdims: bool, dtype: Any, name: str) -> Tracer:
    x = lift_all([x])[0]
    ctx = x._ctx
    axes = _axes(x, axis)
    if name in EMPTY_REDUCTION_RESULT and any(x.shape[a] == 0 for a in axes):
        shape = reduce_shape(x.shape, axes=axes, keepdims=bool(keepdims))
        filled = ctx.node_of(np.asarray(EMPTY_REDUCTION_RESULT[name]))
        return Tracer(ctx, broadcast_node(ctx, filled, shape))
    if op in (Op.SUM, Op.PROD):
        probe = np.sum if op is Op.SUM else np.prod
        result_dtype = probe(np.zeros(1, x.dtype), dtype=dtype).dtype
    elif name in ("logical_and", "logical_or", "all", "any"):
        result_dtype = np.dtype(bool)
    else:
        result_dtype = x.dtype if dtype is None else np.dtype(dtype)
        if any(x.shape[a] == 0 for a in axes):
            raise ShapeError(f"zero-size array to reduction operation {name} which has no "
                             "identity", user_source())
    source = cast_node(ctx, x._id, _nearest_supported(np.dtype(result_dtype)))
    if not axes:
        return Tracer(ctx, source)
    return Tracer(ctx, ctx.add(op, (source,), {"axes": axes, "keepdims": bool(keepdims)}))


def _no_where(kwargs: dict, name: str) -> None:
    if kwargs.get("where", True) is not True or kwargs.get("out") is not None:
        raise UnsupportedError(f"np.{name}(..., where=/out=) is not supported", user_source())


@implements(np.sum, method="sum")
def sum_(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "sum")
    result = reduce_with(Op.SUM, x, axis, keepdims, dtype, "sum")
    return result if initial is None else result + initial


@implements(np.prod, method="prod")
def prod(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "prod")
    result = reduce_with(Op.PROD, x, axis, keepdims, dtype, "prod")
    return result if initial is None else result * initial


@implements(np.max, np.amax, method="max")
def max_(x, axis=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "max")
    result = reduce_with(Op.REDUCE_MAX, x, axis, keepdims, None, "maximum")
    return result if initial is None else np.maximum(result, initial)


@implements(np.min, np.amin, method="min")
def min_(x, axis=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "min")
    result = reduce_with(Op.REDUCE_MIN, x, axis, keepdims, None, "minimum")
    return result if initial is None else np.minimum(result, initial)


@implements(np.any, method="any")
def any_(x, axis=None, out=None, keepdims=False, where=True):
    _no_where({"where": where, "out": out}, "any")
    return reduce_with(Op.REDUCE_MAX, astype(lift_all([x])[0], bool), axis, keepdims, None, "any")


@implements(np.all, method="all")
def all_(x, axis=None, out=None, keepdims=False, where=True):
    _no_where({"where": where, "out": out}, "all")
    return reduce_with(Op.REDUCE_MIN, astype(lift_all([x])[0], bool), axis, keepdims, None, "all")


def _count(x: Tracer, axes: tuple[int, ...]) -> int:
    return math.prod(x.shape[a] for a in axes)


def _mean_dtype(x: Tracer, dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    return np.dtype(np.float64) if x.dtype.kind in "biu" else x.dtype


@implements(np.mean, method="mean")
def mean(x, axis=None, dtype=None, out=None, keepdims=False, where=True):
    _no_where({"where": where, "out": out}, "mean")
    x = lift_all([x])[0]
    total = reduce_with(Op.SUM, x, axis, keepdims, _mean_dtype(x, dtype), "mean")
    return total / _count(x, _axes(x, axis))


@implements(np.var, method="var")
def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=True, mean=None,
        correction=None):
    _no_where({"where": where, "out": out}, "var")
    x = lift_all([x])[0]
    if correction is not None:
        ddof = correction
    count = _count(x, _axes(x, axis))
    dtype = _mean_dtype(x, dtype)
    mu = reduce_with(Op.SUM, x, axis, True, dtype, "var") / count
    centered = x - mu
    squared = centered * centered
    return reduce_with(Op.SUM, squared, axis, keepdims, dtype, "var") / max(count - ddof, 0)


@implements(np.std, method="std")
def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=True, mean=None,
        correction=None):
    return np.sqrt(var(x, axis, dtype, out, ddof, keepdims, where, mean, correction))


def _arg_reduce(op: Op, x: Any, axis: Any, keepdims: bool, name: str) -> Tracer:
    x = lift_all([x])[0]
    ctx = x._ctx
    if axis is None:
        flat = reshape(x, (x.size,))
        result = _arg_reduce(op, flat, 0, False, name)
        return reshape(result, (1,) * x.ndim) if keepdims else result
    (axis,) = _axes(x, axis)
    if x.shape[axis] == 0:
        raise ShapeError(f"attempt to get {name} of an empty sequence", user_source())
    return Tracer(ctx, ctx.add(op, (x._id,), {"axis": axis, "keepdims": bool(keepdims)}))


@implements(np.argmax, method="argmax")
def argmax(x, axis=None, out=None, keepdims=False):
    return _arg_reduce(Op.ARGMAX, x, axis, keepdims, "argmax")


@implements(np.argmin, method="argmin")
def argmin(x, axis=None, out=None, keepdims=False):
    return _arg_reduce(Op.ARGMIN, x, axis, keepdims, "argmin")


def _ufunc_reduce_method(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> Tracer:
    if ufunc not in REDUCE_UFUNCS:
        raise UnsupportedError(f"np.{ufunc.__name__}.reduce is not supported by graphjit",
                               user_source())
    return reduce_with(REDUCE_UFUNCS[ufunc], inputs[0], kwargs.get("axis", 0),
                       kwargs.get("keepdims", False), kwargs.get("dtype"), ufunc.__name__)


UFUNC_METHODS["reduce"] = _ufunc_reduce_method
