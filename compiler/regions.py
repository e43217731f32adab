"""Regions of a buffer that affine accesses touch: what in-place updates need to be legal.

An in-place update (a `setitem` with a basic index, compiled as a LoopKernel that stores into
its target's buffer) may fuse with loads of that same buffer only where every such load reads
either exactly the element being written in the same iteration, or elements no store of the
kernel writes. `disjoint(a, b, ...)` decides the second case exactly for accesses that walk the
buffer's dims as arithmetic progressions (every basic slice, int index, broadcast and transpose
does), and conservatively (flat address intervals) otherwise.

`update_region(shape, template)` is where a basic-index `setitem` writes, as a `Region`
(shape, strides, offset in the target's C-order element numbering).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .ops import build_index_key

Shape = tuple[int, ...]
BASIC_INDEX_TAGS = frozenset({"slice", "int", "none", "ellipsis"})


@dataclass(frozen=True)
class Region:
    """The elements `x[key]` names for a basic key, as strides over the key's result shape."""

    shape: Shape
    strides: tuple[int, ...]
    offset: int


def is_basic_template(template: tuple) -> bool:
    """Ints, slices (any step), None and Ellipsis only: the indexed part is a strided view."""
    return all(item[0] in BASIC_INDEX_TAGS for item in template)


_FAKE_BASE = np.zeros(1, np.uint8)


@functools.lru_cache(maxsize=4096)
def update_region(shape: Shape, template: tuple) -> Region:
    """Where `x[key] = v` writes in an array of `shape` (C order), for a basic `template`."""
    strides = _contiguous(shape)
    fake = np.lib.stride_tricks.as_strided(_FAKE_BASE, shape, strides, writeable=False)
    key = build_index_key(template, [])
    if Ellipsis not in key:
        key = (*key, Ellipsis)      # a view even where every dim is indexed by an int
    view = fake[key]
    offset = view.__array_interface__["data"][0] - _FAKE_BASE.__array_interface__["data"][0]
    return Region(tuple(view.shape), tuple(view.strides), offset)


def _contiguous(shape: Shape) -> tuple[int, ...]:
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))


# ---------------------------------------------------------------- disjointness

Progressions = list[tuple[int, int, int]]   # per buffer dim: (start, step, count)


def progressions(strides: Sequence[int], offset: int, loop_shape: Shape,
                 buffer_shape: Shape) -> Progressions | None:
    """The access as one arithmetic progression per buffer dim (a product set), or None when
    it does not decompose (a loop dim that crosses buffer rows, two loop dims on one buffer dim)."""
    if any(extent <= 0 for extent in buffer_shape):
        return None
    buffer_strides = _contiguous(buffer_shape)
    start = []
    rest = offset
    for extent, stride in zip(buffer_shape, buffer_strides):
        start.append(rest // stride % extent if stride else 0)
    if sum(s * b for s, b in zip(start, buffer_strides)) != offset:
        return None
    result: Progressions = [(s, 0, 1) for s in start]
    used: set[int] = set()
    for stride, extent in zip(strides, loop_shape):
        if stride == 0 or extent == 1:
            continue
        dim = _dim_of_stride(stride, buffer_strides, buffer_shape)
        if dim is None or dim in used:
            return None
        used.add(dim)
        step = stride // buffer_strides[dim]
        first = start[dim]
        last = first + step * (extent - 1)
        if not (0 <= last < buffer_shape[dim]):
            return None
        result[dim] = (first, step, extent)
    return result


def _dim_of_stride(stride: int, buffer_strides: Sequence[int], buffer_shape: Shape) -> int | None:
    """The buffer dim a loop stride walks: the outermost dim whose stride divides it and whose
    next-outer stride it stays below (so it never carries into another dim)."""
    magnitude = abs(stride)
    for dim, (bstride, extent) in enumerate(zip(buffer_strides, buffer_shape)):
        if extent > 1 and magnitude % bstride == 0 and magnitude < bstride * extent:
            return dim
    return None


def _progressions_meet(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    first_a, step_a, count_a = a
    first_b, step_b, count_b = b
    values_a = {first_a + step_a * i for i in range(count_a)}
    return any(first_b + step_b * j in values_a for j in range(count_b))


def _interval(strides: Sequence[int], offset: int, loop_shape: Shape) -> tuple[int, int]:
    low = offset + sum(min(0, s * (n - 1)) for s, n in zip(strides, loop_shape))
    high = offset + sum(max(0, s * (n - 1)) for s, n in zip(strides, loop_shape))
    return low, high


def disjoint(a_strides: Sequence[int], a_offset: int, b_strides: Sequence[int], b_offset: int,
             loop_shape: Shape, buffer_shape: Shape) -> bool:
    """True only if the two accesses (over the same loop space, into one buffer of
    `buffer_shape`) provably touch no common element."""
    if math.prod(loop_shape) == 0:
        return True
    low_a, high_a = _interval(a_strides, a_offset, loop_shape)
    low_b, high_b = _interval(b_strides, b_offset, loop_shape)
    if high_a < low_b or high_b < low_a:
        return True
    pa = progressions(a_strides, a_offset, loop_shape, buffer_shape)
    pb = progressions(b_strides, b_offset, loop_shape, buffer_shape)
    if pa is None or pb is None:
        return False
    return any(not _progressions_meet(x, y) for x, y in zip(pa, pb))
