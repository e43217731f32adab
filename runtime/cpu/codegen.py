"""LLVM IR for one LoopKernel (the CPU backend's renderer; runtime/cpu/llvm.py compiles the text).

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
- No nnan/ninf/nsz flags anywhere: NaN/inf parity with NumPy is tested. `contract` allows FMA.
- Loads and stores carry alias-scope metadata (one scope per buffer, or per memory slot when the
  planner made buffers share memory), so LLVM vectorises without runtime overlap checks.

Every elementwise op lowers through ELEMENTWISE_LOWERINGS (a dict keyed by Op), every reduction
through REDUCERS; transcendental functions come from runtime/cpu/mathlib.py.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from graphjit.compiler.errors import CompileError, GraphjitError
from graphjit.compiler.kernel import Access, Buffer, Instr, Level, LoopKernel, Source, Store
from graphjit.compiler.ops import REDUCTIONS, Op

from . import mathlib
from .mathlib import MEMORY_TYPES, Emitter, ModuleParts, call_math, const, llvm_type

FLAT_CHUNK = 4096       # elements per work item of a flat elementwise kernel
SUM_BLOCK = 1024        # elements per blocked partial sum of a float reduction
REDUCTION_INTERLEAVE = 4   # independent vector accumulators in a reduction's innermost loop
STASH_LIMIT = 8192      # reduce-space elements up to which expensive values are kept per item
STASH_MIN_WEIGHT = 20   # OP_WEIGHTS from which storing + reloading beats recomputing (exp, log)
INT_LIMITS: dict[str, tuple[int, int]] = {
    "i32": (-(1 << 31), (1 << 31) - 1),
    "i64": (-(1 << 63), (1 << 63) - 1),
}


@dataclass(frozen=True)
class RenderedKernel:
    name: str            # LLVM function name (kernel.name, made a valid symbol)
    llvm_ir: str         # a complete LLVM module (textual IR) defining that function
    extent: int          # number of independent work items
    cost_per_item: int   # rough element-ops per item, so the runtime can pick thread counts


def render_loop_kernel(kernel: LoopKernel, buffers: Sequence[Buffer]) -> RenderedKernel:
    """Render `kernel` as a complete LLVM module; errors surface as graphjit CompileErrors."""
    try:
        return KernelRenderer(kernel, buffers).render()
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
    def __init__(self, kernel: LoopKernel, buffers: Sequence[Buffer]):
        self.kernel = kernel
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
        loads = [i.attrs["access"] for i in self.instrs if i.op is Source.LOAD]
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
            f"define void @{name}(ptr noalias %buffers, i64 %begin, i64 %end) nounwind {{",
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
        reducers = [make_reducer(self, self.instrs[i]) for i in group]
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
        for reducer, state, index in zip(reducers, split(final, reducers), group, strict=True):
            scope.memo[index] = reducer.finish(state)

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
        known = scope.lookup(index)
        if known is not None:
            return known
        instr = self.instrs[index]
        if index in self.stashed:     # filled by an earlier pass over this item's row
            memory = MEMORY_TYPES[np.dtype(instr.dtype)]
            pointer = self.stash_pointer(index, scope.position)
            result = self.e.assign(f"load {memory}, ptr {pointer}, align 4", "st")
            scope.memo[index] = result
            return result
        if instr.op in REDUCTIONS:
            raise CompileError(f"reduction %{index} used before its pass was emitted")
        args = [self.value(a, scope) for a in instr.args]
        lowering = SOURCE_LOWERINGS.get(instr.op) or ELEMENTWISE_LOWERINGS.get(instr.op)
        if lowering is None:
            raise CompileError(f"the CPU backend has no lowering for {instr.op!r}", instr.source)
        result = lowering(self, instr, args, scope)
        scope.memo[index] = result
        return result

    def arg_dtype(self, instr: Instr, position: int = 0) -> np.dtype:
        return np.dtype(self.instrs[instr.args[position]].dtype)

    def constant_arg(self, instr: Instr, position: int) -> float | int | None:
        arg = self.instrs[instr.args[position]]
        return arg.attrs["value"] if arg.op is Source.CONST else None

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


# ---------------------------------------------------------------- sources

Lowering = Callable[[KernelRenderer, Instr, list[str], Scope], str]


def lower_load(r: KernelRenderer, instr: Instr, _: list[str], scope: Scope) -> str:
    access: Access = instr.attrs["access"]
    dtype = np.dtype(instr.dtype)
    ptr = r.address(access, scope, dtype)
    value = r.e.assign(f"load {MEMORY_TYPES[dtype]}, ptr {ptr}, align {dtype.itemsize}"
                       f"{r.alias_tags.get(access.buffer, '')}", "l")
    if dtype == np.bool_:
        value = r.e.icmp("ne", "i8", value, "0")
    return value


def lower_const(r: KernelRenderer, instr: Instr, _: list[str], __: Scope) -> str:
    value = instr.attrs["value"]
    value = value.item() if isinstance(value, np.generic | np.ndarray) else value
    return const(value, llvm_type(instr.dtype))


SOURCE_LOWERINGS: dict[Source, Lowering] = {Source.LOAD: lower_load, Source.CONST: lower_const}


# ---------------------------------------------------------------- elementwise ops

KindImpl = Callable[[Emitter, str, list[str]], str]   # (emitter, operand type, args) -> value


def by_kind(f: KindImpl | None = None, i: KindImpl | None = None,
            b: KindImpl | None = None) -> Lowering:
    """A lowering that dispatches on the operands' dtype kind: float, (signed) integer, bool."""
    impls = {"f": f, "i": i, "b": b}

    def lower(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
        dtype = r.arg_dtype(instr)
        impl = impls.get(dtype.kind)
        if impl is None:
            raise CompileError(f"{instr.op.value} is not defined for {dtype} operands",
                               instr.source)
        return impl(r.e, llvm_type(dtype), args)

    return lower


def opcode(name: str) -> KindImpl:
    return lambda e, ty, a: e.ibin(name, ty, a[0], a[1])


def float_opcode(name: str) -> KindImpl:
    return lambda e, ty, a: e.fbin(name, ty, a[0], a[1])


def intrinsic(name: str) -> KindImpl:
    return lambda e, ty, a: e.intrinsic(f"llvm.{name}.{mathlib.SUFFIX[ty]}", ty,
                                        [(ty, v) for v in a])


def math_fn(name: str) -> KindImpl:
    return lambda e, ty, a: call_math(e, name, ty, *a)


def identity(e: Emitter, ty: str, a: list[str]) -> str:
    return a[0]


def truth(e: Emitter, ty: str, value: str) -> str:
    """NumPy's bool(x): nonzero (NaN counts as true)."""
    if ty == "i1":
        return value
    if ty in mathlib.FLOAT_DTYPE_OF:
        return e.fcmp("une", ty, value, e.c(0.0, ty))
    return e.icmp("ne", ty, value, "0")


def logical(name: str) -> KindImpl:
    return lambda e, ty, a: e.ibin(name, "i1", *(truth(e, ty, v) for v in a))


def compare(float_pred: str, int_pred: str, bool_pred: str) -> Lowering:
    return by_kind(f=lambda e, ty, a: e.fcmp(float_pred, ty, a[0], a[1]),
                   i=lambda e, ty, a: e.icmp(int_pred, ty, a[0], a[1]),
                   b=lambda e, ty, a: e.icmp(bool_pred, ty, a[0], a[1]))


def float_sign(e: Emitter, ty: str, a: list[str]) -> str:
    x = a[0]
    result = e.select(e.fcmp("oeq", ty, x, e.c(0.0, ty)), ty, e.c(0.0, ty), x)   # +-0 -> 0, NaN
    result = e.select(e.fcmp("olt", ty, x, e.c(0.0, ty)), ty, e.c(-1.0, ty), result)
    return e.select(e.fcmp("ogt", ty, x, e.c(0.0, ty)), ty, e.c(1.0, ty), result)


def int_sign(e: Emitter, ty: str, a: list[str]) -> str:
    positive = e.cast("zext", "i1", e.icmp("sgt", ty, a[0], "0"), ty)
    negative = e.cast("zext", "i1", e.icmp("slt", ty, a[0], "0"), ty)
    return e.ibin("sub", ty, positive, negative)


def float_maximum(pred: str) -> KindImpl:
    """NumPy: (a > b || isnan(a)) ? a : b  (NaN from either side wins; on ties b)."""

    def impl(e: Emitter, ty: str, a: list[str]) -> str:
        x, y = a
        pick_x = e.ibin("or", "i1", e.fcmp(pred, ty, x, y), e.is_nan(ty, x))
        return e.select(pick_x, ty, x, y)

    return impl


def float_floordiv(e: Emitter, ty: str, a: list[str]) -> str:
    """NumPy's npy_floor_divide (divmod based; b == 0 gives a/b)."""
    x, y = a
    zero = e.c(0.0, ty)
    quotient = e.fdiv(ty, x, y)
    mod = e.fbin("frem", ty, x, y)
    div = e.fdiv(ty, e.fsub(ty, x, mod), y)
    signs_differ = e.ibin("xor", "i1", e.fcmp("olt", ty, y, zero), e.fcmp("olt", ty, mod, zero))
    fix = e.ibin("and", "i1", e.fcmp("une", ty, mod, zero), signs_differ)
    div = e.select(fix, ty, e.fsub(ty, div, e.c(1.0, ty)), div)
    floor = e.unary_intrinsic("floor", ty, div)
    round_up = e.fcmp("ogt", ty, e.fsub(ty, div, floor), e.c(0.5, ty))
    floor = e.select(round_up, ty, e.fadd(ty, floor, e.c(1.0, ty)), floor)
    result = e.select(e.fcmp("une", ty, div, zero), ty, floor, e.copysign(ty, zero, quotient))
    return e.select(e.fcmp("oeq", ty, y, zero), ty, quotient, result)


def float_mod(e: Emitter, ty: str, a: list[str]) -> str:
    """NumPy's npy_remainder: the result takes the divisor's sign; b == 0 gives fmod (NaN)."""
    x, y = a
    zero = e.c(0.0, ty)
    mod = e.fbin("frem", ty, x, y)
    signs_differ = e.ibin("xor", "i1", e.fcmp("olt", ty, y, zero), e.fcmp("olt", ty, mod, zero))
    fix = e.ibin("and", "i1", e.fcmp("une", ty, mod, zero), signs_differ)
    result = e.select(fix, ty, e.fadd(ty, mod, y), mod)
    result = e.select(e.fcmp("oeq", ty, mod, zero), ty, e.copysign(ty, zero, y), result)
    return e.select(e.fcmp("oeq", ty, y, zero), ty, mod, result)


def safe_divisor(e: Emitter, ty: str, y: str) -> tuple[str, str, str]:
    """(divisor that cannot trap, y == 0, y == -1): sdiv by 0 or MIN/-1 is undefined in LLVM."""
    is_zero = e.icmp("eq", ty, y, "0")
    is_minus_one = e.icmp("eq", ty, y, "-1")
    safe = e.select(e.ibin("or", "i1", is_zero, is_minus_one), ty, "1", y)
    return safe, is_zero, is_minus_one


def python_sign_fix(e: Emitter, ty: str, remainder: str, y: str) -> str:
    """True where a C remainder is nonzero and its sign differs from the divisor's."""
    differs = e.icmp("slt", ty, e.ibin("xor", ty, remainder, y), "0")
    return e.ibin("and", "i1", e.icmp("ne", ty, remainder, "0"), differs)


def int_floordiv(e: Emitter, ty: str, a: list[str]) -> str:
    x, y = a
    safe, is_zero, is_minus_one = safe_divisor(e, ty, y)
    quotient = e.ibin("sdiv", ty, x, safe)
    remainder = e.ibin("srem", ty, x, safe)
    fix = e.cast("zext", "i1", python_sign_fix(e, ty, remainder, y), ty)
    quotient = e.ibin("sub", ty, quotient, fix)
    quotient = e.select(is_minus_one, ty, e.ibin("sub", ty, "0", x), quotient)   # MIN // -1 wraps
    return e.select(is_zero, ty, "0", quotient)                                  # x // 0 -> 0


def int_mod(e: Emitter, ty: str, a: list[str]) -> str:
    x, y = a
    safe, is_zero, _ = safe_divisor(e, ty, y)
    remainder = e.ibin("srem", ty, x, safe)
    fixed = e.ibin("add", ty, remainder, y)
    remainder = e.select(python_sign_fix(e, ty, remainder, y), ty, fixed, remainder)
    return e.select(is_zero, ty, "0", remainder)                                 # x % 0 -> 0


def power_by_squaring(e: Emitter, ty: str, x: str, n: int,
                      mul: Callable[[str, str], str], one: str) -> str:
    """x**n for a constant n >= 0 with multiplications only."""
    result, base = None, x
    while n:
        if n & 1:
            result = base if result is None else mul(result, base)
        n >>= 1
        if n:
            base = mul(base, base)
    return one if result is None else result


SMALL_FLOAT_POWERS = range(-1, 5)   # exact enough as products (<= 1.5 ulp); larger ones use pow
SMALL_INT_POWERS = range(0, 65)     # integer products are exact (mod 2^n) in any order


def lower_pow(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    dtype = r.arg_dtype(instr)
    ty, e = llvm_type(dtype), r.e
    exponent = r.constant_arg(instr, 1)
    integral = exponent is not None and float(exponent).is_integer()
    if dtype.kind == "f":
        if integral and int(exponent) in SMALL_FLOAT_POWERS:
            n = int(exponent)
            product = power_by_squaring(e, ty, args[0], abs(n), lambda a, b: e.fmul(ty, a, b),
                                        e.c(1.0, ty))
            return e.fdiv(ty, e.c(1.0, ty), product) if n < 0 else product
        if exponent is not None and float(exponent) == 0.5:
            return e.unary_intrinsic("sqrt", ty, args[0])   # NumPy: x ** 0.5 is sqrt(x) exactly
        return call_math(e, "pow", ty, *args)
    if dtype.kind == "i":
        if integral and int(exponent) in SMALL_INT_POWERS:
            return power_by_squaring(e, ty, args[0], int(exponent),
                                     lambda a, b: e.ibin("mul", ty, a, b), "1")
        return call_math(e, "ipow", ty, *args)
    raise CompileError(f"pow is not defined for {dtype} operands", instr.source)


def lower_where(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    condition = truth(r.e, llvm_type(r.arg_dtype(instr, 0)), args[0])
    return r.e.select(condition, llvm_type(instr.dtype), args[1], args[2])


# -- casts: keyed by (source kind, target kind)

CastImpl = Callable[[Emitter, str, str, str], str]   # (emitter, value, from type, to type)


def int_resize(e: Emitter, value: str, src: str, dst: str) -> str:
    bits_from, bits_to = mathlib.INT_BITS[src], mathlib.INT_BITS[dst]
    if bits_from == bits_to:
        return value
    return e.cast("sext" if bits_to > bits_from else "trunc", src, value, dst)


def float_resize(e: Emitter, value: str, src: str, dst: str) -> str:
    if src == dst:
        return value
    return e.cast("fpext" if dst == "double" else "fptrunc", src, value, dst)


def float_to_int(e: Emitter, value: str, src: str, dst: str) -> str:
    """Truncation like NumPy on x86: NaN and out-of-range values give the integer minimum."""
    lo, hi = INT_LIMITS[dst]
    converted = e.cast("fptosi", src, value, dst)       # poison out of range: masked below
    # [lo, hi + 1) are exact powers of two in both float types; values in (lo - 1, lo) truncate
    # to lo, which the fallback gives anyway
    in_range = e.ibin("and", "i1", e.fcmp("oge", src, value, e.c(float(lo), src)),
                      e.fcmp("olt", src, value, e.c(float(hi) + 1.0, src)))
    return e.select(in_range, dst, converted, str(lo))


CASTS: dict[tuple[str, str], CastImpl] = {
    ("b", "b"): lambda e, v, s, d: v,
    ("b", "i"): lambda e, v, s, d: e.cast("zext", s, v, d),
    ("b", "f"): lambda e, v, s, d: e.cast("uitofp", s, v, d),
    ("i", "b"): lambda e, v, s, d: truth(e, s, v),
    ("i", "i"): int_resize,
    ("i", "f"): lambda e, v, s, d: e.cast("sitofp", s, v, d),
    ("f", "b"): lambda e, v, s, d: truth(e, s, v),
    ("f", "i"): float_to_int,
    ("f", "f"): float_resize,
}


def lower_cast(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    src, dst = r.arg_dtype(instr), np.dtype(instr.dtype)
    impl = CASTS.get((src.kind, dst.kind))
    if impl is None:
        raise CompileError(f"cannot cast {src} to {dst} on the CPU backend", instr.source)
    return impl(r.e, args[0], llvm_type(src), llvm_type(dst))


ELEMENTWISE_LOWERINGS: dict[Op, Lowering] = {
    Op.NEG: by_kind(f=lambda e, ty, a: e.fneg(ty, a[0]),
                    i=lambda e, ty, a: e.ibin("sub", ty, "0", a[0])),
    Op.ABS: by_kind(f=lambda e, ty, a: e.fabs(ty, a[0]),
                    i=lambda e, ty, a: e.intrinsic(f"llvm.abs.{ty}", ty,
                                                   [(ty, a[0]), ("i1", "false")]),
                    b=identity),
    Op.EXP: by_kind(f=math_fn("exp")),
    Op.LOG: by_kind(f=math_fn("log")),
    Op.LOG1P: by_kind(f=math_fn("log1p")),
    Op.EXPM1: by_kind(f=math_fn("expm1")),
    Op.SQRT: by_kind(f=intrinsic("sqrt")),
    Op.TANH: by_kind(f=math_fn("tanh")),
    Op.SIN: by_kind(f=math_fn("sin")),
    Op.COS: by_kind(f=math_fn("cos")),
    Op.SIGN: by_kind(f=float_sign, i=int_sign),
    Op.FLOOR: by_kind(f=intrinsic("floor"), i=identity, b=identity),
    Op.CEIL: by_kind(f=intrinsic("ceil"), i=identity, b=identity),
    Op.LOGICAL_NOT: by_kind(*(3 * [lambda e, ty, a: e.ibin("xor", "i1", truth(e, ty, a[0]),
                                                           "true")])),
    Op.CAST: lower_cast,
    Op.ADD: by_kind(f=float_opcode("fadd"), i=opcode("add"), b=opcode("or")),
    Op.SUB: by_kind(f=float_opcode("fsub"), i=opcode("sub")),
    Op.MUL: by_kind(f=float_opcode("fmul"), i=opcode("mul"), b=opcode("and")),
    Op.DIV: by_kind(f=float_opcode("fdiv")),
    Op.FLOORDIV: by_kind(f=float_floordiv, i=int_floordiv),
    Op.MOD: by_kind(f=float_mod, i=int_mod),
    Op.POW: lower_pow,
    Op.MAXIMUM: by_kind(f=float_maximum("ogt"), i=intrinsic("smax"), b=opcode("or")),
    Op.MINIMUM: by_kind(f=float_maximum("olt"), i=intrinsic("smin"), b=opcode("and")),
    Op.GT: compare("ogt", "sgt", "ugt"),
    Op.GE: compare("oge", "sge", "uge"),
    Op.LT: compare("olt", "slt", "ult"),
    Op.LE: compare("ole", "sle", "ule"),
    Op.EQ: compare("oeq", "eq", "eq"),
    Op.NE: compare("une", "ne", "ne"),
    Op.LOGICAL_AND: by_kind(*(3 * [logical("and")])),
    Op.LOGICAL_OR: by_kind(*(3 * [logical("or")])),
    Op.LOGICAL_XOR: by_kind(*(3 * [logical("xor")])),
    Op.WHERE: lower_where,
}

# rough cost of one element of each op, in "simple op" units (for thread-count heuristics)
OP_WEIGHTS: dict[Op | Source, int] = {
    Op.EXP: 20, Op.LOG: 20, Op.LOG1P: 30, Op.EXPM1: 40, Op.TANH: 25, Op.SIN: 40, Op.COS: 40,
    Op.POW: 40, Op.DIV: 4, Op.SQRT: 4, Op.FLOORDIV: 20, Op.MOD: 20,
}


# ---------------------------------------------------------------- reductions

class Reducer:
    """The accumulator of one reduction. `state` is carried through every reduce loop; the
    innermost (blocked) loop carries `block` values, started from and merged into the state."""

    state_types: list[str]
    block_types: list[str]

    def init(self) -> list[str]:
        raise NotImplementedError

    def block_init(self, state: list[str]) -> list[str]:
        return state

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        raise NotImplementedError

    def merge(self, state: list[str], block: list[str]) -> list[str]:
        return block

    def finish(self, state: list[str]) -> str:
        return state[0]


class FoldReducer(Reducer):
    """acc = combine(acc, x) from an identity element."""

    def __init__(self, e: Emitter, ty: str, identity: str,
                 combine: Callable[[Emitter, str, str, str], str]):
        self.e, self.ty, self.identity, self.combine = e, ty, identity, combine
        self.state_types = self.block_types = [ty]

    def init(self) -> list[str]:
        return [self.identity]

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        return [self.combine(self.e, self.ty, block[0], value)]


class BlockedFloatSum(Reducer):
    """Per-block sums in the value's type (vectorised, `reassoc`), added into a float64 total."""

    def __init__(self, e: Emitter, ty: str):
        self.e, self.ty = e, ty
        self.state_types, self.block_types = ["double"], [ty]

    def init(self) -> list[str]:
        return [mathlib.const(0.0, "double")]

    def block_init(self, state: list[str]) -> list[str]:
        return [mathlib.const(0.0, self.ty)]   # -0.0 would keep -0 sums; NumPy's sum gives +0 too

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        return [self.e.fbin("fadd", self.ty, block[0], value, flags="reassoc contract")]

    def merge(self, state: list[str], block: list[str]) -> list[str]:
        partial = mathlib_fpext(self.e, self.ty, block[0])
        return [self.e.fbin("fadd", "double", state[0], partial, flags="")]

    def finish(self, state: list[str]) -> str:
        if self.ty == "double":
            return state[0]
        return self.e.cast("fptrunc", "double", state[0], self.ty)


def mathlib_fpext(e: Emitter, ty: str, value: str) -> str:
    return value if ty == "double" else e.cast("fpext", ty, value, "double")


class ArgReducer(Reducer):
    """(best, index): the first position of the extreme value; the first NaN wins (NumPy)."""

    def __init__(self, e: Emitter, ty: str, kind: str, maximum: bool):
        self.e, self.ty, self.kind, self.maximum = e, ty, kind, maximum
        self.state_types = self.block_types = [ty, "i64"]

    def init(self) -> list[str]:
        if self.kind == "f":
            start = -math.inf if self.maximum else math.inf
        elif self.kind == "i":
            lo, hi = INT_LIMITS[self.ty]
            start = lo if self.maximum else hi
        else:
            start = 0 if self.maximum else 1
        return [const(start, self.ty), "0"]

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        e, ty = self.e, self.ty
        best, index = block
        if self.kind == "f":
            better = e.fcmp("ogt" if self.maximum else "olt", ty, value, best)
            nan_first = e.ibin("and", "i1", e.is_nan(ty, value),
                               e.fcmp("ord", ty, best, best))
            better = e.ibin("or", "i1", better, nan_first)
        else:
            signed = "s" if self.kind == "i" else "u"
            better = e.icmp(f"{signed}{'gt' if self.maximum else 'lt'}", ty, value, best)
        return [e.select(better, ty, value, best), e.select(better, "i64", position, index)]

    def finish(self, state: list[str]) -> str:
        return state[1]


class BoolFold(Reducer):
    """any / all of bools, accumulated in i8: vectors of i1 make LLVM's code explode."""

    def __init__(self, e: Emitter, ty: str, any_true: bool):
        self.e, self.any_true = e, any_true
        self.state_types = self.block_types = ["i8"]

    def init(self) -> list[str]:
        return ["0" if self.any_true else "1"]

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        widened = self.e.cast("zext", "i1", value, "i8")
        return [self.e.ibin("or" if self.any_true else "and", "i8", block[0], widened)]

    def finish(self, state: list[str]) -> str:
        return self.e.icmp("ne", "i8", state[0], "0")


def float_fold(name: str) -> Callable[[Emitter, str, str, str], str]:
    return lambda e, ty, acc, x: e.binary_intrinsic(name, ty, acc, x)


def int_fold(name: str) -> Callable[[Emitter, str, str, str], str]:
    return lambda e, ty, acc, x: e.ibin(name, ty, acc, x)


def int_fold_intrinsic(name: str) -> Callable[[Emitter, str, str, str], str]:
    return lambda e, ty, acc, x: e.intrinsic(f"llvm.{name}.{ty}", ty, [(ty, acc), (ty, x)])


ReducerFactory = Callable[[Emitter, str], Reducer]


def fold_table(f: ReducerFactory, i: ReducerFactory,
               b: ReducerFactory) -> dict[str, ReducerFactory]:
    """Reducer factories by operand kind: float, integer, bool."""
    return {"f": f, "i": i, "b": b}
ARG_REDUCTIONS = frozenset({Op.ARGMAX, Op.ARGMIN})

REDUCERS: dict[Op, dict[str, ReducerFactory]] = {
    Op.SUM: fold_table(
        f=BlockedFloatSum,
        i=lambda e, ty: FoldReducer(e, ty, "0", int_fold("add")),
        b=lambda e, ty: BoolFold(e, ty, any_true=True)),
    Op.PROD: fold_table(
        f=lambda e, ty: FoldReducer(e, ty, const(1.0, ty), lambda e_, t, a, x: e_.fbin(
            "fmul", t, a, x, flags="reassoc contract")),
        i=lambda e, ty: FoldReducer(e, ty, "1", int_fold("mul")),
        b=lambda e, ty: BoolFold(e, ty, any_true=False)),
    Op.REDUCE_MAX: fold_table(
        f=lambda e, ty: FoldReducer(e, ty, const(-math.inf, ty), float_fold("maximum")),
        i=lambda e, ty: FoldReducer(e, ty, str(INT_LIMITS[ty][0]), int_fold_intrinsic("smax")),
        b=lambda e, ty: BoolFold(e, ty, any_true=True)),
    Op.REDUCE_MIN: fold_table(
        f=lambda e, ty: FoldReducer(e, ty, const(math.inf, ty), float_fold("minimum")),
        i=lambda e, ty: FoldReducer(e, ty, str(INT_LIMITS[ty][1]), int_fold_intrinsic("smin")),
        b=lambda e, ty: BoolFold(e, ty, any_true=False)),
    Op.ARGMAX: {kind: (lambda e, ty, k=kind: ArgReducer(e, ty, k, True)) for kind in "fib"},
    Op.ARGMIN: {kind: (lambda e, ty, k=kind: ArgReducer(e, ty, k, False)) for kind in "fib"},
}


def make_reducer(r: KernelRenderer, instr: Instr) -> Reducer:
    dtype = r.arg_dtype(instr)
    factory = REDUCERS.get(instr.op, {}).get(dtype.kind)
    if factory is None:
        raise CompileError(f"{instr.op.value} is not supported for {dtype} on the CPU backend",
                           instr.source)
    return factory(r.e, llvm_type(dtype))
