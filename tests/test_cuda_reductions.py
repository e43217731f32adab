"""CUDA reductions in Numba's simulator: every strategy of runtime/cuda/reduce.py against NumPy.

The simulator's launch plans (runtime/cuda/launch.py) are tiny (8-thread blocks, 4-thread warps),
so small shapes reach every path: a row group wider than a warp (shuffles, then one shared slot
per warp), several short rows per block (shuffles within a part of a warp), rows split over
blocks (partials, then a deterministic final pass), column reductions with and without a split.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from helpers import check_against_numpy

pytest.importorskip("graphjit.runtime.cuda")
pytestmark = pytest.mark.cuda

RNG = np.random.default_rng(42)
F32 = np.float32


def kinds(fn, *args) -> str:
    return gj.jit(fn, target="cuda").lower(*args).as_text("cuda")


CASES = {
    # name: (fn, input shape, the kernel kind it must produce)
    "row_wide_sum": (lambda x: x.sum(axis=-1), (3, 20), "row reduction kernel"),
    "row_wide_argmax": (lambda x: np.argmax(x, axis=-1), (3, 20), "row reduction kernel"),
    "row_wide_softmax": (lambda x: np.exp(x - x.max(-1, keepdims=True))
                         / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True),
                         (3, 20), "row reduction kernel"),
    "rows_per_block_sum": (lambda x: x.sum(axis=-1), (5, 3), "several rows per block"),
    "rows_per_block_argmin": (lambda x: x.argmin(axis=-1), (5, 3), "several rows per block"),
    "rows_per_block_layernorm": (lambda x: (x - x.mean(-1, keepdims=True))
                                 / np.sqrt(x.var(-1, keepdims=True) + 1e-5),
                                 (7, 2), "several rows per block"),
    "split_full_sum": (lambda x: x.sum(), (5, 7), "split row reduction"),
    "split_row_max": (lambda x: x.max(axis=-1), (2, 30), "split row reduction"),
    "split_mean_then_scale": (lambda x: x.mean() * 2 + 1, (4, 9), "split row reduction"),
    "split_two_sums": (lambda x: (x.sum(), (x * x).sum(), np.prod(x[:1] * 0.1 + 1)),
                       (3, 6), "split row reduction"),
    "column_split_sum": (lambda x: x.sum(axis=0), (6, 5), "split column reduction"),
    "column_split_min_keepdims": (lambda x: x.min(axis=0, keepdims=True) - 1, (9, 3),
                                  "split column reduction"),
    "column_argmax": (lambda x: x.argmax(axis=0), (6, 5), "column reduction"),
    "column_var_two_phases": (lambda x: x.var(axis=0), (6, 5), "column reduction"),
    "column_centre_rows_store": (lambda x: x - x.mean(axis=0), (6, 5), "column reduction"),
    "middle_axis": (lambda x: x.sum(axis=1), (2, 6, 3), "reduction"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reduction_strategy_matches_numpy(name):
    fn, shape, kind = CASES[name]
    x = RNG.standard_normal(shape).astype(F32)
    check_against_numpy(fn, x, rtol=1e-5, atol=1e-5)
    assert kind in kinds(fn, x)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64, bool], ids=str)
def test_split_reductions_by_dtype(dtype):
    x = RNG.integers(-3, 4, (5, 7)).astype(dtype)

    def full(a):
        return a.sum(), a.max(), np.any(a)

    def columns(a):
        return a.min(axis=0), np.all(a, axis=0), a.sum(axis=0)

    for fn, kind in ((full, "split row reduction"), (columns, "split column reduction")):
        check_against_numpy(fn, x)
        assert kind in kinds(fn, x)


def test_nan_wins_in_split_max_and_min():
    x = RNG.standard_normal((5, 7)).astype(np.float64)
    x[3, 5] = np.nan
    check_against_numpy(lambda a: (a.max(), a.min(axis=0), a.sum()), x)


def test_float32_split_sum_is_accurate_and_deterministic():
    x = RNG.uniform(0, 1, (1, 2000)).astype(F32)
    jitted = gj.jit(lambda a: a.sum(), target="cuda")
    first = jitted(x)
    exact = x.astype(np.float64).sum()
    assert abs(float(first) - exact) <= 1e-6 * exact
    assert jitted(x) == first          # partials fold in a fixed order: bit-identical


def test_empty_reduced_axis_gives_the_identity():
    x = np.ones((3, 0), F32)
    check_against_numpy(lambda a: (a.sum(axis=1), np.prod(a, axis=1), np.any(a, axis=1)), x)
