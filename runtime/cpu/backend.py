"""CPUBackend: a Program compiled to one native module (llvmlite), run by an Executable.

    kernels  --render (loops.py)-->  LLVM IR text per LoopKernel
    plan     runs of small kernels become one native entry function each; big kernels are split
             over the thread pool; matmuls call BLAS; host steps run the NumPy reference
    compile  all kernels + entry functions linked into one module, O3 for the host, MCJIT
             (object code can come from / go to a disk cache: `cache.load(key)` / `store`)
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import struct
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from graphjit.compiler.errors import CompileError, GraphjitError
from graphjit.compiler.kernel import (Buffer, BufferKind, HostKernel, LoopKernel, MatmulKernel,
                                      Program)
from graphjit.compiler import kernel as kernel_module
from graphjit.compiler.kernel import Kernel
from graphjit.runtime.disk_cache import DiskCache, Uncacheable, canonical_text, source_fingerprint

from . import segments, shared_object
from .host import PIPELINE, host_key
from .blas import GemmPlan, MatmulRunner, blas_library, gemm_address, plan_gemm
from .executable import Executable, HostStep, RunStep, Workspace
from .threads import ThreadPool, chunk_count, default_pool, default_pool_size, split

# Batched products with more elements than this loop in Python instead of unrolling in native code.
MAX_NATIVE_BATCH = 16

# A matmul epilogue starts while OpenBLAS's own workers still spin on the other cores after the
# product; splitting it then makes two pools fight over the cores (a 256x128 GELU epilogue ran 15x
# slower on 2 threads than on 1). Only epilogues big enough to amortise that are split.
EPILOGUE_WORK_FACTOR = 32

KERNEL_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
# ctypes releases the GIL around both: concurrent calls and the pool's workers run in parallel
SEGMENT_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# ...except around segments this short, where releasing and retaking it (~0.15 us) would cost
# more than letting other Python threads wait for them
SEGMENT_FUNCTION_KEEPING_GIL = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)
KEEP_GIL_MAX_WORK = 1 << 14   # element operations: a few microseconds


class Library(Protocol):
    """Loaded machine code: llvm.NativeLibrary (MCJIT) or shared_object.SharedObjectLibrary."""

    texts: Mapping[str, str]
    object_code: bytes

    def address(self, name: str) -> int: ...


class Rendered(Protocol):
    """What loops.render_loop_kernel returns (runtime/cpu/loops.py: RenderedKernel)."""

    name: str
    llvm_ir: str
    extent: int
    cost_per_item: int


Renderer = Callable[[LoopKernel, Sequence[Buffer]], Rendered]


class ObjectCache(Protocol):
    def load(self, key: str) -> bytes | None: ...
    def store(self, key: str, payload: bytes) -> Any: ...


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class ParallelPlan:
    kernel: Rendered
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class MatmulPlan:
    kernel: MatmulKernel
    epilogue: Rendered | None
    epilogue_ranges: tuple[tuple[int, int], ...]


PlanItem = segments.Segment | ParallelPlan | MatmulPlan | HostKernel


class _Planner:
    """Orders a Program's steps into native segments, parallel loops, matmuls and host steps."""

    def __init__(self, program: Program, rendered: dict[int, Rendered], threads: int):
        self.program = program
        self.rendered = rendered
        self.threads = threads
        self.items: list[PlanItem] = []
        self._pending: list[segments.KernelCall | segments.GemmCall] = []
        self._segments = 0
        self._gemms = 0
        self._bind = True
        self.gemm_kernels: dict[str, MatmulKernel] = {}   # GemmCall.name -> its step (profiles)

    def plan(self, bind_natively: bool) -> list[PlanItem]:
        """The first item is always the entry segment (which binds the call's arrays when
        `bind_natively`); serial kernels before the first non-native step run inside it."""
        self._bind = bind_natively
        for step in self.program.steps:
            self._add(step)
        self._flush()
        return self.items

    def _add(self, step: Kernel) -> None:
        adders = {LoopKernel: self._add_loop, MatmulKernel: self._add_matmul,
                  HostKernel: self._add_host}
        adder = adders.get(type(step))
        if adder is None:
            raise CompileError(f"the CPU backend cannot run a step of type {type(step).__name__}")
        adder(step)

    def _add_loop(self, step: LoopKernel) -> None:
        """Small loops join the current native segment; big ones are split over the pool."""
        rendered = self.rendered[id(step)]
        ranges = self._ranges(rendered)
        if len(ranges) > 1:
            self._flush()
            self.items.append(ParallelPlan(rendered, ranges))
        elif rendered.extent > 0:
            self._pending.append(_kernel_call(rendered))

    def _add_host(self, step: HostKernel) -> None:
        self._flush()
        self.items.append(step)

    def _add_matmul(self, step: MatmulKernel) -> None:
        """BLAS-able products are called from native code inside the current segment; the rest
        (integer dtypes, odd layouts, big batches) run from Python."""
        buffers = self.program.buffers
        plan = plan_gemm(step, buffers[step.a.buffer].dtype, buffers[step.b.buffer].dtype)
        epilogue = self.rendered.get(id(step.epilogue)) if step.epilogue else None
        ranges = self._ranges(epilogue, EPILOGUE_WORK_FACTOR) if epilogue else ()
        if plan is None or len(plan.offsets) > MAX_NATIVE_BATCH:
            self._flush()
            self.items.append(MatmulPlan(step, epilogue, ranges))
            return
        self._gemms += 1
        call = _gemm_call(plan, f"matmul{self._gemms}")
        self.gemm_kernels[call.name] = step
        self._pending.append(call)
        if epilogue is None or not ranges:
            return
        if len(ranges) > 1:
            self._flush()
            self.items.append(ParallelPlan(epilogue, ranges))
        else:
            self._pending.append(_kernel_call(epilogue))

    def _ranges(self, rendered: Rendered, work_factor: int = 1) -> tuple[tuple[int, int], ...]:
        chunks = chunk_count(rendered.extent, rendered.cost_per_item, self.threads, work_factor)
        return tuple(split(rendered.extent, chunks)) if rendered.extent else ()

    def _flush(self) -> None:
        first = not self.items
        if not self._pending and not first:
            return
        program = self.program
        bind_leaves = bind_outputs = ()
        if first and self._bind:
            bind_leaves = tuple((b.index, b.param_index) for b in program.buffers
                                if b.kind is BufferKind.PARAM)
            outputs = [b for b in program.buffers if b.kind is BufferKind.OUTPUT]
            bind_outputs = tuple((b.index, n) for n, b in enumerate(outputs))
        graph_name = program.graph.name if program.graph is not None else "fn"
        name = f"gj_{_symbol(graph_name)}_entry{self._segments}"
        self._segments += 1
        self.items.append(segments.Segment(name, bind_leaves, bind_outputs, tuple(self._pending),
                                       args_slot=len(program.buffers)))
        self._pending = []


