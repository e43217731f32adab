"""The CUDA matmul kernels: tiling choices, double-buffered slabs, edges, and the cuBLAS path.

Products run in Numba's simulator (tiny 4 x 4 tiles of 2 x 2 per thread, so a few-element
matrix still spans several blocks, threads and slabs); the GPU tilings are checked on the
rendered source, which needs no device.
"""
from __future__ import annotations

import numpy as np
import pytest

from test_cuda import F32, F64, assert_close, bias_relu_epilogue, matmul_program

pytest.importorskip("graphjit.runtime.cuda")
from graphjit.runtime.cuda import render_program  # noqa: E402
from graphjit.runtime.cuda.launch import DEFAULT_SM_COUNT  # noqa: E402

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize(("m", "k", "n"), [
    (1, 1, 1),       # one slab, one partial tile
    (5, 3, 6),       # k shorter than a slab
    (4, 8, 4),       # k exactly two slabs, m and n exactly one tile
    (7, 13, 9),      # partial slab and partial tiles on every edge
    (3, 0, 2),       # k = 0: every output is zero
])
@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_double_buffered_product_on_every_edge(m, k, n, dtype):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    (actual,), executable = matmul_program((m, k), (k, n), dtype).run(a, b)
    assert_close(actual, a @ b)
    assert "tile_a[1 - buf" in executable.texts["cuda"]


def test_transposed_batched_product_with_fused_epilogue_over_several_slabs():
    rng = np.random.default_rng(7)
    m, k, n = 6, 10, 5
    x = rng.standard_normal((m, k)).astype(F32)
    w = rng.standard_normal((n, k)).astype(F32)          # stored transposed
    bias = rng.standard_normal(n).astype(F32)
    builder = matmul_program((m, k), (k, n), F32, transpose_b=True,
                             epilogue=bias_relu_epilogue((n,), m, n))
    (actual,), executable = builder.run(x, w, bias)
    assert_close(actual, np.maximum(x @ w.T + bias, 0))
    assert executable.texts["cuda"].count("def kernel_") == 1


def _gpu_matmul(m, k, n, dtype, batch=()):
    program = matmul_program((m, k), (k, n), dtype, batch=batch).program()
    (kernel,) = render_program(program, simulator=False, sm_count=DEFAULT_SM_COUNT)
    return kernel


def test_large_float32_products_take_128_tiles_of_8_by_8_per_thread():
    kernel = _gpu_matmul(2048, 256, 2048, F32)
    assert kernel.launch.block == (16, 16)
    assert kernel.launch.grid == (16, 16, 1)
    assert "c7_7" in kernel.source and "cuda.shared.array((2, 8, 128)" in kernel.source
    assert "tile_b[1 - buf" in kernel.source


@pytest.mark.parametrize(("m", "n", "dtype", "batch"), [
    (256, 256, F32, ()),          # too few 128-tiles to fill the SMs
    (2048, 2048, F64, ()),        # float64 keeps 64-tiles (twice the registers per value)
    (128, 128, F32, (3,)),        # batched: 3 tiles in all
])
def test_smaller_or_float64_products_take_64_tiles(m, n, dtype, batch):
    kernel = _gpu_matmul(m, 64, n, dtype, batch)
    assert kernel.launch.block == (16, 16)
    assert "c3_3" in kernel.source and "c4_4" not in kernel.source
