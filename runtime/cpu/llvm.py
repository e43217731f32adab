"""LLVM through llvmlite: one module per program, optimised at O3 for the host, run with MCJIT.

Compilation is split in two so that a disk cache can skip the expensive half:
    optimise + emit object code   (`compile_ir`: LLVM's optimiser and code generator)
    load object code into MCJIT   (`load_object`: relocation only, no LLVM optimisation)
`compile_ir` itself goes through `load_object`, so the cached path and the fresh path run the same
loader and a cache hit behaves exactly like a fresh compile.

LLVM's global state (the context, target registry) is not thread-safe, so every entry point holds
one module-level lock; jit compiles from several Python threads therefore serialise here.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import llvmlite
import llvmlite.binding as llvm
from llvmlite import ir

from graphjit.compiler.errors import CompileError, ConfigurationError

from .host import OPT_LEVEL, PIPELINE, host_signature  # noqa: F401
from .segments import (ARRAY_DATA_OFFSET, BLAS_SYMBOLS, BLAS_THREADS_SYMBOL,  # noqa: F401
                       LIST_ITEMS_OFFSET, GemmCall, KernelCall, Segment, object_layout_ok)

_LLVM_LOCK = threading.RLock()


def _fresh_lock_after_fork() -> None:
    # another parent thread may have held the lock at fork; the child has no such thread
    global _LLVM_LOCK
    _LLVM_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_after_fork)


@dataclass
class _Host:
    """The target machine for this CPU, created once."""

    cpu: str
    features: str
    triple: str
    machine: llvm.TargetMachine


_host: _Host | None = None


def _host_target() -> _Host:
    """Initialise llvmlite's native target once (thread-safely) and build the host machine."""
    global _host
    if _host is not None:
        return _host
    with _LLVM_LOCK:
        if _host is None:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            cpu, features = _chosen_cpu()
            triple = llvm.get_process_triple()
            _host = _Host(cpu, features, triple, _new_machine(triple, cpu, features))
    return _host


# CPUs that GRAPHJIT_CPU may name, each with the host features its code needs. Code built for a
# CPU the host cannot run would die of SIGILL, so a name is only accepted when the host has all of
# them; older CPUs let one machine's tests cover the narrower vector paths too.
_V2 = ("sse4.2", "popcnt")
_V3 = _V2 + ("avx", "avx2", "fma", "bmi2")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512dq", "avx512vl")
NAMED_CPUS: dict[str, tuple[str, ...]] = {
    "x86-64": (), "x86-64-v2": _V2, "nehalem": _V2,
    "x86-64-v3": _V3, "haswell": _V3, "skylake": _V3, "znver2": _V3, "znver3": _V3,
    "x86-64-v4": _V4, "skylake-avx512": _V4, "icelake-server": _V4, "znver4": _V4,
}


def _chosen_cpu() -> tuple[str, str]:
    """The CPU name and feature string to compile for: the host, or GRAPHJIT_CPU."""
    host_features = llvm.get_host_cpu_features()
    name = os.environ.get("GRAPHJIT_CPU", "").strip().lower()
    if name in ("", "host", "native"):
        return llvm.get_host_cpu_name(), host_features.flatten()
    if name not in NAMED_CPUS:
        raise ConfigurationError(
            f"GRAPHJIT_CPU={name!r} is not a CPU graphjit can target; use 'host' or one of "
            f"{', '.join(sorted(NAMED_CPUS))}")
    missing = [f for f in NAMED_CPUS[name] if not host_features.get(f, False)]
    if missing:
        raise ConfigurationError(
            f"GRAPHJIT_CPU={name!r} needs CPU features this machine lacks ({', '.join(missing)}): "
            "its code could not run here; name an older CPU or unset GRAPHJIT_CPU")
    # An empty feature string lets LLVM use exactly the named CPU's features.
    return name, ""


def vector_bytes() -> int:
    """The widest SIMD register of the target CPU, in bytes (16 SSE, 32 AVX2, 64 AVX-512)."""
    host = _host_target()
    if host.features:
        enabled = {f[1:] for f in host.features.split(",") if f.startswith("+")}
    else:
        enabled = set(NAMED_CPUS.get(host.cpu, ()))
    if "avx512f" in enabled:
        return 64
    if "avx" in enabled:
        return 32
    return 16


def _new_machine(triple: str, cpu: str, features: str) -> llvm.TargetMachine:
    target = llvm.Target.from_triple(triple)
    # jitdefault (large) code model: calls to libm/BLAS symbols may be far away. Position-
    # independent, so the same object code links into a shared object (shared_object.py).
    return target.create_target_machine(cpu=cpu, features=features, opt=OPT_LEVEL,
                                        reloc="pic", codemodel="jitdefault")