def _kernel_call(rendered: Rendered) -> segments.KernelCall:
    return segments.KernelCall(rendered.name, rendered.extent,
                           rendered.extent * max(1, rendered.cost_per_item))


def _gemm_call(plan: GemmPlan, name: str) -> segments.GemmCall:
    return segments.GemmCall(name, plan.routine, plan.trans_b, plan.trans_a,
                         (plan.n, plan.m, plan.k, plan.ldb, plan.lda, plan.ldc),
                         (plan.a, plan.b, plan.c), plan.offsets, plan.int_bits,
                         blas_library().threads if plan.single_threaded else 0)


def _blas_addresses() -> dict[str, int]:
    """The external symbols native entry functions call, and their addresses in this process."""
    addresses = {}
    for routine, symbol in segments.BLAS_SYMBOLS.items():
        address = gemm_address(routine)
        if address:   # no BLAS found: every product runs through np.matmul (blas.plan_gemm)
            addresses[symbol] = address
    library = blas_library()
    if library is not None and library.set_threads:
        addresses[segments.BLAS_THREADS_SYMBOL] = library.set_threads
    return addresses


def _register_blas() -> None:
    """Bind the BLAS symbols native entry functions call (before any object code is loaded)."""
    from . import llvm

    for symbol, address in _blas_addresses().items():
        llvm.register_symbol(symbol, address)


