"""Scheduling: turn a fused graph into a `Program` (buffers + ordered kernels), and the Program
passes that follow it.

`schedule(plan)` lowers the groups of a `FusionPlan` (passes/fuse.py): it gives every value that
crosses a kernel boundary a buffer, lowers each group to a LoopKernel / MatmulKernel / HostKernel
and adds copies so that outputs never alias inputs or each other. An update (a basic-index
setitem, passes/fuse.py) stores into its target's buffer when the old value is dead after it
(`ProgramBuilder.in_place`); otherwise a copy kernel first copies the old value into a fresh
buffer, which the update then writes. Such a buffer holds several graph values over time
(`Buffer.versions`). `split_full_reductions` and
`plan_buffers` are Program -> Program passes (each returns a new Program); compiler/pipeline.py
runs them in order, and `build_program(graph)` runs that whole back half for tests.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace as dc_replace

import numpy as np

from .ir import Attrs, Graph, Node
from .kernel import (
    Access, Buffer, BufferKind, HostKernel, Instr, Level, LoopKernel, MatmulKernel, Program,
    Operand, Kernel, Store,
)
from .ops import REDUCTIONS, SPLITTABLE, VIEWS, Op
from .passes.fuse import (
    HOST, MATMUL, FusionPlan, Group, Layout, LoopSpace, identity_layout, inputs_of, is_update,
    loop_reads, loop_space_of, may_update_in_place, region_layout, update_conflict,
)


def is_inline_scalar(node: Node) -> bool:
    """Constants of one element are emitted as CONST instructions, not buffers."""
    return node.op is Op.CONST and node.size == 1


def python_scalar(node: Node) -> bool | int | float:
    return node.attrs["value"].value.reshape(()).astype(node.dtype).item()


# ---------------------------------------------------------------- buffers

class BufferTable:
    """Buffers of a program under construction, one per materialised node (outputs may add more)."""

    def __init__(self, graph: Graph, outputs: set[int]):
        self.graph = graph
        self.outputs = outputs           # nodes whose own buffer is a graph output
        self.buffers: list[Buffer] = []
        self.of_node: dict[int, int] = {}
        self.holds: dict[int, list[int]] = {}     # buffer -> the nodes it held, in order
        for index, param in enumerate(graph.params):
            self.add(param, BufferKind.PARAM, param_index=index)

    def add(self, node_id: int, kind: BufferKind, **fields) -> int:
        node = self.graph.node(node_id)
        buffer = Buffer(len(self.buffers), node_id, node.shape, node.dtype, kind, **fields)
        self.buffers.append(buffer)
        self.holds[buffer.index] = [node_id]
        if node_id not in self.of_node:
            self.of_node[node_id] = buffer.index
        return buffer.index

    def update_in_place(self, node_id: int, buffer: int) -> None:
        """`node_id` (an update) is written into `buffer`, which held its target until now."""
        self.of_node[node_id] = buffer
        self.holds[buffer].append(node_id)
        if node_id in self.outputs:
            self.buffers[buffer] = dc_replace(self.buffers[buffer], kind=BufferKind.OUTPUT)

    def current(self, buffer: int) -> int:
        """The node `buffer` holds at this point of the program."""
        return self.holds[buffer][-1]

    def finished(self) -> list[Buffer]:
        """The buffers, each with the later values it holds (updated in place) recorded."""
        return [dc_replace(b, versions=tuple(self.holds[b.index][1:]))
                if len(self.holds[b.index]) > 1 else b for b in self.buffers]

    def of(self, node_id: int) -> int:
        """The buffer holding `node_id`, creating CONST buffers on first use."""
        if node_id not in self.of_node:
            node = self.graph.node(node_id)
            if node.op is not Op.CONST:
                raise AssertionError(f"%{node_id} has no buffer")
            value = np.array(node.attrs["value"].value, dtype=node.dtype, order="C")
            self.add(node_id, BufferKind.CONST, value=value)
        return self.of_node[node_id]

    def result(self, node_id: int) -> int:
        """A fresh buffer for a value a kernel computes."""
        kind = BufferKind.OUTPUT if node_id in self.outputs else BufferKind.TEMP
        return self.add(node_id, kind)


# ---------------------------------------------------------------- loop kernels

class LoopBuilder:
    """Lowers one loop group (or a matmul epilogue) to a LoopKernel's instructions and stores."""

    def __init__(self, graph: Graph, plan: FusionPlan, buffers: BufferTable, space: LoopSpace,
                 members: set[int]):
        self.graph = graph
        self.plan = plan
        self.buffers = buffers
        self.space = space
        self.members = members
        self.instrs: list[Instr] = []
        self.keys: dict[tuple, int] = {}
        self.value_of: dict[int, int] = {}     # member node -> instr
        self.update_value: dict[int, int] = {}  # update member -> the instr of what it stores
        self.stores: list[Store] = []

    # ------------------------------------------------------------ emitting
    def emit(self, instr: Instr, key: tuple | None = None) -> int:
        if key is not None and key in self.keys:
            return self.keys[key]
        self.instrs.append(instr)
        index = len(self.instrs) - 1
        if key is not None:
            self.keys[key] = index
        return index

    def level_of(self, args: Sequence[int], varies: bool) -> Level:
        if not self.space.reduce_axes or varies:
            return Level.FULL
        return max((self.instrs[a].level for a in args), key=_LEVEL_RANK.get, default=Level.OUTER)

    def load(self, buffer: int, strides: tuple[int, ...], offset: int, node_id: int,
             full: bool = False) -> int:
        access = Access(buffer, strides, offset)
        varies = full or self.space.varies_on_reduce(strides)
        level = self.level_of((), varies)
        node = self.graph.node(node_id)
        instr = Instr(Operand.LOAD, (), node.dtype, level, Attrs({"access": access}), node_id,
                      node.source)
        return self.emit(instr, ("load", access, node.dtype, level))

    def const(self, node_id: int, full: bool = False) -> int:
        node = self.graph.node(node_id)
        value = python_scalar(node)
        level = self.level_of((), full)
        instr = Instr(Operand.CONST, (), node.dtype, level, Attrs({"value": value}), node_id,
                      node.source)
        raw = np.asarray(value, dtype=node.dtype).tobytes()
        return self.emit(instr, ("const", node.dtype, raw, level))

    def read(self, layout: Layout, dims: tuple[int | None, ...]) -> int:
        """The instruction giving `layout`'s value at the loop index (dims: see node_dims)."""
        root = layout.root
        if root in self.value_of:
            return self.value_of[root]
        root_node = self.graph.node(root)
        if is_inline_scalar(root_node):
            return self.const(root)
        strides, offset = self.space.access(layout, dims)
        return self.load(self.buffers.of(root), strides, offset, root)

    def promote(self, index: int) -> int:
        """A FULL-level instruction with the value of instruction `index` (reduction operands and
        stores that vary along the reduce axes need one)."""
        instr = self.instrs[index]
        if instr.level is Level.FULL:
            return index
        if instr.op in REDUCTIONS:
            raise AssertionError("a reduction result cannot be promoted to FULL level")
        key = ("full", index)
        return self.emit(dc_replace(instr, level=Level.FULL), key)

    # ------------------------------------------------------------ members
    def compute(self, member: int) -> None:
        node = self.graph.node(member)
        if is_update(self.graph, member):   # its value, read at each element of the region
            ((layout, dims),) = loop_reads(self.graph, self.plan.analysis, self.space, member)
            self.update_value[member] = self.read(layout, dims)
            return
        if node.op in VIEWS:  # a materialised view: the copy is just the read
            dims = self.space.node_dims(node.shape)
            self.value_of[member] = self.read(self.plan.analysis.copy_input[member], dims)
            return
        if node.op in REDUCTIONS:
            dims = tuple(range(len(self.space.shape)))
            (layout,) = inputs_of(self.graph, self.plan.analysis, member)
            operand = self.promote(self.read(layout, dims))
            level = Level.OUTER if self.space.reduce_axes else Level.FULL
            instr = Instr(node.op, (operand,), node.dtype, level, node.attrs, member, node.source)
            self.value_of[member] = self.emit(instr)
            return
        dims = self.space.node_dims(node.shape)
        args = tuple(self.read(layout, dims)
                     for layout in inputs_of(self.graph, self.plan.analysis, member))
        instr = Instr(node.op, args, node.dtype, self.level_of(args, False), node.attrs, member,
                      node.source)
        self.value_of[member] = self.emit(instr)

    def store(self, member: int, buffer: int) -> None:
        strides, offset = self.space.canonical(member, self.graph.node(member).shape)
        value = self.value_of[member]
        if self.space.varies_on_reduce(strides):
            value = self.promote(value)
        self.stores.append(Store(value, Access(buffer, strides, offset)))

    def store_update(self, member: int, buffer: int) -> None:
        """An update's value stored into the region it writes of `buffer`."""
        region = region_layout(self.graph, member)
        strides, offset = self.space.access(region, self.space.node_dims(region.shape))
        value = self.update_value[member]
        if self.space.varies_on_reduce(strides):
            value = self.promote(value)
        self.stores.append(Store(value, Access(buffer, strides, offset)))

    # ------------------------------------------------------------ result
    def kernel(self, name: str) -> LoopKernel | None:
        """The kernel with instructions no store needs dropped (None if nothing is stored)."""
        if not self.stores:
            return None
        live: set[int] = {s.instr for s in self.stores}
        for index in range(len(self.instrs) - 1, -1, -1):
            if index in live:
                live.update(self.instrs[index].args)
        renumber = {old: new for new, old in enumerate(sorted(live))}
        instrs = tuple(dc_replace(self.instrs[old], args=tuple(renumber[a] for a in
                                                                self.instrs[old].args))
                       for old in sorted(live))
        stores = tuple(Store(renumber[s.instr], s.access) for s in self.stores)
        nodes = fused_nodes(self.graph, self.plan, self.members)
        return LoopKernel(name, self.space.shape, self.space.reduce_axes, instrs, stores, nodes)


