"""NumPy's in-place functions and methods on traced arrays: ndarray.fill, np.copyto, np.put,
np.place, np.putmask, and ufunc.at beyond np.add/np.subtract. Each computes the array's new
value functionally and writes it through the array's view chain (frontend/storage.py), so every
alias sees the write."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, UnsupportedError
from graphjit.compiler.ops import Op

from .numpy_api import METHODS, UFUNC_METHODS, handle_ufunc, implements, lift
from .source import user_source
from .tracer import Tracer, broadcast_node, cast_node, dtype_operand, reshape_node


def _target(a: Any, function: str) -> Tracer:
    if not isinstance(a, Tracer):
        raise UnsupportedError(
            f"{function} writes a traced value into a NumPy array that is not traced (a global "
            "or closed-over array); make a traced copy inside the function (np.array(a)) or "
            "pass the array in as an argument (graphjit writes arguments back)", user_source())
    return a


def _broadcast_value(target: Tracer, value: Any) -> int:
    """`value` as a node of `target`'s shape and dtype (NumPy broadcasting, same_kind cast)."""
    ctx = target._ctx
    node = ctx.node_of(value)
    shape = ctx.graph.node(node).shape
    try:
        if np.broadcast_shapes(shape, target.shape) != target.shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"could not broadcast input array from shape {shape} into shape "
                         f"{target.shape}", user_source()) from None
    node = cast_node(ctx, node, target.dtype)
    node = reshape_node(ctx, node, (1,) * (target.ndim - len(shape)) + shape)
    return broadcast_node(ctx, node, target.shape)


def fill(a: Tracer, value: Any) -> None:
    """ndarray.fill: every element set to `value` (a scalar)."""
    a._write(_broadcast_value(a, value))


METHODS["fill"] = fill


def _concrete(value: Any) -> np.ndarray | None:
    if isinstance(value, Tracer):
        return value._known()
    return np.asarray(value)


KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}


def _can_cast(src: Tracer, dtype: np.dtype, casting: str) -> bool:
    """np.can_cast, with a Python scalar (weak) fitting any dtype of its kind or a higher one."""
    if src._weak and casting in ("same_kind", "safe"):
        return KIND_RANK[src.dtype.kind] <= KIND_RANK[np.dtype(dtype).kind]
    return bool(np.can_cast(src.dtype, dtype, casting=casting))


@implements(np.copyto)
def copyto(dst: Any, src: Any, casting: str = "same_kind", where: Any = True) -> None:
    dst = _target(dst, "np.copyto")
    ctx = dst._ctx
    src_tracer = lift(ctx, src)
    if casting != "unsafe" and not _can_cast(src_tracer, dst.dtype, casting):
        raise UnsupportedError(f"np.copyto: cannot cast from {src_tracer.dtype} to {dst.dtype} "
                               f"with casting={casting!r} (NumPy refuses this too)", user_source())
    value = _broadcast_value(dst, src_tracer)
    if where is not True:
        from .elementwise import where as np_where

        mask = Tracer(ctx, _broadcast_value_bool(dst, where))
        value = np_where(mask, Tracer(ctx, value), Tracer(ctx, dst._id))._id
    dst._write(value)


def _broadcast_value_bool(target: Tracer, mask: Any) -> int:
    ctx = target._ctx
    node = cast_node(ctx, ctx.node_of(mask), np.dtype(bool))
    shape = ctx.graph.node(node).shape
    try:
        if np.broadcast_shapes(shape, target.shape) != target.shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"where= of shape {shape} does not broadcast to {target.shape}",
                         user_source()) from None
    node = reshape_node(ctx, node, (1,) * (target.ndim - len(shape)) + shape)
    return broadcast_node(ctx, node, target.shape)


def _cycled(ctx, values: Any, count: int, dtype: np.dtype) -> int:
    """The first `count` elements of `values` repeated cyclically (np.put/np.place/np.putmask)."""
    from .indexing import take
    from .shapes import ravel

    flat = ravel(lift(ctx, values))
    if flat.size == 0:
        raise ShapeError("cannot place or put from an empty array of values", user_source())
    positions = np.arange(count) % flat.size
    return cast_node(ctx, take(flat, positions)._id, dtype)


def _write_flat(a: Tracer, positions: Any, values_node: int) -> None:
    """a.flat[positions] = values, written into `a` through its views."""
    ctx = a._ctx
    flat = reshape_node(ctx, a._id, (a.size,))
    index = ctx.node_of(np.asarray(positions, np.int64)) if not isinstance(positions, Tracer) \
        else cast_node(ctx, positions._id, np.dtype(np.int64))
    new = ctx.add(Op.SETITEM, (flat, values_node, index), {"template": (("array",),)})
    a._write(reshape_node(ctx, new, a.shape))


