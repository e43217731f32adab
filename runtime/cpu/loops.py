"""LLVM IR for one LoopKernel: the loop nests (the CPU backend's renderer; llvm.py compiles it).

Interface: `render_loop_kernel(kernel, buffers) -> RenderedKernel`. The rendered function is

    void <name>(char** buffers, int64_t begin, int64_t end)

where `buffers` is the program's buffer table indexed by `Buffer.index` (C-contiguous base
pointers) and the call computes work items [begin, end) of [0, extent). Work items never share an
output element, so the runtime may run disjoint ranges on different threads.

Work items
- Elementwise kernels (no reduce axes): the loop space is first collapsed (neighbouring dims merge
  when every access walks them as one flat dim; size-1 dims vanish). If one dim is left, an item is
  a chunk of FLAT_CHUNK consecutive elements and one flat loop runs over [begin*C, min(end*C, n)):
  the vectoriser sees a long unit-stride loop. Otherwise an item is one point of the outer
  (collapsed) dims and runs the innermost dim as the vectorised inner loop.
- Reduction kernels: an item is one outer (non-reduced, collapsed) index point. Per item, every
  group of independent reductions is one pass over the (collapsed) reduce space, in instruction
  order; values needed after a reduction (softmax's exp(x - max), layernorm's x - mu) are
  recomputed in the next pass from the row, which is cache-resident by then. FULL-level stores run
  in one last pass. Reductions whose operand needs an earlier reduction's result start a new pass.

Accuracy and vectorisation
- Float sums are blocked: each block of SUM_BLOCK elements is summed in the value's own type by a
  loop whose fadd carries `reassoc` (so LLVM vectorises it into 8-32 independent accumulators),
  and block sums are added into a float64 accumulator. That is at least as accurate as NumPy's
  pairwise sum (a 1.6e7-element float32 sum is exact to about 1e-7 relative).
- REDUCE_MAX/MIN on floats use llvm.maximum/minimum (NaN-propagating, vectorisable).
- ARGMAX/ARGMIN of a row take two vectorised passes: the extreme (that max/min fold), then the
  first position holding it (a min over select(match, position); NaN matches NaN), which is
  NumPy's answer (first index of the extreme, first NaN). Many short rows (reduces_short_rows)
  use the column layout instead, the rows as its lanes, with the one-pass ArgReducer.
- No nnan/ninf/nsz flags anywhere: NaN/inf parity with NumPy is tested. `contract` allows FMA.
- Loads and stores carry alias-scope metadata (one scope per buffer, or per memory slot when the
  planner made buffers share memory), so LLVM vectorises without runtime overlap checks.

Every elementwise op lowers through elementwise.py's ELEMENTWISE_LOWERINGS (a dict keyed by Op),
every reduction through reducers.py's REDUCERS; transcendental functions come from mathlib.py.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from graphjit.compiler.errors import CompileError, GraphjitError
from graphjit.compiler.kernel import Access, Buffer, Instr, Level, LoopKernel, Operand, Store
from graphjit.compiler.ops import REDUCTIONS

from .elementwise import ELEMENTWISE_LOWERINGS, OP_WEIGHTS, OPERAND_LOWERINGS
from .emitter import MEMORY_TYPES, Emitter, ModuleParts, llvm_type
from .reducers import (ARG_REDUCTIONS, EXTREME_OF, Reducer, first_position_reducer,
                       make_reducer)

FLAT_CHUNK = 4096       # elements per work item of a flat elementwise kernel
SUM_BLOCK = 1024        # elements per blocked partial sum of a float reduction
REDUCTION_INTERLEAVE = 4   # independent vector accumulators in a reduction's innermost loop
STASH_LIMIT = 8192      # reduce-space elements up to which expensive values are kept per item
STASH_MIN_WEIGHT = 20   # OP_WEIGHTS from which storing + reloading beats recomputing (exp, log)
COLUMN_BLOCK = 64       # columns per work item of a column reduction (see render_columns)
SHORT_ROW_LIMIT = 32    # reduce-space elements up to which arg-reduced rows are columns, ...
SHORT_ROW_VECTOR_BYTES = 64   # ... other rows while shorter than this (one AVX-512 vector), ...
SHORT_ROW_MIN_ROWS = 32  # ... when the innermost outer dim has at least this many rows


@dataclass(frozen=True)
class RenderedKernel:
    name: str            # LLVM function name (kernel.name, made a valid symbol)
    llvm_ir: str         # a complete LLVM module (textual IR) defining that function
    extent: int          # number of independent work items
    cost_per_item: int   # rough element-ops per item, so the runtime can pick thread counts


def render_loop_kernel(kernel: LoopKernel, buffers: Sequence[Buffer],
                       inline: bool = True) -> RenderedKernel:
    """Render `kernel` as a complete LLVM module; errors surface as graphjit CompileErrors.
    `inline=False` marks the function noinline (one body shared by many callers, sharing.py)."""
    try:
        return KernelRenderer(kernel, buffers, inline).render()
    except GraphjitError:
        raise
    except Exception as exc:   # a codegen bug: never leak a bare traceback to users
        raise CompileError(
            f"cannot generate LLVM IR for kernel {kernel.name!r}: {type(exc).__name__}: {exc}"
        ) from exc


def symbol_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name) or "kernel"
    return cleaned if not cleaned[0].isdigit() else f"k_{cleaned}"


# ---------------------------------------------------------------- the loop space

@dataclass(frozen=True)
class Dim:
    """One loop dimension: its extent and the stride (in elements) of every access along it."""

    extent: int
    strides: tuple[int, ...]


def collapse(dims: Sequence[Dim]) -> list[Dim]:
    """Merge (outer, inner) neighbours that every access walks as one flat dim; drop size-1 dims."""
    merged: list[Dim] = []
    for dim in dims:
        if dim.extent == 1:
            continue
        if merged and all(outer == inner * dim.extent
                          for outer, inner in zip(merged[-1].strides, dim.strides, strict=True)):
            merged[-1] = Dim(merged[-1].extent * dim.extent, dim.strides)
        else:
            merged.append(dim)
    return merged


@dataclass
class Position:
    """Where the loops are: the element offset of every access, and the flat reduce index."""

    offsets: list[str]
    flat: str = "0"


@dataclass
class Scope:
    """Values computed at one loop position; lookups fall back to the enclosing scope."""

    position: Position
    parent: Scope | None = None
    memo: dict[int, str] = field(default_factory=dict)

    def lookup(self, index: int) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            if index in scope.memo:
                return scope.memo[index]
            scope = scope.parent
        return None


# ---------------------------------------------------------------- the renderer

class KernelRenderer:
    def __init__(self, kernel: LoopKernel, buffers: Sequence[Buffer], inline: bool = True):
        self.kernel = kernel
        self.attributes = "nounwind" if inline else "noinline nounwind"
        self.instrs = kernel.instrs
        self.buffers = {buffer.index: buffer for buffer in buffers}
        self.parts = ModuleParts()
        self.e = Emitter(self.parts)
        self.accesses: list[Access] = []
        self.access_ids: dict[Access, int] = {}
        for access in self._all_accesses():
            self.access_ids.setdefault(access, len(self.accesses))
            if len(self.accesses) < len(self.access_ids):
                self.accesses.append(access)
        self.buffer_ptrs: dict[int, str] = {}
        self.alias_tags: dict[int, str] = {}
        self.loop_ids: list[str] = []
        self.stash_slots: dict[int, str] = {}   # instr -> its per-item stash (see stash_values)
        self.stashed: set[int] = set()          # instrs whose stash earlier passes have filled

    def _all_accesses(self) -> list[Access]:
        loads = [i.attrs["access"] for i in self.instrs if i.op is Operand.LOAD]
        return loads + [store.access for store in self.kernel.stores]

    # -- top level
    def render(self) -> RenderedKernel:
        name = symbol_name(self.kernel.name)
        self.e.start_block("entry")
        self.alias_tags, metadata = alias_metadata(self.kernel, self.buffers)
        self.next_metadata = len(metadata)          # alias scopes use ids 0 .. n-1
        for index in self.kernel.buffers():
            slot = self.e.assign(f"getelementptr inbounds ptr, ptr %buffers, i64 {index}", "bp")
            self.buffer_ptrs[index] = self.e.assign(f"load ptr, ptr {slot}, align 8", "buf")
        if self.kernel.reduce_axes:
            extent, work = self.render_reduction()
        else:
            extent, work = self.render_elementwise()
        self.e.emit("ret void")
        text = "\n".join([
            f"; graphjit kernel {self.kernel.name}: loop {self.kernel.loop_shape}, "
            f"reduce axes {self.kernel.reduce_axes}",
            f"define void @{name}(ptr noalias %buffers, i64 %begin, i64 %end) "
            f"{self.attributes} {{",
            *self.e.lines, "}", "", self.parts.text(), *metadata, *self.loop_ids, "",
        ])
        return RenderedKernel(name, text, extent, max(1, work))

    def dims(self, axes: Sequence[int]) -> list[Dim]:
        shape = self.kernel.loop_shape
        return [Dim(shape[d], tuple(a.strides[d] for a in self.accesses)) for d in axes]

    # -- elementwise kernels
    def render_elementwise(self) -> tuple[int, int]:
        dims = collapse(self.dims(range(len(self.kernel.loop_shape))))
        if any(dim.extent == 0 for dim in dims):
            return 0, 1
        per_element = self.work_per_element(Level.FULL) + len(self.kernel.stores)
        if len(dims) <= 1:
            return self.render_flat(dims[0] if dims else None), per_element * FLAT_CHUNK
        outer, inner = dims[:-1], dims[-1]

        def row(item: str, _: list[str]) -> list[str]:
            position = self.decompose(item, outer)
            self.emit_loop("0", str(inner.extent), [], [],
                           lambda j, __: self.element_body(self.advance(position, inner, j)))
            return []

        self.emit_loop("%begin", "%end", [], [], row)
        return math.prod(d.extent for d in outer), per_element * inner.extent

    def render_flat(self, dim: Dim | None) -> int:
        size = dim.extent if dim is not None else 1
        e = self.e
        lo = e.ibin("mul", "i64", "%begin", str(FLAT_CHUNK))
        hi = e.ibin("mul", "i64", "%end", str(FLAT_CHUNK))
        hi = e.select(e.icmp("slt", "i64", hi, str(size)), "i64", hi, str(size))
        start = self.start_position()

        def body(i: str, _: list[str]) -> list[str]:
            position = self.advance(start, dim, i) if dim is not None else start
            return self.element_body(position)

        self.emit_loop(lo, hi, [], [], body)
        return -(-size // FLAT_CHUNK)

    def element_body(self, position: Position) -> list[str]:
        return self.store_all(self.kernel.stores, Scope(position))

    def store_all(self, stores: Sequence[Store], scope: Scope) -> list[str]:
        for store in stores:
            self.store(store, scope)
        return []

    # -- reduction kernels
    def render_reduction(self) -> tuple[int, int]:
        reduce_axes = set(self.kernel.reduce_axes)
        all_axes = range(len(self.kernel.loop_shape))
        outer = collapse(self.dims([d for d in all_axes if d not in reduce_axes]))
        self.reduce_dims = collapse(self.dims([d for d in all_axes if d in reduce_axes]))
        if any(dim.extent == 0 for dim in outer):
            return 0, 1
        if self.reduces_columns(outer):
            return self.render_columns(outer)
        self.stash_values()

        def item_body(item: str, _: list[str]) -> list[str]:
            scope = Scope(self.decompose(item, outer))
            self.emit_outer_program(scope)
            full_stores = [s for s in self.kernel.stores if self.level(s.instr) is Level.FULL]
            if full_stores:
                self.emit_reduce_loops(
                    scope.position, [], [],
                    lambda pos, _: self.store_all(full_stores, Scope(pos, scope)))
            for store in self.kernel.stores:
                if self.level(store.instr) is Level.OUTER:
                    self.store(store, scope)
            return []

        self.emit_loop("%begin", "%end", [], [], item_body)
        reduce_size = math.prod(d.extent for d in self.reduce_dims)
        passes = 1 + sum(1 for i in self.instrs if i.op in REDUCTIONS)
        work = reduce_size * passes * self.work_per_element(Level.FULL)
        return math.prod(d.extent for d in outer), work + self.work_per_element(Level.OUTER)

    def level(self, index: int) -> Level:
        return self.instrs[index].level

    # -- column reductions: x.sum(axis=0), batch norm, the bias gradients of a backward pass
    def reduces_columns(self, outer: list[Dim]) -> bool:
        """True when the reduce space runs across rows while the innermost outer dim is each
        access's contiguous one (a reduction over a non-innermost axis). Reducing one column
        at a time would then read with a row's stride and never vectorise."""
        if not outer or not self.reduce_dims:
            return False
        columns, rows = outer[-1], self.reduce_dims[-1]
        if self.reduces_short_rows(columns):
            return True
        return (columns.extent > 1 and all(s in (0, 1) for s in columns.strides)
                and 1 in columns.strides and 1 not in rows.strides)

    def reduces_short_rows(self, columns: Dim) -> bool:
        """True for many short rows (softmax over 10 classes, argmax of logits): one row's
        reduction is a chain of dependent steps (an argmax step is ~10 cycles of latency, a
        vectorised row's horizontal max/sum tens), so reducing row by row is latency-bound.
        The column layout turns the rows into the lanes: each step updates a block of rows at
        once (strided, gathered loads) and the rows' chains run side by side."""
        if columns.extent < SHORT_ROW_MIN_ROWS:
            return False
        reduce_size = math.prod(d.extent for d in self.reduce_dims)
        reductions = [i for i in self.instrs if i.op in REDUCTIONS]
        if any(i.op in ARG_REDUCTIONS for i in reductions):
            return reduce_size <= SHORT_ROW_LIMIT
        # other reductions vectorise along a row once it fills a vector (measured: softmax
        # of (512,16) f32 row by row 12.5 us, as columns 17 us; of (512,10) 15 against 10)
        itemsize = max(self.arg_dtype(i).itemsize for i in reductions)
        return reduce_size * itemsize < SHORT_ROW_VECTOR_BYTES

    def render_columns(self, outer: list[Dim]) -> tuple[int, int]:
        """A work item is a block of up to COLUMN_BLOCK columns (at one point of the other outer
        dims). Every reduction keeps its state per column in a stack array; each pass over the
        rows runs, per row, an inner loop over the block's columns (contiguous loads, vectorised).
        Values after a reduction (batch norm's x - mu) are recomputed per row from the row and
        the per-column results; OUTER values are kept per column the same way."""
        e = self.e
        columns, others = outer[-1], outer[:-1]
        blocks = -(-columns.extent // COLUMN_BLOCK)
        self.column_arrays: list[str] = []          # alloca lines, put in the entry block
        insert_at = len(e.lines)
        results: dict[int, tuple[str, str]] = {}     # reduction instr -> (array, llvm type)

        def item_body(item: str, _: list[str]) -> list[str]:
            block = e.ibin("urem", "i64", item, str(blocks))
            rest = e.ibin("udiv", "i64", item, str(blocks))
            first = e.ibin("mul nsw", "i64", block, str(COLUMN_BLOCK))
            stop = e.ibin("add nsw", "i64", first, str(COLUMN_BLOCK))
            stop = e.select(e.icmp("slt", "i64", stop, str(columns.extent)), "i64", stop,
                            str(columns.extent))
            width = e.ibin("sub nsw", "i64", stop, first)
            base = self.advance(self.decompose(rest, others), columns, first)
            base = Position(base.offsets, "0")
            for group in self.column_groups():
                self.emit_column_group(group, base, columns, width, results)
            full = [st for st in self.kernel.stores if self.level(st.instr) is Level.FULL]
            if full:
                self.column_rows(base, lambda row: self.each_column(
                    row, columns, width, results,
                    lambda scope, _: self.store_all(full, scope)))
            outer_stores = [st for st in self.kernel.stores
                            if self.level(st.instr) is Level.OUTER]
            if outer_stores:
                self.each_column(base, columns, width, results,
                                 lambda scope, _: self.store_all(outer_stores, scope))
            return []

        self.emit_loop("%begin", "%end", [], [], item_body)
        e.lines[insert_at:insert_at] = self.column_arrays
        reduce_size = math.prod(d.extent for d in self.reduce_dims)
        passes = 1 + sum(1 for i in self.instrs if i.op in REDUCTIONS)
        width = min(COLUMN_BLOCK, columns.extent)
        work = width * (reduce_size * passes * self.work_per_element(Level.FULL)
                        + self.work_per_element(Level.OUTER))
        return math.prod(d.extent for d in others) * blocks, work

    def column_groups(self) -> list[list[int]]:
        """The reductions in passes: one group per run of reductions that do not depend on each
        other (as emit_outer_program groups them)."""
        depends = reduction_dependencies(self.instrs)
        groups: list[list[int]] = []
        pending: list[int] = []
        for index, instr in enumerate(self.instrs):
            if instr.op in REDUCTIONS:
                mixes_kinds = pending and (instr.op in ARG_REDUCTIONS) != (
                    self.instrs[pending[0]].op in ARG_REDUCTIONS)
                if depends[instr.args[0]] & set(pending) or mixes_kinds:
                    groups.append(pending)
                    pending = []
                pending.append(index)
            elif instr.level is Level.OUTER and depends[index] & set(pending):
                groups.append(pending)
                pending = []
        if pending:
            groups.append(pending)
        return [g for g in groups if g]

    def column_array(self, ty: str, hint: str) -> str:
        name = self.e.fresh(hint)
        self.column_arrays.append(f"  {name} = alloca {ty}, i64 {COLUMN_BLOCK}, align 64")
        return name

    def column_slot(self, array: str, ty: str, column: str) -> str:
        return self.e.assign(f"getelementptr inbounds {ty}, ptr {array}, i64 {column}", "cp")

    def each_column(self, position: Position, columns: Dim, width: str,
                    results: dict[int, tuple[str, str]],
                    body: Callable[[Scope, str], list[str]]) -> None:
        """for c in range(width): body(scope at column c, c), with the reductions done so far
        read from their per-column arrays."""
        def column(c: str, _: list[str]) -> list[str]:
            at = self.advance(position, columns, c)
            scope = Scope(Position(at.offsets, position.flat))
            for index, (array, ty) in results.items():
                scope.memo[index] = self.e.assign(
                    f"load {ty}, ptr {self.column_slot(array, ty, c)}", "cr")
            return body(scope, c)

        self.emit_loop("0", width, [], [], column)

    def column_rows(self, start: Position, body: Callable[[Position], None],
                    blocked: Callable[[Callable[[], None]], None] | None = None) -> None:
        """Loops over the reduce space (the rows), calling body(position) at each; with
        `blocked`, the innermost reduce dim runs in SUM_BLOCK blocks, `blocked(run_block)`
        wrapping each (to start and merge per-block partial states)."""
        dims = self.reduce_dims

        def level(depth: int, position: Position) -> None:
            if depth == len(dims):
                body(position)
                return
            dim = dims[depth]
            if depth == len(dims) - 1 and blocked is not None:
                def block(j0: str, _: list[str]) -> list[str]:
                    stop = self.e.ibin("add", "i64", j0, str(SUM_BLOCK))
                    stop = self.e.select(self.e.icmp("slt", "i64", stop, str(dim.extent)),
                                         "i64", stop, str(dim.extent))
                    blocked(lambda: self.emit_loop(
                        j0, stop, [], [],
                        lambda j, __: (body(self.advance(position, dim, j)), [])[1]))
                    return []

                self.emit_loop("0", str(dim.extent), [], [], block, step=str(SUM_BLOCK))
                return
            self.emit_loop("0", str(dim.extent), [], [],
                           lambda i, _: (level(depth + 1, self.advance(position, dim, i)),
                                         [])[1])

        level(0, Position(list(start.offsets), "0"))

    def emit_column_group(self, group: list[int], base: Position, columns: Dim, width: str,
                          results: dict[int, tuple[str, str]]) -> None:
        """One pass over the rows for a group of reductions, their states per column."""
        e = self.e
        reducers = [make_reducer(self, self.instrs[i]) for i in group]
        states = [[self.column_array(t, "cs") for t in r.state_types] for r in reducers]
        blocked = [type(r).merge is not Reducer.merge for r in reducers]
        partials = [[self.column_array(t, "cb") for t in r.block_types] if b else s
                    for r, s, b in zip(reducers, states, blocked, strict=True)]

        def load_all(arrays: list[str], types: list[str], c: str) -> list[str]:
            return [e.assign(f"load {t}, ptr {self.column_slot(a, t, c)}", "cv")
                    for a, t in zip(arrays, types, strict=True)]

        def store_all(arrays: list[str], types: list[str], values: list[str], c: str) -> None:
            for a, t, v in zip(arrays, types, values, strict=True):
                e.emit(f"store {t} {v}, ptr {self.column_slot(a, t, c)}")

        def init(_: Scope, c: str) -> list[str]:
            for reducer, arrays in zip(reducers, states, strict=True):
                store_all(arrays, reducer.state_types, reducer.init(), c)
            return []

        def start_block(_: Scope, c: str) -> list[str]:
            for reducer, arrays, partial, b in zip(reducers, states, partials, blocked,
                                                   strict=True):
                if b:
                    current = load_all(arrays, reducer.state_types, c)
                    store_all(partial, reducer.block_types, reducer.block_init(current), c)
            return []

        def merge(_: Scope, c: str) -> list[str]:
            for reducer, arrays, partial, b in zip(reducers, states, partials, blocked,
                                                   strict=True):
                if b:
                    current = load_all(arrays, reducer.state_types, c)
                    block = load_all(partial, reducer.block_types, c)
                    store_all(arrays, reducer.state_types, reducer.merge(current, block), c)
            return []

        def update(scope: Scope, c: str) -> list[str]:
            for reducer, partial, index in zip(reducers, partials, group, strict=True):
                value = self.value(self.instrs[index].args[0], scope)
                current = load_all(partial, reducer.block_types, c)
                store_all(partial, reducer.block_types,
                          reducer.update(current, value, scope.position.flat), c)
            return []

        def finish(_: Scope, c: str) -> list[str]:
            for reducer, arrays, index in zip(reducers, states, group, strict=True):
                array, ty = results[index]
                value = reducer.finish(load_all(arrays, reducer.state_types, c))
                e.emit(f"store {ty} {value}, ptr {self.column_slot(array, ty, c)}")
            return []

        self.each_column(base, columns, width, results, init)
        run_block = None
        if any(blocked):
            def run_block(run: Callable[[], None]) -> None:
                self.each_column(base, columns, width, results, start_block)
                run()
                self.each_column(base, columns, width, results, merge)

        self.column_rows(base, lambda row: self.each_column(row, columns, width, results,
                                                            update), run_block)
        for index in group:
            ty = llvm_type(self.instrs[index].dtype)
            results[index] = (self.column_array(ty, "cres"), ty)
        self.each_column(base, columns, width, {k: v for k, v in results.items()
                                                if k not in group}, finish)

    def stash_values(self) -> None:
        """Give expensive FULL values a stack array of one row (the reduce space), so a later
        pass reads them back instead of recomputing them: softmax's exp(x - max) is computed
        in the pass that sums it and read again by the pass that divides and stores it."""
        reduce_size = math.prod(d.extent for d in self.reduce_dims)
        if not 1 < reduce_size <= STASH_LIMIT:
            return
        for index, instr in enumerate(self.instrs):
            if (instr.level is Level.FULL and OP_WEIGHTS.get(instr.op, 1) >= STASH_MIN_WEIGHT
                    and instr.dtype in MEMORY_TYPES and instr.dtype != np.bool_):
                memory = MEMORY_TYPES[np.dtype(instr.dtype)]
                self.stash_slots[index] = self.e.assign(
                    f"alloca {memory}, i64 {reduce_size}, align 64", "stash")

    def stash_pointer(self, index: int, position: Position) -> str:
        memory = MEMORY_TYPES[np.dtype(self.instrs[index].dtype)]
        return self.e.assign(f"getelementptr inbounds {memory}, ptr {self.stash_slots[index]}, "
                             f"i64 {position.flat}", "sp")

    def fill_stashes(self, scope: Scope) -> list[int]:
        """Store the stashable values this pass computed; returns their instrs."""
        filled = []
        for index in self.stash_slots:
            if index in scope.memo and index not in self.stashed:
                memory = MEMORY_TYPES[np.dtype(self.instrs[index].dtype)]
                pointer = self.stash_pointer(index, scope.position)
                self.e.emit(f"store {memory} {scope.memo[index]}, ptr {pointer}, align 4")
                filled.append(index)
        return filled

    def emit_outer_program(self, scope: Scope) -> None:
        """OUTER instructions in order; reductions share passes as far as dependencies allow."""
        depends = reduction_dependencies(self.instrs)
        pending: list[int] = []

        def flush() -> None:
            if pending:
                self.emit_reduction_group(list(pending), scope)
                pending.clear()

        for index, instr in enumerate(self.instrs):
            if instr.op in REDUCTIONS:
                blocked_by = depends[instr.args[0]] & set(pending)
                mixes_kinds = pending and (instr.op in ARG_REDUCTIONS) != (
                    self.instrs[pending[0]].op in ARG_REDUCTIONS)
                if blocked_by or mixes_kinds:
                    flush()
                pending.append(index)
            elif instr.level is Level.OUTER:
                if depends[index] & set(pending):
                    flush()
                scope.memo[index] = self.value(index, scope)
        flush()

    def emit_reduction_group(self, group: list[int], scope: Scope) -> None:
        """One pass over the item's reduce space for `group`; arg-reductions take two: the
        extreme (a vectorised max/min fold), then its first position (a vectorised min)."""
        if self.instrs[group[0]].op in ARG_REDUCTIONS:
            extremes = self.emit_reduction_pass(group, scope, [
                make_reducer(self, self.instrs[i], EXTREME_OF[self.instrs[i].op])
                for i in group])
            reducers = [first_position_reducer(self, self.instrs[i], extreme)
                        for i, extreme in zip(group, extremes, strict=True)]
        else:
            reducers = [make_reducer(self, self.instrs[i]) for i in group]
        for index, value in zip(group, self.emit_reduction_pass(group, scope, reducers),
                                strict=True):
            scope.memo[index] = value

    def emit_reduction_pass(self, group: list[int], scope: Scope,
                            reducers: list[Reducer]) -> list[str]:
        """The finished values of `reducers`, one per instr of `group`, over their operands."""
        init = [value for reducer in reducers for value in reducer.init()]
        types = [t for reducer in reducers for t in reducer.state_types]

        filled: set[int] = set()

        def innermost(position: Position, states: list[str]) -> list[str]:
            inner_scope = Scope(position, scope)
            updated = []
            for reducer, state, index in zip(reducers, split(states, reducers), group,
                                             strict=True):
                value = self.value(self.instrs[index].args[0], inner_scope)
                updated += reducer.update(state, value, position.flat)
            filled.update(self.fill_stashes(inner_scope))
            return updated

        final = self.emit_reduce_loops(scope.position, types, init, innermost, reducers)
        self.stashed |= filled
        return [reducer.finish(state) for reducer, state in
                zip(reducers, split(final, reducers), strict=True)]

    def emit_reduce_loops(self, start: Position, types: list[str], init: list[str],
                          innermost: Callable[[Position, list[str]], list[str]],
                          reducers: Sequence[Reducer] = ()) -> list[str]:
        """Loops over the reduce space carrying `types` values; the innermost dim is blocked."""
        dims = self.reduce_dims

        def level(depth: int, position: Position, states: list[str]) -> list[str]:
            if depth == len(dims):
                if not dims and reducers:   # a reduce space of one point: one block of one
                    return self.one_block(reducers, states, lambda s: innermost(position, s))
                return innermost(position, states)
            dim = dims[depth]
            if depth == len(dims) - 1 and reducers:
                return self.emit_blocked_loop(position, dim, states, innermost, reducers)
            return self.emit_loop("0", str(dim.extent), types, states,
                                  lambda i, s: level(depth + 1, self.advance(position, dim, i), s))

        return level(0, Position(list(start.offsets), "0"), init)

    def one_block(self, reducers: Sequence[Reducer], states: list[str],
                  run: Callable[[list[str]], list[str]]) -> list[str]:
        """Start per-block states from `states`, run the block, merge its result back."""
        block_init = [v for r, s in zip(reducers, split(states, reducers), strict=True)
                      for v in r.block_init(s)]
        block_final = run(block_init)
        merged = []
        for reducer, state, partial in zip(reducers, split(states, reducers),
                                           split(block_final, reducers, block=True), strict=True):
            merged += reducer.merge(state, partial)
        return merged

    def emit_blocked_loop(self, position: Position, dim: Dim, states: list[str],
                          innermost: Callable[[Position, list[str]], list[str]],
                          reducers: Sequence[Reducer]) -> list[str]:
        """for j0 in range(0, n, SUM_BLOCK): per-block partial states, merged after each block."""
        e = self.e
        outer_types = [t for r in reducers for t in r.state_types]
        block_types = [t for r in reducers for t in r.block_types]

        def block(j0: str, outer_states: list[str]) -> list[str]:
            stop = e.ibin("add", "i64", j0, str(SUM_BLOCK))
            stop = e.select(e.icmp("slt", "i64", stop, str(dim.extent)), "i64", stop,
                            str(dim.extent))
            return self.one_block(reducers, outer_states, lambda block_init: self.emit_loop(
                j0, stop, block_types, block_init,
                lambda j, s: innermost(self.advance(position, dim, j), s),
                interleave=REDUCTION_INTERLEAVE))

        return self.emit_loop("0", str(dim.extent), outer_types, states, block,
                              step=str(SUM_BLOCK))

    # -- loops and positions
    def emit_loop(self, start: str, stop: str, types: list[str], init: list[str],
                  body: Callable[[str, list[str]], list[str]], step: str = "1",
                  interleave: int = 0) -> list[str]:
        """for i in range(start, stop, step) carrying values; returns their values at exit.
        `interleave` > 0 asks the vectoriser for that many independent vector accumulators."""
        e = self.e
        preheader = e.block
        head, body_label, exit_label = e.label("loop"), e.label("body"), e.label("done")
        e.br(head)
        e.start_block(head)
        index = e.fresh("i")
        phis = [e.fresh("acc") for _ in types]
        insert_at = len(e.lines)
        e.cond_br(e.icmp("slt", "i64", index, stop), body_label, exit_label)
        e.start_block(body_label)
        updated = body(index, phis)
        following = e.assign(f"add nsw i64 {index}, {step}", "next")
        latch = e.block
        e.emit(f"br label %{head}, !llvm.loop {self.loop_metadata(interleave)}")
        e.lines[insert_at:insert_at] = [
            f"  {index} = phi i64 [{start}, %{preheader}], [{following}, %{latch}]",
            *(f"  {phi} = phi {t} [{first}, %{preheader}], [{new}, %{latch}]"
              for phi, t, first, new in zip(phis, types, init, updated, strict=True)),
        ]
        e.start_block(exit_label)
        return phis

    def loop_metadata(self, interleave: int = 0) -> str:
        """A distinct loop id asking LLVM not to unroll (it still vectorises and interleaves):
        fully unrolled vector code of small constant-trip loops costs seconds of compile time.
        With `interleave`, also that interleave count: a reduction's loop-carried chain (a
        NaN-propagating max is ~5 dependent instructions) then runs in that many parallel
        chains instead of one."""
        if not self.loop_ids:
            self.loop_ids.append(f'!{self.next_metadata} = !{{!"llvm.loop.unroll.disable"}}')
            self.next_metadata += 1
        ident, no_unroll = f"!{self.next_metadata}", self.loop_ids[0].split(" ")[0]
        self.next_metadata += 1
        hints = [no_unroll]
        if interleave > 0:
            count = f"!{self.next_metadata}"
            self.next_metadata += 1
            self.loop_ids.append(
                f'{count} = !{{!"llvm.loop.interleave.count", i32 {interleave}}}')
            hints.append(count)
        self.loop_ids.append(f"{ident} = distinct !{{{ident}, {', '.join(hints)}}}")
        return ident

    def start_position(self) -> Position:
        return Position([str(a.offset) for a in self.accesses])

    def advance(self, position: Position, dim: Dim, index: str) -> Position:
        offsets = []
        for offset, stride in zip(position.offsets, dim.strides, strict=True):
            if stride == 0:
                offsets.append(offset)
                continue
            step = index if stride == 1 else self.e.ibin("mul nsw", "i64", index, str(stride))
            offsets.append(step if offset == "0" else self.e.ibin("add nsw", "i64", offset, step))
        flat = position.flat
        if flat != "0":
            flat = self.e.ibin("mul nsw", "i64", flat, str(dim.extent))
            index = self.e.ibin("add nsw", "i64", flat, index)
        return Position(offsets, index)

    def decompose(self, item: str, dims: Sequence[Dim]) -> Position:
        """The position of outer point `item` (row-major over `dims`)."""
        position = self.start_position()
        rest = item
        for depth in range(len(dims) - 1, -1, -1):
            dim = dims[depth]
            if depth == 0:
                index = rest
            else:
                index = self.e.ibin("urem", "i64", rest, str(dim.extent))
                rest = self.e.ibin("udiv", "i64", rest, str(dim.extent))
            position = self.advance(position, dim, index)
        return Position(position.offsets, "0")

    # -- values
    def value(self, index: int, scope: Scope) -> str:
        """The SSA name of instr `index` in `scope`, emitting it and whatever it needs first
        (an explicit work stack: no recursion on the depth of the expression)."""
        known = scope.lookup(index)
        if known is not None:
            return known
        stack = [index]
        while stack:
            top = stack[-1]
            if scope.lookup(top) is not None:
                stack.pop()
                continue
            instr = self.instrs[top]
            if top in self.stashed:     # filled by an earlier pass over this item's row
                memory = MEMORY_TYPES[np.dtype(instr.dtype)]
                pointer = self.stash_pointer(top, scope.position)
                scope.memo[top] = self.e.assign(f"load {memory}, ptr {pointer}, align 4", "st")
                stack.pop()
                continue
            if instr.op in REDUCTIONS:
                raise CompileError(f"reduction %{top} used before its pass was emitted")
            pending = [a for a in instr.args if scope.lookup(a) is None]
            if pending:
                stack.extend(reversed(pending))   # emitted left to right, as operands read
                continue
            stack.pop()
            args = [scope.lookup(a) for a in instr.args]
            lowering = OPERAND_LOWERINGS.get(instr.op) or ELEMENTWISE_LOWERINGS.get(instr.op)
            if lowering is None:
                raise CompileError(f"the CPU backend has no lowering for {instr.op!r}",
                                   instr.source)
            scope.memo[top] = lowering(self, instr, args, scope)
        return scope.lookup(index)

    def arg_dtype(self, instr: Instr, position: int = 0) -> np.dtype:
        return np.dtype(self.instrs[instr.args[position]].dtype)

    def constant_arg(self, instr: Instr, position: int) -> float | int | None:
        arg = self.instrs[instr.args[position]]
        return arg.attrs["value"] if arg.op is Operand.CONST else None

    def address(self, access: Access, scope: Scope, dtype: np.dtype) -> str:
        offset = scope.position.offsets[self.access_ids[access]]
        base = self.buffer_ptrs[access.buffer]
        return self.e.assign(
            f"getelementptr inbounds {MEMORY_TYPES[dtype]}, ptr {base}, i64 {offset}", "p")

    def store(self, store: Store, scope: Scope) -> None:
        dtype = np.dtype(self.instrs[store.instr].dtype)
        value = self.value(store.instr, scope)
        if dtype == np.bool_:
            value = self.e.cast("zext", "i1", value, "i8")
        ptr = self.address(store.access, scope, dtype)
        self.e.emit(f"store {MEMORY_TYPES[dtype]} {value}, ptr {ptr}, align {dtype.itemsize}"
                    f"{self.alias_tags.get(store.access.buffer, '')}")

    def work_per_element(self, level: Level) -> int:
        return sum(OP_WEIGHTS.get(i.op, 1) for i in self.instrs if i.level is level)


def split(values: list[str], reducers: Sequence[Reducer], block: bool = False) -> list[list[str]]:
    out, at = [], 0
    for reducer in reducers:
        count = len(reducer.block_types if block else reducer.state_types)
        out.append(values[at:at + count])
        at += count
    return out


def reduction_dependencies(instrs: Sequence[Instr]) -> list[frozenset[int]]:
    """For every instruction, the reductions its value transitively depends on (itself included)."""
    depends: list[frozenset[int]] = []
    for index, instr in enumerate(instrs):
        own = frozenset({index}) if instr.op in REDUCTIONS else frozenset()
        depends.append(own.union(*(depends[a] for a in instr.args)))
    return depends


def alias_metadata(kernel: LoopKernel,
                   buffers: dict[int, Buffer]) -> tuple[dict[int, str], list[str]]:
    """Alias scopes: one per memory class (a buffer, or a planner slot shared by several buffers).

    Returns the `, !alias.scope !a, !noalias !b` suffix per buffer index and the metadata lines."""
    classes: dict[int, tuple] = {}
    for index in kernel.buffers():
        slot = buffers[index].slot if index in buffers else None
        classes[index] = ("slot", slot) if slot is not None else ("buffer", index)
    distinct = list(dict.fromkeys(classes.values()))
    if len(distinct) < 2:
        return {}, []
    lines = ['!0 = distinct !{!0, !"graphjit kernel buffers"}']
    scope_ids = {key: 1 + n for n, key in enumerate(distinct)}
    for key, ident in scope_ids.items():
        lines.append(f'!{ident} = distinct !{{!{ident}, !0, !"{key[0]} {key[1]}"}}')
    next_id = 1 + len(distinct)
    tags: dict[tuple, str] = {}
    for key in distinct:
        others = ", ".join(f"!{scope_ids[k]}" for k in distinct if k != key)
        lines.append(f"!{next_id} = !{{!{scope_ids[key]}}}")
        lines.append(f"!{next_id + 1} = !{{{others}}}")
        tags[key] = f", !alias.scope !{next_id}, !noalias !{next_id + 1}"
        next_id += 2
    return {index: tags[key] for index, key in classes.items()}, lines
