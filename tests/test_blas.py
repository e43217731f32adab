"""One BLAS: graphjit calls the OpenBLAS NumPy itself ships and loads (numpy.libs), never SciPy's,
and leaves that BLAS's thread count as it found it."""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import graphjit as gj
from graphjit.runtime.cpu import blas
from tests.helpers import check_against_numpy


def _numpy_libs() -> list[str]:
    return glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))


def test_the_blas_is_the_one_numpy_loaded():
    library = blas.blas_library()
    assert library is not None
    if _numpy_libs():
        assert os.path.dirname(library.path) == os.path.dirname(np.__file__) + ".libs"
    assert library.gemm_address("sgemm") and library.gemm_address("dgemm")
    assert library.int_bits in (32, 64)
    with open("/proc/self/maps") as maps:   # NumPy maps this very file: no second copy loaded
        assert library.path in maps.read()


def test_products_run_without_importing_scipy():
    code = ("import sys, numpy as np, graphjit as gj\n"
            "f = gj.jit(lambda a, b: np.maximum(a @ b, 0) @ b.T)\n"
            "a = np.arange(12.0).reshape(3, 4); b = np.ones((4, 5))\n"
            "assert np.allclose(f(a, b), np.maximum(a @ b, 0) @ b.T)\n"
            "assert 'scipy' not in sys.modules, 'scipy was imported'\n")
    env = dict(os.environ, GRAPHJIT_CACHE_DIR="off")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(3, 4, 5), (64, 96, 80), (300, 200, 100)])
def test_products_small_and_large_match_numpy(m, k, n, dtype):
    # (300, 200, 100) is past SINGLE_THREAD_MNK: it runs on BLAS's own threads
    rng = np.random.default_rng(3)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype)
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    check_against_numpy(lambda a, b: (a @ b.T) * 2 + 1, a, b, rtol=rtol, atol=rtol)


def test_single_threaded_products_restore_the_thread_count():
    library = blas.blas_library()
    if library is None or library.set_threads is None:
        pytest.skip("this BLAS cannot set its thread count")
    get = next((blas._address(library.handle, name) for name in blas._THREAD_GETTERS
                if blas._address(library.handle, name)), None)
    count = blas._GET_THREADS(get)
    before = count()
    f = gj.jit(lambda a, b: a @ b)
    a, b = np.ones((8, 8), np.float32), np.ones((8, 8), np.float32)
    np.testing.assert_array_equal(f(a, b), a @ b)    # in a native segment
    if library.threads > 1:
        assert "gj_blas_set_threads" in f.lower(a, b).as_text("llvm")
    with blas.single_threaded_blas():         # from Python
        assert count() == 1
    assert count() == before == library.threads