_LEVEL_RANK = {Level.OUTER: 0, Level.FULL: 1}


def fused_nodes(graph: Graph, plan: FusionPlan, members: set[int]) -> tuple[int, ...]:
    """The members plus the folded views they read through (for reports)."""
    nodes = set(members)
    stack = [a for m in members for a in graph.node(m).args]
    while stack:
        node_id = stack.pop()
        if node_id in nodes or not plan.analysis.is_folded(graph, node_id):
            continue
        nodes.add(node_id)
        stack.extend(graph.node(node_id).args)
    return tuple(sorted(nodes))


# ---------------------------------------------------------------- the program

class ProgramBuilder:
    def __init__(self, graph: Graph, plan: FusionPlan):
        self.graph = graph
        self.plan = plan
        self.group_of = plan.group_of()
        first_outputs = {o for o in graph.outputs if o in self.group_of}
        self.buffers = BufferTable(graph, first_outputs)
        self.steps: list[Kernel] = []

    def name(self) -> str:
        return f"k{len(self.steps)}"

    def materialized(self, group: Group) -> list[int]:
        """Members whose values other kernels read or the caller receives."""
        outputs = set(self.graph.outputs)
        result = []
        for member in sorted(group.members):
            readers = self.plan.analysis.consumers.get(member, ())
            if member in outputs or any(self.group_of.get(r) != group.id for r in readers):
                result.append(member)
        return result

    def build(self) -> Program:
        for group in self.plan.groups:
            step = {HOST: self.host, MATMUL: self.matmul}.get(group.kind, self.loop)(group)
            if step is not None:
                self.steps.append(step)
        outputs = self.output_buffers()
        notes = {f"%{n}": list(reasons) for n, reasons in sorted(self.plan.notes.items())}
        return Program(self.graph, self.buffers.finished(), self.steps, outputs, notes)

    # ------------------------------------------------------------ kinds of groups
    def loop(self, group: Group) -> LoopKernel | None:
        space = loop_space_of(self.graph, group.members)
        updates = [m for m in sorted(group.members) if is_update(self.graph, m)]
        for update in updates:
            self.place_update(update, group)
        builder = LoopBuilder(self.graph, self.plan, self.buffers, space, group.members)
        for member in sorted(group.members):
            builder.compute(member)
        for member in self.materialized(group):
            if member not in updates:
                builder.store(member, self.buffers.result(member))
        for update in updates:
            builder.store_update(update, self.buffers.of_node[update])
        return builder.kernel(self.name())

    # ------------------------------------------------------------ updates
    def place_update(self, update: int, group: Group) -> None:
        """Give an update its buffer: its chain's (when its target is an update of the same
        kernel), its target's (in place), or a fresh copy of its target made by a copy kernel
        that runs just before."""
        target = self.graph.node(update).args[0]
        if target in group.members or self.in_place(update, target, group):
            self.buffers.update_in_place(update, self.buffers.of_node[target])
            return
        buffer = self.buffers.result(update)
        self.steps.append(self.copy_kernel(target, buffer))

    def in_place(self, update: int, target: int, group: Group) -> bool:
        """May `update` write its target's buffer? Only a TEMP buffer that still holds the
        target, when every other reader of the target has run (or reads it in this kernel,
        where `update_conflict` proved the reads unaffected by the stores)."""
        analysis = self.plan.analysis
        buffer = self.buffers.of_node.get(target)
        if buffer is None or not may_update_in_place(self.graph, analysis, target):
            return False
        if self.buffers.buffers[buffer].kind is not BufferKind.TEMP:
            return False
        if self.buffers.current(buffer) != target:
            return False
        for reader in analysis.consumers.get(target, ()):
            if reader != update and reader not in group.members and \
                    self.group_of[reader] >= group.id:
                return False
        return update_conflict(self.graph, analysis, group.members) is None

    def copy_kernel(self, node_id: int, buffer: int) -> LoopKernel:
        """A kernel copying `node_id`'s value (through its layout) into `buffer`."""
        node = self.graph.node(node_id)
        space = LoopSpace(node.shape)
        builder = LoopBuilder(self.graph, self.plan, self.buffers, space, set())
        value = builder.read(self.plan.analysis.layout[node_id], tuple(range(len(node.shape))))
        strides, offset = space.canonical(node_id, node.shape)
        builder.stores.append(Store(value, Access(buffer, strides, offset)))
        return dc_replace(builder.kernel(self.name()), nodes=(node_id,))

    def host(self, group: Group) -> HostKernel:
        (node_id,) = group.members
        node = self.graph.node(node_id)
        inputs = tuple(self.buffers.of(a) for a in node.args)
        out = self.buffers.result(node_id)
        return HostKernel(self.name(), node_id, node.op, node.attrs, inputs, out, (node_id,))

    def matmul(self, group: Group) -> MatmulKernel:
        (product,) = [m for m in group.members if self.graph.node(m).op is Op.MATMUL]
        node = self.graph.node(product)
        a_layout, b_layout = inputs_of(self.graph, self.plan.analysis, product)
        name = self.name()
        space = LoopSpace(node.shape)
        epilogue_members = group.members - {product}
        stored = self.materialized(group)
        out = self.product_buffer(product, stored)
        builder = LoopBuilder(self.graph, self.plan, self.buffers, space, epilogue_members)
        product_layout = identity_layout(product, node.shape)
        strides, offset = space.access(product_layout, tuple(range(len(node.shape))))
        builder.value_of[product] = builder.load(out, strides, offset, product)
        for member in sorted(epilogue_members):
            builder.compute(member)
        for member in stored:
            if member != product:
                target = out if self.buffers.buffers[out].node == member else None
                builder.store(member, self.buffers.result(member) if target is None else target)
        epilogue = builder.kernel(f"{name}_epilogue")
        rank = len(node.shape)
        return MatmulKernel(
            name, self.operand_access(a_layout, rank), self.operand_access(b_layout, rank), out,
            tuple(node.shape[:-2]), node.shape[-2], node.shape[-1],
            self.graph.node(node.args[0]).shape[-1], node.dtype, epilogue,
            fused_nodes(self.graph, self.plan, group.members))

    def product_buffer(self, product: int, stored: list[int]) -> int:
        """Where the matmul writes C: its own buffer if others read the raw product, otherwise
        the buffer of an epilogue result of the same type, which the epilogue updates in place."""
        if product in stored:
            return self.buffers.result(product)
        node = self.graph.node(product)
        for member in stored:
            other = self.graph.node(member)
            if other.shape == node.shape and other.dtype == node.dtype:
                return self.buffers.result(member)
        return self.buffers.add(product, BufferKind.TEMP)

    def operand_access(self, layout: Layout, rank: int) -> Access:
        space = LoopSpace(layout.shape)
        strides, offset = space.access(layout, tuple(range(rank)))
        return Access(self.buffers.of(layout.root), strides, offset)

    # ------------------------------------------------------------ outputs
    def output_buffers(self) -> list[int]:
        """A buffer per graph output; params, constants and repeats get a copy kernel."""
        result: list[int] = []
        seen: set[int] = set()
        for node_id in self.graph.outputs:
            own = self.buffers.of_node.get(node_id)
            node = self.graph.node(node_id)
            if node_id in self.group_of and node_id not in seen:
                seen.add(node_id)
                result.append(own)
                continue
            result.append(self.copy_to_output(node_id))
        return result

    def copy_to_output(self, node_id: int) -> int:
        node = self.graph.node(node_id)
        space = LoopSpace(node.shape)
        builder = LoopBuilder(self.graph, self.plan, self.buffers, space, set())
        dims = tuple(range(len(node.shape)))
        value = builder.read(identity_layout(node_id, node.shape), dims)
        out = self.buffers.add(node_id, BufferKind.OUTPUT)
        strides, offset = space.canonical(node_id, node.shape)
        builder.stores.append(Store(value, Access(out, strides, offset)))
        kernel = builder.kernel(self.name())
        kernel = dc_replace(kernel, nodes=(node_id,))
        self.steps.append(kernel)
        return out


