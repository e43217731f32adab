"""Reductions: sum, prod, max, min, any, all, mean, var, std, argmax, argmin, ptp,
count_nonzero, average, the nan-functions, ufunc.reduce / ufunc.accumulate and the sort-based
statistics (median, percentile, quantile), with NumPy's keywords: axis, dtype, out, keepdims,
initial and where.

Result dtypes come from NumPy itself (a reduction of a one-element array of the same dtype), so
`sum(int8)` is int64, `max(int32, initial=7.5)` is int32 7 and `mean(x, dtype=np.int32)` is an
int32 mean, exactly as NumPy gives them.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, UnsupportedError
from graphjit.compiler.ops import Op, reduce_shape

from .creation import astype
from .numpy_api import METHODS, UFUNC_METHODS, implements, lift_all, write_out
from .shapes import _axes, concatenate, reshape, stack
from .source import user_source
from .tracer import Tracer, broadcast_node, cast_node


# ---------------------------------------------------------------- the one reduction

REDUCE_UFUNCS: dict[np.ufunc, Op] = {
    np.add: Op.SUM, np.multiply: Op.PROD, np.maximum: Op.REDUCE_MAX, np.minimum: Op.REDUCE_MIN,
    np.logical_and: Op.REDUCE_MIN, np.logical_or: Op.REDUCE_MAX,
    np.fmax: Op.REDUCE_MAX, np.fmin: Op.REDUCE_MIN,
}
# what an empty (or fully masked) reduction starts from; None: no identity, `initial` needed
IDENTITY: dict[str, Any] = {
    "add": 0, "multiply": 1, "logical_and": True, "logical_or": False, "maximum": None,
    "minimum": None, "fmax": None, "fmin": None,
}
LOGICAL = ("logical_and", "logical_or")


def _filled(shape: tuple[int, ...], value: Any, dtype: np.dtype, ctx) -> Tracer:
    node = ctx.node_of(np.asarray(value).astype(dtype))
    return Tracer(ctx, broadcast_node(ctx, node, shape))


def _result_dtype(ufunc: np.ufunc, x: Tracer, dtype: Any) -> np.dtype:
    try:
        with np.errstate(all="ignore"):
            return ufunc.reduce(np.ones((1,), x.dtype), dtype=dtype).dtype
    except TypeError as exc:
        raise DTypeError(f"np.{ufunc.__name__}.reduce does not support {x.dtype} with dtype="
                         f"{dtype} ({exc})", user_source()) from None


def _mask(where: Any, x: Tracer) -> Tracer:
    ctx = x._ctx
    mask = lift_all([where, x])[0]
    try:
        shape = np.broadcast_shapes(mask.shape, x.shape)
    except ValueError:
        raise ShapeError(f"where= of shape {mask.shape} does not broadcast to the reduced "
                         f"array's shape {x.shape}", user_source()) from None
    if shape != x.shape:
        raise ShapeError(f"where= of shape {mask.shape} does not broadcast to the reduced "
                         f"array's shape {x.shape}", user_source())
    return Tracer(ctx, broadcast_node(ctx, cast_node(ctx, mask._id, np.dtype(bool)), x.shape))


def reduce_ufunc(ufunc: np.ufunc, x: Any, axis: Any = None, dtype: Any = None, out: Any = None,
                 keepdims: bool = False, initial: Any = None, where: Any = True) -> Tracer:
    """ufunc.reduce for the ufuncs with a reduction op, with every NumPy keyword."""
    x = lift_all([x])[0]
    ctx = x._ctx
    name = ufunc.__name__
    op = REDUCE_UFUNCS[ufunc]
    axes = _axes(x, axis)
    keepdims = bool(keepdims)
    result_dtype = _result_dtype(ufunc, x, dtype)
    shape = reduce_shape(x.shape, axes=axes, keepdims=keepdims)
    if name in LOGICAL:   # the loop dtype is bool: values are truth-tested first
        source = astype(x, bool)
    else:
        source = Tracer(ctx, cast_node(ctx, x._id, result_dtype))
    fill = IDENTITY[name] if initial is None else initial
    if where is not True:
        if fill is None:
            raise ShapeError(f"reduction operation '{name}' does not have an identity, so to use "
                             "a where mask one has to specify 'initial'", user_source())
        # masked-out elements are the identity; `initial` is combined once, below
        hidden = IDENTITY[name] if IDENTITY[name] is not None else fill
        source = np.where(_mask(where, x), source, _filled((), hidden, source.dtype, ctx))
    if any(x.shape[a] == 0 for a in axes):
        if fill is None:
            raise ShapeError(f"zero-size array to reduction operation {name} which has no "
                             "identity", user_source())
        result = _filled(shape, fill, source.dtype, ctx)
    elif axes:
        result = Tracer(ctx, ctx.add(op, (source._id,), {"axes": axes, "keepdims": keepdims}))
    else:
        result = source
        if initial is not None:
            result = ufunc(result, _filled((), initial, result.dtype, ctx))
        initial = None
    if initial is not None and all(x.shape[a] for a in axes):
        result = ufunc(result, _filled((), initial, result.dtype, ctx))
    result = Tracer(ctx, cast_node(ctx, result._id, result_dtype))
    return result if out is None else write_out(out, result)


def _reduction(ufunc: np.ufunc, *, takes_dtype: bool) -> Callable:
    if takes_dtype:
        def handler(a, axis=None, dtype=None, out=None, keepdims=False, initial=None,
                    where=True):
            return reduce_ufunc(ufunc, a, axis, dtype, out, keepdims, initial, where)
    else:
        def handler(a, axis=None, out=None, keepdims=False, initial=None, where=True):
            return reduce_ufunc(ufunc, a, axis, None, out, keepdims, initial, where)
    return handler


sum_ = implements(np.sum, method="sum")(_reduction(np.add, takes_dtype=True))
prod = implements(np.prod, method="prod")(_reduction(np.multiply, takes_dtype=True))
max_ = implements(np.max, np.amax, method="max")(_reduction(np.maximum, takes_dtype=False))
min_ = implements(np.min, np.amin, method="min")(_reduction(np.minimum, takes_dtype=False))


@implements(np.any, method="any")
def any_(a, axis=None, out=None, keepdims=False, *, where=True):
    return reduce_ufunc(np.logical_or, a, axis, bool, out, keepdims, None, where)


@implements(np.all, method="all")
def all_(a, axis=None, out=None, keepdims=False, *, where=True):
    return reduce_ufunc(np.logical_and, a, axis, bool, out, keepdims, None, where)


# ---------------------------------------------------------------- mean, var, std

def _count(x: Tracer, axis: Any, keepdims: bool, where: Any) -> Any:
    """How many elements each result reduces: a Python int, or an int64 array with where=."""
    if x.ndim == 0 and axis is not None and axis != ():   # NumPy's mean/var count refuses it
        raise ShapeError(f"axis {axis} is out of bounds for array of dimension 0", user_source())
    axes = _axes(x, axis)
    if where is True:
        return math.prod(x.shape[a] for a in axes)
    return reduce_ufunc(np.add, astype(_mask(where, x), np.int64), axis, None, None, keepdims)


def _divide_into(total: Tracer, count: Any) -> Tracer:
    """NumPy's true_divide(total, count, out=total, casting='unsafe')."""
    with np.errstate(all="ignore"):
        return astype(total / count, total.dtype)


