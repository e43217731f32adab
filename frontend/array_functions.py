"""Array functions NumPy writes in Python on top of other array functions, traced by the same
formulas: flip/fliplr/flipud, roll, rot90, diff, tril/triu, trace, nan_to_num, isclose. Each
follows NumPy's own definition (numpy/lib), so dtypes, shapes and edge cases are NumPy's."""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError

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
