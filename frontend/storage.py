"""Functionalised mutation: every traced array is a view of a `Storage` (after PyTorch's
functionalization).

A `Storage` holds the node of its base array's current value and a version counter. A traced
array is `(storage, view chain)`; a chain is a tuple of `ViewStep`s, each knowing how to apply
itself forward (read) and how to write a value back through itself (an update node on its
parent's value). A write through any view replays the chain backwards into the base, sets the
storage's new value and bumps its version; every other view of the storage sees the write on its
next read, because a view whose cached node is older than its storage replays its chain.
The IR stays pure: writes are `setitem` nodes, views are `slice`/`reshape`/`transpose` nodes.

Each view also carries its NumPy layout (element strides and offset into the base), which decides
NumPy's view-or-copy answers (`reshape` of a non-contiguous view copies) exactly as NumPy does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graphjit.compiler.ops import Op

Layout = tuple[tuple[int, ...], int]   # (strides in elements, offset in elements)


class Storage:
    """The current value of one base array (a node id) and how many writes it has seen."""

    __slots__ = ("node", "version", "shape", "dtype")

    def __init__(self, node: int, shape: tuple[int, ...], dtype: np.dtype):
        self.node = node
        self.version = 0
        self.shape = shape
        self.dtype = dtype

    def write(self, node: int) -> None:
        self.node = node
        self.version += 1


def contiguous_layout(shape: tuple[int, ...]) -> Layout:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides)), 0


class ViewStep:
    """One view in a chain: `forward` reads it from its parent's value, `backward` writes a new
    value of the view into its parent's value (None where NumPy's view is read-only)."""

    readonly = False

    def forward(self, ctx: Any, parent: int) -> int:
        raise NotImplementedError

    def backward(self, ctx: Any, parent: int, value: int) -> int:
        raise NotImplementedError

    def layout(self, shape: tuple[int, ...], layout: Layout) -> Layout:
        raise NotImplementedError


@dataclass(frozen=True)
class SliceStep(ViewStep):
    slices: tuple[tuple[int, Any, int], ...]   # (start, stop, step) per axis; stop None: to 0

    def forward(self, ctx, parent):
        return ctx.add(Op.SLICE, (parent,), {"slices": self.slices})

    def backward(self, ctx, parent, value):
        template = tuple(("slice",) + tuple(s) for s in self.slices)
        return ctx.add(Op.SETITEM, (parent, value), {"template": template})

    def layout(self, shape, layout):
        strides, offset = layout
        new = []
        for (start, _, step), stride in zip(self.slices, strides):
            offset += start * stride
            new.append(stride * step)
        return tuple(new), offset


@dataclass(frozen=True)
class ReshapeStep(ViewStep):
    shape_from: tuple[int, ...]
    shape_to: tuple[int, ...]
    strides_to: tuple[int, ...]

    def forward(self, ctx, parent):
        return ctx.add(Op.RESHAPE, (parent,), {"shape_to": self.shape_to})

    def backward(self, ctx, parent, value):
        return ctx.add(Op.RESHAPE, (value,), {"shape_to": self.shape_from})

    def layout(self, shape, layout):
        return self.strides_to, layout[1]


@dataclass(frozen=True)
class TransposeStep(ViewStep):
    perm: tuple[int, ...]

    def forward(self, ctx, parent):
        return ctx.add(Op.TRANSPOSE, (parent,), {"perm": self.perm})

    def backward(self, ctx, parent, value):
        inverse = tuple(int(i) for i in np.argsort(self.perm))
        return ctx.add(Op.TRANSPOSE, (value,), {"perm": inverse})

    def layout(self, shape, layout):
        strides, offset = layout
        return tuple(strides[p] for p in self.perm), offset


@dataclass(frozen=True)
class BroadcastStep(ViewStep):
    """np.broadcast_to: a read-only view (new leading axes and size-1 axes get stride 0)."""

    shape_to: tuple[int, ...]
    readonly = True

    def forward(self, ctx, parent):
        node = parent
        shape = ctx.graph.node(parent).shape
        lead = len(self.shape_to) - len(shape)
        if lead:
            node = ctx.add(Op.RESHAPE, (node,), {"shape_to": (1,) * lead + shape})
        if ctx.graph.node(node).shape != self.shape_to:
            node = ctx.add(Op.BROADCAST, (node,), {"shape_to": self.shape_to})
        return node

    def layout(self, shape, layout):
        strides, offset = layout
        lead = len(self.shape_to) - len(shape)
        padded = (0,) * lead + tuple(strides)
        padded_shape = (1,) * lead + tuple(shape)
        return tuple(0 if d == 1 and t != 1 else s
                     for s, d, t in zip(padded, padded_shape, self.shape_to)), offset


@dataclass(frozen=True)
class DiagonalStep(ViewStep):
    """np.diagonal: a read-only view (NumPy >= 1.9), read as a strided slice of the flattened
    pair of axes moved last."""

    offset: int
    axis1: int
    axis2: int
    readonly = True

    def forward(self, ctx, parent):
        from .views import diagonal_node

        return diagonal_node(ctx, parent, self.offset, self.axis1, self.axis2)

    def layout(self, shape, layout):
        strides, base = layout
        s1, s2 = strides[self.axis1], strides[self.axis2]
        start = (self.offset * s2) if self.offset >= 0 else (-self.offset * s1)
        rest = tuple(s for i, s in enumerate(strides) if i not in (self.axis1, self.axis2))
        return rest + (s1 + s2,), base + start


def reshaped_strides(shape: tuple[int, ...], layout: Layout,
                     new_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The element strides of `reshape(new_shape)` if NumPy can do it without a copy, else None.

    Asks NumPy itself: assigning `.shape` of a strided dummy never copies and raises where a
    copy would be needed (the dummy's memory is never read)."""
    dummy = np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape, layout[0])
    view = dummy.view()
    try:
        view.shape = new_shape
    except (AttributeError, ValueError):
        return None
    return tuple(int(s) for s in view.strides)
