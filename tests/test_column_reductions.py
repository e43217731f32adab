"""Reductions over a non-innermost axis (x.sum(axis=0), batch norm, bias gradients) render as
column reductions (runtime/cpu/loops.py: render_columns): per-column states, contiguous loads
across each row. Differential tests against NumPy over shapes, axes, dtypes and fused passes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphjit as gj
from graphjit.runtime.cpu import loops
from tests.helpers import check_against_numpy

REDUCTIONS = {
    "sum": lambda x, axis: x.sum(axis=axis),
    "mean": lambda x, axis: x.mean(axis=axis),
    "max": lambda x, axis: x.max(axis=axis),
    "min": lambda x, axis: np.min(x, axis=axis, keepdims=True),
    "prod": lambda x, axis: np.prod(x * 0.01 + 1, axis=axis),
    "argmax": lambda x, axis: x.argmax(axis=axis[0]),
    "argmin": lambda x, axis: x.argmin(axis=axis[0]),
    "any": lambda x, axis: (x > 0.5).any(axis=axis),
}


def _uses_columns(fn, *args) -> bool:
    return "%cres" in gj.jit(fn).lower(*args).as_text("llvm")


@given(rows=st.integers(1, 70), cols=st.integers(2, 150), name=st.sampled_from(sorted(REDUCTIONS)),
       dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
def test_axis0_reductions_match_numpy(rows, cols, name, dtype):
    rng = np.random.default_rng(rows * 1000 + cols)
    x = (rng.standard_normal((rows, cols)) * 3).astype(dtype)
    check_against_numpy(lambda x: REDUCTIONS[name](x, (0,)), x, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,axis", [((4, 5, 67), (0,)), ((4, 5, 67), (0, 1)),
                                        ((6, 3, 2, 40), (1,)), ((3000, 9), (0,))])
def test_several_reduce_dims_and_long_columns(shape, axis):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    fn = lambda x: (x.sum(axis=axis), x.max(axis=axis), (x * x).mean(axis=axis))  # noqa: E731
    check_against_numpy(fn, x, rtol=1e-4, atol=1e-4)
    assert _uses_columns(fn, x)


def test_nan_and_ties_follow_numpy_in_columns():
    x = np.zeros((9, 70))
    x[4, 3] = np.nan
    x[2, 5] = x[6, 5] = 1.0
    check_against_numpy(lambda x: (x.max(axis=0), x.argmax(axis=0), x.argmin(axis=0),
                                   x.sum(axis=0)), x)


def test_batchnorm_forward_and_backward_fuse_into_column_kernels():
    def forward(x, gamma, beta):
        mu = x.mean(axis=0)
        xc = x - mu
        std = np.sqrt(np.mean(xc ** 2, axis=0) + 1e-5)
        xn = xc / std
        return gamma * xn + beta, xn, std

    def backward(dout, xn, std, gamma):
        n = dout.shape[0]
        dxn = gamma * dout
        dx = (n * dxn - dxn.sum(axis=0) - xn * (dxn * xn).sum(axis=0)) / (n * std)
        return dx, np.sum(xn * dout, axis=0), dout.sum(axis=0)

    rng = np.random.default_rng(2)
    x = rng.standard_normal((33, 130)).astype(np.float32)
    gamma, beta = rng.standard_normal(130).astype(np.float32), np.ones(130, np.float32)
    check_against_numpy(forward, x, gamma, beta, rtol=1e-4, atol=1e-4)
    _, xn, std = forward(x, gamma, beta)
    check_against_numpy(backward, x, xn, std, gamma, rtol=1e-3, atol=1e-3)
    assert _uses_columns(forward, x, gamma, beta)


def test_wide_rows_split_into_column_blocks_over_threads(monkeypatch):
    import graphjit.runtime.cpu.threads as threads

    monkeypatch.setattr(threads, "MIN_WORK_PER_CHUNK", 10)
    x = np.random.default_rng(3).standard_normal((20, 5 * loops.COLUMN_BLOCK + 3))
    check_against_numpy(lambda x: (x - x.mean(axis=0)) / x.std(axis=0), x)


def test_row_reductions_keep_the_row_path():
    x = np.ones((8, 100), np.float32)
    assert not _uses_columns(lambda x: x.sum(axis=1), x)
