"""Compiled programs as shared objects, so that a warm start never loads LLVM.

A compile emits position-independent object code, which MCJIT loads in the compiling process.
In the background the same object code is linked by the system's C compiler driver into a shared
object, stored in the disk cache beside the object code. A later process that finds it loads it
with dlopen: no llvmlite import, no relocation by MCJIT. Importing llvmlite's binding alone costs
more than the rest of a warm first call.

The object code calls a few external symbols (the BLAS routines, whose addresses are only known
in the running process). In the shared object each is a two-instruction stub jumping through a
pointer slot, `<symbol>__slot`, which `SharedObjectLibrary.bind` fills after loading. Every other
external symbol comes from libc/libm, and the library is loaded with RTLD_NOW, so a missing one is
an OSError at load time, never a crash at call time.

Everything here is an optimisation: without a C compiler, off Linux, with GRAPHJIT_SHARED_OBJECTS=0
or on any failure, programs load through MCJIT as before.
"""
from __future__ import annotations

import atexit
import ctypes
import itertools
import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from graphjit.compiler.errors import CompileError

SLOT_SUFFIX = "__slot"
# How long a process may wait at exit for shared objects still being linked for the cache.
EXIT_WAIT_S = 1.0


def shared_key(key: str) -> str:
    """The disk-cache key of the shared object linked from the object code stored under `key`."""
    from graphjit.runtime.disk_cache import DiskCache

    return DiskCache.make_key("shared-object-v1", key)


def ir_key(texts: Sequence[str]) -> str:
    """The disk-cache key of the object code of fixed LLVM IR modules (llvm.compile_ir_cached)."""
    from graphjit.runtime.disk_cache import DiskCache

    from .host import PIPELINE, host_key

    return DiskCache.make_key("ir-v1", host_key(), PIPELINE, *texts)


def load_ir_library(texts: Sequence[str], required: Sequence[str]) -> SharedObjectLibrary | None:
    """The shared object of fixed IR modules from the disk cache (llvm.compile_ir_cached stores
    it), or None: a warm process gets the thread pool's native hand-off without LLVM."""
    from graphjit.runtime.disk_cache import cache_enabled, default_cache

    if not enabled() or not cache_enabled():
        return None
    cache = default_cache()
    key = shared_key(ir_key(texts))
    payload = cache.load(key)
    if payload is None:
        return None

    def module_texts() -> Mapping[str, str]:
        from .llvm import ModuleTexts

        return ModuleTexts(sources=list(texts))

    try:
        return SharedObjectLibrary(payload, LazyTexts(module_texts), required)
    except CompileError as exc:
        cache.discard(key, str(exc))
        return None


def slotted_symbols() -> tuple[str, ...]:
    """External symbols whose addresses only the running process knows (stubbed in the link)."""
    from .segments import BLAS_SYMBOLS, BLAS_THREADS_SYMBOL

    return (*BLAS_SYMBOLS.values(), BLAS_THREADS_SYMBOL)


class LazyTexts(Mapping):
    """`lower().as_text` texts made on first access (making them needs LLVM)."""

    def __init__(self, make: Callable[[], Mapping[str, str]]):
        self._make = make
        self._texts: Mapping[str, str] | None = None

    def _made(self) -> Mapping[str, str]:
        if self._texts is None:
            self._texts = self._make()
        return self._texts

    def __getitem__(self, key: str) -> str:
        return self._made()[key]

    def __iter__(self):
        return iter(("llvm", "asm"))

    def __len__(self) -> int:
        return 2


def enabled() -> bool:
    return (sys.platform.startswith("linux") and
            os.environ.get("GRAPHJIT_SHARED_OBJECTS", "1").strip().lower() not in ("0", "no", "off",
                                                                                  "false"))


_linker: list[str | None] = []


def linker() -> str | None:
    """The C compiler driver that links shared objects (CC, else cc or gcc or clang)."""
    if not _linker:
        candidates = [os.environ.get("CC", "").split(" ")[0], "cc", "gcc", "clang"]
        _linker.append(next((path for path in map(shutil.which, filter(None, candidates))
                             if path), None))
    return _linker[0]


def _stubs(symbols: Iterable[str]) -> str:
    """x86-64 assembly: each symbol jumps through its pointer slot, found through the GOT."""
    lines = ["\t.text"]
    for symbol in symbols:
        lines += [f"\t.globl\t{symbol}", f"\t.type\t{symbol},@function", f"{symbol}:",
                  f"\tmovq\t{symbol}{SLOT_SUFFIX}@GOTPCREL(%rip), %rax", "\tjmpq\t*(%rax)"]
    lines.append("\t.data")
    for symbol in symbols:
        lines += [f"\t.globl\t{symbol}{SLOT_SUFFIX}", "\t.p2align\t3", f"{symbol}{SLOT_SUFFIX}:",
                  "\t.quad\t0"]
    lines.append('\t.section\t.note.GNU-stack,"",@progbits')
    return "\n".join(lines) + "\n"


