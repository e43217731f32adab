"""Matrix products: sgemm/dgemm from the OpenBLAS NumPy itself loads, called on the program's
buffers in place.

One BLAS, one BLAS thread pool: the library is NumPy's own (numpy.libs/libscipy_openblas64_*.so
in NumPy's wheels, ILP64 symbols `scipy_sgemm_64_`; elsewhere whichever OpenBLAS NumPy's
extension mapped, found in /proc/self/maps), so SciPy is not needed and no second OpenBLAS with a
second set of threads is ever loaded. Small products run single-threaded (`SINGLE_THREAD_MNK`):
on a shared or busy machine OpenBLAS's threads wait for a core that is running something else
(a 64x192x100 sgemm took 1.1 ms on 2 threads against 51 us on one), and below a few million
multiply-adds a second thread cannot pay for its hand-off anyway.

The Program describes each operand as an affine `Access` over (batch..., rows, cols). BLAS is
column-major, so the row-major product C = A @ B is computed as C^T = B^T @ A^T: an operand whose
columns are contiguous is passed as is ('N'), one whose rows are contiguous (a transposed view) is
passed with the 'T' flag, so transposes never copy. A batch is a loop of BLAS calls. Anything BLAS
cannot express (integer or bool dtypes, negative or doubly strided operands, many tiny batches,
sizes beyond 32-bit BLAS, empty operands, no BLAS found) goes through `np.matmul` on strided views
of the same buffers.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graphjit.compiler.kernel import Access, MatmulKernel

_BLAS_NAMES = {np.dtype(np.float32): "sgemm", np.dtype(np.float64): "dgemm"}
_SCALAR_CTYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}
_INT32_MAX = 2**31 - 1
# Below this many multiply-adds per product, a batch is cheaper through one np.matmul call than
# through one ctypes BLAS call (about 1.5 us each) per batch element.
_SMALL_PRODUCT = 16 * 16 * 16
# Products below this many multiply-adds run with OpenBLAS set to one thread (see the docstring):
# about 0.2 ms of single-threaded work.
SINGLE_THREAD_MNK = 1 << 22

# (symbol prefix, suffix, integer bits) of the Fortran ?gemm in the builds NumPy ships or links
_NAMINGS = (("scipy_", "_64_", 64), ("", "_64_", 64), ("", "64_", 64), ("scipy_", "_", 32),
            ("", "_", 32))
# openblas_set_num_threads(int) by the same namings
_THREAD_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                   "scipy_openblas_set_num_threads", "openblas_set_num_threads")
_THREAD_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                   "scipy_openblas_get_num_threads", "openblas_get_num_threads")


@dataclass(frozen=True)
class BlasLibrary:
    """The BLAS graphjit calls: its path, symbol naming and the width of its integers."""

    path: str
    handle: ctypes.CDLL
    prefix: str
    suffix: str
    int_bits: int
    set_threads: int | None       # address of openblas_set_num_threads(int), if any
    threads: int                  # its thread count when graphjit loaded it (restored after
                                  # every single-threaded product)

    def gemm_address(self, routine: str) -> int:
        return _address(self.handle, f"{self.prefix}{routine}{self.suffix}")

    @property
    def int_ctype(self) -> type:
        return ctypes.c_int64 if self.int_bits == 64 else ctypes.c_int32


def _address(handle: ctypes.CDLL, symbol: str) -> int | None:
    try:
        return ctypes.cast(getattr(handle, symbol), ctypes.c_void_p).value
    except AttributeError:
        return None


def _candidate_paths() -> list[str]:
    """NumPy's bundled OpenBLAS first, then any BLAS this process has mapped (NumPy's own
    extension links it, so it is mapped once numpy is imported)."""
    package = os.path.dirname(np.__file__)
    bundled = sorted(glob.glob(os.path.join(package + ".libs", "lib*openblas*.so*")))
    mapped: list[str] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                name = os.path.basename(path)
                if "blas" in name and path.startswith("/") and path not in mapped:
                    mapped.append(path)
    except OSError:
        pass
    return [*bundled, *(p for p in mapped if p not in bundled)]


@functools.lru_cache(maxsize=1)
def blas_library() -> BlasLibrary | None:
    """The BLAS NumPy uses, or None (then every product goes through np.matmul)."""
    for path in _candidate_paths():
        try:
            handle = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, bits in _NAMINGS:
            if _address(handle, f"{prefix}sgemm{suffix}") and _address(
                    handle, f"{prefix}dgemm{suffix}"):
                setter = next((a for a in (_address(handle, n) for n in _THREAD_SETTERS) if a),
                              None)
                getter = next((a for a in (_address(handle, n) for n in _THREAD_GETTERS) if a),
                              None)
                threads = _GET_THREADS(getter)() if getter else 0
                if threads < 1:
                    setter = None   # no thread count to restore: leave BLAS's threads alone
                return BlasLibrary(path, handle, prefix, suffix, bits, setter, max(threads, 1))
    return None


def gemm_address(routine: str) -> int | None:
    """Address of the Fortran ?gemm ("sgemm" or "dgemm") of NumPy's BLAS, or None."""
    library = blas_library()
    return library.gemm_address(routine) if library is not None else None


