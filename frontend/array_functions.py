"""NumPy's array functions that are compositions of traced ops, written the way NumPy writes
them: flips and rotations, roll, triangles and diagonals, differences, kron and tensordot,
isclose/allclose/array_equal, nan_to_num, broadcast_arrays, meshgrid, select, sinc and i0.

Where a composition's dtype could drift from NumPy's (select, kron), it is found by calling the
NumPy function on tiny stand-ins of the operands (`numpy_dtype`)."""
from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError

from .creation import astype
from .indexing import getitem
from .numpy_api import implements, lift_all, write_out
from .reductions import sum_
from .shapes import axis_list, broadcast_to, concatenate, reshape, transpose
from .source import user_source
from .tracer import Tracer
from .views import diagonal


def _one(x: Any) -> Tracer:
    return lift_all([x])[0]


def _along(ndim: int, axis: int, item: Any) -> tuple:
    return (slice(None),) * axis + (item,)


@implements(np.flip)
def flip(m, axis=None):
    x = _one(m)
    axes = range(x.ndim) if axis is None else axis_list(axis, x.ndim)
    key = [slice(None)] * x.ndim
    for a in axes:
        key[a] = slice(None, None, -1)
    return getitem(x, tuple(key))


@implements(np.fliplr)
def fliplr(m):
    x = _one(m)
    if x.ndim < 2:
        raise ShapeError("Input must be >= 2-d.", user_source())
    return flip(x, 1)


@implements(np.flipud)
def flipud(m):
    x = _one(m)
    if x.ndim < 1:
        raise ShapeError("Input must be >= 1-d.", user_source())
    return flip(x, 0)


@implements(np.roll)
def roll(a, shift, axis=None):
    x = _one(a)
    if axis is None:
        return reshape(roll(reshape(x, (x.size,)), shift, 0), x.shape)
    axes = axis_list(axis, x.ndim) if np.ndim(axis) else axis_list(axis, x.ndim)
    shifts = np.broadcast_to(np.asarray(shift), (len(axes),)) if np.ndim(shift) == 0 else \
        np.asarray(shift)
    try:
        pairs = np.broadcast(shifts, np.asarray(axes))
    except ValueError:
        raise ShapeError("'shift' and 'axis' should be scalars or 1D sequences",
                         user_source()) from None
    total = {a: 0 for a in range(x.ndim)}
    for s, a in pairs:
        total[int(a)] += operator.index(s)
    for a, s in total.items():
        size = x.shape[a]
        if size == 0 or s % size == 0:
            continue
        s %= size
        x = concatenate([getitem(x, _along(x.ndim, a, slice(size - s, None))),
                         getitem(x, _along(x.ndim, a, slice(None, size - s)))], axis=a)
    return x


@implements(np.rot90)
def rot90(m, k=1, axes=(0, 1)):
    x = _one(m)
    axes = tuple(axes)
    if len(axes) != 2:
        raise ShapeError("len(axes) must be 2.", user_source())
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == x.ndim:
        raise ShapeError("Axes must be different.", user_source())
    first, second = axis_list(axes[0], x.ndim)[0], axis_list(axes[1], x.ndim)[0]
    k = operator.index(k) % 4
    if k == 0:
        return getitem(x, (Ellipsis,))
    if k == 2:
        return flip(flip(x, first), second)
    order = list(range(x.ndim))
    order[first], order[second] = order[second], order[first]
    if k == 1:
        return transpose(flip(x, second), order)
    return flip(transpose(x, order), second)


def _edge(value: Any, x: Tracer, axis: int) -> Tracer:
    value = _one(value) if isinstance(value, Tracer) else lift_all([np.asanyarray(value), x])[0]
    if value.ndim == 0:
        value = broadcast_to(value, x.shape[:axis] + (1,) + x.shape[axis + 1:])
    return value


