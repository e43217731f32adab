"""Reduction LoopKernels as CUDA kernels: row and column strategies, split over many blocks.

Reductions are grouped into phases (a phase holds the reductions whose operands need only earlier
phases' results, so layernorm's mean and softmax's max come first). Two strategies:

- row (the reduced elements are contiguous, or there are few outer points): a group of `group`
  threads (a power of two) folds one row; several short rows share a block. Each phase is one
  pass of the group over the row, then a combine: warp shuffles inside a warp, and for groups
  wider than a warp one shared-memory slot per warp, folded by shuffles again. Every thread of
  the group ends with the result, so OUTER consumers and a last pass writing the FULL stores
  follow in the same kernel (softmax = one kernel that reads its row three times from cache).
- column (the outer points are contiguous: `x.sum(axis=0)`): one thread per outer point folds
  its column sequentially, so neighbouring threads read neighbouring addresses.

When there are too few rows or columns to fill the machine and the kernel is one fold (sums,
products, max, min of one phase, only OUTER stores), the reduced extent is split into `parts`
slices folded by different blocks into a scratch buffer of partials, and a second kernel folds
the partials in a fixed order (deterministic, no atomics) and computes what follows. Float32
sums accumulate in float64 throughout, partials included.

All shuffles are executed by every thread of a block the same number of times (inactive threads
fold nothing and store nothing), as the full shuffle mask and the simulator's emulation
(runtime/cuda/simulate.py) both require.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import replace as dc_replace

import numpy as np

from graphjit.compiler.ir import Attrs
from graphjit.compiler.kernel import Access, Buffer, BufferKind, Instr, Level, LoopKernel, Operand
from graphjit.compiler.ops import REDUCTIONS, Op

from .launch import (
    DEFAULT_SM_COUNT, ColumnPlan, RowPlan, column_plan, row_plan, warp_size,
)
from .lowering import ctor, literal
from .render import (
    INDENT, InstrRenderer, RenderedKernel, Writer, finish, kernel_arguments, natural_strides,
    python_name, unravel,
)

SPLITTABLE = frozenset({Op.SUM, Op.PROD, Op.REDUCE_MAX, Op.REDUCE_MIN})


@dataclass(frozen=True)
class Reducer:
    """How one reduction op folds values: identity, accumulator dtype, combine statements."""

    op: Op
    operand_dtype: np.dtype

    @property
    def accumulator_dtype(self) -> np.dtype:
        kind = self.operand_dtype.kind
        if kind == "b":
            return np.dtype(np.int32)
        if self.op is Op.SUM and self.operand_dtype == np.dtype(np.float32):
            return np.dtype(np.float64)   # float32 sums accumulate in float64: NumPy's accuracy
        return self.operand_dtype

    @property
    def is_arg(self) -> bool:
        return self.op in (Op.ARGMAX, Op.ARGMIN)

    def identity(self) -> str:
        dtype = self.accumulator_dtype
        if self.op is Op.SUM:
            return literal(0, dtype)
        if self.op is Op.PROD:
            return literal(1, dtype)
        largest = self.op in (Op.REDUCE_MIN, Op.ARGMIN)
        if dtype.kind == "f":
            return literal(math.inf if largest else -math.inf, dtype)
        info = np.iinfo(dtype)
        return literal(info.max if largest else info.min, dtype)

    def convert(self, value: str) -> str:
        return f"{ctor(self.accumulator_dtype)}({value})"

    def combine(self, acc: str, value: str, acc_index: str = "", index: str = "") -> list[str]:
        """Statements folding (value, index) into (acc, acc_index)."""
        t = ctor(self.accumulator_dtype)
        nan_aware = self.accumulator_dtype.kind == "f"
        if self.op is Op.SUM:
            return [f"{acc} = {t}({acc} + {value})"]
        if self.op is Op.PROD:
            return [f"{acc} = {t}({acc} * {value})"]
        better = ">" if self.op in (Op.REDUCE_MAX, Op.ARGMAX) else "<"
        if not self.is_arg:
            nan = f" or {value} != {value}" if nan_aware else ""
            return [f"if {value} {better} {acc}{nan}:", f"{INDENT}{acc} = {value}"]
        # arg reductions: the better value wins, then the lower index; NaN beats numbers (NumPy)
        wins = f"{value} {better} {acc} or ({value} == {acc} and {index} < {acc_index})"
        if nan_aware:
            wins = (f"({value} != {value} and ({acc} == {acc} or {index} < {acc_index})) or "
                    f"({acc} == {acc} and ({wins}))")
        return [f"if {wins}:", f"{INDENT}{acc} = {value}", f"{INDENT}{acc_index} = {index}"]


# ---------------------------------------------------------------- analysis

def reduction_phases(kernel: LoopKernel) -> dict[int, int]:
    """The phase after which each instruction's value is available: a reduction comes one phase
    after its operand, everything else as soon as its operands."""
    phase: dict[int, int] = {}
    for n, instr in enumerate(kernel.instrs):
        ready = max((phase[a] for a in instr.args), default=0)
        phase[n] = ready + 1 if instr.op in REDUCTIONS else ready
    return phase


def varying_instrs(kernel: LoopKernel) -> set[int]:
    """Instructions whose value changes along the reduce axes (the rest are computed once per
    outer point). Derived from the accesses rather than trusted from `level`, so loads that are
    constant along the row are hoisted out of the row loops."""
    reduce_dims = [d for d in kernel.reduce_axes if kernel.loop_shape[d] != 1]
    varying: set[int] = set()
    for n, instr in enumerate(kernel.instrs):
        if instr.op is Operand.LOAD:
            strides = instr.attrs["access"].strides
            moves = any(strides[d] != 0 for d in reduce_dims)
        else:
            moves = instr.op not in REDUCTIONS and any(a in varying for a in instr.args)
        if moves:
            varying.add(n)
    return varying


def needed_instrs(kernel: LoopKernel, roots: Sequence[int]) -> set[int]:
    needed: set[int] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n not in needed:
            needed.add(n)
            stack.extend(kernel.instrs[n].args)
    return needed


@dataclass
class Shape:
    """The loop space of a reduction kernel split into outer and reduced dims."""

    kernel: LoopKernel

    def __post_init__(self) -> None:
        shape = self.kernel.loop_shape
        self.reduce_dims = tuple(sorted(self.kernel.reduce_axes))
        self.outer_dims = tuple(d for d in range(len(shape)) if d not in self.reduce_dims)
        self.n_reduce = math.prod(shape[d] for d in self.reduce_dims)
        self.n_outer = math.prod(shape[d] for d in self.outer_dims)
        self.needed = needed_instrs(self.kernel, [s.instr for s in self.kernel.stores])
        self.reductions = [n for n in sorted(self.needed)
                           if self.kernel.instrs[n].op in REDUCTIONS]
        self.reducers = {n: Reducer(self.kernel.instrs[n].op,
                                    self.kernel.instrs[self.kernel.instrs[n].args[0]].dtype)
                         for n in self.reductions}
        self.phase = reduction_phases(self.kernel)
        self.varying = varying_instrs(self.kernel)
        self.row_stores = [s for s in self.kernel.stores
                           if any(s.access.strides[d] != 0 and shape[d] != 1
                                  for d in self.reduce_dims)]
        self.point_stores = [s for s in self.kernel.stores if s not in self.row_stores]
        self.last_phase = max(self.phase.values(), default=0)

    @property
    def splittable(self) -> bool:
        """One fold of the data: the reduced extent may be cut into slices folded apart."""
        return (bool(self.reductions) and not self.row_stores
                and all(self.kernel.instrs[n].op in SPLITTABLE for n in self.reductions)
                and all(self.phase[n] == 1 for n in self.reductions))

    def columns_contiguous(self) -> bool:
        """Do the loads walk memory fastest along an outer dim (a column reduction)?"""
        shape = self.kernel.loop_shape
        votes = 0
        for n in self.varying:
            instr = self.kernel.instrs[n]
            if instr.op is not Operand.LOAD:
                continue
            moving = [(abs(s), d) for d, s in enumerate(instr.attrs["access"].strides)
                      if s != 0 and shape[d] != 1]
            if moving:
                votes += 1 if min(moving)[1] in self.outer_dims else -1
        return votes > 0 and self.n_outer > 1


# ---------------------------------------------------------------- entry point

@dataclass
class ScratchAllocator:
    """Backend-private TEMP buffers (partials of split reductions), numbered after the
    Program's buffers, allocated per workspace by the executable."""

    first_index: int
    buffers: list[Buffer]

    def new(self, size: int, dtype: np.dtype) -> int:
        index = self.first_index + len(self.buffers)
        self.buffers.append(Buffer(index, -1, (size,), np.dtype(dtype), BufferKind.TEMP))
        return index