_SET_THREADS = ctypes.CFUNCTYPE(None, ctypes.c_int)
_GET_THREADS = ctypes.CFUNCTYPE(ctypes.c_int)


class single_threaded_blas:
    """`with single_threaded_blas(): ...` runs BLAS calls on one thread, then sets BLAS back to
    its thread count at load (for products called from Python; native segments do the same
    inline). It restores a fixed count, not the count it found, so that two calls overlapping
    from two Python threads can never leave BLAS stuck on one thread."""

    def __enter__(self) -> None:
        library = blas_library()
        self._set = None
        if library is not None and library.set_threads:
            self._set = _SET_THREADS(library.set_threads)
            self._threads = library.threads
            self._set(1)

    def __exit__(self, *exc: object) -> None:
        if self._set is not None:
            self._set(self._threads)


def gemm_function(dtype: np.dtype) -> Callable:
    """The ?gemm of NumPy's BLAS for `dtype`, as a ctypes function of 13 pointers."""
    dtype = np.dtype(dtype)
    if dtype not in _gemm_cache:
        _gemm_cache[dtype] = _GEMM(gemm_address(_BLAS_NAMES[dtype]))
    return _gemm_cache[dtype]


_GEMM = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
_gemm_cache: dict[np.dtype, Callable] = {}


def blas_layout(stride_rows: int, stride_cols: int, rows: int, cols: int
                ) -> tuple[bool, int] | None:
    """(row_major, leading dimension) of a rows x cols operand, or None if BLAS cannot read it.

    A dimension of size 1 has no meaningful stride, so it never disqualifies a layout."""
    if cols == 1 or stride_cols == 1:
        lead = stride_rows if rows > 1 else max(cols, 1)
        if lead >= max(1, cols):
            return True, lead
    if rows == 1 or stride_rows == 1:
        lead = stride_cols if cols > 1 else max(rows, 1)
        if lead >= max(1, rows):
            return False, lead
    return None


def _batch_offsets(batch: tuple[int, ...], strides: tuple[int, ...]) -> list[int]:
    """Element offset of every batch index, in C order."""
    return [sum(i * s for i, s in zip(index, strides))
            for index in itertools.product(*(range(d) for d in batch))]


@dataclass(frozen=True)
class GemmPlan:
    """One matmul as ?gemm calls: C^T (n x m) = op(B^T) (n x k) @ op(A^T) (k x m), column-major.

    Used from Python (ctypes) or compiled into a native entry function (see llvm.GemmCall)."""

    routine: str                 # "sgemm" or "dgemm"
    dtype: np.dtype
    trans_b: bytes               # b"N" or b"T"
    trans_a: bytes
    n: int
    m: int
    k: int
    ldb: int
    lda: int
    ldc: int
    a: int                       # buffer indices
    b: int
    c: int
    offsets: tuple[tuple[int, int, int], ...]    # byte offsets (a, b, c) per batch element
    int_bits: int = 32           # the BLAS's integer width (ILP64 builds: 64)

    @property
    def single_threaded(self) -> bool:
        """Run with BLAS on one thread (only where the BLAS can set its thread count)."""
        library = blas_library()
        return (self.m * self.n * self.k < SINGLE_THREAD_MNK and library is not None
                and library.set_threads is not None and library.threads > 1)


def plan_gemm(kernel: MatmulKernel, a_dtype: np.dtype, b_dtype: np.dtype) -> GemmPlan | None:
    """The BLAS plan of a matmul, or None where BLAS cannot run it (see the module docstring)."""
    dtype = np.dtype(kernel.dtype)
    if dtype not in _BLAS_NAMES or np.dtype(a_dtype) != dtype or np.dtype(b_dtype) != dtype:
        return None
    if blas_library() is None:
        return None
    batch_count = math.prod(kernel.batch)
    if max(kernel.m, kernel.n, kernel.k) > _INT32_MAX or min(kernel.m, kernel.n, kernel.k) == 0:
        return None
    if batch_count > 1 and kernel.m * kernel.n * kernel.k < _SMALL_PRODUCT:
        return None
    layout_a = blas_layout(*kernel.a.strides[-2:], kernel.m, kernel.k)
    layout_b = blas_layout(*kernel.b.strides[-2:], kernel.k, kernel.n)
    if layout_a is None or layout_b is None or max(layout_a[1], layout_b[1]) > _INT32_MAX:
        return None
    if any(s < 0 for s in kernel.a.strides + kernel.b.strides):
        return None
    item = dtype.itemsize
    c_strides = _c_strides(kernel.batch, kernel.m * kernel.n)
    offsets = tuple(
        (item * (kernel.a.offset + a), item * (kernel.b.offset + b), item * c)
        for a, b, c in zip(_batch_offsets(kernel.batch, kernel.a.strides[:-2]),
                           _batch_offsets(kernel.batch, kernel.b.strides[:-2]),
                           _batch_offsets(kernel.batch, c_strides)))
    return GemmPlan(_BLAS_NAMES[dtype], dtype, b"N" if layout_b[0] else b"T",
                    b"N" if layout_a[0] else b"T", kernel.n, kernel.m, kernel.k,
                    layout_b[1], layout_a[1], max(1, kernel.n), kernel.a.buffer,
                    kernel.b.buffer, kernel.out, offsets, blas_library().int_bits)


