"""`x[key]` and `x[key] = v` on tracers: basic indexing becomes slice/reshape views, integer-array
indexing a gather, and assignments functional updates that rebind the tracer."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError
from graphjit.compiler.ops import Op

from .source import user_source
from .tracer import Tracer, broadcast_node, cast_node, reshape_node

INDEX_DTYPE = np.dtype(np.int64)


def _normalize_key(key: Any) -> tuple:
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for item in key:
        if isinstance(item, Tracer):
            known = item._known()   # an index made in the function from constants only
            if known is not None:
                item = known
        if isinstance(item, range):
            item = np.arange(item.start, item.stop, item.step)
        elif isinstance(item, list):
            if any(isinstance(v, Tracer) for v in item):
                from .numpy_api import stack

                item = stack(item)
            else:
                item = np.asarray(item)
                if item.size == 0:
                    item = item.astype(np.intp)
        elif isinstance(item, np.ndarray) and item.ndim == 0 and item.dtype.kind in "iu":
            item = int(item)
        elif isinstance(item, (bool, np.bool_)):
            item = np.asarray(item)   # a 0-d mask: a new axis of length 1 (True) or 0 (False)
        elif isinstance(item, np.integer):
            item = int(item)
        out.append(item)
    return tuple(out)


def _is_bool_array(item: Any) -> bool:
    return isinstance(item, (Tracer, np.ndarray)) and item.dtype == np.dtype(bool)


def _is_array(item: Any) -> bool:
    return isinstance(item, (Tracer, np.ndarray))


def _consumed_dims(item: Any) -> int:
    if item is None or item is Ellipsis:
        return 0
    if _is_bool_array(item):
        return item.ndim
    return 1


def _expand_ellipsis(key: tuple, ndim: int) -> tuple:
    ellipses = [i for i, item in enumerate(key) if item is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(_consumed_dims(item) for item in key)
    if used > ndim:
        raise ShapeError(f"too many indices for array: array is {ndim}-dimensional, but {used} "
                         "were indexed", user_source())
    fill = (slice(None),) * (ndim - used)
    if ellipses:
        i = ellipses[0]
        return key[:i] + fill + key[i + 1:]
    return key + fill


def _check_int(index: int, size: int, axis: int) -> int:
    if not -size <= index < size:
        raise IndexError(f"{user_source()}: index {index} is out of bounds for axis {axis} with "
                         f"size {size}")
    return index % size


def _basic_getitem(x: Tracer, key: tuple, view: bool = False) -> Tracer:
    """Basic indexing: a view of `x` (sharing its storage), or a NumPy scalar when every axis
    is indexed by an integer (`view` forces a 0-d view, as `x[...]` gives)."""
    ctx = x._ctx
    slices, final_shape, axis = [], [], 0
    for item in key:
        if item is None:
            final_shape.append(1)
            continue
        size = x.shape[axis]
        if isinstance(item, int):
            i = _check_int(item, size, axis)
            slices.append((i, i + 1, 1))
        else:
            if any(isinstance(b, Tracer) for b in (item.start, item.stop, item.step)):
                raise UnsupportedError("slice bounds must be Python ints, not traced values; mark "
                                       "the argument static", user_source())
            start, stop, step = item.indices(size)
            if not range(start, stop, step):
                start, stop, step = 0, 0, 1   # empty: (-1, 1, -2) as a slice would not be
            elif step < 0 and stop < 0:
                stop = None
            slices.append((start, stop, step))
            final_shape.append(len(range(*slice(start, stop, step).indices(size))))
        axis += 1
    if not view and not final_shape and all(isinstance(item, int) for item in key):
        # every axis indexed by an integer: NumPy returns a scalar (a copy), not a view
        node = x._id
        if slices:
            node = ctx.add(Op.SLICE, (node,), {"slices": tuple(slices)})
        return Tracer(ctx, reshape_node(ctx, node, ()), scalar=True)
    from .views import reshape_view, slice_view

    view = slice_view(x, tuple(slices))
    return reshape_view(view, tuple(final_shape))


def index_template(x: Tracer, key: Any) -> tuple[tuple, list[int]]:
    """A static template of `key` plus the node ids of its index arrays (int64)."""
    ctx = x._ctx
    key = _normalize_key(key)
    template, ids = [], []
    for item in key:
        if item is None:
            template.append(("none",))
        elif item is Ellipsis:
            template.append(("ellipsis",))
        elif isinstance(item, int):
            template.append(("int", item))
        elif isinstance(item, slice):
            if any(isinstance(b, Tracer) for b in (item.start, item.stop, item.step)):
                raise UnsupportedError("slice bounds must be Python ints, not traced values",
                                       user_source())
            template.append(("slice", item.start, item.stop, item.step))
        elif isinstance(item, np.ndarray) and item.dtype == np.dtype(bool):
            for positions in np.nonzero(item):
                template.append(("array",))
                ids.append(ctx.node_of(positions.astype(INDEX_DTYPE)))
        elif _is_array(item):
            if item.dtype.kind not in "iu":
                raise IndexError(f"{user_source()}: arrays used as indices must be of integer "
                                 f"(or boolean) type, not {item.dtype}")
            template.append(("array",))
            ids.append(cast_node(ctx, ctx.node_of(item), INDEX_DTYPE))
        else:
            raise UnsupportedError(f"cannot index with an object of type {type(item).__name__}",
                                   user_source())
    return tuple(template), ids


def getitem(x: Tracer, key: Any) -> Tracer:
    ctx = x._ctx
    key = _normalize_key(key)
    if any(isinstance(item, Tracer) and item.dtype == np.dtype(bool) for item in key):
        raise UnsupportedError(
            "reading x[mask] with a traced boolean mask gives an array whose shape depends on the "
            "data, which graphjit cannot compile. Use np.where(mask, x, 0) (or another fill "
            "value) to keep the shape, or np.sum(np.where(mask, x, 0)) for a masked reduction",
            user_source())
    if any(_is_scalar_mask(item) for item in key):
        return _scalar_mask_getitem(x, key)
    has_ellipsis = any(item is Ellipsis for item in key)
    given = key   # an ellipsis between index arrays separates them even where it covers no axis
    key = _expand_ellipsis(key, x.ndim)
    if not any(_is_array(item) for item in key):
        return _basic_getitem(x, key, view=has_ellipsis)
    arrays = [i for i, item in enumerate(key) if _is_array(item)]
    if len(arrays) == 1 and not _is_bool_array(key[arrays[0]]) and all(
            item == slice(None) for i, item in enumerate(key) if i != arrays[0]):
        axis = arrays[0]
        if key[axis].dtype.kind not in "iu":
            raise IndexError(f"{user_source()}: arrays used as indices must be of integer (or "
                             f"boolean) type, not {key[axis].dtype}")
        index = cast_node(ctx, ctx.node_of(key[axis]), INDEX_DTYPE)
        return Tracer(ctx, ctx.add(Op.TAKE, (x._id, index), {"axis": axis}))
    template, ids = index_template(x, given)
    try:
        return Tracer(ctx, ctx.add(Op.GETITEM, (x._id, *ids), {"template": template}))
    except ShapeError as exc:
        raise ShapeError(f"shape mismatch in indexing: {exc}") from None


def _is_scalar_mask(item: Any) -> bool:
    return isinstance(item, np.ndarray) and item.ndim == 0 and item.dtype == np.dtype(bool)


def _scalar_mask_getitem(x: Tracer, key: tuple) -> Tracer:
    """x[True] is x[None]; x[False] the same new axis with length 0 (basic keys only)."""
    if sum(map(_is_scalar_mask, key)) > 1 or any(
            isinstance(item, int) or (_is_array(item) and not _is_scalar_mask(item))
            for item in key):
        # NumPy makes the masks and integers one broadcast advanced index there
        raise UnsupportedError("a 0-d boolean index is supported with slices, None and ... "
                               "only (not with integers, index arrays or another mask)",
                               user_source())
    result = getitem(x, tuple(None if _is_scalar_mask(item) else item for item in key))
    used = sum(_consumed_dims(item) for item in key if not _is_scalar_mask(item))
    empty, position = [], 0
    for item in key:
        if _is_scalar_mask(item) or item is None:
            if _is_scalar_mask(item) and not item:
                empty.append(position)
            position += 1
        elif item is Ellipsis:
            position += x.ndim - used
        elif isinstance(item, slice):
            position += 1
    if not empty:
        return result
    return getitem(result, tuple(slice(0, 0) if i in empty else slice(None)
                                 for i in range(result.ndim)))


def setitem(x: Tracer, key: Any, value: Any) -> None:
    ctx = x._ctx
    key = _normalize_key(key)
    if len(key) == 1 and _is_bool_array(key[0]) and (isinstance(key[0], Tracer)
                                                     or key[0].shape == x.shape):
        _masked_assign(x, key[0], value)
        return
    if any(isinstance(item, Tracer) and item.dtype == np.dtype(bool) for item in key):
        raise UnsupportedError("assignment through a traced boolean mask is supported only as "
                               "x[mask] = value with one mask; use np.where", user_source())
    template, ids = index_template(x, key)
    value_id = cast_node(ctx, ctx.node_of(value), x.dtype)
    try:
        result = ctx.add(Op.SETITEM, (x._id, value_id, *ids), {"template": template})
    except ShapeError:
        raise ShapeError(f"could not broadcast the value of shape "
                         f"{ctx.graph.node(value_id).shape} into the indexed part of an array of "
                         f"shape {x.shape}", user_source()) from None
    x._rebind(Tracer(ctx, result))


def _masked_assign(x: Tracer, mask: Any, value: Any) -> None:
    """x[mask] = v as a select: needs v to broadcast against x (a scalar, typically)."""
    ctx = x._ctx
    mask_id = ctx.node_of(mask)
    mask_shape = ctx.graph.node(mask_id).shape
    if mask_shape != x.shape[:len(mask_shape)]:
        raise ShapeError(f"boolean index of shape {mask_shape} does not match the indexed array "
                         f"of shape {x.shape}", user_source())
    mask_id = reshape_node(ctx, mask_id, mask_shape + (1,) * (x.ndim - len(mask_shape)))
    mask_id = broadcast_node(ctx, mask_id, x.shape)
    value_id = cast_node(ctx, ctx.node_of(value), x.dtype)
    value_shape = ctx.graph.node(value_id).shape
    try:
        if np.broadcast_shapes(value_shape, x.shape) != x.shape:
            raise ValueError
    except ValueError:
        raise UnsupportedError(
            f"x[mask] = value with a value of shape {value_shape} fills as many elements as the "
            "mask has True entries, which depends on the data; use "
            "x = np.where(mask, value_broadcast_to_x, x)", user_source()) from None
    value_id = reshape_node(ctx, value_id, (1,) * (x.ndim - len(value_shape)) + value_shape)
    value_id = broadcast_node(ctx, value_id, x.shape)
    x._rebind(Tracer(ctx, ctx.add(Op.WHERE, (mask_id, value_id, x._id))))


# ---------------------------------------------------------------- np.take, np.take_along_axis

def index_node(ctx: Any, index: Any, size: int, axis: int) -> int:
    """An int64 index node with negative indices already wrapped (so backends never wrap).

    Concrete indices are bounds-checked now, like NumPy; traced ones cannot be, and an index out
    of range there is undefined, as in any compiled gather."""
    if isinstance(index, Tracer):
        if index.dtype.kind not in "iu":
            raise IndexError(f"{user_source()}: arrays used as indices must be of integer type, "
                             f"not {index.dtype}")
        index_id = cast_node(ctx, index._id, INDEX_DTYPE)
        from .numpy_api import where

        wrapped = where(Tracer(ctx, index_id) < 0, Tracer(ctx, index_id) + size,
                        Tracer(ctx, index_id))
        return wrapped._id
    array = np.asarray(index)
    if array.size == 0:
        array = array.astype(INDEX_DTYPE)
    if array.dtype.kind not in "iu":
        raise IndexError(f"{user_source()}: arrays used as indices must be of integer type, not "
                         f"{array.dtype}")
    if array.size and (array.min() < -size or array.max() >= size):
        bad = array[(array < -size) | (array >= size)].flat[0]
        raise IndexError(f"{user_source()}: index {bad} is out of bounds for axis {axis} with "
                         f"size {size}")
    return ctx.node_of(np.where(array < 0, array + size, array).astype(INDEX_DTYPE))


def _lift(x: Any) -> Tracer:
    from .numpy_api import lift_all

    return lift_all([x])[0]


def _axis(x: Tracer, axis: int) -> int:
    if not -x.ndim <= axis < x.ndim:
        raise ShapeError(f"axis {axis} is out of bounds for array of dimension {x.ndim}",
                         user_source())
    return axis % x.ndim


def take(a: Any, indices: Any, axis: int | None = None, out: Any = None,
         mode: str = "raise") -> Tracer:
    from .numpy_api import ravel, write_out

    if mode not in ("raise", "wrap", "clip"):
        raise ShapeError(f"np.take: clipmode must be one of 'clip', 'raise', or 'wrap' (got "
                         f"{mode!r})", user_source())
    a = _lift(a)
    if axis is None:
        a, axis = ravel(a), 0
    axis = _axis(a, int(axis))
    if mode != "raise":
        indices = _moded(indices, a.shape[axis], mode)
    if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
        result = getitem(a, (slice(None),) * axis + (int(indices),))
    else:
        ctx = a._ctx
        index_id = index_node(ctx, indices, a.shape[axis], axis)
        result = Tracer(ctx, ctx.add(Op.TAKE, (a._id, index_id), {"axis": axis}))
    return result if out is None else write_out(out, result)


def _moded(indices: Any, size: int, mode: str) -> Any:
    """np.take's mode='wrap' (indices modulo the size) and 'clip' (to 0..size-1, negative ones
    to 0), applied before the gather so that every index is in range."""
    if size == 0:
        raise IndexError(f"{user_source()}: cannot do a non-empty take from an empty axes.")
    if isinstance(indices, Tracer):
        if indices.dtype.kind not in "iu":
            raise IndexError(f"{user_source()}: arrays used as indices must be of integer "
                             f"type, not {indices.dtype}")
        return np.mod(indices, size) if mode == "wrap" else np.clip(indices, 0, size - 1)
    array = np.asarray(indices)
    if array.dtype.kind not in "iu" and array.size:
        raise IndexError(f"{user_source()}: arrays used as indices must be of integer type, not "
                         f"{array.dtype}")
    array = array.astype(INDEX_DTYPE)
    moded = np.mod(array, size) if mode == "wrap" else np.clip(array, 0, size - 1)
    return moded if array.ndim else int(moded)


def take_along_axis(arr: Any, indices: Any, axis: int | None = -1) -> Tracer:
    from .numpy_api import ravel

    arr = _lift(arr)
    if axis is None:
        arr, axis = ravel(arr), 0
    axis = _axis(arr, int(axis))
    ctx = arr._ctx
    index_id = index_node(ctx, indices, arr.shape[axis], axis)
    index_shape = ctx.graph.node(index_id).shape
    if len(index_shape) != arr.ndim:
        raise ShapeError("take_along_axis: `indices` and `arr` must have the same number of "
                         f"dimensions (got {len(index_shape)} and {arr.ndim})", user_source())
    try:
        return Tracer(ctx, ctx.add(Op.TAKE_ALONG_AXIS, (arr._id, index_id), {"axis": axis}))
    except ShapeError:
        raise ShapeError(f"take_along_axis: shapes {arr.shape} and {index_shape} do not "
                         "broadcast outside the indexed axis", user_source()) from None