def render_reduction(kernel: LoopKernel, buffers: Sequence[Buffer], simulator: bool,
                     sm_count: int = DEFAULT_SM_COUNT, scratch: ScratchAllocator | None = None,
                     allow_split: bool = True) -> list[RenderedKernel]:
    """The kernels of one reduction LoopKernel: one, or a partial and a final one when split."""
    info = Shape(kernel)
    splittable = allow_split and scratch is not None and info.splittable
    if info.columns_contiguous():
        plan = column_plan(info.n_reduce, info.n_outer, simulator, splittable, sm_count)
        strategy = "column"
    else:
        plan = row_plan(info.n_reduce, info.n_outer, simulator, splittable, sm_count)
        strategy = "row"
    if plan.parts == 1:
        render = _render_rows if strategy == "row" else _render_columns
        return [render(kernel, info, plan, buffers, simulator, None)]
    # split: partials per (outer point, part), then a final fold of the partials
    partials = {n: scratch.new(info.n_outer * plan.parts, info.reducers[n].accumulator_dtype)
                for n in info.reductions}
    all_buffers = [*buffers, *scratch.buffers]
    render = _render_rows if strategy == "row" else _render_columns
    first = render(kernel, info, plan, all_buffers, simulator, partials)
    final = final_kernel(kernel, info, plan.parts, partials, strategy)
    return [first, *render_reduction(final, all_buffers, simulator, sm_count, scratch,
                                     allow_split=False)]