@implements(np.diff)
def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    x = _one(a)
    n = operator.index(n)
    if n == 0:
        return x
    if n < 0:
        raise ShapeError(f"order must be non-negative but got {n!r}", user_source())
    if x.ndim == 0:
        raise ShapeError("diff requires input that is at least one dimensional", user_source())
    (axis,) = axis_list(axis, x.ndim)
    parts = [x]
    if prepend is not np._NoValue:
        parts.insert(0, _edge(prepend, x, axis))
    if append is not np._NoValue:
        parts.append(_edge(append, x, axis))
    if len(parts) > 1:
        x = concatenate(parts, axis=axis)
    for _ in range(n):
        later = getitem(x, _along(x.ndim, axis, slice(1, None)))
        earlier = getitem(x, _along(x.ndim, axis, slice(None, -1)))
        x = np.not_equal(later, earlier) if x.dtype == np.dtype(bool) else later - earlier
    return x


@implements(np.tril)
def tril(m, k=0):
    x = _one(m)
    if x.ndim == 0:
        raise ShapeError("tril needs an array of at least one dimension", user_source())
    mask = np.tri(*x.shape[-2:], k=operator.index(k), dtype=bool)
    return np.where(mask, x, np.zeros(1, x.dtype))


@implements(np.triu)
def triu(m, k=0):
    x = _one(m)
    if x.ndim == 0:
        raise ShapeError("triu needs an array of at least one dimension", user_source())
    mask = np.tri(*x.shape[-2:], k=operator.index(k) - 1, dtype=bool)
    return np.where(mask, np.zeros(1, x.dtype), x)


@implements(np.trace, method="trace")
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    x = _one(a)
    if x.ndim < 2:
        raise ShapeError("diag requires an array of at least two dimensions", user_source())
    result = sum_(diagonal(x, offset, axis1, axis2), -1, dtype=dtype)
    return result if out is None else write_out(out, result)


@implements(np.nan_to_num)
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    x = _one(x)
    if x.dtype.kind != "f":
        return astype(x, x.dtype)
    info = np.finfo(x.dtype)
    big = info.max if posinf is None else posinf
    small = info.min if neginf is None else neginf
    scalar = x.dtype.type   # the replacements in x's dtype, as NumPy's copyto does
    result = np.where(np.isnan(x), scalar(nan), x)
    result = np.where(np.isposinf(result), scalar(big), result)
    return np.where(np.isneginf(result), scalar(small), result)


@implements(np.isclose)
def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """NumPy 2's formula: |x - y| <= atol + rtol * |y| where y is finite, or x == y."""
    x, y = lift_all([a, b])
    y = astype(y, np.result_type(y.dtype, 1.0)) if not y._weak else y
    with np.errstate(invalid="ignore"):
        result = (np.less_equal(abs(x - y), atol + rtol * abs(y)) & np.isfinite(y)) | (x == y)
        if equal_nan:
            result = result | (np.isnan(x) & np.isnan(y))
    return result


def _python_bool(value: Tracer) -> Tracer:
    """A traced bool that a jitted function returns as a Python bool, as NumPy's allclose and
    array_equal do (`if np.allclose(...)` on traced values still needs a concrete value)."""
    return Tracer(value._ctx, value._id, weak=True)


@implements(np.allclose)
def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return _python_bool(np.all(isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)))


@implements(np.array_equal)
def array_equal(a1, a2, equal_nan=False):
    x, y = lift_all([a1, a2])
    if x.shape != y.shape:
        return False
    same = x == y
    if equal_nan and x.dtype.kind == "f" and y.dtype.kind == "f":
        same = same | (np.isnan(x) & np.isnan(y))
    return _python_bool(np.all(same))


@implements(np.array_equiv)
def array_equiv(a1, a2):
    x, y = lift_all([a1, a2])
    try:
        np.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        return False
    return _python_bool(np.all(x == y))


# ---------------------------------------------------------------- diagonals, products, grids,
# selections and special functions

def _stand_in(value: Any) -> Any:
    if isinstance(value, Tracer):
        return np.zeros((1,) * value.ndim, value.dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_stand_in(v) for v in value)
    return value



