"""Launch configurations, chosen from the shape at compile time (shapes are static per Program).

On a GPU: 256-thread blocks for elementwise grid-stride loops with enough blocks to fill every SM
a few times. Row reductions give each row a group of threads sized to the row (a power of two; up
to 1024 threads when few long rows must share the machine), several short rows to one block, and
split long rows over several blocks when there are too few rows to fill the machine (a partial
pass, then a final pass over the partials). Column reductions give each thread one output point
(consecutive threads read consecutive addresses), and split the reduced extent over blocks when
there are too few points. Matmuls use 64x64 output tiles, 4x4 outputs per thread (128x128 and
8x8 for large float32 products). In Numba's simulator every CUDA thread is a Python thread, so
the same kernels run with tiny blocks, warps and tiles (the code paths are the same, only the sizes differ).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_SM_COUNT = 132   # an H100; replaced by the device's count when there is one
BLOCKS_PER_SM = 8
ITEMS_PER_THREAD = 4     # a reduction thread folds about this many elements before the tree
GPU_WARP = 32
SIMULATED_WARP = 4       # a simulated block of 8 threads is two warps
SPLIT_ITEMS = 4096       # elements each block of a split row folds, at least (GPU)


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


def warp_size(simulator: bool) -> int:
    return SIMULATED_WARP if simulator else GPU_WARP


@dataclass(frozen=True)
class RowPlan:
    """A row reduction: `group` threads per row (a power of two), `rows` rows per block, each row
    split into `parts` slices folded by different blocks (1: no split)."""
    group: int
    rows: int
    parts: int
    launch: Launch

    @property
    def block(self) -> int:
        return self.group * self.rows


def row_plan(n_reduce: int, n_outer: int, simulator: bool, splittable: bool,
             sm_count: int = DEFAULT_SM_COUNT) -> RowPlan:
    if simulator:
        group = min(8, _pow2_at_least(max(1, n_reduce)))
        parts = 2 if splittable and n_reduce >= 6 and n_outer <= 2 else 1
        block = 8
        cap = 2
    else:
        largest = 1024 if n_outer < 64 else 512
        group = min(largest, _pow2_at_least(max(1, _ceil_div(n_reduce, ITEMS_PER_THREAD))))
        block = max(256, group)
        parts = 1
        if splittable and n_outer < 2 * sm_count and n_reduce >= 2 * SPLIT_ITEMS:
            parts = max(1, min(_ceil_div(4 * sm_count, n_outer), n_reduce // SPLIT_ITEMS))
            group = min(group, 1024)
        cap = 65535
    rows = max(1, block // group)
    units = n_outer * parts
    return RowPlan(group, rows, parts, Launch((max(1, min(_ceil_div(units, rows), cap)),),
                                              (group * rows,)))


@dataclass(frozen=True)
class ColumnPlan:
    """A column reduction: one thread per output point, the reduced extent split into `parts`
    slices folded by different threads (1: no split)."""
    parts: int
    launch: Launch


def column_plan(n_reduce: int, n_outer: int, simulator: bool, splittable: bool,
                sm_count: int = DEFAULT_SM_COUNT) -> ColumnPlan:
    if simulator:
        parts = 2 if splittable and n_reduce >= 4 else 1
        threads = 8
        cap = 2
    else:
        threads = 256
        parts = 1
        wanted = 4 * sm_count * threads      # threads that keep every SM busy
        if splittable and n_outer * 4 < wanted and n_reduce >= 64:
            parts = max(1, min(_ceil_div(wanted, n_outer), n_reduce // 32))
        cap = sm_count * BLOCKS_PER_SM * 4
    units = n_outer * parts
    return ColumnPlan(parts, Launch((max(1, min(_ceil_div(units, threads), cap)),), (threads,)))


def matmul_tiling(dtype: np.dtype, simulator: bool, m: int = 0, n: int = 0, batch: int = 1,
                  sm_count: int = DEFAULT_SM_COUNT) -> MatmulTiling:
    """Output tile per block and per thread. Large float32 products take 128 x 128 tiles of 8 x 8
    outputs per thread (64 accumulators in registers: twice the arithmetic per shared-memory
    read of 4 x 4), when there are enough such tiles to give every SM one."""
    if simulator:
        return MatmulTiling(bm=4, bn=4, bk=4, tm=2, tn=2)
    if np.dtype(dtype) == np.dtype(np.float64):
        return MatmulTiling(bm=64, bn=64, bk=8, tm=4, tn=4)
    if _ceil_div(m, 128) * _ceil_div(n, 128) * batch >= sm_count:
        return MatmulTiling(bm=128, bn=128, bk=8, tm=8, tn=8)
    return MatmulTiling(bm=64, bn=64, bk=16, tm=4, tn=4)


def matmul_launch(tiling: MatmulTiling, m: int, n: int, batch: int, simulator: bool) -> Launch:
    z_cap = 2 if simulator else 65535
    grid = (max(1, _ceil_div(n, tiling.bn)), max(1, _ceil_div(m, tiling.bm)),
            max(1, min(batch, z_cap)))
    return Launch(grid, tiling.threads)