def _mean_dtype(x: Tracer, dtype: Any) -> tuple[Any, bool]:
    if dtype is not None:
        return dtype, False
    if x.dtype.kind in "biu":
        return np.float64, False
    if x.dtype == np.float16:
        return np.float32, True
    return None, False


@implements(np.mean, method="mean")
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    x = lift_all([a])[0]
    count = _count(x, axis, keepdims, where)
    sum_dtype, half = _mean_dtype(x, dtype)
    result = _divide_into(reduce_ufunc(np.add, x, axis, sum_dtype, None, keepdims, None, where),
                          count)
    if half:
        result = astype(result, np.float16)
    return result if out is None else write_out(out, result)


@implements(np.var, method="var")
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True, mean=None,
        correction=None):
    x = lift_all([a])[0]
    if correction is not None:
        ddof = correction
    if dtype is None and x.dtype.kind in "biu":
        dtype = np.float64
    if mean is None:
        count_kept = _count(x, axis, True, where)
        mean = _divide_into(reduce_ufunc(np.add, x, axis, dtype, None, True, None, where),
                            count_kept)
    centered = x - mean
    squared = centered * centered
    total = reduce_ufunc(np.add, squared, axis, dtype, None, keepdims, None, where)
    count = _count(x, axis, keepdims, where)
    result = _divide_into(total, np.maximum(count - ddof, 0))
    return result if out is None else write_out(out, result)