def final_kernel(kernel: LoopKernel, info: Shape, parts: int, partials: dict[int, int],
                 strategy: str) -> LoopKernel:
    """Folds the partials of a split kernel (over `parts` along its first reduce dim), then
    computes what follows the reductions, with the original stores."""
    shape = list(kernel.loop_shape)
    first_reduce = info.reduce_dims[0]
    for d in info.reduce_dims:
        shape[d] = 1
    shape[first_reduce] = parts
    outer_shape = [kernel.loop_shape[d] for d in info.outer_dims]
    outer_strides = dict(zip(info.outer_dims, natural_strides(outer_shape)))
    scale = parts if strategy == "row" else 1     # row partials: [outer][part]; column: [part][outer]
    strides = [0] * len(shape)
    for d, stride in outer_strides.items():
        strides[d] = stride * scale
    strides[first_reduce] = 1 if strategy == "row" else info.n_outer
    renumber: dict[int, int] = {}
    instrs: list[Instr] = []
    for n in sorted(info.needed):
        instr = kernel.instrs[n]
        if n in info.varying:
            continue        # folded into the partials
        if instr.op in REDUCTIONS:
            accumulator = info.reducers[n].accumulator_dtype
            instrs.append(Instr(Operand.LOAD, (), accumulator, Level.FULL,
                                Attrs({"access": Access(partials[n], tuple(strides))}),
                                instr.node, instr.source))
            instr = dc_replace(instr, args=(len(instrs) - 1,))
        elif instr.op is Operand.LOAD:
            access = instr.attrs["access"]
            kept = tuple(0 if d in info.reduce_dims else s for d, s in enumerate(access.strides))
            instr = dc_replace(instr, attrs=Attrs({"access": Access(access.buffer, kept,
                                                                    access.offset)}))
        else:
            instr = dc_replace(instr, args=tuple(renumber[a] for a in instr.args))
        renumber[n] = len(instrs)
        instrs.append(instr)
    stores = tuple(dc_replace(s, instr=renumber[s.instr]) for s in kernel.stores)
    return LoopKernel(f"{kernel.name}_final", tuple(shape), kernel.reduce_axes, tuple(instrs),
                      stores, kernel.nodes)


