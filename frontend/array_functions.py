"""NumPy's array functions that are compositions of traced ops, written the way NumPy writes
them: flips and rotations, roll, triangles and diagonals, differences, kron and tensordot,
isclose, nan_to_num, meshgrid, select, sinc and i0.

Each result dtype is NumPy's own: where a composition could drift (select, kron, diff of bools)
it is found by calling the NumPy function on tiny stand-ins of the operands (`numpy_dtype`)."""
from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError

from .numpy_api import implements, lift_all
from .source import user_source
from .tracer import Tracer


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


def _axis(axis: Any, ndim: int, function: str) -> int:
    try:
        axis = operator.index(axis)
    except TypeError:
        raise ShapeError(f"np.{function}: axis must be an integer, got {axis!r}",
                         user_source()) from None
    if not -ndim <= axis < ndim:
        raise ShapeError(f"np.{function}: axis {axis} is out of bounds for array of dimension "
                         f"{ndim}", user_source())
    return axis % ndim


def _axes(axis: Any, ndim: int, function: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(_axis(a, ndim, function) for a in (axis if isinstance(axis, (tuple, list))
                                                    else (axis,)))
    if len(set(axes)) != len(axes):
        raise ShapeError(f"np.{function}: repeated axis", user_source())
    return axes


# ---------------------------------------------------------------- flips, rotations, roll

@implements(np.flip)
def flip(m: Any, axis: Any = None) -> Tracer:
    (m,) = lift_all([m])
    key = [slice(None)] * m.ndim
    for a in _axes(axis, m.ndim, "flip"):
        key[a] = slice(None, None, -1)
    return m[tuple(key)]


@implements(np.flipud)
def flipud(m: Any) -> Tracer:
    (m,) = lift_all([m])
    if m.ndim < 1:
        raise ShapeError("np.flipud: input must be >= 1-d", user_source())
    return flip(m, 0)


@implements(np.fliplr)
def fliplr(m: Any) -> Tracer:
    (m,) = lift_all([m])
    if m.ndim < 2:
        raise ShapeError("np.fliplr: input must be >= 2-d", user_source())
    return flip(m, 1)


@implements(np.rot90)
def rot90(m: Any, k: int = 1, axes: Sequence[int] = (0, 1)) -> Tracer:
    (m,) = lift_all([m])
    axes = tuple(axes)
    if len(axes) != 2:
        raise ShapeError("np.rot90: len(axes) must be 2", user_source())
    first, second = (_axis(a, m.ndim, "rot90") for a in axes)
    if first == second:
        raise ShapeError("np.rot90: axes must be different", user_source())
    k = operator.index(k) % 4
    if k == 0:
        return m[...]
    if k == 2:
        return flip(flip(m, first), second)
    order = list(range(m.ndim))
    order[first], order[second] = order[second], order[first]
    if k == 1:
        return np.transpose(flip(m, second), order)
    return flip(np.transpose(m, order), second)


@implements(np.roll)
def roll(a: Any, shift: Any, axis: Any = None) -> Tracer:
    (a,) = lift_all([a])
    if isinstance(shift, Tracer):
        raise UnsupportedError("np.roll: a traced shift moves data by an amount known only at "
                               "run time; pass it as a static argument", user_source())
    if axis is None:
        return np.reshape(roll(np.ravel(a), shift, 0), a.shape)
    shifts = np.atleast_1d(shift)
    axes = np.atleast_1d(axis)
    try:
        shifts, axes = np.broadcast_arrays(shifts, axes)
    except ValueError:
        raise ShapeError("np.roll: 'shift' and 'axis' should be scalars or 1D sequences",
                         user_source()) from None
    total = [0] * a.ndim
    for s, ax in zip(shifts.tolist(), axes.tolist()):
        total[_axis(ax, a.ndim, "roll")] += int(s)
    result = a
    for ax, s in enumerate(total):
        n = a.shape[ax]
        if n == 0 or s % n == 0:
            continue
        s %= n
        head = [slice(None)] * a.ndim
        tail = [slice(None)] * a.ndim
        head[ax], tail[ax] = slice(n - s, None), slice(None, n - s)
        result = np.concatenate([result[tuple(head)], result[tuple(tail)]], axis=ax)
    return result if result is not a else a.copy()


# ---------------------------------------------------------------- triangles and diagonals

def _triangle(m: Any, k: int, lower: bool) -> Tracer:
    (m,) = lift_all([m])
    if m.ndim < 1:
        raise ShapeError(f"np.{'tril' if lower else 'triu'}: input must be >= 1-d",
                         user_source())
    rows, cols = m.shape[-2:] if m.ndim >= 2 else (m.shape[0], m.shape[0])
    mask = np.tri(rows, cols, k=operator.index(k) - (0 if lower else 1), dtype=bool)
    if not lower:
        mask = ~mask
    return np.where(mask, m, np.zeros(1, m.dtype))


@implements(np.tril)
def tril(m: Any, k: int = 0) -> Tracer:
    return _triangle(m, k, lower=True)


@implements(np.triu)
def triu(m: Any, k: int = 0) -> Tracer:
    return _triangle(m, k, lower=False)


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


@implements(np.trace)
def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1, dtype: Any = None,
          out: Any = None) -> Tracer:
    (a,) = lift_all([a])
    if a.ndim < 2:
        raise ShapeError("np.trace: diag requires an array of at least two dimensions",
                         user_source())
    result = np.sum(np.diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)
    if out is not None:
        from .numpy_api import write_out
        return write_out(out, result)
    return result