def _inexact_dtype(x: Any, dtype: Any, name: str, inexact_input: bool = False) -> None:
    """NumPy refuses an integer dtype= where the result is a float (std's sqrt; the
    nan-statistics of float arrays)."""
    x = lift_all([x])[0]
    if dtype is not None and np.dtype(dtype).kind in "biu" and (
            not inexact_input or x.dtype.kind == "f"):
        raise DTypeError(f"np.{name}: dtype must be inexact here, not {np.dtype(dtype)}",
                         user_source())


@implements(np.std, method="std")
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True, mean=None,
        correction=None):
    variance = var(a, axis, dtype, None, ddof, keepdims, where=where, mean=mean,
                   correction=correction)
    result = np.sqrt(variance)
    if variance.dtype.kind in "biu":   # an integer dtype=: NumPy's sqrt writes back into it
        if variance.ndim:
            raise DTypeError(f"np.std: cannot cast the square root (float) to "
                             f"{variance.dtype} with casting rule 'same_kind'", user_source())
        result = astype(result, variance.dtype)
    return result if out is None else write_out(out, result)


# ---------------------------------------------------------------- argmax, argmin

def _arg_reduce(op: Op, x: Any, axis: Any, keepdims: bool, name: str) -> Tracer:
    x = lift_all([x])[0]
    ctx = x._ctx
    if axis is None:
        flat = reshape(x, (x.size,))
        result = _arg_reduce(op, flat, 0, False, name)
        return reshape(result, (1,) * x.ndim) if keepdims else result
    if x.ndim == 0:   # NumPy: axis 0 (or -1) of a 0-d array is the array itself
        _axes(x, axis)
        return _arg_reduce(op, reshape(x, (1,)), 0, False, name)
    (axis,) = _axes(x, axis)
    if x.shape[axis] == 0:
        raise ShapeError(f"attempt to get {name} of an empty sequence", user_source())
    return Tracer(ctx, ctx.add(op, (x._id,), {"axis": axis, "keepdims": bool(keepdims)}))


@implements(np.argmax, method="argmax")
def argmax(a, axis=None, out=None, *, keepdims=False):
    result = _arg_reduce(Op.ARGMAX, a, axis, keepdims, "argmax")
    return result if out is None else write_out(out, result)


@implements(np.argmin, method="argmin")
def argmin(a, axis=None, out=None, *, keepdims=False):
    result = _arg_reduce(Op.ARGMIN, a, axis, keepdims, "argmin")
    return result if out is None else write_out(out, result)


# ---------------------------------------------------------------- ptp, count_nonzero, average

@implements(np.ptp)   # NumPy 2 removed ndarray.ptp: no method
def ptp(a, axis=None, out=None, keepdims=False):
    result = np.subtract(max_(a, axis, None, keepdims), min_(a, axis, None, keepdims))
    return result if out is None else write_out(out, result)


@implements(np.count_nonzero)
def count_nonzero(a, axis=None, *, keepdims=False):
    x = lift_all([a])[0]
    return reduce_ufunc(np.add, astype(astype(x, bool), np.intp), axis, None, None, keepdims)