def link(object_code: bytes, slotted: Sequence[str]) -> bytes | None:
    """The shared object of `object_code`, with a slot stub for each of `slotted`; None when it
    cannot be linked here (no compiler driver, not x86-64, the driver failed)."""
    import platform
    import subprocess   # here: a warm start that only loads never pays for importing it

    driver = linker()
    if driver is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    # mkdtemp, not TemporaryDirectory: the latter's exit-time finalizer would delete the folder
    # under a link that the process is still finishing at exit
    work = tempfile.mkdtemp(prefix="gj-link-")
    try:
        objects = os.path.join(work, "program.o")
        stubs = os.path.join(work, "stubs.s")
        output = os.path.join(work, "program.so")
        with open(objects, "wb") as handle:
            handle.write(object_code)
        with open(stubs, "w", encoding="ascii") as handle:
            handle.write(_stubs(slotted))
        command = [driver, "-shared", "-o", output, objects, stubs,
                   "-Wl,-Bsymbolic", "-Wl,-z,noexecstack", "-lm"]
        try:
            done = subprocess.run(command, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode != 0 or not os.path.exists(output):
            return None
        with open(output, "rb") as handle:
            return handle.read()
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SharedObjectLibrary:
    """A shared object loaded with dlopen: symbol addresses and the texts of `lower().as_text`
    (the same interface as llvm.NativeLibrary)."""

    def __init__(self, shared_object: bytes, texts: Mapping[str, str] | None = None,
                 required: Sequence[str] = ()):
        self.object_code = b""      # only MCJIT-loaded libraries are (re)stored in the cache
        self.texts = texts if texts is not None else {}
        self._handle = _dlopen(shared_object)
        missing = [name for name in required if not self._lookup(name)]
        if missing:
            raise CompileError(f"symbol {missing[0]!r} is missing from the shared object")

    def __del__(self) -> None:
        # like an MCJIT engine's, the code goes when the last executable using it does
        handle = getattr(getattr(self, "_handle", None), "_handle", None)
        if handle:
            try:
                import _ctypes

                _ctypes.dlclose(handle)
            except (ImportError, OSError, AttributeError):
                pass

    def _lookup(self, name: str) -> int:
        try:
            return ctypes.cast(getattr(self._handle, name), ctypes.c_void_p).value or 0
        except AttributeError:
            return 0

    def address(self, name: str) -> int:
        address = self._lookup(name)
        if not address:
            raise CompileError(f"symbol {name!r} is missing from the compiled module")
        return address

    def bind(self, symbol: str, address: int) -> None:
        """Point the stub of an external symbol at its address in this process."""
        try:
            ctypes.c_void_p.in_dll(self._handle, symbol + SLOT_SUFFIX).value = address
        except ValueError:
            pass    # this program never calls it: the linker got no stub for it


_load_count = itertools.count()
_load_directory: tuple[int, str] | None = None


def _private_directory() -> str:
    """This process's directory for shared objects being loaded (tmpfs where there is one)."""
    global _load_directory
    if _load_directory is None or _load_directory[0] != os.getpid():
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        _load_directory = (os.getpid(), tempfile.mkdtemp(prefix="graphjit-so-", dir=base))
        atexit.register(shutil.rmtree, _load_directory[1], True)
    return _load_directory[1]


def _dlopen(shared_object: bytes) -> ctypes.CDLL:
    """Load a shared object from bytes. Each load gets a file name of its own and the file is
    unlinked once mapped: the dynamic loader returns an already loaded library for a name (or a
    file) it has seen, so names are never reused, and a mapped file's inode cannot be reused."""
    path = os.path.join(_private_directory(), f"program{next(_load_count)}.so")
    try:
        with open(path, "wb") as handle:
            handle.write(shared_object)
        return ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
    except OSError as exc:
        raise CompileError(f"could not load the cached shared object: {exc}") from None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


# ---------------------------------------------------------------- linking in the background

class _Linker:
    """One daemon thread that links shared objects and stores them in the disk cache, so a compile
    never waits for the C compiler driver. At exit the process waits up to EXIT_WAIT_S for it."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="graphjit-linker",
                                                daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:   # a cache optimisation: its failure must never reach the user
                pass
            finally:
                self._jobs.task_done()

    def wait(self, timeout: float) -> bool:
        """Whether every submitted job finished within `timeout` seconds."""
        done = threading.Event()

        def drain() -> None:
            self._jobs.join()
            done.set()

        threading.Thread(target=drain, daemon=True).start()
        return done.wait(timeout)


_background = _Linker()


def link_later(store: Callable[[bytes], object], object_code: bytes, slotted: Sequence[str],
               wrap: Callable[[bytes], bytes] = lambda shared: shared) -> None:
    """Link `object_code` in the background and pass `wrap(shared object)` to `store`."""
    if not enabled() or linker() is None:
        return

    def job() -> None:
        shared = link(object_code, slotted)
        if shared is not None:
            store(wrap(shared))

    _background.submit(job)


def wait_for_links(timeout: float = EXIT_WAIT_S) -> bool:
    return _background.wait(timeout)


def _fresh_linker_after_fork() -> None:
    global _background
    _background = _Linker()


atexit.register(lambda: _background._thread is not None and wait_for_links())
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_linker_after_fork)
