"""The Program verifier: the guarantees compiler/kernel.py documents, checked after every Program
pass under GRAPHJIT_VERIFY=1 (on in the tests).

Checked: buffers are numbered by position, PARAM buffers cover the call's leaves once each, CONST
buffers hold their value, slots are only on TEMP buffers and slot-sharing buffers have disjoint
lifetimes; every kernel reads only buffers that exist and were written by an earlier step (or are
params/consts), every access stays inside its buffer; a LoopKernel's instructions are in
topological order with consistent levels (OUTER reads only OUTER, a reduction's operand is FULL and
its result OUTER, a store is FULL iff it varies along a reduce axis), strides are 0 on extent-1
dims, loads are deduplicated, and a kernel that stores into a buffer it also loads (an in-place
update) stores disjoint regions and loads only elements no store of it writes, or exactly the
element being written; a MatmulKernel's operands, output and epilogue have matching shapes;
the outputs are distinct OUTPUT buffers, each written.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .errors import VerifyError
from .kernel import (
    Access, Buffer, BufferKind, HostKernel, Kernel, Level, LoopKernel, MatmulKernel, Operand,
    Program,
)
from .ops import REDUCTIONS
from .regions import disjoint
from .schedule import step_buffers as kernel_buffers


def verify_program(program: Program, after: str = "") -> Program:
    """Raise VerifyError naming the broken guarantee; return the program unchanged."""
    where = f" (after {after})" if after else ""
    try:
        _Checker(program).check()
    except VerifyError as exc:
        raise VerifyError(f"invalid Program{where}: {exc}") from None
    return program


class _Checker:
    def __init__(self, program: Program):
        self.program = program
        self.buffers = program.buffers
        self.written: set[int] = set()

    def fail(self, text: str) -> None:
        raise VerifyError(text)

    # ------------------------------------------------------------ the whole program
    def check(self) -> None:
        self.check_buffers()
        for position, step in enumerate(self.program.steps):
            self.check_kernel(step, position)
        self.check_outputs()
        self.check_slots()

    def check_buffers(self) -> None:
        params: list[int] = []
        for position, buffer in enumerate(self.buffers):
            if buffer.index != position:
                self.fail(f"buffer at position {position} is numbered b{buffer.index}")
            if buffer.kind is BufferKind.PARAM:
                params.append(buffer.param_index)
                self.written.add(buffer.index)
            elif buffer.param_index is not None:
                self.fail(f"b{buffer.index} is {buffer.kind.value} but has a param index")
            if buffer.kind is BufferKind.CONST:
                if buffer.value is None or tuple(np.shape(buffer.value)) != buffer.shape:
                    self.fail(f"const b{buffer.index} has no value of shape {buffer.shape}")
                self.written.add(buffer.index)
            if buffer.slot is not None and buffer.kind is not BufferKind.TEMP:
                self.fail(f"b{buffer.index} is {buffer.kind.value} but shares slot {buffer.slot}")
        if sorted(params) != list(range(len(params))):
            self.fail(f"param buffers cover leaves {sorted(params)}, not 0..{len(params) - 1}")

    def check_outputs(self) -> None:
        outputs = self.program.outputs
        if len(set(outputs)) != len(outputs):
            self.fail(f"outputs {outputs} repeat a buffer")
        if self.program.graph is not None and len(outputs) != len(self.program.graph.outputs):
            self.fail(f"{len(outputs)} output buffers for {len(self.program.graph.outputs)} "
                      "graph outputs")
        for index in outputs:
            buffer = self.buffer(index, "the outputs")
            if buffer.kind is not BufferKind.OUTPUT:
                self.fail(f"output b{index} is a {buffer.kind.value} buffer")
            if index not in self.written:
                self.fail(f"output b{index} is never written")

    def check_slots(self) -> None:
        spans: dict[int, tuple[int, int]] = {}
        for position, step in enumerate(self.program.steps):
            reads, writes = kernel_buffers(step)
            for index in reads | writes:
                first, _ = spans.get(index, (position, position))
                spans[index] = (first, position)
        by_slot: dict[int, list[int]] = {}
        for buffer in self.buffers:
            if buffer.slot is not None and buffer.index in spans:
                by_slot.setdefault(buffer.slot, []).append(buffer.index)
        for slot, members in by_slot.items():
            members.sort(key=lambda b: spans[b])
            for before, after in zip(members, members[1:]):
                if spans[before][1] >= spans[after][0]:
                    self.fail(f"b{before} and b{after} share slot {slot} but both are live at "
                              f"step {spans[after][0]}")
            sizes = {self.buffers[b].dtype.itemsize for b in members}
            if len(sizes) > 1:
                self.fail(f"slot {slot} mixes element sizes {sorted(sizes)}")

    # ------------------------------------------------------------ kernels
    def buffer(self, index: int, user: str) -> Buffer:
        if not 0 <= index < len(self.buffers):
            self.fail(f"{user} refers to b{index}, which does not exist")
        return self.buffers[index]

    def reads(self, indices: Iterable[int], user: str) -> None:
        for index in indices:
            self.buffer(index, user)
            if index not in self.written:
                self.fail(f"{user} reads b{index} before any step writes it")

    def writes(self, indices: Iterable[int], user: str) -> None:
        for index in indices:
            buffer = self.buffer(index, user)
            if buffer.kind in (BufferKind.PARAM, BufferKind.CONST):
                self.fail(f"{user} writes {buffer.kind.value} buffer b{index}")
            self.written.add(index)

    def check_kernel(self, step: Kernel, position: int) -> None:
        user = f"step {position} ({getattr(step, 'name', type(step).__name__)})"
        if isinstance(step, LoopKernel):
            self.check_loop(step, user)
            reads, writes = kernel_buffers(step)
            self.reads(reads, user)
            self.writes(writes, user)
            self.check_in_place(step, user)
        elif isinstance(step, MatmulKernel):
            self.check_matmul(step, user)
        elif isinstance(step, HostKernel):
            self.reads(step.inputs, user)
            self.writes([step.out], user)
        else:
            self.fail(f"{user} is a {type(step).__name__}, not a kernel")

    def check_access(self, access: Access, shape: tuple[int, ...], user: str) -> None:
        buffer = self.buffer(access.buffer, user)
        if len(access.strides) != len(shape):
            self.fail(f"{user}: access to b{access.buffer} has {len(access.strides)} strides "
                      f"for a {len(shape)}-d loop")
        if any(s != 0 and extent == 1 for s, extent in zip(access.strides, shape)):
            self.fail(f"{user}: access to b{access.buffer} has a nonzero stride on an "
                      f"extent-1 dim ({access.strides} over {shape})")
        if math.prod(shape) == 0:
            return
        low = access.offset + sum(min(0, s * (n - 1)) for s, n in zip(access.strides, shape))
        high = access.offset + sum(max(0, s * (n - 1)) for s, n in zip(access.strides, shape))
        size = math.prod(buffer.shape)
        if low < 0 or high >= max(size, 1):
            self.fail(f"{user}: access to b{access.buffer} reaches elements [{low}, {high}] of "
                      f"a buffer of {size}")

    def check_loop(self, kernel: LoopKernel, user: str) -> None:
        shape, reduce_axes = kernel.loop_shape, set(kernel.reduce_axes)
        if any(not 0 <= a < len(shape) for a in reduce_axes):
            self.fail(f"{user}: reduce axes {kernel.reduce_axes} outside a {len(shape)}-d loop")
        loads: set[tuple] = set()
        for index, instr in enumerate(kernel.instrs):
            here = f"{user} v{index} ({instr.op.value})"
            if any(not 0 <= a < index for a in instr.args):
                self.fail(f"{here}: operands {instr.args} are not earlier instructions")
            if not reduce_axes and instr.level is not Level.FULL:
                self.fail(f"{here}: OUTER level in a kernel without reduce axes")
            args = [kernel.instrs[a] for a in instr.args]
            if instr.op in REDUCTIONS:
                if args[0].level is not Level.FULL:
                    self.fail(f"{here}: a reduction reads an OUTER value")
                if reduce_axes and instr.level is not Level.OUTER:
                    self.fail(f"{here}: a reduction's result must be OUTER")
            elif instr.level is Level.OUTER and any(a.level is Level.FULL for a in args):
                self.fail(f"{here}: an OUTER instruction reads a FULL one")
            if instr.op is Operand.LOAD:
                access = instr.attrs.get("access")
                if not isinstance(access, Access):
                    self.fail(f"{here}: a LOAD without an Access")
                self.check_access(access, shape, here)
                varies = any(access.strides[d] for d in reduce_axes)
                if varies and instr.level is Level.OUTER:
                    self.fail(f"{here}: an OUTER load varies along a reduce axis")
                key = (access, np.dtype(instr.dtype), instr.level)
                if key in loads:
                    self.fail(f"{here}: a repeated load of {access}")
                loads.add(key)
            elif instr.op is Operand.CONST and "value" not in instr.attrs:
                self.fail(f"{here}: a CONST without a value")
        for store in kernel.stores:
            here = f"{user} store of v{store.instr}"
            if not 0 <= store.instr < len(kernel.instrs):
                self.fail(f"{here}: no such instruction")
            self.check_access(store.access, shape, here)
            varies = any(store.access.strides[d] for d in reduce_axes)
            level = kernel.instrs[store.instr].level
            if varies != (level is Level.FULL) and reduce_axes:
                self.fail(f"{here}: a {level.value}-level value stored through an access that "
                          f"{'varies' if varies else 'does not vary'} along the reduce axes")

    def check_in_place(self, kernel: LoopKernel, user: str) -> None:
        """Loads and stores of one buffer in one kernel: the result must not depend on the order
        in which a backend runs the iterations."""
        stored: dict[int, list[Access]] = {}
        for store in kernel.stores:
            stored.setdefault(store.access.buffer, []).append(store.access)
        shape = kernel.loop_shape

        def apart(a: Access, b: Access) -> bool:
            return disjoint(a.strides, a.offset, b.strides, b.offset, shape,
                            self.buffers[a.buffer].shape)

        for buffer, accesses in stored.items():
            for n, first in enumerate(accesses):
                if any(not apart(first, other) for other in accesses[n + 1:]):
                    self.fail(f"{user}: two stores into b{buffer} write overlapping elements")
        for index, instr in enumerate(kernel.instrs):
            if instr.op is not Operand.LOAD:
                continue
            access = instr.attrs["access"]
            for store in stored.get(access.buffer, ()):
                if access != store and not apart(access, store):
                    self.fail(f"{user} v{index}: loads elements of b{access.buffer} that a store "
                              "of the same kernel writes at another iteration")

    def check_matmul(self, kernel: MatmulKernel, user: str) -> None:
        rank = len(kernel.batch) + 2
        a_shape = (*kernel.batch, kernel.m, kernel.k)
        b_shape = (*kernel.batch, kernel.k, kernel.n)
        c_shape = (*kernel.batch, kernel.m, kernel.n)
        self.check_access(kernel.a, a_shape, f"{user} operand a")
        self.check_access(kernel.b, b_shape, f"{user} operand b")
        self.reads([kernel.a.buffer, kernel.b.buffer], user)
        out = self.buffer(kernel.out, user)
        if out.shape != c_shape or len(out.shape) != rank:
            self.fail(f"{user}: the product is {c_shape} but b{kernel.out} is {out.shape}")
        self.writes([kernel.out], user)
        if kernel.epilogue is not None:
            epilogue = kernel.epilogue
            if epilogue.loop_shape != c_shape or epilogue.reduce_axes:
                self.fail(f"{user}: the epilogue loops over {epilogue.loop_shape}, not the "
                          f"product's {c_shape}")
            self.check_loop(epilogue, f"{user} epilogue")
            reads, writes = kernel_buffers(epilogue)
            self.reads(reads, f"{user} epilogue")
            self.writes(writes, f"{user} epilogue")
            self.check_in_place(epilogue, f"{user} epilogue")