@implements(np.average)
def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    x = lift_all([a])[0]
    if weights is None:
        result = mean(x, axis, keepdims=keepdims)
        if not returned:
            return result
        count = _count(x, axis, keepdims, True)
        return result, _filled(result.shape, count, result.dtype, x._ctx)
    w = lift_all([weights, x])[0]
    if w.shape != x.shape:
        if axis is None:
            raise ShapeError("Axis must be specified when shapes of a and weights differ.",
                             user_source())
        axes = _axes(x, axis)
        if w.ndim != len(axes) or w.shape != tuple(x.shape[i] for i in axes):
            raise ShapeError("Shape of weights must be consistent with shape of a along "
                             "specified axis.", user_source())
        # weights along `axis` broadcast over the rest, as NumPy's average does
        shape = tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))
        order = sorted(range(len(axes)), key=lambda i: axes[i])
        w = reshape(np.transpose(w, order), shape)
    result_dtype = np.result_type(x.dtype, w.dtype, np.float64 if x.dtype.kind in "biu"
                                  else x.dtype)
    scale = sum_(astype(np.broadcast_to(w, x.shape), result_dtype), axis, keepdims=keepdims)
    total = sum_(np.multiply(x, w, dtype=result_dtype), axis, keepdims=keepdims)
    result = total / scale
    if returned:
        return result, astype(np.broadcast_to(scale, result.shape), result.dtype)
    return result


# ---------------------------------------------------------------- the nan-functions

def _replace_nan(x: Tracer, value: Any) -> tuple[Tracer, Tracer | None]:
    """x with NaNs replaced by `value`, and the NaN mask (None for non-float x)."""
    if x.dtype.kind != "f":
        return x, None
    nan = x != x
    return np.where(nan, _filled((), value, x.dtype, x._ctx), x), nan


@implements(np.nansum)
def nansum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    x, _ = _replace_nan(lift_all([a])[0], 0)
    return reduce_ufunc(np.add, x, axis, dtype, out, keepdims, initial, where)


@implements(np.nanprod)
def nanprod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    x, _ = _replace_nan(lift_all([a])[0], 1)
    return reduce_ufunc(np.multiply, x, axis, dtype, out, keepdims, initial, where)


def _nan_extreme(ufunc: np.ufunc, fill: float) -> Callable:
    def handler(a, axis=None, out=None, keepdims=False, initial=None, where=True):
        x = lift_all([a])[0]
        if x.dtype.kind != "f":
            return reduce_ufunc(ufunc, x, axis, None, out, keepdims, initial, where)
        # an all-NaN slice gives NaN (NumPy warns): fill NaNs with the far end, then put NaN
        # back where nothing else was
        filled, nan = _replace_nan(x, fill)
        result = reduce_ufunc(ufunc, filled, axis, None, None, keepdims, initial, where)
        valid = where if where is True else _mask(where, x)
        if initial is None:
            all_nan = all_(np.logical_or(nan, np.logical_not(valid)), axis, keepdims=keepdims)
            result = np.where(all_nan, _filled((), np.nan, x.dtype, x._ctx), result)
        return result if out is None else write_out(out, result)

    return handler


nanmax = implements(np.nanmax)(_nan_extreme(np.maximum, -np.inf))
nanmin = implements(np.nanmin)(_nan_extreme(np.minimum, np.inf))


def _nan_arg(op: Op, fill: float, name: str) -> Callable:
    def handler(a, axis=None, out=None, *, keepdims=False):
        x = lift_all([a])[0]
        if x.dtype.kind != "f":
            return _arg_reduce(op, x, axis, keepdims, name)
        # NumPy raises "All-NaN slice encountered" for an all-NaN slice; that is a data-dependent
        # error graphjit cannot raise, so such slices give the index of the first NaN's fill
        filled, _ = _replace_nan(x, fill)
        result = _arg_reduce(op, filled, axis, keepdims, name)
        return result if out is None else write_out(out, result)

    return handler


nanargmax = implements(np.nanargmax)(_nan_arg(Op.ARGMAX, -np.inf, "nanargmax"))
nanargmin = implements(np.nanargmin)(_nan_arg(Op.ARGMIN, np.inf, "nanargmin"))