# ---------------------------------------------------------------- splitting full reductions

# A reduction to one value is one work item, so it would run on one core. Big ones are split
# into SPLIT_CHUNKS partial reductions (a kernel whose items a backend may run in parallel)
# followed by a tiny kernel that folds the partials and computes what follows the reduction.
SPLIT_MIN_ELEMENTS = 1 << 17
SPLIT_CHUNKS = range(16, 65)          # preferred partial counts (enough for 16 threads)
SPLIT_MIN_CHUNK = 4096                # elements per partial, at least


def split_full_reductions(program: Program) -> Program:
    """Replace each big reduction-to-a-scalar LoopKernel by a partial and a final kernel."""
    buffers = list(program.buffers)
    steps: list[Kernel] = []
    for step in program.steps:
        parts = split_full_reduction(step, buffers) if isinstance(step, LoopKernel) else None
        steps.extend(parts if parts is not None else [step])
    return dc_replace(program, buffers=buffers, steps=steps)


def split_chunks(size: int) -> int | None:
    """A divisor of `size` to split it into (preferring SPLIT_CHUNKS), or None."""
    candidates = [*SPLIT_CHUNKS, *range(SPLIT_CHUNKS.start - 1, 1, -1)]
    for chunks in candidates:
        if size % chunks == 0 and size // chunks >= SPLIT_MIN_CHUNK:
            return chunks
    return None