def host_description() -> str:
    """What object code depends on besides the IR: CPU, features, triple and llvmlite version.

    A disk-cache key must include it so code built for another CPU or LLVM is never loaded."""
    host = _host_target()
    return f"{host.triple}|{host.cpu}|{host.features}|llvmlite-{llvmlite.__version__}"


@dataclass
class NativeLibrary:
    """Loaded machine code: symbol addresses, plus the texts shown by `lower().as_text`."""

    engine: llvm.ExecutionEngine
    object_code: bytes
    texts: Mapping[str, str] = field(default_factory=dict)

    def address(self, name: str) -> int:
        with _LLVM_LOCK:
            address = self.engine.get_function_address(name)
        if not address:
            raise CompileError(f"symbol {name!r} is missing from the compiled module")
        return address


_registered: dict[str, int] = {}


def register_symbol(name: str, address: int) -> None:
    """Bind an external symbol of our modules to an address in this process (once per name)."""
    with _LLVM_LOCK:
        if _registered.get(name) != address:
            llvm.add_symbol(name, address)
            _registered[name] = address


def link_modules(texts: list[str], name: str = "graphjit") -> llvm.ModuleRef:
    """Parse each LLVM IR text and link them into one module (kernels + program entries)."""
    host = _host_target()
    with _LLVM_LOCK:
        try:
            module = llvm.parse_assembly(f'; ModuleID = "{name}"\n')
            module.name = name
            module.triple = host.triple
            module.data_layout = str(host.machine.target_data)
            for text in texts:
                part = llvm.parse_assembly(text)
                part.triple = host.triple
                part.data_layout = module.data_layout
                module.link_in(part)
            module.verify()
        except RuntimeError as exc:
            raise CompileError(f"LLVM rejected the generated IR: {exc}") from None
    return module


def optimise(module: llvm.ModuleRef) -> None:
    """The new pass manager's O3 pipeline, with the loop and SLP vectorisers on."""
    host = _host_target()
    with _LLVM_LOCK:
        tuning = llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL)
        tuning.loop_vectorization = True
        tuning.slp_vectorization = True
        tuning.loop_unrolling = True
        builder = llvm.create_pass_builder(host.machine, tuning)
        builder.getModulePassManager().run(module, builder)


class ModuleTexts(Mapping):
    """The texts of a compiled module: "llvm" (optimised IR) and "asm" (host assembly).

    Each is made when first asked for: the assembly costs a second run of the code generator, and
    after a disk-cache hit even the optimised IR has to be recomputed from the source modules."""

    def __init__(self, llvm_text: str | None = None,
                 sources: list[str] | Callable[[], list[str]] | None = None):
        self._texts = {} if llvm_text is None else {"llvm": llvm_text}
        # the source modules, or (after a disk-cache hit, which renders nothing) how to make them
        self._sources = sources

    def __getitem__(self, key: str) -> str:
        if key not in ("llvm", "asm"):
            raise KeyError(key)
        if "llvm" not in self._texts:
            sources = self._sources() if callable(self._sources) else self._sources
            module = link_modules(sources or [])
            optimise(module)
            self._texts["llvm"] = str(module)
        if key == "asm" and "asm" not in self._texts:
            self._texts["asm"] = assembly_of(self._texts["llvm"])
        return self._texts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("llvm", "asm"))

    def __len__(self) -> int:
        return 2


def assembly_of(llvm_text: str) -> str:
    """Host assembly of optimised LLVM IR (no further optimisation)."""
    host = _host_target()
    with _LLVM_LOCK:
        try:
            return host.machine.emit_assembly(llvm.parse_assembly(llvm_text))
        except RuntimeError as exc:
            raise CompileError(f"LLVM failed to emit assembly: {exc}") from None


def compile_ir(texts: list[str], name: str = "graphjit") -> NativeLibrary:
    """Link, optimise, emit object code and load it. `texts` are LLVM IR modules (as text)."""
    module = link_modules(texts, name)
    host = _host_target()
    try:
        optimise(module)
        with _LLVM_LOCK:
            object_code = host.machine.emit_object(module)
            module_texts = ModuleTexts(str(module))
    except RuntimeError as exc:
        raise CompileError(f"LLVM failed to compile the module: {exc}") from None
    return load_object(object_code, module_texts)


