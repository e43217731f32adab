"""Reductions of many short rows (softmax over 10 classes, argmax of logits) render as column
reductions with the rows as the lanes (runtime/cpu/loops.py: reduces_short_rows), and
arg-reductions of long rows as two vectorised passes (the extreme, then its first position).
Differential tests against NumPy: values, dtypes, ties (the FIRST index of the extreme), NaN
(the first NaN's index), bools and integers, every axis, fused epilogues and FULL stores."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit.compiler.errors import GraphjitError
from graphjit.runtime.cpu import loops
from tests.helpers import check_against_numpy

REDUCTIONS = {
    "sum": lambda x, axis: x.sum(axis=axis),
    "mean": lambda x, axis: x.mean(axis=axis, keepdims=True),
    "max": lambda x, axis: x.max(axis=axis),
    "min": lambda x, axis: np.min(x, axis=axis),
    "prod": lambda x, axis: np.prod(x * 0.01 + 1, axis=axis),
    "argmax": lambda x, axis: x.argmax(axis=axis),
    "argmin": lambda x, axis: x.argmin(axis=axis),
    "any": lambda x, axis: (x > 0.5).any(axis=axis),
    "all": lambda x, axis: (x > -0.5).all(axis=axis),
}
DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint8, np.int16]


def _llvm(fn, *args) -> str:
    return gj.jit(fn).lower(*args).as_text("llvm")


def _uses_columns(fn, *args) -> bool:
    """Per-column state arrays (COLUMN_BLOCK long) in the optimised IR: the column layout."""
    return f"alloca [{loops.COLUMN_BLOCK} x" in _llvm(fn, *args)


def _rows(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    x = rng.standard_normal(shape) * 3
    if np.dtype(dtype).kind == "u":
        x = np.abs(x)
    return x.astype(dtype)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(loops.SHORT_ROW_MIN_ROWS, 150), cols=st.integers(1, loops.SHORT_ROW_LIMIT),
       name=st.sampled_from(sorted(REDUCTIONS)), dtype=st.sampled_from(DTYPES))
def test_short_row_reductions_match_numpy(rows, cols, name, dtype):
    x = _rows(np.random.default_rng(rows * 100 + cols), (rows, cols), dtype)
    check_against_numpy(lambda x: REDUCTIONS[name](x, 1), x, rtol=1e-4, atol=1e-4)


def test_short_rows_take_the_column_layout():
    x = np.ones((64, 10), np.float32)
    assert _uses_columns(lambda x: x.argmax(axis=1), x)
    assert _uses_columns(lambda x: x.max(axis=1, keepdims=True), x)
    assert not _uses_columns(lambda x: x.argmax(axis=1), np.ones((8, 10), np.float32))
    assert not _uses_columns(lambda x: x.argmax(axis=1), np.ones((64, 300), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_row_argmax_ties_nan_and_signed_zeros_follow_numpy(dtype):
    x = np.zeros((70, 10), dtype)
    x[1, [2, 7]] = 5.0                  # ties: the first index
    x[2, [4, 8]] = np.nan               # the first NaN, wherever the max is
    x[2, 9] = 100.0
    x[3, 0] = np.nan                    # NaN first
    x[4, 9] = np.nan                    # NaN last
    x[5] = -np.inf                      # all -inf: index 0
    x[6, 3], x[6, 5] = -0.0, 0.0        # -0 == +0: the first of them
    x[6] = np.where(x[6] == 0, -1.0, x[6])
    x[6, 3], x[6, 5] = -0.0, 0.0
    x[7] = np.inf
    x[8, 6] = np.inf
    x[9] = np.nan                       # all NaN: index 0
    x[10:] = np.random.default_rng(3).integers(-2, 3, (60, 10))  # many ties
    for fn in (lambda x: x.argmax(axis=1), lambda x: x.argmin(axis=1),
               lambda x: (x.argmax(axis=1), x.max(axis=1), x.argmin(axis=1), x.min(axis=1)),
               lambda x: np.argmax(x, axis=-1, keepdims=True)):
        check_against_numpy(fn, x)


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.int64, np.uint64])
def test_short_row_argmax_of_ints_and_bools(dtype):
    rng = np.random.default_rng(4)
    if dtype is np.bool_:
        x = rng.random((50, 7)) > 0.6
        x[0] = False
        x[1] = True
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min // 2, info.max // 2, (50, 7), dtype=dtype)
        x[0] = info.min
        x[1] = info.max
        x[2, [1, 5]] = info.max
        x[3, [2, 4]] = info.min
    check_against_numpy(lambda x: (x.argmax(axis=1), x.argmin(axis=1)), x)


@pytest.mark.parametrize("shape,axis", [((40, 5, 3), 2), ((40, 5, 3), 1), ((3, 40, 6), 2),
                                        ((40, 6), -1), ((6, 40), 0), ((40, 1), 1),
                                        ((33, 2, 4, 3), 3)])
def test_short_axes_of_several_dims(shape, axis):
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, shape).astype(np.float32)
    fn = lambda x: (x.argmax(axis=axis), x.argmin(axis=axis), x.sum(axis=axis),  # noqa: E731
                    x.max(axis=axis, keepdims=True))
    check_against_numpy(fn, x, rtol=1e-5, atol=1e-5)


def test_short_rows_over_two_reduce_axes():
    x = np.random.default_rng(6).standard_normal((48, 3, 4)).astype(np.float32)
    check_against_numpy(lambda x: (x.sum(axis=(1, 2)), x.max(axis=(1, 2)),
                                   np.exp(x - x.max(axis=(1, 2), keepdims=True))), x,
                        rtol=1e-5, atol=1e-5)


def test_softmax_and_log_softmax_of_short_rows_match_numpy():
    def softmax_loss(x):
        shifted = x - np.max(x, axis=1, keepdims=True)
        z = np.sum(np.exp(shifted), axis=1, keepdims=True)
        log_probs = shifted - np.log(z)
        return log_probs, np.exp(log_probs), log_probs.mean(axis=1)

    x = np.random.default_rng(7).standard_normal((128, 10)).astype(np.float32) * 4
    x[5, 3] = np.nan
    x[6, 2] = np.inf
    check_against_numpy(softmax_loss, x, rtol=1e-5, atol=1e-6)
    assert _uses_columns(softmax_loss, x)


def test_argmax_onehot_and_accuracy_of_short_rows():
    def onehot(logits, labels):
        pred = logits.argmax(axis=1)
        hot = (np.arange(logits.shape[1]) == pred[:, None]).astype(np.float32)
        return pred, hot, (pred == labels).mean()

    rng = np.random.default_rng(8)
    logits = rng.standard_normal((512, 10)).astype(np.float32)
    logits[::7, 3] = logits[::7, 8] = 9.0
    check_against_numpy(onehot, logits, rng.integers(0, 10, 512))


def test_short_rows_of_a_transposed_argument():
    x = np.random.default_rng(9).standard_normal((10, 64)).astype(np.float32)
    check_against_numpy(lambda x: (x.T.argmax(axis=1), x.T.sum(axis=1)), x, rtol=1e-5)
    check_against_numpy(lambda x: x.argmax(axis=1), np.asfortranarray(x.T.copy()))


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 3000), dtype=st.sampled_from(DTYPES),
       ties=st.booleans())
def test_long_row_arg_reductions_match_numpy(rows, cols, dtype, ties):
    rng = np.random.default_rng(rows * 7 + cols)
    x = rng.integers(-2, 3, (rows, cols)) if ties else rng.standard_normal((rows, cols)) * 50
    if np.dtype(dtype).kind == "u":
        x = np.abs(x)
    x = x.astype(dtype)
    check_against_numpy(lambda x: (x.argmax(axis=1), x.argmin(axis=-1), x.argmax()), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_row_argmax_nan_inf_and_zeros(dtype):
    x = np.random.default_rng(10).standard_normal((9, 2500)).astype(dtype)
    x[0, [100, 2000]] = np.nan
    x[1, 2499] = np.nan
    x[2, :] = -np.inf
    x[3, [10, 1500]] = np.inf
    x[4, :] = 0.0
    x[4, 7] = -0.0
    x[5, :] = np.nan
    x[6, [1024, 1025, 3]] = 99.0       # ties across a block boundary: the first
    x[7, 1023] = x[7, 2048] = -99.0
    x[8, 0] = np.nan
    check_against_numpy(lambda x: (x.argmax(axis=1), x.argmin(axis=1), x.argmax(),
                                   x.argmin(), x.argmax(axis=0), x.argmin(axis=0)), x)


def test_argmax_over_an_empty_axis_is_an_error():
    with pytest.raises((GraphjitError, ValueError)):
        gj.jit(lambda x: x.argmax(axis=1))(np.ones((4, 0), np.float32))
