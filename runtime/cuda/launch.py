"""Launch configurations, chosen from the shape at compile time (shapes are static per Program).

On a GPU: 256-thread blocks for elementwise grid-stride loops with enough blocks to fill every SM
a few times; reductions take one block per outer point, sized to the row (a single warp for short
rows, up to 1024 threads when few long rows must share the machine); matmuls use 64x64 output
tiles, 4x4 outputs per thread. In Numba's simulator every CUDA thread is a Python thread, so the
same kernels run with tiny blocks and tiles (the code paths are the same, only the sizes differ).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_SM_COUNT = 132   # an H100; replaced by the device's count when there is one
BLOCKS_PER_SM = 8
ITEMS_PER_THREAD = 4     # a reduction thread folds about this many elements before the tree


@dataclass(frozen=True)
class Launch:
    grid: tuple[int, ...]
    block: tuple[int, ...]


@dataclass(frozen=True)
class MatmulTiling:
    bm: int   # output rows per block
    bn: int   # output columns per block
    bk: int   # depth of one shared-memory slab
    tm: int   # output rows per thread
    tn: int   # output columns per thread

    @property
    def threads(self) -> tuple[int, int]:
        """(x, y) block shape: x walks columns, y walks rows."""
        return self.bn // self.tn, self.bm // self.tm


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pow2_at_least(n: int) -> int:
    power = 1
    while power < n:
        power *= 2
    return power


def elementwise_launch(total: int, simulator: bool, sm_count: int = DEFAULT_SM_COUNT) -> Launch:
    if simulator:
        threads = min(8, max(1, total))
        return Launch((min(2, max(1, _ceil_div(total, threads))),), (threads,))
    threads = 256
    blocks = min(max(1, _ceil_div(total, threads)), sm_count * BLOCKS_PER_SM * 4)
    return Launch((blocks,), (threads,))


def reduction_block(n_reduce: int, n_outer: int, simulator: bool) -> int:
    """Threads per block (a power of two, for the tree) for rows of n_reduce elements."""
    if simulator:
        return min(8, _pow2_at_least(max(1, n_reduce)))
    largest = 1024 if n_outer < 64 else 512
    wanted = _pow2_at_least(max(1, _ceil_div(n_reduce, ITEMS_PER_THREAD)))
    return max(32, min(largest, wanted))


def reduction_launch(n_reduce: int, n_outer: int, simulator: bool,
                     sm_count: int = DEFAULT_SM_COUNT) -> Launch:
    block = reduction_block(n_reduce, n_outer, simulator)
    cap = 2 if simulator else 65535
    return Launch((max(1, min(n_outer, cap)),), (block,))


def matmul_tiling(dtype: np.dtype, simulator: bool) -> MatmulTiling:
    if simulator:
        return MatmulTiling(bm=4, bn=4, bk=4, tm=2, tn=2)
    if np.dtype(dtype) == np.dtype(np.float64):
        return MatmulTiling(bm=64, bn=64, bk=8, tm=4, tn=4)
    return MatmulTiling(bm=64, bn=64, bk=16, tm=4, tn=4)


def matmul_launch(tiling: MatmulTiling, m: int, n: int, batch: int, simulator: bool) -> Launch:
    z_cap = 2 if simulator else 65535
    grid = (max(1, _ceil_div(n, tiling.bn)), max(1, _ceil_div(m, tiling.bm)),
            max(1, min(batch, z_cap)))
    return Launch(grid, tiling.threads)