@implements(np.nanmean)
def nanmean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    _inexact_dtype(a, dtype, "nanmean", inexact_input=True)
    x = lift_all([a])[0]
    if x.dtype.kind != "f":
        return mean(x, axis, dtype, out, keepdims, where=where)
    filled, nan = _replace_nan(x, 0)
    valid = np.logical_not(nan) if where is True else np.logical_and(np.logical_not(nan),
                                                                     _mask(where, x))
    count = reduce_ufunc(np.add, astype(valid, np.intp), axis, None, None, keepdims)
    total = reduce_ufunc(np.add, filled, axis, dtype, None, keepdims, None, valid)
    with np.errstate(all="ignore"):
        result = total / count
    if dtype is not None:
        result = astype(result, dtype)
    result = astype(result, total.dtype)
    return result if out is None else write_out(out, result)


@implements(np.nanvar)
def nanvar(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True,
           mean=None, correction=None):
    _inexact_dtype(a, dtype, "nanvar", inexact_input=True)
    x = lift_all([a])[0]
    if correction is not None:
        ddof = correction
    if x.dtype.kind != "f":
        return var(x, axis, dtype, out, ddof, keepdims, where=where, mean=mean)
    filled, nan = _replace_nan(x, 0)
    valid = np.logical_not(nan) if where is True else np.logical_and(np.logical_not(nan),
                                                                     _mask(where, x))
    count_kept = reduce_ufunc(np.add, astype(valid, np.intp), axis, None, None, True)
    if mean is None:
        with np.errstate(all="ignore"):
            mean = astype(reduce_ufunc(np.add, filled, axis, dtype, None, True, None, valid)
                          / count_kept, x.dtype if dtype is None else dtype)
    # NumPy subtracts and squares in place, in x's own dtype (float16 rounds there)
    centered = np.where(valid, astype(filled - mean, x.dtype), _filled((), 0, x.dtype, x._ctx))
    squared = centered * centered
    total = reduce_ufunc(np.add, squared, axis, dtype, None, keepdims, None, True)
    count = reduce_ufunc(np.add, astype(valid, np.intp), axis, None, None, keepdims)
    dof = count - ddof
    with np.errstate(all="ignore"):
        result = astype(total / dof, total.dtype)
    result = np.where(dof <= 0, _filled((), np.nan, result.dtype, x._ctx), result)
    return result if out is None else write_out(out, result)


@implements(np.nanstd)
def nanstd(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True,
           mean=None, correction=None):
    _inexact_dtype(a, dtype, "nanstd", inexact_input=True)
    result = np.sqrt(nanvar(a, axis, dtype, None, ddof, keepdims, where=where, mean=mean,
                            correction=correction))
    return result if out is None else write_out(out, result)


# ---------------------------------------------------------------- cumulative ops

def _scan_axis(x: Tracer, axis: Any) -> tuple[Tracer, int]:
    if axis is None:
        return reshape(x, (x.size,)), 0
    (axis,) = _axes(x, axis)
    return x, axis


def _slice_along(x: Tracer, axis: int, index: int) -> Tracer:
    from .indexing import getitem

    return getitem(x, (slice(None),) * axis + (slice(index, index + 1),))


ASSOCIATIVE: frozenset[np.ufunc] = frozenset({
    np.add, np.multiply, np.maximum, np.minimum, np.fmax, np.fmin, np.logical_and,
    np.logical_or, np.logical_xor, np.bitwise_and, np.bitwise_or, np.bitwise_xor,
})


def scan(ufunc: np.ufunc, x: Tracer, axis: int) -> Tracer:
    """Inclusive scan of an associative `ufunc` along `axis`, Hillis-Steele style: log2(n)
    passes, each combining every element with the one `shift` places before it."""
    from .indexing import getitem

    def part(value: Tracer, start: int | None, stop: int | None) -> Tracer:
        return getitem(value, (slice(None),) * axis + (slice(start, stop),))

    size, shift, total = x.shape[axis], 1, x
    while shift < size:
        combined = ufunc(part(total, None, size - shift), part(total, shift, None))
        combined = Tracer(x._ctx, cast_node(x._ctx, combined._id, x.dtype))
        total = concatenate([part(total, None, shift), combined], axis=axis)
        shift *= 2
    return total


