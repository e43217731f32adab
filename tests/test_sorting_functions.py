"""Sorting, searching, counting and the numerical routines of issue 11 (frontend/sorting.py,
frontend/numerical.py): each compared with the undecorated NumPy function on value, dtype and
shape (NaN positions included) across dtypes and awkward shapes (0-d, empty, non-contiguous),
in-place methods mutating like NumPy's, gradients against finite differences, and the
refusals of functions whose result shape depends on the data."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit import DTypeError, ShapeError, UnsupportedError
from helpers import check_against_numpy, line_of, noncontiguous, random_array

THIS_FILE = os.path.basename(__file__)
DTYPES = [np.dtype(t) for t in ("bool", "int8", "int32", "float32", "float64")]
NUMERIC = [d for d in DTYPES if d.kind != "b"]
FLOATS = [d for d in DTYPES if d.kind == "f"]


def array(shape, dtype, seed=0, low=-4, high=4, specials=True) -> np.ndarray:
    return random_array(np.random.default_rng(seed), shape, dtype, low, high, specials)


def tolerances(dtype) -> dict:
    return {"rtol": 1e-4, "atol": 1e-4} if np.dtype(dtype) == np.float32 else \
        {"rtol": 1e-9, "atol": 1e-9}


def check_all(fns: list, *args, **kwargs):
    """Several functions of the same arguments as one jitted function (one compile)."""
    return check_against_numpy(lambda *xs: [fn(*xs) for fn in fns], *args, **kwargs)


# ---------------------------------------------------------------- sorts

SORTS_ANY_NDIM = [
    lambda a: np.sort(a, axis=None),
    lambda a: np.argsort(a, axis=None, kind="stable"),
]
SORTS_1D = [
    lambda a: np.sort(a),
    lambda a: np.sort(a, kind="stable"),
    lambda a: np.sort(a, stable=True),
    lambda a: np.argsort(a, kind="stable"),
    lambda a: a.argsort(stable=True),
    lambda a: np.argsort(a),
    lambda a: np.lexsort((a,)),
]
SORTS_2D = [
    lambda a: np.sort(a, axis=0),
    lambda a: np.argsort(a, axis=0, kind="stable"),
    lambda a: np.partition(a, 1, axis=0),
    lambda a: np.argpartition(a, 1, axis=0),
    lambda a: np.lexsort(a),
    lambda a: np.lexsort(a, axis=0),
]


def _sorts_for(ndim: int, size: int) -> list:
    fns = list(SORTS_ANY_NDIM)
    if ndim >= 1:
        fns += SORTS_1D
    if ndim >= 1 and size:   # partition needs kth inside the axis
        fns += [lambda a: np.partition(a, 0), lambda a: np.argpartition(a, -1),
                lambda a: a.argpartition((0, -1))]
    if ndim >= 2 and size:
        fns += SORTS_2D
    return fns


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (9,), (4, 5), (2, 0)], ids=str)
def test_sorts_match_numpy(shape, dtype):
    a = array(shape, dtype)
    size = int(np.prod(shape))
    check_all(_sorts_for(len(shape), size), a)


@pytest.mark.parametrize("dtype", [np.dtype(np.int8), np.dtype(np.float64)], ids=str)
def test_sorts_of_a_noncontiguous_view(dtype):
    a = noncontiguous(array((4, 6), dtype, seed=3))
    check_all(_sorts_for(2, a.size), a)
    check_all(_sorts_for(1, 3), noncontiguous(array((7,), dtype, seed=4)))


def test_sort_puts_nan_last_and_keeps_signed_zeros():
    a = np.array([np.nan, 1.0, -np.inf, -0.0, 0.0, np.inf, np.nan, -1.0])
    result = check_all([np.sort, lambda x: np.argsort(x, kind="stable")], a)
    assert np.isnan(result[0][-2:]).all()


def test_stable_argsort_keeps_the_order_of_ties():
    a = np.array([2, 1, 2, 1, 2, 1, 1, 2] * 8, dtype=np.int32)
    result = check_against_numpy(lambda x: np.argsort(x, kind="stable"), a)
    assert np.all(np.diff(result[a[result] == 1]) > 0)


def test_sort_of_a_zero_d_array_along_an_axis_is_numpys_axis_error():
    with pytest.raises(ShapeError, match="out of bounds"):
        gj.jit(lambda a: np.sort(a))(np.float64(1.0))


def test_sort_kind_and_order_arguments():
    with pytest.raises(UnsupportedError, match="order"):
        gj.jit(lambda a: np.sort(a, order="f"))(np.ones(3))
    with pytest.raises(ShapeError, match="kind"):
        gj.jit(lambda a: np.sort(a, kind="bogus"))(np.ones(3))


# ---------------------------------------------------------------- in-place methods

def sort_argument(a):
    a.sort()


def sort_argument_axis0(a):
    a.sort(axis=0, kind="stable")
    return a.sum(axis=0)


def sort_a_view(a):
    view = a[:, ::2]
    view.sort()
    return a


def sort_a_local_copy(a):
    b = a.copy()
    b.sort(axis=-1)
    return b, a


def partition_argument(a):
    a.partition(1)
    return a[..., 1]


@pytest.mark.parametrize("fn", [sort_argument, sort_argument_axis0, sort_a_view,
                                sort_a_local_copy, partition_argument],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.dtype(np.int32), np.dtype(np.float32)], ids=str)
def test_in_place_sort_mutates_like_numpy(fn, dtype):
    check_against_numpy(fn, array((3, 6), dtype, seed=5))


def test_in_place_sort_of_a_noncontiguous_argument_is_written_back():
    check_against_numpy(sort_argument_axis0, noncontiguous(array((3, 5), np.float64, seed=6)))
    check_against_numpy(sort_argument, noncontiguous(array((2, 7), np.int8, seed=7)))


def test_sorts_and_searches_of_python_scalars():
    check_against_numpy(lambda s: [np.sort(s, axis=None), np.isin(s, [1.0, 2.0]),
                                   np.searchsorted([0.0, 1.5, 3.0], s), np.polyval([1, 2], s)],
                        2.0)


def test_in_place_sort_needs_an_integer_axis_like_numpy():
    def fn(a):
        a.sort(axis=None)

    with pytest.raises(TypeError):
        fn(np.ones((2, 2)))
    with pytest.raises(DTypeError, match="integer axis"):
        gj.jit(fn)(np.ones((2, 2)))


def test_in_place_sort_of_a_read_only_view_is_refused():
    def fn(a):
        np.broadcast_to(a, (2, 3)).sort()

    with pytest.raises(gj.GraphjitError, match="read-only"):
        gj.jit(fn)(np.ones(3))


# ---------------------------------------------------------------- searches

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_searchsorted_matches_numpy(dtype):
    haystack = np.sort(array((12,), dtype, seed=1, specials=False))
    needles = array((3, 4), dtype, seed=2)
    check_all([
        lambda h, v: np.searchsorted(h, v),
        lambda h, v: np.searchsorted(h, v, side="right"),
        lambda h, v: h.searchsorted(v[0, 0]),
        lambda h, v: np.searchsorted(h[::-1], v, sorter=np.argsort(h[::-1], kind="stable")),
        lambda h, v: h[::-1].searchsorted(v, "right", np.argsort(h[::-1], kind="stable")),
        lambda h, v: np.searchsorted(h, v[:0]),
        lambda h, v: np.searchsorted(np.array([0.5, 1.5]), v),
    ], haystack, needles)


def test_searchsorted_with_constant_haystack_and_python_scalar():
    check_all([lambda v: np.searchsorted([1, 3, 5], v), lambda v: np.searchsorted(v, 2.5)],
              np.array([0.0, 2.0, 3.0, 9.0]))
    check_against_numpy(lambda s: np.searchsorted([3.0, 1.0, 2.0], [2.5, 0.0], sorter=s),
                        np.array([1, 2, 0]))


@pytest.mark.parametrize("dtype", NUMERIC, ids=str)
def test_digitize_matches_numpy(dtype):
    x = array((3, 5), dtype, seed=6)
    check_all([
        lambda v: np.digitize(v, [-2, 0, 1, 3]),
        lambda v: np.digitize(v, [-2, 0, 1, 3], right=True),
        lambda v: np.digitize(v, [3, 1, 0, -2]),
        lambda v: np.digitize(v, np.array([3.0, 1.0, 0.0]), right=True),
        lambda v: np.digitize(v[0], np.sort(v[1])),
    ], x)


# ---------------------------------------------------------------- counting

@pytest.mark.parametrize("dtype", NUMERIC, ids=str)
def test_histogram_matches_numpy(dtype):
    x = array((40,), dtype, seed=7, specials=False)
    check_all([
        lambda v: np.histogram(v),
        lambda v: np.histogram(v, bins=4, range=(-2, 2)),
        lambda v: np.histogram(v, bins=[-3, -1, 0, 2.5, 4]),
        lambda v: np.histogram(v, bins=5, density=True),
        lambda v: np.histogram(v, bins=3, weights=np.linspace(0, 1, 40)),
        lambda v: np.histogram(v, bins=np.sort(v[:5])),
        lambda v: np.histogram(v[:0], bins=3),
        lambda v: np.histogram(v.reshape(5, 8), bins=2, range=(0, 1)),
    ], x, **tolerances(np.float64))


def test_histogram_of_nan_data_with_a_range_counts_like_numpy():
    check_against_numpy(lambda v: np.histogram(v, bins=4, range=(-4, 4)),
                        array((30,), np.float64, seed=8))


def test_histogram_refuses_a_data_dependent_bin_rule():
    def fn(a):
        return np.histogram(a, bins="auto")

    expect_error(fn, line_of(fn, "np.histogram"), np.ones(5), hints=("int or an array",))

    def traced_count(a):
        return np.histogram(a, bins=a.size + a.argmax())

    expect_error(traced_count, line_of(traced_count, "np.histogram"), np.ones(5),
                 hints=("bins (a count) must be static",))


@pytest.mark.parametrize("dtype", [np.dtype(np.bool_), np.dtype(np.int8), np.dtype(np.int64)],
                         ids=str)
def test_bincount_with_a_static_minlength(dtype):
    x = np.abs(array((20,), dtype, seed=9)).astype(dtype)
    check_all([
        lambda v: np.bincount(v, minlength=6),
        lambda v: np.bincount(v, weights=np.linspace(-1, 1, 20), minlength=5),
        lambda v: np.bincount(v[:0], minlength=3),
    ], x)


def test_bincount_of_a_value_beyond_minlength_is_a_run_time_error():
    fn = gj.jit(lambda v: np.bincount(v, minlength=3))
    np.testing.assert_array_equal(fn(np.array([0, 2, 2])), [1, 0, 2])
    with pytest.raises(gj.GraphjitError, match="the value 5 is >= minlength=3"):
        fn(np.array([0, 5, 2]))


def test_bincount_without_minlength_is_refused_unless_known():
    def fn(a):
        return np.bincount(a)

    expect_error(fn, line_of(fn, "np.bincount"), np.array([1, 2]),
                 hints=("depends on the values", "minlength="))
    check_against_numpy(lambda a: a + np.bincount(np.array([0, 1, 1, 3])), np.arange(4))
    check_against_numpy(lambda w: np.bincount(np.array([0, 4, 1, 4]), weights=w),
                        np.linspace(0, 1, 4))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (3, 4)], ids=str)
def test_isin_matches_numpy(shape, dtype):
    x = array(shape, dtype, seed=10)
    many = np.arange(-20, 20, dtype=np.int64)   # > ISIN_UNROLL_LIMIT: the host step
    check_all([
        lambda v: np.isin(v, [1, 2, 3]),
        lambda v: np.isin(v, [1.5, 0.0, np.nan], invert=True),
        lambda v: np.isin(v, v[..., :1] if v.ndim else v),
        lambda v: np.isin(v, np.array([], dtype=np.int32)),
        lambda v: np.isin(v, many),
        lambda v: np.isin(v, many, invert=True),
        lambda v: np.isin(np.arange(-3, 4), v),
    ], x)


# ---------------------------------------------------------------- interpolation, unwrap

@pytest.mark.parametrize("dtype", NUMERIC, ids=str)
def test_interp_matches_numpy(dtype):
    x = array((3, 5), dtype, seed=11)
    xp, fp = np.array([-2.0, 0.0, 1.0, 3.0]), np.array([1.0, -1.0, 2.0, 0.5])
    check_all([
        lambda v: np.interp(v, xp, fp),
        lambda v: np.interp(v, xp, fp, left=-9.0, right=9),
        lambda v: np.interp(v, xp, fp, left=v[0, 0], right=v[0, 1]),
        lambda v: np.interp(v, xp, fp, period=2.5),
        lambda v: np.interp(2.0, np.sort(v[0]), v[1]),
    ], x, **tolerances(np.float64))


@pytest.mark.parametrize("dtype", NUMERIC, ids=str)
def test_unwrap_matches_numpy(dtype):
    x = np.cumsum(array((4, 7), np.float64, seed=12, specials=False), axis=1).astype(dtype)
    check_all([
        np.unwrap,
        lambda v: np.unwrap(v, axis=0),
        lambda v: np.unwrap(v, discont=4.0),
        lambda v: np.unwrap(v, period=4),
    ], x, **tolerances(np.result_type(dtype, np.float16)))


# ---------------------------------------------------------------- polynomials, vectors

@pytest.mark.parametrize("dtype", NUMERIC + [np.dtype(np.bool_)], ids=str)
def test_polyval_and_vander_match_numpy(dtype):
    x = array((6,), dtype, seed=13)
    check_all([
        lambda v: np.polyval([2, -1, 3], v),
        lambda v: np.polyval(np.array([0.5, 1.5]), v),
        lambda v: np.polyval(v[:3], 2),
        lambda v: np.polyval(v, v[:2].reshape(2, 1)),
        lambda v: np.vander(v),
        lambda v: np.vander(v, 3, increasing=True),
        lambda v: np.vander(v, 0),
        lambda v: np.vander(v[:0], 2),
    ], x, **tolerances(dtype))


@pytest.mark.parametrize("dtype", NUMERIC, ids=str)
def test_cross_matches_numpy(dtype):
    a, b = array((4, 3), dtype, seed=14), array((4, 3), dtype, seed=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # NumPy's 2-vector deprecation
        check_all([
            np.cross,
            lambda u, v: np.cross(u[0], v),
            lambda u, v: np.cross(u[:, :2], v),
            lambda u, v: np.cross(u, v[:, :2]),
            lambda u, v: np.cross(u[:, :2], v[:, 1:]),
            lambda u, v: np.cross(u.T, v.T, axis=0),
            lambda u, v: np.cross(u, v.T, axisb=0, axisc=0),
            lambda u, v: np.cross(u[::2], [1, 0, 0]),
        ], a, b, **tolerances(dtype))


def test_cross_refusals():
    with pytest.raises(ShapeError, match="dimension must be 2 or 3"):
        gj.jit(lambda a: np.cross(a, a))(np.ones((2, 4)))
    with pytest.raises(DTypeError, match="boolean"):
        gj.jit(lambda a: np.cross(a, a))(np.ones((2, 3), bool))


# ---------------------------------------------------------------- statistics

@pytest.mark.parametrize("dtype", NUMERIC + [np.dtype(np.bool_)], ids=str)
def test_cov_and_corrcoef_match_numpy(dtype):
    m = array((3, 6), dtype, seed=16, specials=False)
    check_all([
        np.cov,
        lambda a: np.cov(a, rowvar=False),
        lambda a: np.cov(a[0], a[1]),
        lambda a: np.cov(a, bias=True),
        lambda a: np.cov(a, ddof=0),
        lambda a: np.cov(a[0]),
        lambda a: np.cov(a, a[:2], rowvar=True),
        lambda a: np.cov(a, fweights=[1, 2, 1, 3, 1, 1]),
        lambda a: np.cov(a, aweights=np.linspace(0.5, 2, 6)),
        lambda a: np.cov(a, fweights=[1, 2, 1, 3, 1, 1], aweights=np.linspace(0.5, 2, 6)),
        lambda a: np.cov(a, dtype=np.float32),
        lambda a: np.cov(a[:0]),
        lambda a: np.cov(a[:, :1]),
        lambda a: np.cov(a[:1], rowvar=False),
        lambda a: np.cov(a[0], a[:1], rowvar=False),
        np.corrcoef,
        lambda a: np.corrcoef(a[0], a[1]),
        lambda a: np.corrcoef(a, rowvar=False),
        lambda a: np.corrcoef(a[0]),
    ], m, **tolerances(np.float32))


def test_cov_with_traced_weights():
    m = array((2, 5), np.float64, seed=17, specials=False)
    check_against_numpy(lambda a, w: [np.cov(a, aweights=w), np.cov(a, fweights=w, ddof=2)],
                        m, np.array([1.0, 2.0, 1.0, 3.0, 1.0]), **tolerances(np.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_trapezoid_matches_numpy(dtype):
    y = array((4, 5), dtype, seed=18)
    check_all([
        np.trapezoid,
        lambda v: np.trapezoid(v, axis=0),
        lambda v: np.trapezoid(v, dx=0.5),
        lambda v: np.trapezoid(v, x=np.arange(5.0) ** 2),
        lambda v: np.trapezoid(v, x=v.astype(np.int32)),
        lambda v: np.trapezoid(v[:, :1]),
        lambda v: np.trapezoid(v[0, ::2]),
    ], y, **tolerances(np.float32))


# ---------------------------------------------------------------- convolution, blocks

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_convolve_matches_numpy(mode, dtype):
    a, v = array((11,), dtype, seed=19, specials=False), array((4,), dtype, seed=20)
    long_kernel = np.linspace(-1, 1, 70)     # > CONVOLVE_UNROLL_LIMIT taps: the host step
    check_all([
        lambda x, k: np.convolve(x, k, mode),
        lambda x, k: np.convolve(k, x, mode),
        lambda x, k: np.convolve(x, k[:1], mode),
        lambda x, k: np.convolve(x, [1, -2, 1], mode),
        lambda x, k: np.convolve(x, x, mode),
        lambda x, k: np.convolve(x[::2], long_kernel, mode),
        lambda x, k: np.convolve(x[0], k, mode),
    ], a, v, **tolerances(np.float32))


def test_convolve_of_infinities_multiplies_only_where_inputs_overlap():
    check_against_numpy(lambda a, k: [np.convolve(a, k, mode) for mode in ("full", "same")],
                        np.array([1.0, np.inf, 2.0, -1.0]), np.array([np.nan, 1.0, 0.0]))


def test_convolve_refuses_empty_inputs_like_numpy():
    with pytest.raises(ShapeError, match="cannot be empty"):
        gj.jit(lambda a: np.convolve(a, a[:0]))(np.ones(3))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_block_matches_numpy(dtype):
    a = array((2, 3), dtype, seed=21)
    check_all([
        lambda x: np.block([[x, x], [x, x]]),
        lambda x: np.block([x[0], 1, x[1]]),
        lambda x: np.block([[x[:, :1], x], [np.zeros((1, 1)), x[:1]]]),
        lambda x: np.block([[[x]]]),
        lambda x: np.block(x),
        lambda x: np.block([x, x[:, :2]]),
    ], a)


def test_block_refusals_match_numpy():
    with pytest.raises(ShapeError, match="depths are mismatched"):
        gj.jit(lambda a: np.block([[a], a]))(np.ones(2))
    with pytest.raises(TypeError, match="tuple"):   # NumPy's own check, before dispatch
        gj.jit(lambda a: np.block([(a, a)]))(np.ones(2))


# ---------------------------------------------------------------- gradients

def finite_differences(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


W = np.random.default_rng(1).normal(size=(3, 5))
GRADIENT_CASES = {
    "sort": lambda a: np.sum(np.sort(a) * W),
    "sort axis 0": lambda a: np.sum(np.sort(a, axis=0) * W),
    "sort axis None": lambda a: np.sum(np.sort(a, axis=None) * W.ravel()),
    "in-place sort": lambda a: np.sum(_sorted_copy(a) * W),
    "unwrap": lambda a: np.sum(np.unwrap(a * 3) * W),
    "polyval": lambda a: np.sum(np.polyval([1.0, -2, 3], a) * W),
    "vander": lambda a: np.sum(np.vander(a[0], 4) * np.arange(4.0)),
    "cross": lambda a: np.sum(np.cross(a[:, :3], a[:, 2:]) * W[:, :3]),
    "cov": lambda a: np.sum(np.cov(a) * np.arange(9.0).reshape(3, 3)),
    "corrcoef": lambda a: np.sum(np.corrcoef(a) * np.arange(9.0).reshape(3, 3)),
    "trapezoid": lambda a: np.trapezoid(a * W, x=np.arange(5.0) ** 2).sum(),
    "convolve": lambda a: np.sum(np.convolve(a[0], a[1], "same") * W[0]),
    "block": lambda a: np.sum(np.block([[a, a[:, :2]]]) ** 2),
    "bincount weights": lambda a: np.sum(
        np.bincount(np.array([0, 2, 2, 1, 0]), weights=a[0], minlength=4) * np.arange(4.0)),
}


def _sorted_copy(a):
    b = a * 1.0
    b.sort(axis=0)
    return b


@pytest.mark.parametrize("name", list(GRADIENT_CASES))
def test_gradient_matches_finite_differences(name):
    f = GRADIENT_CASES[name]
    x = np.random.default_rng(2).normal(size=(3, 5))
    np.testing.assert_allclose(gj.jit(gj.grad(f))(x), finite_differences(f, x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_gradient_of_a_long_kernel_convolution(mode):
    # more taps than CONVOLVE_UNROLL_LIMIT: a host step with its own vjp rule
    rng = np.random.default_rng(3)
    signal, kernel = rng.normal(size=80), rng.normal(size=70)
    weights = rng.normal(size=np.convolve(signal, kernel, mode).shape)
    for f, x in ((lambda s: np.sum(np.convolve(s, kernel, mode) * weights), signal),
                 (lambda k: np.sum(np.convolve(signal, k, mode) * weights), kernel),
                 (lambda s: np.sum(np.convolve(kernel, s, mode) * weights), signal)):
        np.testing.assert_allclose(gj.jit(gj.grad(f))(x), finite_differences(f, x),
                                   rtol=1e-5, atol=1e-6)


XP = np.array([-1.0, 0.0, 1.5, 3.0])
FP = np.array([1.0, -1.0, 2.0, 0.5])
X_INTERP = np.array([-2.0, -0.5, 0.3, 1.0, 2.9, 3.0, 3.5, 0.7])   # outside, inside, at the end
INTERP_CASES = {
    "x": (lambda a: np.sum(np.interp(a, XP, FP) * np.arange(8.0)), X_INTERP + 0.01),
    "x, left and right": (lambda a: np.sum(np.interp(a, XP, FP, left=0.0, right=5.0) ** 2),
                          X_INTERP + 0.01),
    "x float32": (lambda a: np.sum(np.interp(a, XP, FP) * np.arange(8.0)),
                  (X_INTERP + 0.01).astype(np.float32)),
    "fp": (lambda f: np.sum(np.interp(X_INTERP, XP, f) * np.arange(8.0)), FP),
    "fp, left": (lambda f: np.sum(np.interp(X_INTERP, XP, f, left=-3.0) * np.arange(8.0)), FP),
    "fp, right": (lambda f: np.sum(np.interp(X_INTERP, XP, f, right=-3.0) * np.arange(8.0)),
                  FP),
    "fp, one point": (lambda f: np.sum(np.interp(X_INTERP, XP[:1], f[:1]) * np.arange(8.0)),
                      FP),
}


@pytest.mark.parametrize("name", list(INTERP_CASES))
def test_interp_gradient_matches_finite_differences(name):
    f, x = INTERP_CASES[name]
    grad = gj.jit(gj.grad(f))(x)
    assert grad.dtype == x.dtype
    np.testing.assert_allclose(grad, finite_differences(f, x.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)


def test_interp_gradient_with_respect_to_sample_points_is_refused():
    with pytest.raises(gj.GraphjitError, match="sample points"):
        gj.jit(gj.grad(lambda p: np.sum(np.interp(X_INTERP, p, FP))))(XP)


def test_gradient_through_partition_is_refused_clearly():
    with pytest.raises(gj.GraphjitError, match="np.partition: it has no derivative rule"):
        gj.jit(gj.grad(lambda a: np.sum(np.partition(a, 1))))(np.ones(4))


# ---------------------------------------------------------------- hypothesis

FLOAT_ELEMENTS = st.one_of(st.floats(-10, 10, width=32), st.sampled_from([np.nan, np.inf,
                                                                          -np.inf, -0.0]))


@settings(max_examples=10)
@given(values=st.lists(FLOAT_ELEMENTS, min_size=0, max_size=12),
       needles=st.lists(FLOAT_ELEMENTS, min_size=1, max_size=4),
       side=st.sampled_from(["left", "right"]))
def test_sort_and_search_of_random_floats(values, needles, side):
    a, v = np.array(values, np.float32), np.array(needles, np.float32)
    check_all([
        lambda x, n: np.sort(x),
        lambda x, n: np.argsort(x, stable=True),
        lambda x, n: np.searchsorted(np.sort(x), n, side=side),
        lambda x, n: np.isin(n, x),
    ], a, v, check_cache=False)


# ---------------------------------------------------------------- data-dependent shapes

def expect_error(fn, line: int, *args, hints: tuple[str, ...] = ()) -> str:
    with pytest.raises(UnsupportedError) as info:
        gj.jit(fn)(*args)
    message = str(info.value)
    assert f"{THIS_FILE}:{line}" in message, message
    for hint in hints:
        assert hint in message, f"{hint!r} missing from: {message}"
    assert info.value.__cause__ is None
    return message


def nonzero(a):
    return np.nonzero(a)


def argwhere(a):
    return np.argwhere(a > 0)


def flatnonzero(a):
    return np.flatnonzero(a)


def unique(a):
    return np.unique(a)


def unique_counts(a):
    return np.unique_counts(a)


def setdiff(a):
    return np.setdiff1d(a, [1.0])


def nonzero_method(a):
    return a.nonzero()


def compress_traced(a):
    return np.compress(a > 0, a)


def extract_traced(a):
    return np.extract(a > 0, a)


def trim_zeros(a):
    return np.trim_zeros(a)


@pytest.mark.parametrize("fn", [nonzero, argwhere, flatnonzero, unique, unique_counts, setdiff,
                                nonzero_method, compress_traced, extract_traced, trim_zeros],
                         ids=lambda f: f.__name__)
def test_data_dependent_shapes_are_refused_clearly(fn):
    name = fn.__name__.replace("_method", "").replace("_traced", "").replace("setdiff",
                                                                             "setdiff1d")
    message = expect_error(fn, line_of(fn, "return"), np.array([0.0, 1.0, 2.0]),
                           hints=("depends on the values", "outside the jitted function"))
    assert name in message


def test_one_argument_where_and_boolean_mask_reads_are_refused_clearly():
    def where_one(a):
        return np.where(a > 1)

    def mask_read(a):
        return a[a > 1]

    expect_error(where_one, line_of(where_one, "np.where"), np.ones(3),
                 hints=("depends on the data", "np.where(condition, x, y)"))
    expect_error(mask_read, line_of(mask_read, "a[a > 1]"), np.ones(3),
                 hints=("depends on the data", "np.where(mask, x, 0)"))


def test_data_dependent_functions_of_known_values_are_computed_while_tracing():
    check_against_numpy(lambda a: (a[np.nonzero(np.array([0, 1, 1, 0]))],
                                   np.unique(np.array([3, 1, 3])) + a[:2].sum()), np.arange(4.0))


def test_static_conditions_select_a_static_number_of_elements():
    a = array((3, 4), np.float32, seed=22)
    check_all([
        lambda x: np.compress([True, False, True], x, axis=0),
        lambda x: np.compress([False, True], x, axis=1),
        lambda x: np.compress(np.array([1, 0, 1, 1]) > 0, x),
        lambda x: x.compress([True, False, True], axis=0),
        lambda x: np.extract(np.arange(12).reshape(3, 4) % 3 == 0, x),
    ], a)


def test_traced_kth_is_refused():
    def fn(a):
        return np.partition(a, a.argmax())

    expect_error(fn, line_of(fn, "np.partition"), np.ones(3), hints=("kth must be static",))