def flat_stride(strides: tuple[int, ...], shape: tuple[int, ...]) -> int | None:
    """The stride of the whole loop space walked as one flat dim, or None if it is not flat."""
    dims = [d for d, extent in enumerate(shape) if extent > 1]
    if not dims:
        return 0
    stride = strides[dims[-1]]
    span = 1
    for d in reversed(dims):
        if strides[d] != stride * span:
            return None
        span *= shape[d]
    return stride


def splittable(kernel: LoopKernel) -> bool:
    shape = kernel.loop_shape
    if len(kernel.reduce_axes) != len(shape) or int(np.prod(shape)) < SPLIT_MIN_ELEMENTS:
        return False
    reductions = [i for i in kernel.instrs if i.op in REDUCTIONS]
    if not reductions or any(i.op not in SPLITTABLE for i in reductions):
        return False
    if any(kernel.instrs[s.instr].level is not Level.OUTER for s in kernel.stores):
        return False
    depends = reduction_dependents(kernel.instrs)
    if any(depends[n] and i.level is Level.FULL for n, i in enumerate(kernel.instrs)):
        return False          # a second pass over the data (x - mean): not a single fold
    loads = [i.attrs["access"] for i in kernel.instrs if i.op is Operand.LOAD]
    return all(flat_stride(a.strides, shape) is not None for a in loads)


