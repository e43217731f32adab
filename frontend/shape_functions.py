"""Model-code array functions built from view, concat and gather ops: np.pad (constant mode),
np.tile, np.repeat and np.split / np.array_split. All their size arguments are static
(Python ints), so every result shape is known at trace time."""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError

from .numpy_api import implements, lift_all, write_out
from .shapes import concatenate, ravel, reshape
from .source import user_source
from .tracer import Tracer, _nearest_supported, broadcast_node, cast_node


def _static_ints(value: Any, what: str) -> np.ndarray:
    if isinstance(value, Tracer) or (isinstance(value, (list, tuple)) and any(
            isinstance(v, Tracer) for v in value)):
        raise UnsupportedError(f"{what} must be static Python ints, not traced values; mark "
                               "the argument static with gj.jit(static_argnums=...)",
                               user_source())
    array = np.asarray(value)
    if array.dtype.kind not in "iu" and array.size:
        raise TypeError(f"{user_source()}: {what} must be integers, not {array.dtype}")
    return array.astype(np.int64)


def _filled(like: Tracer, shape: tuple[int, ...], value: Any) -> Tracer:
    ctx = like._ctx
    scalar = ctx.node_of(np.asarray(value).astype(like.dtype))
    return Tracer(ctx, broadcast_node(ctx, scalar, shape))


def _axis(x: Tracer, axis: int) -> int:
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ShapeError(f"axis {axis} is out of bounds for array of dimension {x.ndim}",
                         user_source())
    return axis % max(x.ndim, 1)


# ---------------------------------------------------------------- np.pad

def _pad_axis(x: Tracer, axis: int, before: int, after: int, values: tuple) -> Tracer:
    if before == 0 and after == 0:
        return x
    parts = []
    for count, value in ((before, values[0]), (None, None), (after, values[1])):
        if count is None:
            parts.append(x)
        elif count:
            shape = x.shape[:axis] + (count,) + x.shape[axis + 1:]
            parts.append(_filled(x, shape, value))
    return concatenate(parts, axis=axis)


@implements(np.pad)
def pad(array, pad_width, mode="constant", **kwargs):
    if mode != "constant":
        raise UnsupportedError(f"np.pad(mode={mode!r}) is not supported; graphjit traces "
                               "mode='constant'", user_source())
    unknown = set(kwargs) - {"constant_values"}
    if unknown:
        raise UnsupportedError(f"np.pad keyword arguments {sorted(unknown)} are not supported",
                               user_source())
    x = lift_all([array])[0]
    widths = np.broadcast_to(_static_ints(pad_width, "np.pad widths"), (x.ndim, 2))
    if (widths < 0).any():
        raise ValueError(f"{user_source()}: index can't contain negative values")
    constants = kwargs.get("constant_values", 0)
    if isinstance(constants, Tracer):
        raise UnsupportedError("np.pad constant_values must be concrete numbers", user_source())
    constants = np.broadcast_to(np.asarray(constants), (x.ndim, 2))
    # axis by axis, like NumPy: later axes' values fill the corners
    for axis in range(x.ndim):
        before, after = (int(w) for w in widths[axis])
        x = _pad_axis(x, axis, before, after, tuple(constants[axis]))
    return x


# ---------------------------------------------------------------- np.tile, np.repeat

@implements(np.tile)
def tile(A, reps):
    x = lift_all([A])[0]
    reps = tuple(int(r) for r in np.atleast_1d(_static_ints(reps, "np.tile reps")))
    ndim = max(len(reps), x.ndim)
    reps = (1,) * (ndim - len(reps)) + reps
    shape = (1,) * (ndim - x.ndim) + x.shape
    # (1, s0, 1, s1, ...) broadcast to (r0, s0, r1, s1, ...), then merged pairwise
    interleaved = tuple(d for size in shape for d in (1, size))
    target = tuple(d for rep, size in zip(reps, shape) for d in (rep, size))
    ctx = x._ctx
    expanded = reshape(x, interleaved)
    tiled = Tracer(ctx, broadcast_node(ctx, expanded._id, target))
    return reshape(tiled, tuple(r * s for r, s in zip(reps, shape)))


@implements(np.repeat, method="repeat")
def repeat(a, repeats, axis=None):
    x = lift_all([a])[0]
    if axis is None or x.ndim == 0:   # NumPy repeats a 0-d array as a 1-d one
        x, axis = ravel(x), 0 if axis is None else axis
    axis = _axis(x, operator.index(axis))
    counts = _static_ints(repeats, "np.repeat repeats")
    if (counts < 0).any():
        raise ValueError(f"{user_source()}: repeats may not contain negative values")
    size = x.shape[axis]
    if counts.ndim == 0 or counts.size == 1:
        count = int(counts.reshape(-1)[0])
        inserted = x.shape[:axis + 1] + (1,) + x.shape[axis + 1:]
        target = x.shape[:axis + 1] + (count,) + x.shape[axis + 1:]
        ctx = x._ctx
        spread = Tracer(ctx, broadcast_node(ctx, reshape(x, inserted)._id, target))
        return reshape(spread, x.shape[:axis] + (size * count,) + x.shape[axis + 1:])
    if counts.shape != (size,):
        raise ShapeError(f"np.repeat: operands could not be broadcast together with shape "
                         f"({size},) {counts.shape}", user_source())
    from .indexing import take

    return take(x, np.repeat(np.arange(size), counts), axis=axis)


# ---------------------------------------------------------------- np.split, np.array_split

def _split_at(x: Tracer, boundaries: list[int], axis: int) -> list[Tracer]:
    from .indexing import getitem

    edges = [0, *boundaries, x.shape[axis]]
    prefix = (slice(None),) * axis
    return [getitem(x, prefix + (slice(start, stop),)) for start, stop in zip(edges, edges[1:])]


def _section_boundaries(size: int, sections: int) -> list[int]:
    if sections <= 0:
        raise ValueError(f"{user_source()}: number sections must be larger than 0.")
    each, extra = divmod(size, sections)
    sizes = [each + 1] * extra + [each] * (sections - extra)
    return list(np.cumsum(sizes[:-1]).astype(int))


@implements(np.array_split)
def array_split(ary, indices_or_sections, axis=0):
    x = lift_all([ary])[0]
    axis = _axis(x, int(axis))
    spec = _static_ints(indices_or_sections, "np.array_split sections")
    if spec.ndim == 0:
        return _split_at(x, _section_boundaries(x.shape[axis], int(spec)), axis)
    return _split_at(x, [int(i) for i in spec], axis)


@implements(np.split)
def split(ary, indices_or_sections, axis=0):
    x = lift_all([ary])[0]
    axis = _axis(x, int(axis))
    spec = _static_ints(indices_or_sections, "np.split sections")
    if spec.ndim == 0 and int(spec) > 0 and x.shape[axis] % int(spec):
        raise ValueError(f"{user_source()}: array split does not result in an equal division")
    return array_split(x, indices_or_sections, axis)