def _symbol(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


# ---------------------------------------------------------------- the backend

class CPUBackend:
    """`CPUBackend().compile(program, stats=None) -> Executable` (graphjit/backends.py: Backend)."""

    name = "cpu"

    def __init__(self, render: Renderer | None = None, pool: ThreadPool | None = None,
                 cache: ObjectCache | None = None):
        self._render = render
        self._pool = pool
        self.cache = cache

    @property
    def pool(self) -> ThreadPool:
        return self._pool if self._pool is not None else default_pool()

    def _pool_of(self) -> ThreadPool:
        return self.pool

    def compile(self, program: Program, stats: dict[str, float] | None = None) -> Executable:
        stats = {} if stats is None else stats
        bind_natively = segments.object_layout_ok()
        threads = self._thread_count()
        # A warm disk cache is looked up by the Program itself: a hit renders no IR and runs no
        # LLVM pass, it only relocates the stored object code.
        key = self._program_key(program, threads, bind_natively)
        if key is not None:
            executable = self._from_cache(key, program, threads, bind_natively, stats)
            if executable is not None:
                return executable
        start = time.perf_counter()
        rendered = self._render_all(program)
        stats["render"] = stats.get("render", 0.0) + time.perf_counter() - start
        planner, items, sources, symbols = _plan_and_sources(program, rendered, threads,
                                                             bind_natively)
        _register_blas()
        library = self._native_library(sources, stats, symbols, key,
                                       _kernel_summaries(program, rendered))
        return self._build(program, items, library, bind_natively, planner.gemm_kernels)

    def _build(self, program: Program, items: list[PlanItem], library: Library,
               bind_natively: bool, gemm_kernels: dict[str, MatmulKernel]) -> Executable:
        try:
            executable = self._executable(program, items, library, bind_natively)
        except GraphjitError:
            raise
        except Exception as exc:
            raise CompileError(f"could not build the CPU executable: {exc}") from exc
        executable.profile_units = functools.partial(
            _profile_units, program, items, library, self._pool_of, gemm_kernels)
        return executable

    def _thread_count(self) -> int:
        """The pool size the plan is made for (the pool itself starts on the first parallel
        loop: starting it compiles its native hand-off)."""
        return self._pool.size if self._pool is not None else default_pool_size()

    def _program_key(self, program: Program, threads: int, bind_natively: bool) -> str | None:
        if self.cache is None or self._render is not None:
            return None
        try:
            text = canonical_text((program.graph.name if program.graph is not None else "fn",
                                   program.buffers, program.steps, program.outputs),
                                  ignore_fields=_NOT_IN_OBJECT_CODE)
        except Uncacheable:
            return None     # keyed on the rendered IR instead (_native_library)
        here = os.path.dirname(os.path.abspath(__file__))
        compiler = os.path.dirname(os.path.abspath(kernel_module.__file__))
        return DiskCache.make_key(
            "program-v1", host_key(), PIPELINE,
            f"graphjit-{_graphjit_version()}", source_fingerprint(compiler, here),
            f"threads={threads}|bind={bind_natively}", text)

    def _from_cache(self, key: str, program: Program, threads: int, bind_natively: bool,
                    stats: dict[str, float]) -> Executable | None:
        """The program loaded from the disk cache: its shared object (dlopen, no LLVM at all)
        when one was linked, else its object code (MCJIT); None when neither is there."""
        start = time.perf_counter()
        for shared in (True, False) if shared_object.enabled() else (False,):
            entry = shared_object.shared_key(key) if shared else key
            payload = self.cache.load(entry)
            if payload is None:
                continue
            try:
                summaries, code = _unpack(payload)
                planner, items, symbols = self._plan_loaded(program, summaries, threads,
                                                            bind_natively)
                texts = shared_object.LazyTexts(functools.partial(
                    self._module_texts, program, threads, bind_natively))
                if shared:
                    library = shared_object.SharedObjectLibrary(code, texts, symbols)
                    for symbol, address in _blas_addresses().items():
                        library.bind(symbol, address)
                else:
                    from . import llvm

                    _register_blas()
                    library = llvm.load_object(code, texts, symbols)
                    self._link_later(key, payload[:len(payload) - len(code)], code)
            except CompileError as exc:
                self._discard(entry, str(exc))
                continue
            stats["load"] = time.perf_counter() - start
            return self._build(program, items, library, bind_natively, planner.gemm_kernels)
        return None

    def _plan_loaded(self, program: Program, summaries: list[KernelSummary], threads: int,
                     bind_natively: bool) -> tuple[_Planner, list[PlanItem], list[str]]:
        kernels = _loop_kernels(program)
        if len(summaries) != len(kernels):
            raise CompileError("its kernel list does not match the program")
        rendered = {id(k): summary for k, summary in zip(kernels, summaries)}
        planner = _Planner(program, rendered, threads)
        items = planner.plan(bind_natively)
        symbols = [r.name for r in _unique(rendered.values())] + [
            item.name for item in items if isinstance(item, segments.Segment)]
        return planner, items, symbols

    def _module_texts(self, program: Program, threads: int, bind_natively: bool) -> Mapping:
        """lower().as_text("llvm"/"asm") of a program loaded from the cache, made when asked."""
        from . import llvm

        def sources() -> list[str]:
            fresh = self._render_all(program)
            return _plan_and_sources(program, fresh, threads, bind_natively)[2]

        return llvm.ModuleTexts(sources=sources)

    def _link_later(self, key: str, summaries: bytes, object_code: bytes) -> None:
        """Store the program's shared object too, linked in the background, for later processes."""
        cache = self.cache
        shared_object.link_later(
            lambda shared: cache.store(shared_object.shared_key(key), summaries + shared),
            object_code, shared_object.slotted_symbols())

    def _discard(self, key: str, reason: str) -> None:
        # its key matched, so it was made by an incompatible build: delete it and recompile
        discard = getattr(self.cache, "discard", None)
        if discard is not None:
            discard(key, reason)
        else:
            warnings.warn(f"graphjit: a disk-cache entry could not be loaded ({reason}); "
                          "recompiling.", RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------ stages
    def _render_all(self, program: Program) -> dict[int, Rendered]:
        kernels = _loop_kernels(program)
        render = self._render
        if render is None:   # structurally identical kernels share one function (sharing.py)
            from .sharing import SharingRenderer

            render = SharingRenderer(kernels, program.buffers)
        rendered: dict[int, Rendered] = {}
        names: set[str] = set()
        for kernel in kernels:
            try:
                result = render(kernel, program.buffers)
            except GraphjitError:
                raise
            except Exception as exc:
                raise CompileError(f"could not generate code for kernel {kernel.name}: "
                                   f"{type(exc).__name__}: {exc}") from exc
            if result.name in names:
                raise CompileError(f"two kernels of one program share the name {result.name!r}")
            names.add(result.name)
            rendered[id(kernel)] = result
        return rendered

    def _native_library(self, sources: list[str], stats: dict[str, float],
                        symbols: Sequence[str] = (), program_key: str | None = None,
                        summaries: bytes = b"") -> Library:
        """Object code compiled (or, for a program with no canonical text, loaded from the
        cache by its IR); stored under `program_key` with the kernels' summaries."""
        from . import llvm

        key = program_key
        if key is None and self.cache is not None:
            key = _cache_key(sources)
            library = self._cached_library(key, sources, stats, symbols)
            if library is not None:
                return library
        start = time.perf_counter()
        library = llvm.compile_ir(sources)
        stats["llvm"] = time.perf_counter() - start
        if key is not None:
            self.cache.store(key, _pack(summaries, library.object_code))
            if program_key is not None:
                self._link_later(key, _pack(summaries, b""), library.object_code)
        return library

    def _cached_library(self, key: str, sources: list[str], stats: dict[str, float],
                        symbols: Sequence[str]) -> Library | None:
        from . import llvm

        start = time.perf_counter()
        payload = self.cache.load(key)
        if payload is None:
            return None
        try:
            _, object_code = _unpack(payload)
            library = llvm.load_object(object_code, llvm.ModuleTexts(sources=sources), symbols)
        except CompileError as exc:
            self._discard(key, str(exc))
            return None
        stats["load"] = time.perf_counter() - start
        return library

    def _executable(self, program: Program, items: list[PlanItem], library: Library,
                    bind_natively: bool) -> Executable:
        steps = [self._step(item, program, library) for item in items]
        entry = None
        if bind_natively:
            first = items[0]
            assert isinstance(first, segments.Segment)
            entry = _segment_function(library, first)
            steps = steps[1:]
        steps = [s for s in steps if s is not None]
        return Executable(program, entry, steps, texts=library.texts, keep_alive=library)

    def _step(self, item: PlanItem, program: Program, library: Library
              ) -> RunStep | None:
        makers = {
            segments.Segment: lambda: _segment_step(item, library),
            ParallelPlan: lambda: _loop_step(self._pool_of, library, item.kernel, item.ranges),
            MatmulPlan: lambda: _matmul_step(item, program, self._pool_of, library),
            HostKernel: lambda: HostStep(item, program),
        }
        return makers[type(item)]()


# Dataclass fields that never reach the object code: source lines only feed error messages (and a
# cached entry rendered without error), so one function pickled to or loaded by another process,
# where its file may be named differently, still hits the cache.
_NOT_IN_OBJECT_CODE = frozenset({"source"})


@dataclass(frozen=True)
class KernelSummary:
    """What planning needs of a rendered kernel, kept beside its object code in the cache."""

    name: str
    extent: int
    cost_per_item: int


def _loop_kernels(program: Program) -> list[LoopKernel]:
    """The program's loop kernels (matmul epilogues included), in the order they render."""
    kernels: list[LoopKernel] = []
    for step in program.steps:
        if isinstance(step, LoopKernel):
            kernels.append(step)
        elif isinstance(step, MatmulKernel) and step.epilogue is not None:
            kernels.append(step.epilogue)
    return kernels


def _plan_and_sources(program: Program, rendered: dict[int, Rendered], threads: int,
                      bind_natively: bool
                      ) -> tuple["_Planner", list[PlanItem], list[str], list[str]]:
    planner = _Planner(program, rendered, threads)
    items = planner.plan(bind_natively)
    from . import llvm

    entries = [item for item in items if isinstance(item, segments.Segment)]
    kernels = _unique(rendered.values())
    sources = [r.llvm_ir for r in kernels] + [llvm.segments_ir(entries)]
    symbols = [r.name for r in kernels] + [s.name for s in entries]
    return planner, items, sources, symbols


def _kernel_summaries(program: Program, rendered: dict[int, Rendered]) -> bytes:
    return json.dumps([[r.name, r.extent, r.cost_per_item]
                       for r in (rendered[id(k)] for k in _loop_kernels(program))]).encode()


_SUMMARY_LENGTH = struct.Struct("<Q")


def _pack(summaries: bytes, object_code: bytes) -> bytes:
    return _SUMMARY_LENGTH.pack(len(summaries)) + summaries + object_code


def _unpack(payload: bytes) -> tuple[list[KernelSummary], bytes]:
    """(kernel summaries, object code) of a cache payload; a CompileError if malformed."""
    try:
        (length,) = _SUMMARY_LENGTH.unpack_from(payload)
        end = _SUMMARY_LENGTH.size + length
        summaries = [KernelSummary(str(name), int(extent), int(cost))
                     for name, extent, cost in json.loads(payload[_SUMMARY_LENGTH.size:end] or b"[]")]
    except (struct.error, ValueError, TypeError) as exc:
        raise CompileError(f"malformed kernel summaries ({exc})") from None
    if end > len(payload):
        raise CompileError("malformed kernel summaries (length beyond the payload)")
    return summaries, payload[end:]


def _unique(rendered: Any) -> list[Rendered]:
    seen: dict[str, Rendered] = {}
    for r in rendered:
        seen.setdefault(r.name, r)
    return list(seen.values())


@functools.lru_cache(maxsize=1)
def _graphjit_version() -> str:
    # the package's own attribute: importlib.metadata costs ~50 ms to import on a first call
    return str(getattr(sys.modules.get("graphjit"), "__version__", "unknown"))


def _cache_key(sources: list[str]) -> str:
    """Object code depends on the IR, the host CPU and LLVM, and (through the entry functions'
    conventions) on graphjit itself."""
    digest = hashlib.sha256()
    parts = (host_key(), PIPELINE, f"graphjit-{_graphjit_version()}", *sources)
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _segment_function(library: Library, segment: segments.Segment) -> Callable:
    prototype = (SEGMENT_FUNCTION_KEEPING_GIL if segment.work <= KEEP_GIL_MAX_WORK
                 else SEGMENT_FUNCTION)
    return prototype(library.address(segment.name))


def _segment_step(segment: segments.Segment, library: Library) -> RunStep | None:
    if not segment.calls and not segment.bind_leaves and not segment.bind_outputs:
        return None
    function = _segment_function(library, segment)

    def run_segment(workspace: Workspace) -> None:
        function(workspace.address)

    return run_segment


def _loop_step(pool: Callable[[], ThreadPool], library: Library, rendered: Rendered,
               ranges: tuple[tuple[int, int], ...]) -> RunStep:
    function = KERNEL_FUNCTION(library.address(rendered.name))
    chunks = list(ranges)
    if len(chunks) <= 1:
        begin, end = chunks[0] if chunks else (0, 0)

        def run_serial(workspace: Workspace) -> None:
            if end > begin:
                function(workspace.address, begin, end)

        return run_serial

    def run_parallel(workspace: Workspace) -> None:
        pool().parallel_for(functools.partial(function, workspace.address), chunks)

    return run_parallel


def _matmul_step(plan: MatmulPlan, program: Program, pool: Callable[[], ThreadPool],
                 library: Library) -> RunStep:
    kernel = plan.kernel
    runner = MatmulRunner(kernel, program.buffers[kernel.a.buffer].dtype,
                          program.buffers[kernel.b.buffer].dtype)
    epilogue = None
    if plan.epilogue is not None:
        epilogue = _loop_step(pool, library, plan.epilogue, plan.epilogue_ranges)

    def run_matmul(workspace: Workspace) -> None:
        runner(workspace.table)
        if epilogue is not None:
            epilogue(workspace)

    return run_matmul


__all__ = ["CPUBackend"]


# ---------------------------------------------------------------- profiling (runtime/profile.py)

def _profile_units(program: Program, items: list[PlanItem], library: Library,
                   pool: Callable[[], ThreadPool], gemm_kernels: dict[str, MatmulKernel]) -> list:
    """The program's work as separately runnable units, in the order a call runs it: each
    kernel and BLAS call of a native segment on its own, parallel loops through the pool."""
    from graphjit.runtime.profile import ProfileUnit

    loops: dict[str, tuple[LoopKernel, MatmulKernel | None]] = {}
    for step in program.steps:
        if isinstance(step, LoopKernel):
            loops[step.name] = (step, None)
        elif isinstance(step, MatmulKernel) and step.epilogue is not None:
            loops[step.epilogue.name] = (step.epilogue, step)

    def loop_unit(rendered: Rendered, ranges: Sequence[tuple[int, int]]) -> ProfileUnit:
        kernel, parent = loops.get(rendered.name, (None, None))
        run = _loop_step(pool, library, rendered, tuple(ranges) or ((0, rendered.extent),))
        function = KERNEL_FUNCTION(library.address(rendered.name))
        kind = "epilogue" if parent is not None else "loop"
        return ProfileUnit(kernel, kind, run, max(1, len(ranges)),
                           empty_call=lambda workspace: function(workspace.address, 0, 0),
                           epilogue_of=parent)

    def matmul_unit(kernel: MatmulKernel) -> ProfileUnit:
        runner = MatmulRunner(kernel, program.buffers[kernel.a.buffer].dtype,
                              program.buffers[kernel.b.buffer].dtype)
        if runner.plan is not None:
            threads = 1 if runner.plan.single_threaded else max(1, blas_library().threads)
            kind = f"blas {runner.plan.routine}"
        else:
            threads, kind = 1, "matmul (numpy)"
        return ProfileUnit(kernel, kind, lambda workspace: runner(workspace.table), threads)

    rendered_by_name: dict[str, Rendered] = {}
    for item in items:
        if isinstance(item, ParallelPlan):
            rendered_by_name[item.kernel.name] = item.kernel
        elif isinstance(item, MatmulPlan) and item.epilogue is not None:
            rendered_by_name[item.epilogue.name] = item.epilogue
    units: list = []
    for item in items:
        if isinstance(item, segments.Segment):
            for call in item.calls:
                if isinstance(call, segments.GemmCall):
                    units.append(matmul_unit(gemm_kernels[call.name]))
                else:
                    units.append(loop_unit(_CallRendered(call), [(0, call.extent)]))
        elif isinstance(item, ParallelPlan):
            units.append(loop_unit(item.kernel, item.ranges))
        elif isinstance(item, MatmulPlan):
            units.append(matmul_unit(item.kernel))
            if item.epilogue is not None:
                units.append(loop_unit(item.epilogue, item.epilogue_ranges))
        elif isinstance(item, HostKernel):
            units.append(ProfileUnit(item, "host (numpy)", HostStep(item, program)))
    return units


@dataclass(frozen=True)
class _CallRendered:
    """A KernelCall of a segment seen as a Rendered kernel (its symbol and extent)."""

    call: segments.KernelCall

    @property
    def name(self) -> str:
        return self.call.symbol

    @property
    def extent(self) -> int:
        return self.call.extent
