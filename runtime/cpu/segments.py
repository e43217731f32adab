"""The plan of a program's native entry functions, as data: which kernels and BLAS calls each
segment runs and which arrays it binds. It is free of llvmlite, so a process that loads a compiled
program from the disk cache as a shared object (shared_object.py) never imports LLVM; llvm.py
renders these to IR on a compile.
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

# A native segment is `void name(char **table)`. The first segment of a program also binds the
# call's arrays: the table's last slot holds the workspace's `call_args` list, into which Python
# puts [leaves, outputs] before the call; the segment reads each array's data pointer straight
# from those lists into the table. One pointer argument is the cheapest ctypes call (~0.3 us,
# against ~1 us for two py_objects and a pointer), and reading the pointers natively saves the
# ~2 us per array that `ndarray.ctypes.data` costs in Python. This reads two CPython/NumPy struct
# fields whose offsets `object_layout_ok()` checks once at start-up (the runtime falls back to
# binding in Python if they ever differ). Then it calls its kernels in order, each over all its
# items.

LIST_ITEMS_OFFSET = 24    # PyListObject: ob_refcnt, ob_type, ob_size, then ob_item (PyObject **)
ARRAY_DATA_OFFSET = 16    # PyArrayObject: ob_refcnt, ob_type, then data (char *)


@functools.lru_cache(maxsize=None)
def object_layout_ok() -> bool:
    """Whether list items and ndarray data sit at the offsets the entry functions read."""
    import numpy as np

    array = np.empty(3)
    holder = [array]
    items = ctypes.c_void_p.from_address(id(holder) + LIST_ITEMS_OFFSET).value
    first = ctypes.c_void_p.from_address(items).value if items else None
    data = ctypes.c_void_p.from_address(id(array) + ARRAY_DATA_OFFSET).value
    return first == id(array) and data == array.ctypes.data


@dataclass(frozen=True)
class KernelCall:
    """A rendered loop kernel run over all its work items."""

    symbol: str
    extent: int
    work: int = 0            # extent x cost per item: how long the call runs, roughly


@dataclass(frozen=True)
class GemmCall:
    """?gemm on buffers of the table, once per batch element (see blas.GemmPlan). It calls the
    external symbol BLAS_SYMBOLS[routine], which `register_symbol` binds to NumPy's BLAS in this
    process before any object code is loaded (so cached object code relocates correctly)."""

    name: str                        # prefix of this call's constants
    routine: str                     # "sgemm" or "dgemm"
    trans_b: bytes
    trans_a: bytes
    ints: tuple[int, ...]            # n, m, k, ldb, lda, ldc
    buffers: tuple[int, int, int]    # a, b, c
    offsets: tuple[tuple[int, int, int], ...]
    int_bits: int = 32               # the BLAS's integer width (64 for ILP64 builds)
    # > 0: run with BLAS set to one thread, then set it back to this many (BLAS_THREADS_SYMBOL)
    restore_threads: int = 0


@dataclass(frozen=True)
class Segment:
    """One native entry function: optional binding of the call's arrays, then calls in order."""

    name: str
    # (table slot, position in the list) for every array the segment binds
    bind_leaves: tuple[tuple[int, int], ...] = ()
    bind_outputs: tuple[tuple[int, int], ...] = ()
    calls: tuple[KernelCall | GemmCall, ...] = ()
    args_slot: int = 0       # the table slot holding the [leaves, outputs] list when binding

    @property
    def work(self) -> float:
        """Rough run time in element operations (a BLAS call counts as unbounded)."""
        return sum(call.work if isinstance(call, KernelCall) else float("inf")
                   for call in self.calls)


BLAS_SYMBOLS = {"sgemm": "gj_blas_sgemm", "dgemm": "gj_blas_dgemm"}
BLAS_THREADS_SYMBOL = "gj_blas_set_threads"   # openblas_set_num_threads(int) of the same BLAS