def numpy_dtype(function: Callable, *args: Any, **kwargs: Any) -> np.dtype:
    """The dtype NumPy's `function` gives for these operands (tracers as 1-element stand-ins)."""
    with np.errstate(all="ignore"):
        try:
            result = function(*(_stand_in(a) for a in args),
                              **{k: _stand_in(v) for k, v in kwargs.items()})
        except (TypeError, ValueError) as error:
            error_type = ShapeError if isinstance(error, ValueError) else UnsupportedError
            raise error_type(f"np.{function.__name__}: {error}", user_source()) from None
    if isinstance(result, (list, tuple)):
        result = result[0]
    return np.asarray(result).dtype




@implements(np.diag)
def diag(v: Any, k: int = 0) -> Tracer:
    (v,) = lift_all([v])
    k = operator.index(k)
    if v.ndim == 2:
        return np.diagonal(v, k)
    if v.ndim != 1:
        raise ShapeError("np.diag: input must be 1- or 2-d", user_source())
    size = v.shape[0] + abs(k)
    padded = np.concatenate([v, np.zeros(abs(k), v.dtype)])
    values = padded[:, None] if k >= 0 else padded[None, :]
    return np.where(np.eye(size, size, k, dtype=bool), values, np.zeros(1, v.dtype))



@implements(np.diagflat)
def diagflat(v: Any, k: int = 0) -> Tracer:
    (v,) = lift_all([v])
    return diag(np.ravel(v), k)



@implements(np.ediff1d)
def ediff1d(ary: Any, to_end: Any = None, to_begin: Any = None) -> Tracer:
    (ary,) = lift_all([ary])
    flat = np.ravel(ary)
    parts = [flat[1:] - flat[:-1]]
    for extra, at_start in ((to_begin, True), (to_end, False)):
        if extra is None:
            continue
        extra = np.ravel(extra) if isinstance(extra, Tracer) else np.asarray(extra).ravel()
        if not np.can_cast(extra.dtype, ary.dtype, casting="same_kind"):
            raise UnsupportedError("np.ediff1d: dtype of `to_begin`/`to_end` must be compatible "
                                   "with input `ary` under the `same_kind` rule",
                                   user_source())
        extra = extra.astype(ary.dtype)
        parts.insert(0, extra) if at_start else parts.append(extra)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]



@implements(np.kron)
def kron(a: Any, b: Any) -> Tracer:
    a, b = lift_all([a, b])
    dtype = numpy_dtype(np.kron, a, b)
    ndim = max(a.ndim, b.ndim)
    a = np.reshape(a, (1,) * (ndim - a.ndim) + a.shape)
    b = np.reshape(b, (1,) * (ndim - b.ndim) + b.shape)
    interleaved_a = tuple(x for extent in a.shape for x in (extent, 1))
    interleaved_b = tuple(x for extent in b.shape for x in (1, extent))
    product = np.reshape(a, interleaved_a) * np.reshape(b, interleaved_b)
    result = np.reshape(product, tuple(p * q for p, q in zip(a.shape, b.shape)))
    return result if result.dtype == dtype else result.astype(dtype)



@implements(np.tensordot)
def tensordot(a: Any, b: Any, axes: Any = 2) -> Tracer:
    a, b = lift_all([a, b])
    try:
        count = operator.index(axes)
        axes_a, axes_b = list(range(a.ndim - count, a.ndim)), list(range(count))
        if count < 0 or count > min(a.ndim, b.ndim):
            raise ValueError
    except TypeError:
        try:
            axes_a, axes_b = axes
        except (TypeError, ValueError):
            raise ShapeError("np.tensordot: axes must be an int or a pair of sequences",
                             user_source()) from None
        axes_a = [axes_a] if np.ndim(axes_a) == 0 else list(axes_a)
        axes_b = [axes_b] if np.ndim(axes_b) == 0 else list(axes_b)
    except ValueError:
        raise ShapeError(f"np.tensordot: axes={axes} exceeds the operands' dimensions "
                         f"{a.shape}, {b.shape}", user_source()) from None
    if len(axes_a) != len(axes_b):
        raise ShapeError("np.tensordot: shape-mismatch for sum", user_source())
    axes_a, axes_b = axis_list(axes_a, a.ndim), axis_list(axes_b, b.ndim)
    if any(a.shape[i] != b.shape[j] for i, j in zip(axes_a, axes_b)):
        raise ShapeError(f"np.tensordot: shape-mismatch for sum ({a.shape} axes {axes_a}, "
                         f"{b.shape} axes {axes_b})", user_source())
    free_a = [i for i in range(a.ndim) if i not in axes_a]
    free_b = [j for j in range(b.ndim) if j not in axes_b]
    summed = int(np.prod([a.shape[i] for i in axes_a]))
    left = np.reshape(np.transpose(a, free_a + axes_a),
                      (int(np.prod([a.shape[i] for i in free_a])), summed))
    right = np.reshape(np.transpose(b, axes_b + free_b),
                       (summed, int(np.prod([b.shape[j] for j in free_b]))))
    result = np.dot(left, right)
    return np.reshape(result, tuple(a.shape[i] for i in free_a) + tuple(b.shape[j] for j in free_b))



