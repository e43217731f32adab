"""Views, joins and shape queries: reshape, ravel, transpose, swapaxes, moveaxis, expand_dims,
squeeze, broadcast_to, concatenate, stack, hstack, vstack, shape, ndim, size."""
from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, UnsupportedError
from graphjit.compiler.ops import Op, normalize_axes

from .numpy_api import METHODS, implements, lift_all, write_out
from .source import user_source
from .tracer import Tracer, cast_node, dtype_operand, reshape_node
from .views import broadcast_view, reshape_view, transpose_view


def _axes(x: Tracer, axis: Any) -> tuple[int, ...]:
    try:
        return normalize_axes(axis, x.ndim)
    except (ValueError, TypeError) as exc:
        raise ShapeError(str(exc), user_source()) from None


def _shape_arg(args: tuple) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    if len(args) == 1 and args[0] is None:
        return ()
    return tuple(args)


def _resolve_shape(size: int, shape: tuple) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1:
        raise ShapeError("can only specify one unknown dimension", user_source())
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape array of size {size} into shape {shape}",
                             user_source())
        shape = tuple(size // known if d == -1 else d for d in shape)
    if math.prod(shape) != size:
        raise ShapeError(f"cannot reshape array of size {size} into shape {shape}", user_source())
    return shape


def _order(x: Tracer, order: Any, function: str) -> str:
    """'C' or 'F'. 'A' and 'K' follow the memory layout of the caller's array, which a compiled
    function does not know (its cache key is shape and dtype): refused where they matter."""
    if order is None:
        order = "C"
    if order not in ("C", "F", "A", "K"):
        raise ShapeError(f"{function}: order must be one of 'C', 'F', 'A', or 'K' (got "
                         f"{order!r})", user_source())
    if order in ("A", "K"):
        if sum(d > 1 for d in x.shape) > 1:
            raise UnsupportedError(f"{function}(order={order!r}) depends on the memory layout of "
                                   "the array, which graphjit does not specialise on; use 'C' "
                                   "or 'F'", user_source())
        return "C"
    return order


def _reverse(x: Tracer) -> Tracer:
    return transpose_view(x, tuple(reversed(range(x.ndim))))


@implements(np.reshape)
def reshape(x, shape=None, order="C", *, newshape=None, copy=None):
    x = lift_all([x])[0]
    order = _order(x, order, "np.reshape")
    shape = newshape if shape is None else shape
    if shape is None:
        raise ShapeError("np.reshape() missing required argument 'shape'", user_source())
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    shape = _resolve_shape(x.size, tuple(operator.index(d) for d in shape))
    if order == "F":   # Fortran order: reshape the reversed axes, reverse them back
        return _reverse(reshape_view(_reverse(x), tuple(reversed(shape))))
    return reshape_view(x, shape)


def reshape_method(x, *shape, order="C"):
    return reshape(x, _shape_arg(shape), order=order)


METHODS["reshape"] = reshape_method


@implements(np.ravel, method="ravel")
def ravel(x, order="C"):
    x = lift_all([x])[0]
    return reshape(x, (x.size,), order=order)


def flatten(x, order="C"):
    """ndarray.flatten: always a copy (ravel is a view where NumPy can make one)."""
    x = lift_all([x])[0]
    if _order(x, order, "flatten") == "F":
        x = _reverse(x)
    return Tracer(x._ctx, reshape_node(x._ctx, x._id, (x.size,)))


METHODS["flatten"] = flatten


@implements(np.transpose)
def transpose(x, axes=None):
    x = lift_all([x])[0]
    ctx = x._ctx
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(
        a % x.ndim if x.ndim else a for a in axes)
    try:
        return transpose_view(x, perm)
    except ShapeError:
        raise ShapeError(f"axes {axes} don't match array of dimension {x.ndim}",
                         user_source()) from None


METHODS["transpose"] = lambda x, *axes: transpose(x, _shape_arg(axes) or None)


def axis_list(axis: Any, ndim: int) -> list[int]:
    """NumPy's normalize_axis_tuple, in the order given (an int, a 0-d array or a sequence)."""
    items = [axis] if np.ndim(axis) == 0 else list(axis)
    out = []
    for item in items:
        try:
            item = operator.index(item)
        except TypeError:
            raise ShapeError(f"an axis must be an integer, not {type(item).__name__}",
                             user_source()) from None
        if not -ndim <= item < ndim:
            raise ShapeError(f"axis {item} is out of bounds for array of dimension {ndim}",
                             user_source())
        out.append(item % ndim)
    if len(set(out)) != len(out):
        raise ShapeError("repeated axis", user_source())
    return out


@implements(np.swapaxes, method="swapaxes")
def swapaxes(x, axis1, axis2):
    x = lift_all([x])[0]
    perm = list(range(x.ndim))
    (a,), (b,) = axis_list(axis1, x.ndim), axis_list(axis2, x.ndim)
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


@implements(np.moveaxis)
def moveaxis(x, source, destination):
    x = lift_all([x])[0]
    source, destination = axis_list(source, x.ndim), axis_list(destination, x.ndim)
    if len(source) != len(destination):
        raise ShapeError("`source` and `destination` arguments must have the same number of "
                         "elements", user_source())
    order = [n for n in range(x.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, order)


@implements(np.expand_dims)
def expand_dims(x, axis):
    x = lift_all([x])[0]
    ndim = x.ndim + (1 if np.ndim(axis) == 0 else len(axis))
    axes = axis_list(axis, ndim)
    dims = iter(x.shape)
    shape = tuple(1 if i in axes else next(dims) for i in range(ndim))
    return reshape(x, shape)


@implements(np.squeeze, method="squeeze")
def squeeze(x, axis=None):
    x = lift_all([x])[0]
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = _axes(x, axis)
        if any(x.shape[a] != 1 for a in axes):
            raise ShapeError("cannot select an axis to squeeze out which has size not equal to "
                             "one", user_source())
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


@implements(np.broadcast_to)
def broadcast_to(x, shape, subok=False):
    x = lift_all([x])[0]
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    try:
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"cannot broadcast shape {x.shape} to {shape}", user_source()) from None
    return broadcast_view(x, shape)


def _sequence(arrays: Any, function: str) -> list[Tracer]:
    if isinstance(arrays, Tracer) or not isinstance(arrays, (list, tuple)):
        raise UnsupportedError(f"{function} takes a list or tuple of arrays", user_source())
    if not arrays:
        raise ShapeError("need at least one array to concatenate", user_source())
    # NumPy converts each operand with asarray: Python scalars are not weak here
    return [Tracer(t._ctx, t._id) if t._weak else t for t in lift_all(list(arrays))]


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    tracers = _sequence(arrays, "np.concatenate")
    if axis is None:
        tracers = [ravel(t) for t in tracers]
        axis = 0
    ctx = tracers[0]._ctx
    if out is not None and dtype is not None:
        raise ShapeError("concatenate() only takes `out` or `dtype` as an argument, but both "
                         "were provided.", user_source())
    result_dtype = np.result_type(*(t.dtype for t in tracers)) if dtype is None else \
        np.dtype(dtype)
    if any(t.ndim == 0 for t in tracers):
        raise ShapeError("zero-dimensional arrays cannot be concatenated", user_source())
    if len({t.ndim for t in tracers}) != 1:
        raise ShapeError("all the input array dimensions except for the concatenation axis "
                         "must match exactly, but the arrays have different numbers of "
                         "dimensions", user_source())
    (axis,) = _axes(tracers[0], axis)
    if dtype is not None and not all(np.can_cast(t.dtype, result_dtype, casting)
                                     for t in tracers):
        raise DTypeError(f"cannot cast the arrays to {result_dtype} with casting rule "
                         f"{casting!r}", user_source())
    ids = tuple(cast_node(ctx, t._id, result_dtype) for t in tracers)
    try:
        result = Tracer(ctx, ctx.add(Op.CONCAT, ids, {"axis": axis}))
    except ShapeError:
        raise ShapeError("all the input array dimensions except for the concatenation axis "
                         f"must match exactly (shapes {[t.shape for t in tracers]})",
                         user_source()) from None
    return result if out is None else write_out(out, result)


@implements(np.stack)
def stack(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    tracers = _sequence(arrays, "np.stack")
    shapes = {t.shape for t in tracers}
    if len(shapes) != 1:
        raise ShapeError("all input arrays must have the same shape", user_source())
    ndim = tracers[0].ndim + 1
    (axis,) = axis_list(axis, ndim)
    return concatenate([expand_dims(t, axis) for t in tracers], axis=axis, out=out, dtype=dtype,
                       casting=casting)


@implements(np.atleast_1d)
def atleast_1d(*arys):
    tracers = [reshape(t, (1,)) if t.ndim == 0 else t for t in lift_all(list(arys))]
    return tracers[0] if len(tracers) == 1 else tuple(tracers)


@implements(np.atleast_2d)
def atleast_2d(*arys):
    tracers = [reshape(t, (1,) * (2 - t.ndim) + t.shape) if t.ndim < 2 else t
               for t in lift_all(list(arys))]
    return tracers[0] if len(tracers) == 1 else tuple(tracers)


@implements(np.atleast_3d)
def atleast_3d(*arys):
    def three(t: Tracer) -> Tracer:
        if t.ndim == 0:
            return reshape(t, (1, 1, 1))
        if t.ndim == 1:
            return reshape(t, (1, t.shape[0], 1))
        if t.ndim == 2:
            return reshape(t, t.shape + (1,))
        return t

    tracers = [three(t) for t in lift_all(list(arys))]
    return tracers[0] if len(tracers) == 1 else tuple(tracers)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, tuple) else [value]


@implements(np.hstack)
def hstack(tup, *, dtype=None, casting="same_kind"):
    tracers = _as_list(atleast_1d(*_sequence(tup, "np.hstack")))
    axis = 0 if tracers[0].ndim == 1 else 1
    return concatenate(tracers, axis=axis, dtype=dtype, casting=casting)


@implements(np.vstack)
def vstack(tup, *, dtype=None, casting="same_kind"):
    tracers = _as_list(atleast_2d(*_sequence(tup, "np.vstack")))
    return concatenate(tracers, axis=0, dtype=dtype, casting=casting)


@implements(np.dstack)
def dstack(tup):
    return concatenate(_as_list(atleast_3d(*_sequence(tup, "np.dstack"))), axis=2)


@implements(np.column_stack)
def column_stack(tup):
    tracers = [reshape(t, (t.shape[0], 1)) if t.ndim == 1 else atleast_2d(t)
               for t in _sequence(tup, "np.column_stack")]
    return concatenate(tracers, axis=1)



@implements(np.shape)
def shape_(x):
    return lift_all([x])[0].shape


@implements(np.ndim)
def ndim_(x):
    return lift_all([x])[0].ndim


@implements(np.size)
def size_(x, axis=None):
    x = lift_all([x])[0]
    return x.size if axis is None else x.shape[axis]
