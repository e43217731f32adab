"""One LLVM function for structurally identical loop kernels.

An unrolled Python loop (80 sweeps of a stencil, the steps of an RNN) traces into kernels that
differ only in which buffers they read and write. LLVM's time grows with the number of
functions it optimises, so such kernels are rendered once, over their buffers renumbered in
order of first use (`structural_key`), as a `noinline` function reading its buffer pointers from
a small table; each kernel keeps its own symbol, a wrapper that fills that table from the
program's buffer table and calls the shared function:

    void k17(char** buffers, int64_t begin, int64_t end)
        { char* mine[3] = {buffers[4], buffers[9], buffers[4]}; k3_shared(mine, begin, end); }

The key holds everything the renderer reads: the loop space, the instructions (constants by
their bytes, so 0.0 and -0.0 differ) with accesses over renumbered buffers, the stores, each
buffer's element type, and the alias classes (which buffers share a planner slot), because
the shared function's alias metadata must hold for every kernel that calls it.
Kernels whose structure occurs once render as before, with no wrapper.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

from graphjit.compiler.ir import Attrs
from graphjit.compiler.kernel import Access, Buffer, BufferKind, Instr, LoopKernel, Operand, Store

from .loops import RenderedKernel, render_loop_kernel, symbol_name


def structural_key(kernel: LoopKernel, buffers: Sequence[Buffer]) -> tuple[Hashable, tuple[int, ...]]:
    """(the kernel's structure with buffer ids abstracted, its buffers in order of first use)."""
    order = kernel.buffers()
    position = {b: n for n, b in enumerate(order)}
    slots: dict[int, int] = {}
    classes = []
    for b in order:
        slot = buffers[b].slot
        alias = ("slot", slots.setdefault(slot, len(slots))) if slot is not None else ("own",)
        classes.append((np.dtype(buffers[b].dtype).str, alias))
    instrs = tuple((instr.op, instr.args, np.dtype(instr.dtype).str, instr.level,
                    _attrs_key(instr, position)) for instr in kernel.instrs)
    stores = tuple((s.instr, _access_key(s.access, position)) for s in kernel.stores)
    return (kernel.loop_shape, kernel.reduce_axes, instrs, stores, tuple(classes)), order


def _access_key(access: Access, position: dict[int, int]) -> tuple:
    return position[access.buffer], access.strides, access.offset


def _attrs_key(instr: Instr, position: dict[int, int]) -> Hashable:
    if instr.op is Operand.LOAD:
        return _access_key(instr.attrs["access"], position)
    if instr.op is Operand.CONST:
        return np.asarray(instr.attrs["value"], dtype=instr.dtype).tobytes()
    return instr.attrs


def canonical_kernel(kernel: LoopKernel, buffers: Sequence[Buffer], order: tuple[int, ...],
                     name: str) -> tuple[LoopKernel, list[Buffer]]:
    """The kernel over buffers 0..n-1 (in `order`), and those n buffers (slots renumbered the
    same way, so its alias metadata is the same for every kernel of its structure)."""
    position = {b: n for n, b in enumerate(order)}

    def moved(access: Access) -> Access:
        return Access(position[access.buffer], access.strides, access.offset)

    instrs = tuple(
        Instr(i.op, i.args, i.dtype, i.level, Attrs({"access": moved(i.attrs["access"])}),
              i.node, i.source) if i.op is Operand.LOAD else i
        for i in kernel.instrs)
    stores = tuple(Store(s.instr, moved(s.access)) for s in kernel.stores)
    slots: dict[int, int] = {}
    table = []
    for n, b in enumerate(order):
        original = buffers[b]
        slot = None if original.slot is None else slots.setdefault(original.slot, len(slots))
        kind = BufferKind.TEMP if slot is not None else original.kind
        table.append(Buffer(n, original.node, original.shape, original.dtype, kind, slot=slot))
    shared = LoopKernel(name, kernel.loop_shape, kernel.reduce_axes, instrs, stores,
                        kernel.nodes)
    return shared, table


def wrapper_ir(name: str, shared: str, order: tuple[int, ...], declare: bool) -> str:
    """`name(buffers, begin, end)`: the shared function called over this kernel's buffers."""
    lines = [f"declare void @{shared}(ptr, i64, i64)", ""] if declare else []
    lines += [f"define void @{name}(ptr noalias %buffers, i64 %begin, i64 %end) nounwind {{",
              "entry:", f"  %mine = alloca [{max(1, len(order))} x ptr], align 8"]
    for n, b in enumerate(order):
        lines += [f"  %src{n} = getelementptr inbounds ptr, ptr %buffers, i64 {b}",
                  f"  %ptr{n} = load ptr, ptr %src{n}, align 8",
                  f"  %dst{n} = getelementptr inbounds ptr, ptr %mine, i64 {n}",
                  f"  store ptr %ptr{n}, ptr %dst{n}, align 8"]
    lines += [f"  call void @{shared}(ptr %mine, i64 %begin, i64 %end)", "  ret void", "}", ""]
    return "\n".join(lines)


class SharingRenderer:
    """A renderer (`(kernel, buffers) -> RenderedKernel`) that renders each structure occurring
    more than once among `kernels` a single time."""

    def __init__(self, kernels: Sequence[LoopKernel], buffers: Sequence[Buffer]):
        self.keys = {id(k): structural_key(k, buffers) for k in kernels}
        self.counts = Counter(key for key, _ in self.keys.values())
        self.shared: dict[Hashable, RenderedKernel] = {}

    def __call__(self, kernel: LoopKernel, buffers: Sequence[Buffer]) -> RenderedKernel:
        key, order = self.keys.get(id(kernel)) or structural_key(kernel, buffers)
        if self.counts[key] < 2:
            return render_loop_kernel(kernel, buffers)
        name = symbol_name(kernel.name)
        shared = self.shared.get(key)
        if shared is None:
            canonical, table = canonical_kernel(kernel, buffers, order, f"{kernel.name}_shared")
            shared = render_loop_kernel(canonical, table, inline=False)
            self.shared[key] = shared
            text = shared.llvm_ir + "\n" + wrapper_ir(name, shared.name, order, declare=False)
        else:
            text = wrapper_ir(name, shared.name, order, declare=True)
        return RenderedKernel(name, text, shared.extent, shared.cost_per_item)