@implements(np.broadcast_arrays)
def broadcast_arrays(*args: Any, subok: bool = False) -> tuple[Tracer, ...]:
    arrays = lift_all(list(args))
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError as error:
        raise ShapeError(f"np.broadcast_arrays: {error}", user_source()) from None
    return tuple(a if a.shape == shape else np.broadcast_to(a, shape) for a in arrays)



@implements(np.meshgrid)
def meshgrid(*xi: Any, copy: bool = True, sparse: bool = False,
             indexing: str = "xy") -> tuple[Tracer, ...]:
    if indexing not in ("xy", "ij"):
        raise ShapeError("np.meshgrid: Valid values for `indexing` are 'xy' and 'ij'.",
                         user_source())
    arrays = lift_all(list(xi))
    ndim = len(arrays)
    grids = []
    for n, x in enumerate(arrays):
        shape = [1] * ndim
        shape[n] = -1
        grids.append(np.reshape(x, tuple(shape)))
    if indexing == "xy" and ndim > 1:
        grids[0] = np.reshape(grids[0], (1, -1) + (1,) * (ndim - 2))
        grids[1] = np.reshape(grids[1], (-1, 1) + (1,) * (ndim - 2))
    if not sparse:
        grids = list(np.broadcast_arrays(*grids))
        if copy:
            grids = [g.copy() for g in grids]
    return tuple(grids)



@implements(np.select)
def select(condlist: Sequence[Any], choicelist: Sequence[Any], default: Any = 0) -> Tracer:
    if len(condlist) != len(choicelist):
        raise ShapeError("np.select: list of cases must be same length as list of conditions",
                         user_source())
    if len(choicelist) == 0:
        raise ShapeError("np.select: select with an empty condition list is not possible",
                         user_source())
    dtype = numpy_dtype(np.select, [c if isinstance(c, Tracer) else np.asarray(c, bool)
                                    for c in condlist], list(choicelist), default)
    conditions = lift_all(list(condlist))
    for condition in conditions:
        if condition.dtype != bool:
            raise UnsupportedError(f"np.select: invalid entry in condlist: should be boolean "
                                   f"ndarray, got {condition.dtype}", user_source())
    choices = lift_all(list(choicelist) + [default])
    result = astype(choices[-1], dtype)
    for condition, choice in zip(reversed(conditions), reversed(choices[:-1])):
        result = np.where(condition, astype(choice, dtype), result)
    return result



@implements(np.sinc)
def sinc(x: Any) -> Tracer:
    (x,) = lift_all([x])
    y = np.pi * np.where(x == 0, 1.0e-20, x)
    return np.sin(y) / y



@implements(np.i0)
def i0(x: Any) -> Tracer:
    from .elementwise import host_call

    (x,) = lift_all([x])
    return host_call("i0", [x])



@implements(np.isreal)
def isreal(x: Any) -> Tracer:
    (x,) = lift_all([x])
    return np.ones_like(x, dtype=bool)



@implements(np.iscomplex)
def iscomplex(x: Any) -> Tracer:
    (x,) = lift_all([x])
    return np.zeros_like(x, dtype=bool)



@implements(np.real_if_close)
def real_if_close(a: Any, tol: float = 100) -> Tracer:
    (a,) = lift_all([a])
    return a