# ---------------------------------------------------------------- differences

@implements(np.diff)
def diff(a: Any, n: int = 1, axis: int = -1, prepend: Any = np._NoValue,
         append: Any = np._NoValue) -> Tracer:
    (a,) = lift_all([a])
    n = operator.index(n)
    if n < 0:
        raise ShapeError(f"np.diff: order must be non-negative but got {n}", user_source())
    if a.ndim == 0:
        raise ShapeError("np.diff requires input that is at least one dimensional",
                         user_source())
    axis = _axis(axis, a.ndim, "diff")
    parts = []
    for extra in (prepend, append):
        if extra is np._NoValue:
            parts.append(None)
            continue
        (extra,) = lift_all([extra]) if isinstance(extra, Tracer) else (np.asarray(extra),)
        if extra.ndim == 0:
            shape = list(a.shape)
            shape[axis] = 1
            extra = np.broadcast_to(extra, tuple(shape))
        parts.append(extra)
    if parts[0] is not None or parts[1] is not None:
        a = np.concatenate([p for p in (parts[0], a, parts[1]) if p is not None], axis=axis)
    later = [slice(None)] * a.ndim
    earlier = [slice(None)] * a.ndim
    later[axis], earlier[axis] = slice(1, None), slice(None, -1)
    subtract = np.not_equal if a.dtype == bool else np.subtract
    for _ in range(n):
        a = subtract(a[tuple(later)], a[tuple(earlier)])
    return a


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


# ---------------------------------------------------------------- products

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
    axes_a = [_axis(x, a.ndim, "tensordot") for x in axes_a]
    axes_b = [_axis(x, b.ndim, "tensordot") for x in axes_b]
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


# ---------------------------------------------------------------- comparisons and cleaning

@implements(np.isclose)
def isclose(a: Any, b: Any, rtol: float = 1e-05, atol: float = 1e-08,
            equal_nan: bool = False) -> Tracer:
    if any(isinstance(v, Tracer) for v in (rtol, atol, equal_nan)):
        raise UnsupportedError("np.isclose: rtol, atol and equal_nan must be static",
                               user_source())
    x, y = lift_all([a, b])
    y = y.astype(np.result_type(y.dtype, 1.0))
    with np.errstate(invalid="ignore"):
        result = (np.less_equal(np.abs(x - y), atol + rtol * np.abs(y)) & np.isfinite(y)) | (
            x == y)
        if equal_nan:
            result = result | (np.isnan(x) & np.isnan(y))
    return result


@implements(np.nan_to_num)
def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None,
               neginf: Any = None) -> Tracer:
    (x,) = lift_all([x])
    if x.dtype.kind not in "fc":
        return x[...] if not copy else x.copy()
    info = np.finfo(x.dtype)
    big = info.max if posinf is None else posinf
    small = info.min if neginf is None else neginf
    result = np.where(np.isnan(x), np.asarray(nan, x.dtype), x)
    result = np.where(np.isposinf(result), np.asarray(big, x.dtype), result)
    result = np.where(np.isneginf(result), np.asarray(small, x.dtype), result)
    if not copy:
        x[...] = result
        return x
    return result


# ---------------------------------------------------------------- grids and selections

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
    result = choices[-1].astype(dtype)
    for condition, choice in zip(reversed(conditions), reversed(choices[:-1])):
        result = np.where(condition, choice.astype(dtype), result)
    return result


# ---------------------------------------------------------------- special functions

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


# ---------------------------------------------------------------- real-valued checks
# graphjit's arrays are never complex, so these are what NumPy gives for real input

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
