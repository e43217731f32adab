"""Differential tests: every traced op and NumPy function against NumPy itself.

Shapes, dtypes, values (with NaN, +-inf and +-0 sprinkled in), broadcasting, size-0 and size-1
dimensions and non-contiguous inputs come from `hypothesis`; the cases come from tests/helpers.py
so the CUDA tests can run the very same ones.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import (
    ALL_DTYPES, BINARY_CASES, CASE_DTYPES, NEEDS_NONEMPTY, NUMERIC_DTYPES,
    REDUCTION_CASES, UNARY_CASES, case_ids, check_against_numpy, noncontiguous, random_array,
)


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 0) -> st.SearchStrategy:
    return st.lists(st.integers(min_side, 4), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def broadcastable_pair(draw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast: the second drops leading dims and sets some dims to 1."""
    full = draw(shapes(0, 3))
    keep = draw(st.integers(0, len(full)))
    other = list(full[len(full) - keep:])
    for i in range(len(other)):
        if draw(st.booleans()):
            other[i] = 1
    pair = (full, tuple(other))
    return pair if draw(st.booleans()) else pair[::-1]


def _maybe_noncontiguous(args: tuple, flags: list[bool]) -> tuple:
    return tuple(noncontiguous(a) if flag and isinstance(a, np.ndarray) else a
                 for a, flag in zip(args, flags))


def _dtype_for(case_name: str, data) -> np.dtype:
    return data.draw(st.sampled_from(CASE_DTYPES[case_name]), label="dtype")


# Each compile costs LLVM time, so every case gets a few examples of its own and all cases of a
# kind also run together in one jitted function over more shapes (one compile per example).
PER_CASE = settings(max_examples=3)
BATCHED = settings(max_examples=12)


@pytest.mark.parametrize("case", UNARY_CASES, ids=case_ids(UNARY_CASES))
@PER_CASE
@given(data=st.data(), shape=shapes(), seed=st.integers(0, 2**16), strided=st.booleans())
def test_unary(case, data, shape, seed, strided):
    dtype = _dtype_for(case.name, data)
    args = case.make_args(np.random.default_rng(seed), [shape], dtype)
    check_against_numpy(case.fn, *_maybe_noncontiguous(args, [strided]))


@pytest.mark.parametrize("case", BINARY_CASES, ids=case_ids(BINARY_CASES))
@PER_CASE
@given(data=st.data(), pair=broadcastable_pair(), seed=st.integers(0, 2**16),
       strided=st.lists(st.booleans(), min_size=2, max_size=2))
def test_binary(case, data, pair, seed, strided):
    dtype = _dtype_for(case.name, data)
    args = case.make_args(np.random.default_rng(seed), list(pair), dtype)
    check_against_numpy(case.fn, *_maybe_noncontiguous(args, strided))


@pytest.mark.parametrize("case", REDUCTION_CASES, ids=case_ids(REDUCTION_CASES))
@PER_CASE
@given(data=st.data(), seed=st.integers(0, 2**16), strided=st.booleans())
def test_reduction(case, data, seed, strided):
    min_side = 1 if case.name in NEEDS_NONEMPTY else 0
    shape = data.draw(shapes(2, 3, min_side), label="shape")
    dtype = _dtype_for(case.name, data)
    args = case.make_args(np.random.default_rng(seed), [shape], dtype)
    check_against_numpy(case.fn, *_maybe_noncontiguous(args, [strided]), rtol=1e-4, atol=1e-4)


def _all_of(cases, dtype) -> dict:
    return {case.name: case.fn for case in cases if dtype in CASE_DTYPES[case.name]}


@BATCHED
@given(dtype=st.sampled_from(ALL_DTYPES), shape=shapes(), seed=st.integers(0, 2**16),
       strided=st.booleans())
def test_all_unary_cases_together(dtype, shape, seed, strided):
    fns = _all_of(UNARY_CASES, dtype)
    x = random_array(np.random.default_rng(seed), shape, dtype)
    x = noncontiguous(x) if strided else x
    check_against_numpy(lambda a: {name: fn(a) for name, fn in fns.items()}, x)