@implements(np.put, method="put")
def put(a: Any, ind: Any, v: Any, mode: str = "raise") -> None:
    a = _target(a, "np.put")
    ctx = a._ctx
    if mode != "raise":
        raise UnsupportedError(f"np.put(..., mode={mode!r}) is not supported; wrap or clip the "
                               "indices with % or np.clip first", user_source())
    known = _concrete(ind)
    if known is not None:
        known = np.asarray(known).reshape(-1)
        if known.size and (known.min() < -a.size or known.max() >= a.size):
            raise IndexError(f"{user_source()}: index out of range for an array of size "
                             f"{a.size} in np.put")
        positions: Any = np.where(known < 0, known + a.size, known)
        count = positions.size
    else:
        from .indexing import index_node
        from .shapes import ravel

        positions = Tracer(ctx, index_node(ctx, ravel(ind), a.size, 0))
        count = positions.size
    _write_flat(a, positions, _cycled(ctx, v, count, a.dtype))


def _known_mask(mask: Any, shape: tuple[int, ...], function: str) -> np.ndarray:
    known = _concrete(mask)
    if known is None:
        raise UnsupportedError(
            f"{function} with a traced mask fills as many elements as the mask has True "
            "entries, which depends on the data; use a = np.where(mask, values, a) instead",
            user_source())
    known = np.asarray(known, bool)
    if known.size != int(np.prod(shape)):
        raise ShapeError(f"{function}: mask and data must be the same size", user_source())
    return known.reshape(-1)


@implements(np.place)
def place(arr: Any, mask: Any, vals: Any) -> None:
    arr = _target(arr, "np.place")
    positions = np.flatnonzero(_known_mask(mask, arr.shape, "np.place"))
    if positions.size:
        _write_flat(arr, positions, _cycled(arr._ctx, vals, positions.size, arr.dtype))


@implements(np.putmask)
def putmask(a: Any, mask: Any, values: Any) -> None:
    """a.flat[n] = values.flat[n % values.size] where mask.flat[n]: a select, so a traced mask
    works too."""
    a = _target(a, "np.putmask")
    ctx = a._ctx
    from .elementwise import where as np_where

    full = reshape_node(ctx, _cycled(ctx, values, a.size, a.dtype), a.shape)
    mask_node = _broadcast_value_bool(a, mask)
    a._write(np_where(Tracer(ctx, mask_node), Tracer(ctx, full), Tracer(ctx, a._id))._id)


# ---------------------------------------------------------------- ufunc.at beyond add/subtract

def _ufunc_at(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> None:
    """ufunc.at: np.add/np.subtract of values the target's dtype holds are a scatter-add (fused,
    differentiable); any ufunc over constant indices that never repeat is a gather, the ufunc
    and a scatter; everything else (repeats, traced indices) is NumPy's own ufunc.at."""
    from .elementwise import ufunc_at
    from .indexing import getitem, setitem

    target = _target(inputs[0], f"np.{ufunc.__name__}.at")
    values = inputs[2:]
    if ufunc in (np.add, np.subtract) and len(values) == 1 and np.can_cast(
            dtype_operand(lift(target._ctx, values[0])), target.dtype, "same_kind"):
        ufunc_at(ufunc, *inputs)
        return None
    indices = inputs[1]
    probe = np.arange(target.size).reshape(target.shape)
    key = indices if isinstance(indices, tuple) else (indices,)
    concrete = [_concrete(k) if isinstance(k, Tracer) else k for k in key]
    hit = None if any(c is None for c in concrete) else probe[tuple(concrete)].reshape(-1)
    if hit is None or np.unique(hit).size != hit.size:
        # repeated (or unknown) indices apply the ufunc once per occurrence: NumPy's own
        # ufunc.at runs it, as a host step
        _scatter_ufunc(ufunc, target, indices, values)
        return None
    old = getitem(target, indices)
    new = handle_ufunc(ufunc, "__call__", (old, *values), {})
    setitem(target, indices, new)
    return None


def _scatter_ufunc(ufunc: np.ufunc, target: Tracer, indices: Any, values: tuple) -> None:
    from .indexing import index_template

    ctx = target._ctx
    if len(values) != ufunc.nin - 1:
        raise ShapeError(f"np.{ufunc.__name__}.at takes {ufunc.nin - 1} value operand(s), got "
                         f"{len(values)}", user_source())
    # NumPy computes in the promoted dtype and casts the results back unsafely: so does its
    # own ufunc.at, run as the host step
    value_ids = [lift(ctx, value)._id for value in values]
    template, index_ids = index_template(target, indices)
    result = ctx.add(Op.SCATTER_UFUNC, (target._id, *value_ids, *index_ids),
                     {"template": template, "ufunc": ufunc.__name__,
                      "with_value": bool(value_ids)})
    target._write(result)


UFUNC_METHODS["at"] = _ufunc_at