def compile_ir_cached(texts: list[str], required: Sequence[str] = ()) -> NativeLibrary:
    """`compile_ir` through the disk cache, keyed by the IR itself: for fixed modules (the thread
    pool's hand-off) that every fresh process needs, so a warm start runs no LLVM pass. Its shared
    object is linked in the background for later processes (shared_object.load_ir_library)."""
    from graphjit.runtime.disk_cache import cache_enabled, default_cache

    from . import shared_object

    cache = default_cache() if cache_enabled() else None
    if cache is None:
        return compile_ir(texts)
    key = shared_object.ir_key(texts)
    payload = cache.load(key)
    library = None
    if payload is not None:
        try:
            library = load_object(payload, ModuleTexts(sources=texts), required)
        except CompileError as exc:
            cache.discard(key, str(exc))
    if library is None:
        library = compile_ir(texts)
        cache.store(key, library.object_code)
    shared_object.link_later(lambda shared: cache.store(shared_object.shared_key(key), shared),
                             library.object_code, ())
    return library


def load_object(object_code: bytes, texts: Mapping[str, str] | None = None,
                required: Sequence[str] = ()) -> NativeLibrary:
    """Relocate object code into a fresh MCJIT engine (no LLVM optimisation runs); a CompileError
    if it cannot be loaded or lacks one of the `required` symbols."""
    host = _host_target()
    with _LLVM_LOCK:
        try:
            empty = llvm.parse_assembly("")
            empty.triple = host.triple
            # The engine takes ownership of (and later frees) its target machine: give it its own.
            machine = _new_machine(host.triple, host.cpu, host.features)
            engine = llvm.create_mcjit_compiler(empty, machine)
            engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
            engine.finalize_object()
        except RuntimeError as exc:
            raise CompileError(f"could not load compiled object code: {exc}") from None
        missing = [name for name in required if not engine.get_function_address(name)]
    if missing:
        raise CompileError(f"symbol {missing[0]!r} is missing from the object code"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return NativeLibrary(engine, object_code, texts if texts is not None else {})


# ---------------------------------------------------------------- program entry functions
# (what each segment does is planned in segments.py; this renders it to IR)

_PTR = ir.PointerType()
_I8 = ir.IntType(8)
_I64 = ir.IntType(64)
KERNEL_TYPE = ir.FunctionType(ir.VoidType(), [_PTR, _I64, _I64])
SEGMENT_TYPE = ir.FunctionType(ir.VoidType(), [_PTR])


GEMM_TYPE = ir.FunctionType(ir.VoidType(), [_PTR] * 13)
_SET_THREADS_TYPE = ir.FunctionType(ir.VoidType(), [ir.IntType(32)])
_BLAS_SCALARS = {"sgemm": ir.FloatType(), "dgemm": ir.DoubleType()}


def segments_ir(segments: list[Segment]) -> str:
    """LLVM IR text of the entry functions (kernels are declared, linked in from their modules)."""
    module = ir.Module("graphjit_entries")
    kernels: dict[str, ir.Function] = {}
    routines: dict[str, ir.Function] = {}
    for segment in segments:
        for call in segment.calls:
            if isinstance(call, KernelCall) and call.symbol not in kernels:
                kernels[call.symbol] = ir.Function(module, KERNEL_TYPE, call.symbol)
            if isinstance(call, GemmCall) and call.routine not in routines:
                routines[call.routine] = ir.Function(module, GEMM_TYPE,
                                                     BLAS_SYMBOLS[call.routine])
    if any(isinstance(call, GemmCall) and call.restore_threads
           for segment in segments for call in segment.calls):
        routines["set_threads"] = ir.Function(module, _SET_THREADS_TYPE, BLAS_THREADS_SYMBOL)
    for segment in segments:
        _define_segment(module, segment, kernels, routines)
    return str(module)


def _define_segment(module: ir.Module, segment: Segment, kernels: dict[str, ir.Function],
                    routines: dict[str, ir.Function]) -> None:
    function = ir.Function(module, SEGMENT_TYPE, segment.name)
    (table,) = function.args
    table.name = "table"
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    if segment.bind_leaves or segment.bind_outputs:
        leaves, outputs = _call_arguments(builder, table, segment.args_slot)
        _bind_arrays(builder, leaves, table, segment.bind_leaves, "leaf")
        _bind_arrays(builder, outputs, table, segment.bind_outputs, "out")
    for call in segment.calls:
        if isinstance(call, KernelCall):
            builder.call(kernels[call.symbol],
                         [table, ir.Constant(_I64, 0), ir.Constant(_I64, call.extent)])
        else:
            _emit_gemm(builder, module, call, routines, table)
    builder.ret_void()


def _private_constant(module: ir.Module, name: str, value: ir.Constant) -> ir.GlobalVariable:
    variable = ir.GlobalVariable(module, value.type, name)
    variable.linkage = "private"
    variable.global_constant = True
    variable.initializer = value
    # llvmlite's IR layer types globals as typed pointers (`i32*`), which LLVM no longer parses;
    # references to it must print as an opaque `ptr`
    variable.type = _PTR
    return variable


def _emit_gemm(builder: ir.IRBuilder, module: ir.Module, call: GemmCall,
               routines: dict[str, ir.Function], table: ir.Value) -> None:
    """for each batch element: gemm(transb, transa, n, m, k, 1, B, ldb, A, lda, 0, C, ldc),
    bracketed by set_threads(1) ... set_threads(restore_threads) when the call is single-threaded"""
    gemm = routines[call.routine]
    scalar = _BLAS_SCALARS[call.routine]
    chars = [_private_constant(module, f"{call.name}.{label}", ir.Constant(_I8, flag[0]))
             for label, flag in (("transb", call.trans_b), ("transa", call.trans_a))]
    n, m, k, ldb, lda, ldc = (
        _private_constant(module, f"{call.name}.{label}", ir.Constant(ir.IntType(call.int_bits),
                                                                      value))
        for label, value in zip(("n", "m", "k", "ldb", "lda", "ldc"), call.ints))
    one = _private_constant(module, f"{call.name}.alpha", ir.Constant(scalar, 1.0))
    zero = _private_constant(module, f"{call.name}.beta", ir.Constant(scalar, 0.0))
    bases = []
    for label, slot in zip("abc", call.buffers):
        address = builder.gep(table, [ir.Constant(_I64, slot)], source_etype=_PTR)
        bases.append(builder.load(address, typ=_PTR, name=f"{call.name}.{label}"))
    if call.restore_threads:
        builder.call(routines["set_threads"], [ir.Constant(ir.IntType(32), 1)])
    for a_off, b_off, c_off in call.offsets:
        a, b, c = (builder.gep(base, [ir.Constant(_I64, offset)], source_etype=_I8)
                   for base, offset in zip(bases, (a_off, b_off, c_off)))
        builder.call(gemm, [chars[0], chars[1], n, m, k, one, b, ldb, a, lda, zero, c, ldc])
    if call.restore_threads:
        builder.call(routines["set_threads"],
                     [ir.Constant(ir.IntType(32), call.restore_threads)])


def _call_arguments(builder: ir.IRBuilder, table: ir.Value, args_slot: int
                    ) -> tuple[ir.Value, ir.Value]:
    """The leaves and outputs lists, items 0 and 1 of the list in table[args_slot]."""
    slot = builder.gep(table, [ir.Constant(_I64, args_slot)], source_etype=_PTR, name="args.addr")
    holder = builder.load(slot, typ=_PTR, name="args")
    items_addr = builder.gep(holder, [ir.Constant(_I64, LIST_ITEMS_OFFSET)], source_etype=_I8,
                             name="args.items.addr")
    items = builder.load(items_addr, typ=_PTR, name="args.items")
    lists = []
    for position, label in enumerate(("leaves", "outputs")):
        address = builder.gep(items, [ir.Constant(_I64, position)], source_etype=_PTR,
                              name=f"{label}.addr")
        lists.append(builder.load(address, typ=_PTR, name=label))
    return lists[0], lists[1]


def _bind_arrays(builder: ir.IRBuilder, array_list: ir.Value, table: ir.Value,
                 bindings: tuple[tuple[int, int], ...], label: str) -> None:
    if not bindings:
        return
    items_addr = builder.gep(array_list, [ir.Constant(_I64, LIST_ITEMS_OFFSET)],
                             source_etype=_I8, name=f"{label}.items.addr")
    items = builder.load(items_addr, typ=_PTR, name=f"{label}.items")
    for slot, position in bindings:
        item_addr = builder.gep(items, [ir.Constant(_I64, position)], source_etype=_PTR,
                                name=f"{label}{position}.addr")
        array = builder.load(item_addr, typ=_PTR, name=f"{label}{position}")
        data_addr = builder.gep(array, [ir.Constant(_I64, ARRAY_DATA_OFFSET)], source_etype=_I8,
                                name=f"{label}{position}.data.addr")
        data = builder.load(data_addr, typ=_PTR, name=f"{label}{position}.data")
        slot_addr = builder.gep(table, [ir.Constant(_I64, slot)], source_etype=_PTR,
                                name=f"slot{slot}")
        builder.store(data, slot_addr)
