"""Differential coverage of NumPy's API (issue 11): every function compared with NumPy on value,
dtype and shape, NaN positions included, across dtypes and awkward shapes (0-d, empty,
non-contiguous), with a second call on the same types hitting the cache.

Functions of the same argument types are checked together as one jitted function (one compile
per dtype) to keep the suite quick.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphjit as gj
from graphjit.compiler.errors import GraphjitError
from helpers import check_against_numpy, noncontiguous, random_array

ALL = [np.dtype(t) for t in ("bool", "int8", "uint8", "int32", "int64", "float16", "float32",
                             "float64")]
NUMERIC = [d for d in ALL if d.kind != "b"]
FLOATS = [d for d in ALL if d.kind == "f"]
INTS = [d for d in ALL if d.kind in "iu"]


def tolerances(dtype: np.dtype) -> dict:
    """float16 results are rounded after every op, in another order than NumPy's on sums."""
    if np.dtype(dtype) == np.float16:
        return {"rtol": 2e-2, "atol": 2e-2}
    if np.dtype(dtype) == np.float32:
        return {"rtol": 1e-4, "atol": 1e-5}
    return {"rtol": 1e-9, "atol": 1e-9}


def check_all(fns: list, *args, dtype=np.float64, **kwargs) -> None:
    """Several functions of the same arguments as one jitted function (one compile)."""
    check_against_numpy(lambda *xs: [fn(*xs) for fn in fns], *args, **tolerances(dtype),
                        **kwargs)


def array(shape, dtype, seed=0, low=-5, high=5, specials=True) -> np.ndarray:
    return random_array(np.random.default_rng(seed), shape, dtype, low, high, specials)


# ---------------------------------------------------------------- reductions and keywords

REDUCTIONS = [
    lambda a: np.sum(a, axis=0),
    lambda a: np.sum(a, axis=1, keepdims=True, initial=2),
    lambda a: np.sum(a, where=a > 0),
    lambda a: np.prod(a, axis=1),
    lambda a: np.max(a, axis=1),
    lambda a: np.min(a, axis=0, keepdims=True),
    lambda a: np.max(a, axis=0, where=a < 3, initial=1),
    lambda a: np.min(a, initial=0),
    lambda a: np.any(a, axis=0),
    lambda a: np.all(a, axis=1, where=a != 1),
    lambda a: np.mean(a, axis=1),
    lambda a: np.mean(a, axis=0, where=a < 2),
    lambda a: np.var(a, axis=0),
    lambda a: np.std(a, axis=1, ddof=1),
    lambda a: np.argmax(a, axis=1),
    lambda a: np.argmin(a),
    lambda a: np.count_nonzero(a, axis=0),
    lambda a: np.cumsum(a, axis=1),
    lambda a: np.cumprod(a, axis=0),
    lambda a: np.add.reduce(a, axis=None, keepdims=True),
    lambda a: np.maximum.accumulate(a, axis=1),
    lambda a: np.median(a, axis=0),
]
NUMERIC_REDUCTIONS = [
    lambda a: np.percentile(a, [25, 75], axis=1),
    lambda a: np.quantile(a, 0.4),
    lambda a: np.ptp(a, axis=1),
    lambda a: np.mean(a, axis=1, dtype=np.float64),
    lambda a: np.sum(a, axis=0, dtype=np.int64),
    lambda a: np.subtract.reduce(a, axis=1),
    lambda a: np.average(a, axis=1, weights=np.arange(1.0, 5.0)),
    lambda a: np.average(a, axis=0, returned=True),
]
NAN_REDUCTIONS = [
    lambda a: np.nansum(a, axis=0),
    lambda a: np.nanprod(a, axis=1),
    lambda a: np.nanmax(a, axis=1),
    lambda a: np.nanmin(a, axis=0),
    lambda a: np.nanargmax(a, axis=0),
    lambda a: np.nanargmin(a, axis=1),
    lambda a: np.nanmean(a, axis=1),
    lambda a: np.nanvar(a, axis=0),
    lambda a: np.nanstd(a, axis=1, ddof=1),
    lambda a: np.nancumsum(a, axis=1),
    lambda a: np.nancumprod(a, axis=0),
    lambda a: np.nanmedian(a, axis=1),
    lambda a: np.nanpercentile(a, 30, axis=0),
]


@pytest.mark.parametrize("dtype", ALL, ids=str)
def test_reductions_with_keywords(dtype):
    fns = REDUCTIONS + (NUMERIC_REDUCTIONS if dtype.kind != "b" else [])
    if dtype.kind == "f":
        fns = fns + NAN_REDUCTIONS
    x = array((3, 4), dtype, seed=1, low=-3, high=3)
    if dtype.kind == "f":
        x[1, 2] = np.nan
    check_all(fns, x, dtype=dtype)
    check_all(fns, noncontiguous(x), dtype=dtype, check_cache=False)


@pytest.mark.parametrize("dtype", ["int32", "float32"])
def test_reductions_of_empty_axes_use_identity_or_initial(dtype):
    check_all([
        lambda a: np.sum(a, axis=0),
        lambda a: np.prod(a, axis=1),
        lambda a: np.max(a, axis=0, initial=0),
        lambda a: np.min(a, axis=0, initial=3.5),
        lambda a: np.any(a, axis=0),
        lambda a: np.cumsum(a, axis=0),
        lambda a: np.count_nonzero(a, axis=1),
    ], np.zeros((0, 4), dtype), dtype=np.dtype(dtype))


def test_reduction_dtype_rules_from_numpy():
    i32 = np.array([1, 5], np.int32)
    check_all([
        lambda a: np.max(a, initial=7.5),                  # initial cast to int32: 7
        lambda a: np.mean(np.stack([a, a]), axis=1, dtype=np.int32),
        lambda a: np.sum(a.astype(np.int8)),               # int8 sums in int64
        lambda a: np.sum(a.astype(np.uint8)),              # uint8 sums in uint64
        lambda a: np.mean(a.astype(np.float16)),           # float16 mean: float32 inside
        lambda a: np.prod(a > 1),
    ], i32)


def test_reductions_of_0d_arrays():
    check_all([np.sum, np.max, np.mean, np.argmax, np.cumsum, np.median, np.ptp,
               lambda a: np.sum(a, initial=1)], np.float64(2.5) * np.ones(()))


def test_nan_reductions_of_all_nan_slices():
    x = np.array([[np.nan, np.nan], [1.0, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_all([lambda a: np.nanmax(a, axis=1), lambda a: np.nanmin(a, axis=1),
                   lambda a: np.nanmean(a, axis=1), lambda a: np.nanvar(a, axis=1),
                   lambda a: np.nansum(a, axis=1)], x)


def test_reduction_without_identity_errors():
    with pytest.raises(GraphjitError, match="identity"):
        gj.jit(lambda a: np.max(a, axis=0))(np.zeros((0, 3)))
    with pytest.raises(GraphjitError, match="initial"):
        gj.jit(lambda a: np.max(a, where=a > 0))(np.ones(3))