def reduction_dependents(instrs: Sequence[Instr]) -> list[bool]:
    """For each instruction: does it read (transitively) the result of a reduction?"""
    depends: list[bool] = []
    for instr in instrs:
        depends.append(instr.op in REDUCTIONS or any(depends[a] for a in instr.args))
    return depends


def split_full_reduction(kernel: LoopKernel, buffers: list[Buffer]) -> list[LoopKernel] | None:
    """[partial kernel over (chunks, size/chunks), final kernel over (chunks,)], or None.

    New TEMP buffers (one per reduction, holding its partials) are appended to `buffers`."""
    if not splittable(kernel):
        return None
    size = int(np.prod(kernel.loop_shape))
    chunks = split_chunks(size)
    if chunks is None:
        return None
    depends = reduction_dependents(kernel.instrs)
    partials: dict[int, int] = {}
    for index, instr in enumerate(kernel.instrs):
        if instr.op in REDUCTIONS:
            buffer = Buffer(len(buffers), instr.node if instr.node is not None else -1,
                            (chunks,), np.dtype(instr.dtype), BufferKind.TEMP)
            buffers.append(buffer)
            partials[index] = buffer.index
    first = partial_kernel(kernel, chunks, size // chunks, depends, partials)
    return [first, final_kernel(kernel, chunks, depends, partials)]


def partial_kernel(kernel: LoopKernel, chunks: int, chunk: int, depends: list[bool],
                   partials: dict[int, int]) -> LoopKernel:
    shape = kernel.loop_shape
    renumber: dict[int, int] = {}
    instrs: list[Instr] = []
    for index, instr in enumerate(kernel.instrs):
        if depends[index] and instr.op not in REDUCTIONS:
            continue
        attrs = instr.attrs
        if instr.op is Operand.LOAD:
            access = attrs["access"]
            stride = flat_stride(access.strides, shape)
            attrs = Attrs({"access": Access(access.buffer, (stride * chunk, stride),
                                            access.offset)})
        elif instr.op in REDUCTIONS:
            attrs = Attrs({**attrs, "axes": (1,)})
        renumber[index] = len(instrs)
        instrs.append(dc_replace(instr, args=tuple(renumber[a] for a in instr.args),
                                 attrs=attrs))
    stores = tuple(Store(renumber[index], Access(buffer, (1, 0)))
                   for index, buffer in partials.items())
    return LoopKernel(f"{kernel.name}_partial", (chunks, chunk), (1,), tuple(instrs), stores,
                      kernel.nodes)


def final_kernel(kernel: LoopKernel, chunks: int, depends: list[bool],
                 partials: dict[int, int]) -> LoopKernel:
    """Folds the partials, then everything that follows the reductions (all OUTER level)."""
    needed: set[int] = {store.instr for store in kernel.stores}
    for index in range(len(kernel.instrs) - 1, -1, -1):
        if index in needed and kernel.instrs[index].op not in REDUCTIONS:
            needed.update(kernel.instrs[index].args)
    renumber: dict[int, int] = {}
    instrs: list[Instr] = []
    for index in sorted(needed):
        instr = kernel.instrs[index]
        if instr.op in REDUCTIONS:
            load = Instr(Operand.LOAD, (), instr.dtype, Level.FULL,
                         Attrs({"access": Access(partials[index], (1,))}), instr.node,
                         instr.source)
            instrs.append(load)
            instr = dc_replace(instr, args=(len(instrs) - 1,),
                               attrs=Attrs({**instr.attrs, "axes": (0,)}))
        elif instr.op is Operand.LOAD:
            access = instr.attrs["access"]
            instr = dc_replace(instr, attrs=Attrs({"access": Access(access.buffer, (0,),
                                                                    access.offset)}))
        else:
            instr = dc_replace(instr, args=tuple(renumber[a] for a in instr.args))
        renumber[index] = len(instrs)
        instrs.append(instr)
    stores = tuple(Store(renumber[s.instr], Access(s.access.buffer, (0,), s.access.offset))
                   for s in kernel.stores)
    return LoopKernel(kernel.name, (chunks,), (0,), tuple(instrs), stores, kernel.nodes)


# ---------------------------------------------------------------- buffer planning

def step_buffers(step: Kernel) -> tuple[set[int], set[int]]:
    """(buffers the step reads, buffers it writes)."""
    if isinstance(step, HostKernel):
        return set(step.inputs), {step.out}
    if isinstance(step, MatmulKernel):
        reads, writes = {step.a.buffer, step.b.buffer}, {step.out}
        if step.epilogue is not None:
            more_reads, more_writes = step_buffers(step.epilogue)
            reads |= more_reads - {step.out}
            writes |= more_writes
        return reads, writes
    reads = {i.attrs["access"].buffer for i in step.instrs if i.op is Operand.LOAD}
    return reads, {s.access.buffer for s in step.stores}


def lifetimes(program: Program) -> dict[int, tuple[int, int]]:
    """For each TEMP buffer: (first step that touches it, last step that touches it)."""
    spans: dict[int, tuple[int, int]] = {}
    for index, step in enumerate(program.steps):
        reads, writes = step_buffers(step)
        for buffer in reads | writes:
            first, _ = spans.get(buffer, (index, index))
            spans[buffer] = (first, index)
    return {b: span for b, span in spans.items()
            if program.buffers[b].kind is BufferKind.TEMP}


def plan_buffers(program: Program) -> Program:
    """Give TEMP buffers slots; buffers whose lifetimes are disjoint share one (best fit among
    free slots of the same element size; a slot is as large as its largest buffer)."""
    spans = lifetimes(program)
    slot_size: dict[int, int] = {}
    slot_itemsize: dict[int, int] = {}
    slot_free_after: dict[int, int] = {}
    assigned: dict[int, int] = {}
    for buffer_index in sorted(spans, key=lambda b: (spans[b][0], b)):
        buffer = program.buffers[buffer_index]
        first, last = spans[buffer_index]
        free = [s for s in slot_size if slot_free_after[s] < first
                and slot_itemsize[s] == buffer.dtype.itemsize]
        fitting = [s for s in free if slot_size[s] >= buffer.nbytes]
        if fitting:
            slot = min(fitting, key=lambda s: (slot_size[s], s))
        elif free:
            slot = max(free, key=lambda s: (slot_size[s], -s))
        else:
            slot = len(slot_size)
            slot_size[slot] = 0
            slot_itemsize[slot] = buffer.dtype.itemsize
        slot_size[slot] = max(slot_size[slot], buffer.nbytes)
        slot_free_after[slot] = last
        assigned[buffer_index] = slot
    buffers = [dc_replace(b, slot=assigned.get(b.index, b.slot)) for b in program.buffers]
    return dc_replace(program, buffers=buffers)


# ---------------------------------------------------------------- entry points

def schedule(plan: FusionPlan) -> Program:
    """The Program that runs `plan`'s groups in order (see compiler/kernel.py for its semantics);
    TEMP buffers are not yet planned into slots."""
    if plan.graph is None:
        raise ValueError("schedule needs the FusionPlan of a graph (passes.fuse.plan_fusion)")
    return ProgramBuilder(plan.graph, plan).build()


def build_program(graph: Graph) -> Program:
    """The Program of an optimised graph: fuse, schedule and the Program passes, as
    compiler/pipeline.py runs them (verified under GRAPHJIT_VERIFY=1)."""
    from .pipeline import lower_to_program

    return lower_to_program(graph)
