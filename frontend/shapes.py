"""Views, joins and shape queries: reshape, ravel, transpose, swapaxes, moveaxis, expand_dims,
squeeze, broadcast_to, concatenate, stack, hstack, vstack, shape, ndim, size."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError
from graphjit.compiler.ops import Op, normalize_axes

from .numpy_api import METHODS, implements, lift_all
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


@implements(np.reshape)
def reshape(x, shape=None, order="C", *, newshape=None, copy=None):
    x = lift_all([x])[0]
    if order != "C":
        raise UnsupportedError("reshape with order other than 'C' is not supported", user_source())
    shape = newshape if shape is None else shape
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    shape = _resolve_shape(x.size, shape)
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


@implements(np.swapaxes, method="swapaxes")
def swapaxes(x, axis1, axis2):
    x = lift_all([x])[0]
    perm = list(range(x.ndim))
    a, b = axis1 % x.ndim, axis2 % x.ndim
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


@implements(np.moveaxis)
def moveaxis(x, source, destination):
    x = lift_all([x])[0]
    source = normalize_axes(source, x.ndim) if not isinstance(source, int) else (source % x.ndim,)
    destination = [d % x.ndim for d in ((destination,) if isinstance(destination, int)
                                        else destination)]
    order = [n for n in range(x.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, order)


@implements(np.expand_dims)
def expand_dims(x, axis):
    x = lift_all([x])[0]
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = x.ndim + len(axes)
    axes = normalize_axes(axes, ndim)
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


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    tracers = lift_all(list(arrays))
    if axis is None:
        tracers = [ravel(t) for t in tracers]
        axis = 0
    ctx = tracers[0]._ctx
    result_dtype = np.result_type(*(dtype_operand(t) for t in tracers)) if dtype is None else \
        np.dtype(dtype)
    ndim = tracers[0].ndim
    if ndim == 0:
        raise ShapeError("zero-dimensional arrays cannot be concatenated", user_source())
    (axis,) = _axes(tracers[0], axis)
    ids = tuple(cast_node(ctx, t._id, result_dtype) for t in tracers)
    return Tracer(ctx, ctx.add(Op.CONCAT, ids, {"axis": axis}))


@implements(np.stack)
def stack(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    tracers = lift_all(list(arrays))
    shapes = {t.shape for t in tracers}
    if len(shapes) != 1:
        raise ShapeError("all input arrays must have the same shape", user_source())
    ndim = tracers[0].ndim + 1
    (axis,) = normalize_axes(axis, ndim)
    return concatenate([expand_dims(t, axis) for t in tracers], axis=axis, dtype=dtype)


@implements(np.hstack)
def hstack(arrays, dtype=None, casting="same_kind"):
    tracers = lift_all(list(arrays))
    axis = 0 if tracers[0].ndim == 1 else 1
    return concatenate(tracers, axis=axis, dtype=dtype)


@implements(np.vstack)
def vstack(arrays, dtype=None, casting="same_kind"):
    tracers = [t if t.ndim >= 2 else reshape(t, (1, -1)) for t in lift_all(list(arrays))]
    return concatenate(tracers, axis=0, dtype=dtype)



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