class MatmulRunner:
    """Runs one MatmulKernel (without its epilogue) on a buffer pointer table, from Python."""

    def __init__(self, kernel: MatmulKernel, a_dtype: np.dtype, b_dtype: np.dtype):
        self.kernel = kernel
        self.dtype = np.dtype(kernel.dtype)
        self.a_dtype = np.dtype(a_dtype)
        self.b_dtype = np.dtype(b_dtype)
        self.plan = plan_gemm(kernel, a_dtype, b_dtype)
        self.uses_blas = self.plan is not None
        self._keep: list = []
        self._args = self._gemm_args(self.plan) if self.plan else ()
        self._run = self._run_blas if self.uses_blas else self._run_numpy

    def _gemm_args(self, plan: GemmPlan) -> tuple:
        """Addresses of the by-reference scalar arguments of ?gemm (kept alive by this runner)."""
        scalar = _SCALAR_CTYPES[plan.dtype]
        integer = blas_library().int_ctype
        values = [ctypes.c_char(plan.trans_b), ctypes.c_char(plan.trans_a),
                  integer(plan.n), integer(plan.m), integer(plan.k),
                  scalar(1.0), scalar(0.0), integer(plan.ldb), integer(plan.lda),
                  integer(plan.ldc)]
        self._keep = values
        return tuple(ctypes.addressof(v) for v in values)

    # ------------------------------------------------------------ running
    def __call__(self, table: ctypes.Array) -> None:
        self._run(table)

    def _run_blas(self, table: ctypes.Array) -> None:
        plan = self.plan
        a_base, b_base, c_base = table[plan.a], table[plan.b], table[plan.c]
        gemm = gemm_function(self.dtype)
        transb, transa, n, m, k, alpha, beta, ldb, lda, ldc = self._args
        if plan.single_threaded:
            with single_threaded_blas():
                for a_off, b_off, c_off in plan.offsets:
                    gemm(transb, transa, n, m, k, alpha, b_base + b_off, ldb, a_base + a_off,
                         lda, beta, c_base + c_off, ldc)
            return
        for a_off, b_off, c_off in plan.offsets:
            gemm(transb, transa, n, m, k, alpha, b_base + b_off, ldb, a_base + a_off, lda,
                 beta, c_base + c_off, ldc)

    def _run_numpy(self, table: ctypes.Array) -> None:
        kernel = self.kernel
        a = _strided_view(table, kernel.a, (*kernel.batch, kernel.m, kernel.k), self.a_dtype)
        b = _strided_view(table, kernel.b, (*kernel.batch, kernel.k, kernel.n), self.b_dtype)
        out_shape = (*kernel.batch, kernel.m, kernel.n)
        out = _strided_view(table, Access(kernel.out, _c_strides(out_shape, 1)), out_shape,
                            self.dtype)
        if out.size == 0:
            return
        if a.size == 0 or b.size == 0:   # an empty sum (k == 0)
            out[...] = 0
            return
        np.matmul(a, b, out=out, dtype=self.dtype)


def _c_strides(shape: tuple[int, ...], inner: int) -> tuple[int, ...]:
    """C-order element strides of `shape` whose elements are blocks of `inner` elements."""
    strides = []
    step = inner
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def array_at(address: int, count: int, dtype: np.dtype) -> np.ndarray:
    """A 1-d NumPy view of `count` elements of raw memory (kept alive by its owner, not here)."""
    dtype = np.dtype(dtype)
    if count == 0 or not address:
        return np.empty(0, dtype)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype)


def _strided_view(table: ctypes.Array, access: Access, shape: tuple[int, ...],
                  dtype: np.dtype) -> np.ndarray:
    """The view `access` describes, over the buffer whose address is in the pointer table."""
    if 0 in shape:
        return np.empty(shape, dtype)
    low = access.offset + sum(min(0, s) * (d - 1) for s, d in zip(access.strides, shape))
    high = access.offset + sum(max(0, s) * (d - 1) for s, d in zip(access.strides, shape))
    dtype = np.dtype(dtype)
    base = array_at(table[access.buffer] + low * dtype.itemsize, high - low + 1, dtype)
    start = base[access.offset - low:]
    return np.lib.stride_tricks.as_strided(
        start, shape, tuple(s * dtype.itemsize for s in access.strides), writeable=True)