def sequential_scan(ufunc: np.ufunc, x: Tracer, axis: int, dtype: np.dtype) -> Tracer:
    """ufunc.accumulate in NumPy's order (one element after another): any binary ufunc."""
    if x.shape[axis] == 0:
        return astype(x, dtype)
    parts = [astype(_slice_along(x, axis, 0), dtype)]
    for i in range(1, x.shape[axis]):
        parts.append(astype(ufunc(parts[-1], _slice_along(x, axis, i)), dtype))
    return concatenate(parts, axis=axis)


SCAN_IDENTITY: dict[np.ufunc, Any] = {np.add: 0, np.multiply: 1}


def accumulate(ufunc: np.ufunc, a: Any, axis: Any = 0, dtype: Any = None,
               out: Any = None) -> Tracer:
    x = lift_all([a])[0]
    if x.ndim == 0:
        raise ShapeError("cannot accumulate on a scalar", user_source())
    x, axis = _scan_axis(x, axis)
    try:
        result_dtype = ufunc.accumulate(np.ones((1,), x.dtype), dtype=dtype).dtype
    except TypeError as exc:
        raise DTypeError(f"np.{ufunc.__name__}.accumulate: {exc}", user_source()) from None
    if ufunc in ASSOCIATIVE:
        # exact for integers and booleans; float sums and products round in another order
        result = scan(ufunc, astype(x, result_dtype), axis)
    elif x.shape[axis] <= 64:
        result = sequential_scan(ufunc, x, axis, result_dtype)
    else:
        raise UnsupportedError(f"np.{ufunc.__name__}.accumulate over more than 64 elements is "
                               "not supported (it is unrolled)", user_source())
    return result if out is None else write_out(out, result)


@implements(np.cumsum, np.cumulative_sum, method="cumsum")
def cumsum(a, axis=None, dtype=None, out=None, *, include_initial=False):
    return _cumulative(np.add, a, axis, dtype, out, include_initial)


@implements(np.cumprod, np.cumulative_prod, method="cumprod")
def cumprod(a, axis=None, dtype=None, out=None, *, include_initial=False):
    return _cumulative(np.multiply, a, axis, dtype, out, include_initial)


def _cumulative(ufunc: np.ufunc, a: Any, axis: Any, dtype: Any, out: Any,
                include_initial: bool) -> Tracer:
    x = lift_all([a])[0]
    if x.ndim == 0:
        x = reshape(x, (1,))
    x, axis = _scan_axis(x, axis)
    result = accumulate(ufunc, x, axis, dtype)
    if include_initial:
        start = _filled(x.shape[:axis] + (1,) + x.shape[axis + 1:], SCAN_IDENTITY[ufunc],
                        result.dtype, x._ctx)
        result = concatenate([start, result], axis=axis)
    return result if out is None else write_out(out, result)


@implements(np.nancumsum)
def nancumsum(a, axis=None, dtype=None, out=None):
    return cumsum(_replace_nan(lift_all([a])[0], 0)[0], axis, dtype, out)


@implements(np.nancumprod)
def nancumprod(a, axis=None, dtype=None, out=None):
    return cumprod(_replace_nan(lift_all([a])[0], 1)[0], axis, dtype, out)


# ---------------------------------------------------------------- ufunc.reduce / accumulate

def sequential_reduce(ufunc: np.ufunc, x: Tracer, axis: int, keepdims: bool,
                      dtype: Any) -> Tracer:
    """ufunc.reduce in NumPy's order for a binary ufunc without a reduction op."""
    if x.shape[axis] == 0:
        if ufunc.identity is None:
            raise ShapeError(f"zero-size array to reduction operation {ufunc.__name__} which "
                             "has no identity", user_source())
        shape = reduce_shape(x.shape, axes=(axis,), keepdims=keepdims)
        result_dtype = ufunc.reduce(np.ones((1,), x.dtype), dtype=dtype).dtype
        return _filled(shape, ufunc.identity, result_dtype, x._ctx)
    from .indexing import getitem

    def item(i: int) -> Tracer:
        return getitem(x, (slice(None),) * axis + (i,))

    result = item(0) if dtype is None else astype(item(0), dtype)
    for i in range(1, x.shape[axis]):
        result = ufunc(result, item(i), dtype=dtype)
    return np.expand_dims(result, axis) if keepdims else result