@BATCHED
@given(dtype=st.sampled_from(ALL_DTYPES), pair=broadcastable_pair(), seed=st.integers(0, 2**16))
def test_all_binary_cases_together(dtype, pair, seed):
    fns = _all_of(BINARY_CASES, dtype)
    rng = np.random.default_rng(seed)
    a, b = (random_array(rng, shape, dtype) for shape in pair)
    if dtype.kind in "iu":
        b[b == 0] = 1  # integer division by zero is tested where NumPy defines it
        b = np.asarray(np.abs(b) % 4)
        b[b == 0] = 1
    check_against_numpy(lambda x, y: {name: fn(x, y) for name, fn in fns.items()}, a, b)


@BATCHED
@given(dtype=st.sampled_from(ALL_DTYPES), shape=shapes(2, 3, 1), seed=st.integers(0, 2**16),
       strided=st.booleans())
def test_all_reduction_cases_together(dtype, shape, seed, strided):
    fns = _all_of(REDUCTION_CASES, dtype)
    x = random_array(np.random.default_rng(seed), shape, dtype, specials=False)
    x = noncontiguous(x) if strided else x
    check_against_numpy(lambda a: {name: fn(a) for name, fn in fns.items()}, x,
                        rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- mixed dtypes and scalars

@settings(max_examples=12)
@given(a_dtype=st.sampled_from(ALL_DTYPES), b_dtype=st.sampled_from(ALL_DTYPES),
       seed=st.integers(0, 2**16))
def test_mixed_dtype_promotion(a_dtype, b_dtype, seed):
    rng = np.random.default_rng(seed)
    a = random_array(rng, (3, 2), a_dtype)
    b = random_array(rng, (2,), b_dtype)
    check_against_numpy(lambda x, y: (x + y, np.maximum(x, y), x * y, x == y), a, b)


@pytest.mark.parametrize("scalar", [2, 2.5, True, np.float64(2.5), np.float32(0.5), np.int64(3),
                                    np.int32(-2)], ids=repr)
@pytest.mark.parametrize("dtype", NUMERIC_DTYPES, ids=str)
def test_scalar_operands_follow_nep50(scalar, dtype):
    x = random_array(np.random.default_rng(0), (3,), dtype, specials=False)
    check_against_numpy(lambda a: (a * scalar, scalar - a, np.maximum(a, scalar)), x)


# ---------------------------------------------------------------- functions

def _f(dtype=np.float32, *shape_list, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [random_array(rng, s, dtype, **kw) for s in shape_list]


def check_all(fns: list, *args, **kwargs) -> None:
    """Check several functions of the same arguments as one jitted function (one compile)."""
    check_against_numpy(lambda *xs: [fn(*xs) for fn in fns], *args, **kwargs)


FEW = settings(max_examples=8)


@FEW
@given(shape=shapes(1, 3, 1), seed=st.integers(0, 2**16), dtype=st.sampled_from(NUMERIC_DTYPES))
def test_where_and_clip(shape, seed, dtype):
    x, y = _f(dtype, shape, shape, seed=seed)
    check_all([
        lambda a, b: np.where(a > 0, a, b),
        lambda a, b: np.where(a > 0, a, 0),
        lambda a, b: np.where(a > 0, 1.5, a),
        lambda a, b: np.where(b, a, 2),
        lambda a, b: np.clip(a, -1, 2),
        lambda a, b: a.clip(0.5),
        lambda a, b: np.clip(a, None, 1),
        lambda a, b: np.clip(a, b, 3),
    ], x, y)


@FEW
@given(m=st.integers(1, 5), k=st.integers(0, 5), n=st.integers(1, 5), batch=st.integers(0, 3),
       dtype=st.sampled_from(NUMERIC_DTYPES), seed=st.integers(0, 2**16))
def test_matmul_shapes(m, k, n, batch, dtype, seed):
    rng = np.random.default_rng(seed)
    a = random_array(rng, (m, k), dtype, specials=False)
    b = random_array(rng, (k, n), dtype, specials=False)
    tol = dict(rtol=1e-4, atol=1e-4)
    check_all([
        lambda x, y: x @ y,
        np.matmul,
        np.dot,
        lambda x, y: x @ y[:, 0],
        lambda x, y: x[0] @ y,
        lambda x, y: x.T.T @ y.T.T,
        lambda x, y: (x.T[::-1].T @ y[::-1]) * 2 + 1,
    ], a, b, **tol)
    stacked = random_array(rng, (batch, m, k), dtype, specials=False)
    check_all([
        lambda x, y: x @ y,
        lambda x, y: np.matmul(y.T, x.transpose(0, 2, 1)),
        lambda x, y: np.matmul(x, np.broadcast_to(y, (batch, k, n))),
    ], stacked, b, **tol)


def test_matmul_vectors_and_dot_variants():
    a, b, m = _f(np.float64, (4,), (4,), (4, 3), specials=False)
    check_all([
        lambda x, y, z: x @ y,
        lambda x, y, z: np.dot(x, y),
        lambda x, y, z: np.inner(x, y),
        lambda x, y, z: np.outer(x, y),
        lambda x, y, z: np.vdot(x, y),
        lambda x, y, z: np.dot(x, 2.0),
        lambda x, y, z: x.dot(z),
        lambda x, y, z: y @ z,
    ], a, b, m)
    t = _f(np.float64, (2, 4, 3), specials=False)[0]
    check_against_numpy(np.dot, m.T, t)


EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("i,i->", [(4,), (4,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,ij->i", [(3, 4), (3, 4)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("bhqk,bhkd->bhqd", [(2, 2, 3, 5), (2, 2, 5, 4)]),
    ("ij,kj->ik", [(3, 4), (5, 4)]),
    ("ji,jk->ik", [(4, 3), (4, 5)]),
    ("ijk,ikl->jl", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),
    ("...j,jk", [(2, 3, 4), (4, 5)]),
    ("ii->i", [(3, 3)]),
    ("ii", [(3, 3)]),
    ("i,i,i->i", [(3,), (3,), (3,)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("bi,bi->b", [(0, 3), (0, 3)]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64], ids=str)
def test_einsum(dtype):
    # every pattern in one function: its own arguments, its own output
    arg_lists = [_f(dtype, *shapes_, seed=i, specials=False)
                 for i, (_, shapes_) in enumerate(EINSUM_CASES)]
    flat = [a for args in arg_lists for a in args]
    counts = [len(args) for args in arg_lists]

    def all_patterns(*arrays):
        results, start = {}, 0
        for (subscripts, _), count in zip(EINSUM_CASES, counts):
            results[subscripts] = np.einsum(subscripts, *arrays[start:start + count])
            start += count
        return results

    check_against_numpy(all_patterns, *flat, rtol=1e-4, atol=1e-4)


def test_einsum_mixed_dtypes_and_out():
    a = _f(np.float32, (3, 4))[0]
    b = _f(np.float64, (4, 2))[0]

    def fn(x, y):
        out = np.zeros((3, 2))
        out = out + np.einsum("ij,jk->ik", x, y)
        result = np.empty_like(out)
        np.einsum("ij,jk", x, y, out=result)
        return out, result, np.einsum("ij->i", x, dtype=np.float64)

    check_against_numpy(fn, a, b)


@FEW
@given(shape=shapes(1, 3, 1), seed=st.integers(0, 2**16), dtype=st.sampled_from(ALL_DTYPES))
def test_shape_functions(shape, seed, dtype):
    (x,) = _f(dtype, shape, seed=seed)
    check_all([
        lambda a: a.reshape(-1),
        lambda a: np.reshape(a, (1, -1)),
        lambda a: a.reshape(*a.shape[::-1]),
        lambda a: a.T,
        lambda a: np.transpose(a),
        lambda a: a.transpose(*range(a.ndim)[::-1]),
        lambda a: np.swapaxes(a, 0, -1),
        lambda a: np.moveaxis(a, 0, -1),
        lambda a: np.expand_dims(a, 0),
        lambda a: np.expand_dims(a, (0, -1)),
        lambda a: np.squeeze(a[None]),
        lambda a: a[None].squeeze(0),
        lambda a: np.broadcast_to(a, (2,) + a.shape),
        lambda a: np.ravel(a),
        lambda a: a.flatten(),
        lambda a: np.concatenate([a, a], axis=-1),
        lambda a: np.concatenate([a, a], axis=None),
        lambda a: np.stack([a, a, a]),
        lambda a: np.stack([a, a], axis=-1),
        lambda a: np.hstack([a, a]),
        lambda a: np.vstack([a, a]),
        lambda a: np.zeros_like(a),
        lambda a: np.ones_like(a, dtype=np.float32),
        lambda a: np.full_like(a, 7),
        lambda a: np.copy(a),
        lambda a: (a.shape, a.ndim, a.size, len(a), a.dtype == np.float32),
    ], x)


def test_concatenate_mixed_dtypes_and_constants():
    a, b = _f(np.float32, (2, 3), (1, 3))
    c = np.arange(3, dtype=np.int64).reshape(1, 3)
    check_all([
        lambda x, y: np.concatenate([x, y, c]),
        lambda x, y: np.stack([x[0], y[0]], axis=1),
    ], a, b)


@FEW
@given(shape=shapes(1, 3, 1), seed=st.integers(0, 2**16), dtype=st.sampled_from(ALL_DTYPES),
       before=st.integers(0, 2), after=st.integers(0, 2))
def test_pad_constant(shape, seed, dtype, before, after):
    (x,) = _f(dtype, shape, seed=seed)
    check_all([
        lambda a: np.pad(a, before),
        lambda a: np.pad(a, (before, after)),
        lambda a: np.pad(a, [(before, after)] * a.ndim, constant_values=1),
        lambda a: np.pad(a, [(0, 0)] * (a.ndim - 1) + [(after, before)], mode="constant"),
        lambda a: np.pad(a, [(i % 2, 1) for i in range(a.ndim)],
                         constant_values=[(i, -i) for i in range(a.ndim)]),
    ], x)


@FEW
@given(shape=shapes(1, 3, 1), seed=st.integers(0, 2**16), dtype=st.sampled_from(ALL_DTYPES),
       reps=st.integers(0, 3))
def test_tile_repeat(shape, seed, dtype, reps):
    (x,) = _f(dtype, shape, seed=seed)
    sizes = list(range(x.shape[0]))
    check_all([
        lambda a: np.tile(a, reps),
        lambda a: np.tile(a, (2, reps)),
        lambda a: np.tile(a, (1,) * a.ndim + (2,)),
        lambda a: np.repeat(a, reps),
        lambda a: np.repeat(a, reps, axis=-1),
        lambda a: a.repeat(2, axis=0),
        lambda a: np.repeat(a, sizes, axis=0),
    ], x)


@FEW
@given(n=st.integers(1, 8), seed=st.integers(0, 2**16), dtype=st.sampled_from(ALL_DTYPES))
def test_split(n, seed, dtype):
    (x,) = _f(dtype, (n, 3), seed=seed)
    fns = [
        lambda a: np.array_split(a, 3),
        lambda a: np.array_split(a, 2, axis=1),
        lambda a: np.split(a, [1, 2]),
        lambda a: np.split(a, 3, axis=1),
        lambda a: np.split(a, [-1, 10]),
    ]
    if n % 2 == 0:
        fns.append(lambda a: np.split(a, 2))
    check_all(fns, x)


@FEW
@given(shape=shapes(1, 3, 0), seed=st.integers(0, 2**16), dtype=st.sampled_from(ALL_DTYPES))
def test_cumsum(shape, seed, dtype):
    (x,) = _f(dtype, shape, seed=seed)
    check_all([
        lambda a: np.cumsum(a, axis=0),
        lambda a: np.cumsum(a),
        lambda a: a.cumsum(axis=-1),
        lambda a: np.cumsum(a, axis=0, dtype=np.float64),
    ], x, rtol=1e-4, atol=1e-4)


@FEW
@given(rows=st.integers(1, 4), cols=st.integers(1, 4), n=st.integers(0, 5),
       seed=st.integers(0, 2**16), dtype=st.sampled_from(ALL_DTYPES))
def test_take(rows, cols, n, seed, dtype):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (rows, cols), dtype)
    rows_index = rng.integers(-rows, rows, size=n)
    cols_index = rng.integers(-cols, cols, size=(n, 2))
    check_all([
        lambda a, i, j: np.take(a, i, axis=0),
        lambda a, i, j: np.take(a, j, axis=1),
        lambda a, i, j: np.take(a, i),
        lambda a, i, j: a.take(j.astype(np.int32), axis=-1),
        lambda a, i, j: np.take(a, 0, axis=1),
        lambda a, i, j: np.take(a, [0, -1], axis=0),
        lambda a, i, j: np.take(a, i[0] if n else 0, axis=0),
    ], x, rows_index, cols_index)


@FEW
@given(rows=st.integers(1, 4), cols=st.integers(1, 4), n=st.integers(0, 4),
       seed=st.integers(0, 2**16), dtype=st.sampled_from(ALL_DTYPES))
def test_take_along_axis(rows, cols, n, seed, dtype):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (rows, cols), dtype)
    index = rng.integers(-cols, cols, size=(rows, n))
    index0 = rng.integers(0, rows, size=(n, 1))
    check_all([
        lambda a, i, j: np.take_along_axis(a, i, axis=1),
        lambda a, i, j: np.take_along_axis(a, j, axis=0),
        lambda a, i, j: np.take_along_axis(a, np.argmax(a, axis=-1)[:, None], axis=-1),
        lambda a, i, j: np.take_along_axis(a, i, -1) * 2,
    ], x, index, index0)


@FEW
@given(shape=shapes(1, 3, 0), seed=st.integers(0, 2**16))
def test_ufunc_methods(shape, seed):
    x, y = _f(np.float64, shape, shape, seed=seed)
    check_all([
        lambda a, b: np.add.outer(a[..., :2], b[..., :2]),
        lambda a, b: np.multiply.outer(a.ravel()[:3], b.ravel()[:2]),
        lambda a, b: np.add.reduce(a, axis=None),
        lambda a, b: np.multiply.reduce(a, axis=0),
        lambda a, b: np.logical_or.reduce(a > 0, axis=0),
        lambda a, b: np.logical_and.reduce(a > 0, axis=-1),
    ], x, y)


def test_ufunc_dtype_and_out_arguments():
    x, y = _f(np.float32, (3, 4), (3, 4))

    def with_out(a, b):
        result = np.empty_like(a)
        np.add(a, b, out=result)
        np.multiply(result, 2, out=result)
        return result, np.add(a, b, dtype=np.float64), np.sqrt(a, dtype=np.float64)

    check_against_numpy(with_out, x, y)


def test_misc_functions():
    x, y = _f(np.float64, (3, 4), (3, 4), specials=False)
    check_all([
        lambda a, b: np.linalg.norm(a),
        lambda a, b: np.linalg.norm(a, axis=-1),
        lambda a, b: (np.shape(a), np.ndim(a), np.size(a), np.size(a, 1)),
        lambda a, b: np.result_type(a, b, 1.0) == np.float64,
        lambda a, b: np.float_power(a, 2),
        lambda a, b: a.sum(axis=0, initial=1.0),
        lambda a, b: a.max(axis=0, initial=0.0),
    ], x, y)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0), (1, 1), (1, 0, 2)], ids=str)
def test_reductions_of_size_zero_and_size_one_dims(shape):
    x = np.ones(shape, np.float32)
    check_all([
        np.sum,
        lambda a: a.sum(axis=0),
        lambda a: a.mean(axis=-1),
        lambda a: np.prod(a, axis=0),
        lambda a: np.any(a > 0, axis=0),
        lambda a: np.all(a > 0),
    ], x)