# ---------------------------------------------------------------- row strategy

def _render_rows(kernel: LoopKernel, info: Shape, plan: RowPlan, buffers: Sequence[Buffer],
                 simulator: bool, partials: dict[int, int] | None) -> RenderedKernel:
    shape = kernel.loop_shape
    group, rows, parts = plan.group, plan.rows, plan.parts
    warp = warp_size(simulator)
    shfl = "" if simulator else "cuda."
    wide = group > warp                     # the group spans warps: one shared slot per warp
    n_warps = group // warp if wide else 1
    buffer_ids = list(kernel.buffers()) + list((partials or {}).values())
    names = kernel_arguments(buffer_ids)
    body = InstrRenderer(kernel, names, [f"i{d}" for d in range(len(shape))], shape)
    units = info.n_outer * parts
    chunk = -(-info.n_reduce // parts)

    name = python_name(kernel.name + ("_partial" if partials else ""))
    w = Writer()
    w.line(f"def {name}({', '.join(names[b] for b in buffer_ids)}):")
    with w.indent():
        w.line("tid = cuda.threadIdx.x")
        w.line(f"lane = tid % {group}" if rows > 1 else "lane = tid")
        if rows > 1:
            w.line(f"group = tid // {group}")
            w.line(f"leader = (tid % {warp}) - lane")      # the group's first lane in its warp
        if wide:
            w.line(f"warp_lane = tid % {warp}")
            w.line(f"warp = tid // {warp}")
            for n in info.reductions:
                reducer = info.reducers[n]
                w.line(f"shared{n} = cuda.shared.array({n_warps}, "
                       f"{ctor(reducer.accumulator_dtype)})")
                if reducer.is_arg:
                    w.line(f"shared_index{n} = cuda.shared.array({n_warps}, np.int64)")
        w.line(f"for base in range(cuda.blockIdx.x * {rows}, {units}, cuda.gridDim.x * {rows}):")
        with w.indent():
            w.line("unit = base + group" if rows > 1 else "unit = base")
            w.line(f"active = unit < {units}")
            w.line("if not active:")
            w.line(f"{INDENT}unit = 0")
            if parts > 1:
                w.line(f"outer = unit // {parts}")
                w.line(f"start = (unit % {parts}) * {chunk}")
                w.line(f"stop = min(start + {chunk}, {info.n_reduce})")
            else:
                w.line("outer = unit")
                w.line("start = 0")
                w.line(f"stop = {info.n_reduce}")
            w.line("if not active:")
            w.line(f"{INDENT}stop = 0")
            w.extend(unravel("outer", info.outer_dims, shape))
            for p in range(info.last_phase + 1):
                members = [n for n in info.reductions if info.phase[n] == p]
                if members:
                    _fold_rows(w, kernel, info, body, members, group, "lane")
                    _combine_group(w, info, members, group, warp, wide, n_warps, rows, shfl)
                    if partials is None:
                        for n in members:
                            w.line(f"v{n} = {_result(kernel, n, f'acc{n}', info)}")
                for n in sorted(info.needed):
                    if (info.phase[n] == p and n not in info.varying
                            and kernel.instrs[n].op not in REDUCTIONS
                            and (partials is None or p == 0)):
                        w.extend(body.instr_lines(n))
            if partials is not None:
                w.line("if active and lane == 0:")
                with w.indent():
                    for n in info.reductions:
                        w.line(f"{names[partials[n]]}[unit] = acc{n}")
                return finish(name, w, buffer_ids, buffers, simulator, plan.launch,
                              "split row reduction (partials)")
            if info.row_stores:
                w.line("if active:")
                with w.indent():
                    w.line(f"for red in range(lane, {info.n_reduce}, {group}):")
                    with w.indent():
                        w.extend(unravel("red", info.reduce_dims, shape))
                        roots = [s.instr for s in info.row_stores]
                        for n in body.closure(roots, info.varying.__contains__):
                            w.extend(body.instr_lines(n))
                        for store in info.row_stores:
                            w.line(body.store_line(store.instr, store.access))
            if info.point_stores:
                w.line("if active and lane == 0:")
                with w.indent():
                    for store in info.point_stores:
                        w.line(body.store_line(store.instr, store.access))
    kind = "row reduction, several rows per block" if rows > 1 else "row reduction"
    return finish(name, w, buffer_ids, buffers, simulator, plan.launch, kind)


def _fold_rows(w: Writer, kernel: LoopKernel, info: Shape, body: InstrRenderer,
               members: list[int], step: int, first: str) -> None:
    """Each thread folds its share of [start, stop) of the row into acc{n} (and acc_index{n})."""
    for n in members:
        w.line(f"acc{n} = {info.reducers[n].identity()}")
        if info.reducers[n].is_arg:
            w.line(f"acc_index{n} = np.int64({info.n_reduce})")
    w.line(f"for red in range(start + {first}, stop, {step}):")
    with w.indent():
        w.extend(unravel("red", info.reduce_dims, kernel.loop_shape))
        operands = [kernel.instrs[n].args[0] for n in members]
        for m in body.closure(operands, info.varying.__contains__):
            w.extend(body.instr_lines(m))
        for n, operand in zip(members, operands):
            reducer = info.reducers[n]
            w.line(f"x{n} = {reducer.convert(body.value(operand))}")
            w.extend(reducer.combine(f"acc{n}", f"x{n}", f"acc_index{n}", "red"))


def _shuffle_fold(w: Writer, info: Shape, members: list[int], width: int, shfl: str) -> None:
    """Fold lanes [l, l + width) into lane l by shuffles (l a multiple of width)."""
    delta = width // 2
    while delta >= 1:
        for n in members:
            reducer = info.reducers[n]
            w.line(f"x{n} = {shfl}shfl_down_sync(0xffffffff, acc{n}, {delta})")
            if reducer.is_arg:
                w.line(f"x_index{n} = {shfl}shfl_down_sync(0xffffffff, acc_index{n}, {delta})")
            w.extend(reducer.combine(f"acc{n}", f"x{n}", f"acc_index{n}", f"x_index{n}"))
        delta //= 2


def _broadcast(w: Writer, info: Shape, members: list[int], source_lane: str, shfl: str) -> None:
    for n in members:
        w.line(f"acc{n} = {shfl}shfl_sync(0xffffffff, acc{n}, {source_lane})")
        if info.reducers[n].is_arg:
            w.line(f"acc_index{n} = {shfl}shfl_sync(0xffffffff, acc_index{n}, {source_lane})")


def _combine_group(w: Writer, info: Shape, members: list[int], group: int, warp: int,
                   wide: bool, n_warps: int, rows: int, shfl: str) -> None:
    """After the fold, every thread of the group holds the group's combined acc{n}."""
    if group == 1:
        return
    if not wide:
        _shuffle_fold(w, info, members, group, shfl)
        _broadcast(w, info, members, "leader" if rows > 1 else "0", shfl)
        return
    _shuffle_fold(w, info, members, warp, shfl)
    w.line("if warp_lane == 0:")
    with w.indent():
        for n in members:
            w.line(f"shared{n}[warp] = acc{n}")
            if info.reducers[n].is_arg:
                w.line(f"shared_index{n}[warp] = acc_index{n}")
    w.line("cuda.syncthreads()")
    # every warp folds the per-warp results the same way (no branch around the shuffles)
    for n in members:
        reducer = info.reducers[n]
        w.line(f"acc{n} = {reducer.identity()}")
        if reducer.is_arg:
            w.line(f"acc_index{n} = np.int64({info.n_reduce})")
    w.line(f"if warp_lane < {n_warps}:")
    with w.indent():
        for n in members:
            w.line(f"acc{n} = shared{n}[warp_lane]")
            if info.reducers[n].is_arg:
                w.line(f"acc_index{n} = shared_index{n}[warp_lane]")
    w.line("cuda.syncthreads()   # every thread has read the slots before they are reused")
    _shuffle_fold(w, info, members, min(warp, _pow2(n_warps)), shfl)
    _broadcast(w, info, members, "0", shfl)


def _pow2(n: int) -> int:
    power = 1
    while power < n:
        power *= 2
    return power


def _result(kernel: LoopKernel, n: int, source: str, info: Shape) -> str:
    """The reduction's value in its own dtype, from its accumulator (or index)."""
    instr = kernel.instrs[n]
    if info.reducers[n].is_arg:
        source = source.replace("acc", "acc_index")
    if instr.dtype.kind == "b":
        return f"{source} != 0"
    return f"{ctor(instr.dtype)}({source})"


# ---------------------------------------------------------------- column strategy

def _render_columns(kernel: LoopKernel, info: Shape, plan: ColumnPlan,
                    buffers: Sequence[Buffer], simulator: bool,
                    partials: dict[int, int] | None) -> RenderedKernel:
    shape = kernel.loop_shape
    parts = plan.parts
    buffer_ids = list(kernel.buffers()) + list((partials or {}).values())
    names = kernel_arguments(buffer_ids)
    body = InstrRenderer(kernel, names, [f"i{d}" for d in range(len(shape))], shape)
    units = info.n_outer * parts
    chunk = -(-info.n_reduce // parts)
    name = python_name(kernel.name + ("_partial" if partials else ""))
    w = Writer()
    w.line(f"def {name}({', '.join(names[b] for b in buffer_ids)}):")
    with w.indent():
        w.line(f"for unit in range(cuda.grid(1), {units}, cuda.gridsize(1)):")
        with w.indent():
            if parts > 1:       # consecutive threads: consecutive outer points of one slice
                w.line(f"outer = unit % {info.n_outer}")
                w.line(f"start = (unit // {info.n_outer}) * {chunk}")
                w.line(f"stop = min(start + {chunk}, {info.n_reduce})")
            else:
                w.line("outer = unit")
                w.line("start = 0")
                w.line(f"stop = {info.n_reduce}")
            w.extend(unravel("outer", info.outer_dims, shape))
            for p in range(info.last_phase + 1):
                members = [n for n in info.reductions if info.phase[n] == p]
                if members:
                    _fold_rows(w, kernel, info, body, members, 1, "0")
                    if partials is None:
                        for n in members:
                            w.line(f"v{n} = {_result(kernel, n, f'acc{n}', info)}")
                for n in sorted(info.needed):
                    if (info.phase[n] == p and n not in info.varying
                            and kernel.instrs[n].op not in REDUCTIONS
                            and (partials is None or p == 0)):
                        w.extend(body.instr_lines(n))
            if partials is not None:
                for n in info.reductions:
                    w.line(f"{names[partials[n]]}[unit] = acc{n}")
                return finish(name, w, buffer_ids, buffers, simulator, plan.launch,
                              "split column reduction (partials)")
            if info.row_stores:
                w.line(f"for red in range({info.n_reduce}):")
                with w.indent():
                    w.extend(unravel("red", info.reduce_dims, shape))
                    for n in body.closure([s.instr for s in info.row_stores],
                                          info.varying.__contains__):
                        w.extend(body.instr_lines(n))
                    for store in info.row_stores:
                        w.line(body.store_line(store.instr, store.access))
            for store in info.point_stores:
                w.line(body.store_line(store.instr, store.access))
    return finish(name, w, buffer_ids, buffers, simulator, plan.launch, "column reduction")


Renderer = Callable[..., RenderedKernel]
