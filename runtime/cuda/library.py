"""Large matmuls through a vendor GEMM (cuBLAS, reached through CuPy) instead of our tiled kernel.

A `MatmulKernel` whose product is large enough (`uses_library`) becomes a `LibraryMatmul` step:
the library writes the raw product into the kernel's `out` buffer, then the epilogue, if any,
runs as its own fused elementwise kernel (one extra read and write of the product, which a
large GEMM amortises). Operands keep their Access strides: the library gets strided views of
the flat device buffers, so transposes still cost no copy.

The library is optional: `GEMM_LIBRARIES` holds the providers in order of preference, and the
first one whose `available()` holds (an importable CuPy with a visible GPU) is used. On a machine
without one, and in Numba's simulator (where CuPy is never available), every matmul runs our own
tiled kernel. Tests put a
stand-in provider in the list to check the wiring; benchmarks/gpu.py times both paths by setting
`ENABLED`.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from graphjit.compiler.kernel import Access, MatmulKernel

from .device import simulator_enabled

# products with fewer multiply-adds, or a side shorter than this, keep the fused tiled kernel
LIBRARY_MIN_FLOPS = 1 << 24        # 256^3
LIBRARY_MIN_SIDE = 128
LIBRARY_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ENABLED = True


@dataclass(frozen=True)
class StridedOperand:
    """A view of a flat device buffer: shape, strides and offset in elements."""
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int


class GemmProvider(Protocol):
    name: str

    def available(self) -> bool: ...

    def matmul(self, a: Any, a_view: StridedOperand, b: Any, b_view: StridedOperand, out: Any,
               out_shape: tuple[int, ...]) -> None:
        """out (flat, C order over out_shape) = view(a) @ view(b), on the device."""


class CuPyGemm:
    """cuBLAS through CuPy: zero-copy views of Numba device arrays (__cuda_array_interface__).
    CuPy and Numba both queue on the legacy default stream, so the GEMM is ordered with the
    kernels before and after it."""

    name = "cuBLAS (CuPy)"

    def __init__(self) -> None:
        self._available: bool | None = None

    def available(self) -> bool:
        if self._available is None:
            if simulator_enabled():      # the simulator's arrays are host memory
                self._available = False
                return False
            try:
                import cupy

                self._available = cupy.cuda.runtime.getDeviceCount() > 0
            except Exception:
                self._available = False
        return self._available

    def matmul(self, a: Any, a_view: StridedOperand, b: Any, b_view: StridedOperand, out: Any,
               out_shape: tuple[int, ...]) -> None:
        import cupy

        result = cupy.asarray(out).reshape(out_shape)
        cupy.matmul(_cupy_view(cupy, a, a_view), _cupy_view(cupy, b, b_view), out=result)


def _cupy_view(cupy: Any, flat: Any, view: StridedOperand) -> Any:
    array = cupy.asarray(flat)
    itemsize = array.dtype.itemsize
    return cupy.lib.stride_tricks.as_strided(
        array[view.offset:], view.shape, tuple(s * itemsize for s in view.strides))


GEMM_LIBRARIES: list[GemmProvider] = [CuPyGemm()]


def library_for(kernel: MatmulKernel) -> GemmProvider | None:
    """The provider this product should use, or None for the tiled kernel."""
    if not ENABLED or not uses_library(kernel):
        return None
    return next((p for p in GEMM_LIBRARIES if p.available()), None)


def uses_library(kernel: MatmulKernel) -> bool:
    """Is the product large enough for a vendor GEMM to beat the fused tiled kernel?"""
    return (np.dtype(kernel.dtype) in LIBRARY_DTYPES
            and min(kernel.m, kernel.n) >= LIBRARY_MIN_SIDE
            and math.prod(kernel.batch) * kernel.m * kernel.n * kernel.k >= LIBRARY_MIN_FLOPS)


@dataclass(frozen=True)
class LibraryMatmul:
    """A step of the rendered program: the raw product of `kernel` by `provider`."""
    name: str
    kernel: MatmulKernel
    provider: GemmProvider

    @property
    def views(self) -> tuple[StridedOperand, StridedOperand, tuple[int, ...]]:
        k = self.kernel
        return (_view(k.a, (*k.batch, k.m, k.k)), _view(k.b, (*k.batch, k.k, k.n)),
                (*k.batch, k.m, k.n))

    def describe(self) -> str:
        k = self.kernel
        batch = f"{' x '.join(map(str, k.batch))} x " if k.batch else ""
        return (f"# library step {self.name}: {batch}({k.m} x {k.k}) @ ({k.k} x {k.n}) "
                f"{np.dtype(k.dtype).name} by {self.provider.name} into buffer {k.out}\n")

    def bind(self) -> Callable[[list], None]:
        """The call on a workspace table (buffer index -> flat device array)."""
        a_view, b_view, out_shape = self.views
        kernel, provider = self.kernel, self.provider

        def call(table: list) -> None:
            provider.matmul(table[kernel.a.buffer], a_view, table[kernel.b.buffer], b_view,
                            table[kernel.out], out_shape)
        return call


def _view(access: Access, shape: tuple[int, ...]) -> StridedOperand:
    return StridedOperand(shape, tuple(access.strides), access.offset)