def _ufunc_reduce_method(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> Tracer:
    kwargs = dict(kwargs)
    axis = kwargs.pop("axis", 0)
    if ufunc in REDUCE_UFUNCS:
        if ufunc in (np.fmax, np.fmin):
            x = lift_all([inputs[0]])[0]
            if x.dtype.kind == "f":
                filled, nan = _replace_nan(x, -np.inf if ufunc is np.fmax else np.inf)
                result = reduce_ufunc(np.maximum if ufunc is np.fmax else np.minimum, filled,
                                      axis, **kwargs)
                all_nan = all_(nan, axis, keepdims=kwargs.get("keepdims", False))
                return np.where(all_nan, _filled((), np.nan, x.dtype, x._ctx), result)
        return reduce_ufunc(ufunc, inputs[0], axis, **kwargs)
    if ufunc.nin != 2 or ufunc.nout != 1:
        raise UnsupportedError(f"np.{ufunc.__name__}.reduce: only binary ufuncs reduce",
                               user_source())
    x = lift_all([inputs[0]])[0]
    unsupported = set(kwargs) - {"dtype", "keepdims"}
    if unsupported or axis is None and x.ndim > 1 or isinstance(axis, tuple) and len(axis) > 1:
        raise UnsupportedError(f"np.{ufunc.__name__}.reduce supports one axis and the dtype "
                               "and keepdims keywords", user_source())
    if axis is None or isinstance(axis, tuple):
        axis = axis[0] if axis else 0
    (axis,) = _axes(x, axis)
    if x.shape[axis] > 64:
        raise UnsupportedError(f"np.{ufunc.__name__}.reduce over more than 64 elements is not "
                               "supported (it is unrolled)", user_source())
    return sequential_reduce(ufunc, x, axis, kwargs.get("keepdims", False), kwargs.get("dtype"))


def _ufunc_accumulate_method(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> Tracer:
    kwargs = dict(kwargs)
    if ufunc.nin != 2 or ufunc.nout != 1:
        raise UnsupportedError(f"np.{ufunc.__name__}.accumulate: only binary ufuncs "
                               "accumulate", user_source())
    return accumulate(ufunc, inputs[0], kwargs.pop("axis", 0), kwargs.pop("dtype", None))


UFUNC_METHODS["reduce"] = _ufunc_reduce_method
UFUNC_METHODS["accumulate"] = _ufunc_accumulate_method


# ---------------------------------------------------------------- sort-based statistics

def _host_statistic(name: str) -> Callable:
    def handler(a, *args, axis=None, out=None, overwrite_input=False, keepdims=False,
                **kwargs):
        from .elementwise import host_call

        x = lift_all([a])[0]
        if name not in ("median", "nanmedian"):
            if not args and "q" not in kwargs:
                raise ShapeError(f"np.{name}() missing required argument 'q'", user_source())
            q = kwargs.pop("q") if "q" in kwargs else args[0]
            args = args[1:]
            if isinstance(q, Tracer) or np.ndim(q) > 1:
                raise UnsupportedError(f"np.{name}: q must be a static scalar or 1-d sequence",
                                       user_source())
            kwargs["q"] = tuple(np.ravel(q).tolist()) if np.ndim(q) else q
        if args:
            axis = args[0]
        if isinstance(axis, list):
            axis = tuple(axis)
        result = host_call(name, [x], axis=axis, keepdims=bool(keepdims), **kwargs)
        return result if out is None else write_out(out, result)

    return handler


for _name in ("median", "percentile", "quantile", "nanmedian", "nanpercentile", "nanquantile"):
    implements(getattr(np, _name))(_host_statistic(_name))
