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
from graphjit.runtime.cuda.device import simulator_enabled  # noqa: E402
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


@pytest.fixture
def tiled_only(monkeypatch):
    """Our own kernels even where CuPy and a GPU would send large products to cuBLAS."""
    from graphjit.runtime.cuda import library

    monkeypatch.setattr(library, "ENABLED", False)


def _gpu_matmul(m, k, n, dtype, batch=()):
    program = matmul_program((m, k), (k, n), dtype, batch=batch).program()
    (kernel,) = render_program(program, simulator=False, sm_count=DEFAULT_SM_COUNT)
    return kernel


def test_large_float32_products_take_128_tiles_of_8_by_8_per_thread(tiled_only):
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
def test_smaller_or_float64_products_take_64_tiles(m, n, dtype, batch, tiled_only):
    kernel = _gpu_matmul(m, 64, n, dtype, batch)
    assert kernel.launch.block == (16, 16)
    assert "c3_3" in kernel.source and "c4_4" not in kernel.source


# ---------------------------------------------------------------- the GEMM library path

class HostGemm:
    """A stand-in GEMM library for the simulator: the product by NumPy on host copies of the
    same strided views a real library gets."""

    name = "NumPy stand-in"

    def __init__(self) -> None:
        self.shapes: list[tuple] = []

    def available(self) -> bool:
        return True

    def matmul(self, a, a_view, b, b_view, out, out_shape) -> None:
        product = _host_view(a, a_view) @ _host_view(b, b_view)
        assert product.shape == tuple(out_shape)
        self.shapes.append((a_view.shape, b_view.shape))
        out.copy_to_device(np.ascontiguousarray(product).reshape(-1))


def _host_view(flat, view):
    host = flat.copy_to_host()
    return np.lib.stride_tricks.as_strided(host[view.offset:], view.shape,
                                           [s * host.itemsize for s in view.strides])


@pytest.fixture
def host_gemm(monkeypatch):
    from graphjit.runtime.cuda import library

    gemm = HostGemm()
    monkeypatch.setattr(library, "GEMM_LIBRARIES", [gemm])
    monkeypatch.setattr(library, "LIBRARY_MIN_FLOPS", 1)
    monkeypatch.setattr(library, "LIBRARY_MIN_SIDE", 1)
    return gemm


def _f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


LIBRARY_CASES = {
    "bias_relu": (lambda x, w, b: np.maximum(x @ w + b, 0), ((5, 7), (7, 6), (6,))),
    "transposed": (lambda a, b: a.T @ b.T, ((7, 5), (6, 7))),
    "batched_broadcast_epilogue": (lambda a, b, c: np.tanh(a @ b) * c, ((2, 3, 4), (4, 5), (5,))),
    "no_epilogue": (lambda a, b: a @ b, ((3, 4), (4, 2))),
}


@pytest.mark.parametrize("name", sorted(LIBRARY_CASES))
def test_library_product_with_its_epilogue_as_a_separate_kernel(host_gemm, name):
    import graphjit as gj
    from helpers import check_against_numpy

    fn, shapes = LIBRARY_CASES[name]
    rng = np.random.default_rng(len(name))
    args = [_f32(rng, *shape) for shape in shapes]
    check_against_numpy(fn, *args, target="cuda", rtol=1e-5, atol=1e-5)
    assert host_gemm.shapes, "the product did not go to the library"
    text = gj.jit(fn, target="cuda").lower(*args).as_text("cuda")
    assert "library step" in text and "NumPy stand-in" in text
    assert "tile_a" not in text                       # no tiled kernel left
    has_epilogue = name in ("bias_relu", "batched_broadcast_epilogue")
    assert ("elementwise kernel" in text) == has_epilogue   # the epilogue, fused on its own


def test_library_is_used_only_for_large_float_products():
    from graphjit.compiler.kernel import MatmulKernel
    from graphjit.runtime.cuda.library import uses_library

    def product(m, n, k, dtype=F32, batch=()):
        return MatmulKernel("mm", None, None, 0, batch, m, n, k, np.dtype(dtype), None, ())

    assert uses_library(product(4096, 4096, 4096))
    assert uses_library(product(4096, 4096, 4096, F64))
    assert uses_library(product(256, 256, 64, batch=(4,)))
    assert not uses_library(product(64, 64, 64))                 # the fused kernel wins
    assert not uses_library(product(1 << 16, 8, 1 << 10))        # a side too short
    assert not uses_library(product(4096, 4096, 4096, np.int64))  # no integer GEMM


def test_without_a_library_the_tiled_kernel_runs(monkeypatch):
    from graphjit.runtime.cuda import library

    monkeypatch.setattr(library, "LIBRARY_MIN_FLOPS", 1)
    monkeypatch.setattr(library, "LIBRARY_MIN_SIDE", 1)
    if simulator_enabled():
        assert not library.CuPyGemm().available()      # the simulator has no cuBLAS
    monkeypatch.setattr(library, "GEMM_LIBRARIES", [])
    program = matmul_program((3, 4), (4, 2), F32).program()
    (kernel,) = render_program(program, simulator=True)
    assert kernel.kind == "matmul"


def _cublas_reachable() -> bool:
    from graphjit.runtime.cuda.library import CuPyGemm

    return CuPyGemm().available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cublas_reachable(), reason="needs a real CUDA GPU and CuPy (cuBLAS)")
def test_gpu_cublas_product_with_epilogue_matches_numpy():
    import graphjit as gj

    rng = np.random.default_rng(3)
    x, w, b = _f32(rng, 512, 384), _f32(rng, 384, 640), _f32(rng, 640)
    fn = gj.jit(lambda x, w, b: np.maximum(x @ w + b, 0), target="cuda")
    np.testing.assert_allclose(fn(x, w, b), np.maximum(x @ w + b, 0), rtol=1e-4, atol=1e-4)
    assert "cuBLAS" in fn.lower(x, w, b).as_text("cuda")
