"""A differential sweep of the NumPy functions graphjit traces (issue 11): each case runs the
undecorated function and `gj.jit` of it on the same arguments, twice with fresh values, and
compares value, dtype and shape (NaN and inf positions included). Where NumPy refuses the
arguments, graphjit must refuse them too, with one of its own errors (never a plain Python
exception, never a value).

The matrix is curated to stay quick: every unary and binary ufunc over all nine dtypes on one
shape, then the awkward forms (0-d, empty, broadcasting, non-contiguous and negative-stride
views, Python scalar operands) on a few dtypes, reductions with their keywords, and the shape,
join, split, indexing and contraction functions. A larger exploratory version of this sweep
found the bugs the cases named after an issue example pin down.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphjit as gj
from graphjit.compiler.errors import GraphjitError
from graphjit.frontend.numpy_api import UFUNC_HANDLERS
from helpers import assert_same_tree

DTYPES = [np.dtype(n) for n in ("bool", "int8", "uint8", "int16", "int32", "int64", "float16",
                                "float32", "float64")]
TOLERANCES = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}


class Arr:
    """An array argument: shape, dtype, layout ('c', 'nc' non-contiguous, 'neg' reversed)."""

    def __init__(self, shape, dtype, layout="c", low=-5, high=5):
        self.shape, self.dtype, self.layout = tuple(shape), np.dtype(dtype), layout
        self.low, self.high = low, high

    def make(self, rng: np.random.Generator) -> np.ndarray:
        if self.dtype.kind == "b":
            value = rng.random(self.shape) < 0.5
        elif self.dtype.kind in "iu":
            low = max(self.low, 0) if self.dtype.kind == "u" else self.low
            value = rng.integers(low, self.high + 1, size=self.shape)
        else:
            value = rng.uniform(self.low, self.high, size=self.shape)
            if value.size >= 6:
                value.reshape(-1)[:3] = [np.nan, np.inf, -0.0]
                rng.shuffle(value.reshape(-1))
        value = np.asarray(value).astype(self.dtype)
        if self.layout == "nc" and value.ndim:
            wide = np.zeros(value.shape[:-1] + (2 * value.shape[-1],), self.dtype)
            wide[..., ::2] = value
            return wide[..., ::2]
        if self.layout == "neg" and value.ndim:
            return value[::-1].copy()[::-1]
        return value

    def __repr__(self) -> str:
        return f"{self.dtype.name}{list(self.shape)}{'' if self.layout == 'c' else self.layout}"


def _quiet(fn, args):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _tolerance(result) -> float:
    leaves = result if isinstance(result, (list, tuple)) else [result]
    return max((TOLERANCES.get(np.asarray(r).dtype, 0.0) for r in leaves), default=0.0)


def check(fn, *specs) -> None:
    """`gj.jit(fn)` agrees with `fn` on two fresh draws of the arguments, or both refuse."""
    jitted = gj.jit(fn)
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        args = [s.make(rng) if isinstance(s, Arr) else s for s in specs]
        try:
            expected = _quiet(fn, [a.copy() if isinstance(a, np.ndarray) else a for a in args])
        except Exception as numpy_error:
            with pytest.raises(GraphjitError):
                _quiet(jitted, args)
            assert not isinstance(numpy_error, GraphjitError)
            return
        actual = _quiet(jitted, args)
        tol = _tolerance(expected)
        assert_same_tree(expected, actual, f"seed {seed}", rtol=tol, atol=tol)


def cases(*entries):
    """pytest params with readable ids: (name, fn, *specs)."""
    return [pytest.param(fn, specs, id=f"{name}-{'-'.join(map(repr, specs))}")
            for name, fn, *specs in entries]


# ---------------------------------------------------------------- elementwise ufuncs

UNARY = sorted((u for u in UFUNC_HANDLERS if u.nin == 1), key=lambda u: u.__name__)
BINARY = sorted((u for u in UFUNC_HANDLERS if u.nin == 2 and u is not np.matmul),
                key=lambda u: u.__name__)
SMALL_RIGHT = {np.left_shift, np.right_shift, np.power, np.ldexp, np.float_power}


@pytest.mark.parametrize("ufunc", UNARY, ids=lambda u: u.__name__)
def test_unary_ufunc_every_dtype(ufunc):
    for dtype in DTYPES:
        check(lambda x: ufunc(x), Arr((2, 3), dtype))


@pytest.mark.parametrize("ufunc", UNARY, ids=lambda u: u.__name__)
def test_unary_ufunc_awkward_forms(ufunc):
    for spec in (Arr((), "float32"), Arr((0, 3), "int8"), Arr((3, 4), "bool", "neg"), True,
                 0.5):
        check(lambda x: ufunc(x), spec)


@pytest.mark.parametrize("ufunc", BINARY, ids=lambda u: u.__name__)
def test_binary_ufunc_dtype_pairs(ufunc):
    high = 3 if ufunc in SMALL_RIGHT else 5
    for left in DTYPES[::2]:
        for right in DTYPES[1::3]:
            check(lambda a, b: ufunc(a, b), Arr((2, 3), left), Arr((3,), right, low=0, high=high))


@pytest.mark.parametrize("ufunc", BINARY, ids=lambda u: u.__name__)
def test_binary_ufunc_scalars_and_shapes(ufunc):
    high = 3 if ufunc in SMALL_RIGHT else 5
    for dtype in ("int8", "uint8", "float16"):
        for scalar in (True, 2, 2.5):
            check(lambda a, s: ufunc(a, s), Arr((2, 3), dtype), scalar)
        check(lambda a: ufunc(a, 300), Arr((2, 3), dtype))   # out of int8's range: refused
    for left, right in ((True, 3), (2, 3), (2.5, False)):   # Python scalars only
        check(lambda a, b: ufunc(a, b), left, right)
    for shapes in (((), ()), ((0, 3), (3,)), ((2, 1), (1, 3)), ((2, 3), (4,))):
        check(lambda a, b: ufunc(a, b), Arr(shapes[0], "float32", "nc"),
              Arr(shapes[1], "int32", low=0, high=high))


COMPARISON_SCALARS = cases(*[
    (f"{op.__name__}-{value}", lambda a, op=op, value=value: op(a, value), Arr((2, 3), dtype))
    for op in (np.less, np.greater_equal, np.equal) for value in (-3, 2 ** 40, 2 ** 70)
    for dtype in ("uint8", "int16")
])


@pytest.mark.parametrize("fn, specs", COMPARISON_SCALARS)
def test_comparison_with_python_int_outside_the_dtype(fn, specs):
    check(fn, *specs)


def test_python_int_comparison_argument_outside_the_dtype():
    check(lambda a, b: (a > b, a == b), Arr((2, 3), "int8"), 2 ** 40)
    check(lambda a, b: a < b, Arr((2, 3), "uint8"), -3)


def test_python_scalar_arithmetic_keeps_python_semantics():
    check(lambda a, b: (a + b, a * b, a - b, a / b), True, True)
    check(lambda a, b: (np.add(a, b), np.sin(a)), True, False)


# ---------------------------------------------------------------- reductions

REDUCERS = {
    "sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "mean": np.mean,
    "std": np.std, "var": np.var, "argmax": np.argmax, "argmin": np.argmin, "any": np.any,
    "all": np.all, "cumsum": np.cumsum, "cumprod": np.cumprod, "nansum": np.nansum,
    "nanmax": np.nanmax, "nanmean": np.nanmean, "nanvar": np.nanvar, "ptp": np.ptp,
    "count_nonzero": np.count_nonzero, "average": np.average, "median": np.median,
    "percentile": lambda x, **k: np.percentile(x, 30, **k),
    "quantile": lambda x, **k: np.quantile(x, [0.2, 0.9], **k),
}
REDUCER_KEYWORDS = [{}, {"axis": 0}, {"axis": -1, "keepdims": True}, {"axis": (0, 1)}]


@pytest.mark.parametrize("name", sorted(REDUCERS))
def test_reduction_dtypes_and_axes(name):
    reducer = REDUCERS[name]
    for dtype in ("bool", "uint8", "float16", "float64"):
        for keywords in REDUCER_KEYWORDS:
            check(lambda x: reducer(x, **keywords), Arr((3, 4), dtype))
    for spec in (Arr((), "float32"), Arr((0, 3), "int32"), Arr((3, 4), "float32", "nc"),
                 Arr((2, 3, 4), "int16", "neg")):
        check(lambda x: reducer(x, axis=0), spec)


REDUCTION_KEYWORDS = cases(
    ("max-initial-float", lambda x: np.max(x, initial=7.5), Arr((3,), "int32")),
    ("max-empty-initial", lambda x: np.max(x, axis=0, initial=0), Arr((0, 4), "float64")),
    ("max-empty", lambda x: np.max(x, axis=0), Arr((0, 4), "float64")),
    ("mean-int-dtype", lambda x: np.mean(x, axis=1, dtype=np.int32), Arr((3, 4), "int32")),
    ("sum-where-initial", lambda x, m: np.sum(x, where=m, initial=1.0),
     Arr((3, 4), "float32"), Arr((3, 4), "bool")),
    ("max-where-initial", lambda x, m: np.max(x, axis=0, where=m, initial=-1),
     Arr((3, 4), "int8"), Arr((3, 4), "bool")),
    ("sum-dtype", lambda x: np.sum(x, axis=0, dtype=np.float32), Arr((3, 4), "int8")),
    ("prod-dtype-int8", lambda x: np.prod(x, dtype=np.int8), Arr((3, 4), "int8")),
    ("std-0d-axis", lambda x: np.std(x, axis=0), Arr((), "float64")),
    ("sum-0d-axis", lambda x: np.sum(x, axis=0), Arr((), "float64")),
    ("sum-axis-out-of-range", lambda x: np.sum(x, axis=2), Arr((3, 4), "float64")),
    ("sum-float-axis", lambda x: np.sum(x, axis=1.0), Arr((3, 4), "float64")),
    ("cumsum-axis-tuple", lambda x: np.cumsum(x, axis=(0, 1)), Arr((3, 4), "float64")),
    ("var-ddof", lambda x: np.var(x, axis=0, ddof=1), Arr((3, 4), "float64")),
    ("std-int-dtype", lambda x: np.std(x, dtype=np.int32), Arr((3, 4), "float32")),
    ("std-int-dtype-axis", lambda x: np.std(x, axis=1, dtype=np.int32), Arr((3, 4), "float32")),
    ("nanmean-int-dtype", lambda x: np.nanmean(x, axis=1, dtype=np.int32),
     Arr((3, 4), "float32")),
    ("nanvar-float16-dtype", lambda x: np.nanvar(x, dtype=np.float64), Arr((3, 4), "float16")),
    ("argmin-0d-last-axis", lambda x: np.argmin(x, axis=-1, keepdims=True), Arr((), "int8")),
    ("method-of-python-scalar", lambda x: x.sum(), 2.5),
    ("average-weights", lambda x, w: np.average(x, axis=1, weights=w),
     Arr((3, 4), "float32"), Arr((4,), "float32", low=1)),
)


@pytest.mark.parametrize("fn, specs", REDUCTION_KEYWORDS)
def test_reduction_keywords(fn, specs):
    check(fn, *specs)


# ---------------------------------------------------------------- shapes, joins, indexing

X = Arr((2, 3, 4), "float32")
SHAPE_CASES = cases(
    ("reshape-F", lambda x: np.reshape(x, (4, 6), order="F"), X),
    ("reshape-F-nc", lambda x: x.reshape(3, -1, order="F"), Arr((2, 3, 4), "int8", "nc")),
    ("ravel-F", lambda x: np.ravel(x, order="F"), X),
    ("flatten-F", lambda x: x.flatten(order="F"), X),
    ("reshape-bad", lambda x: np.reshape(x, (5, 5)), X),
    ("transpose-axes", lambda x: np.transpose(x, (1, -1, 0)), X),
    ("swapaxes-bad", lambda x: np.swapaxes(x, 0, 3), X),
    ("moveaxis-tuple", lambda x: np.moveaxis(x, (0, 1), (-1, 0)), X),
    ("moveaxis-bad", lambda x: np.moveaxis(x, 5, 0), X),
    ("expand_dims-array-axis", lambda x: np.expand_dims(x, np.array(0)), Arr((3,), "int8")),
    ("expand_dims-tuple", lambda x: np.expand_dims(x, (0, -1)), Arr((3,), "int8")),
    ("squeeze-array-axis", lambda x: np.squeeze(x, np.array(2)), Arr((1, 3, 1), "bool")),
    ("squeeze-bad", lambda x: np.squeeze(x, 1), Arr((1, 3, 1), "bool")),
    ("atleast_1d", np.atleast_1d, Arr((), "int8")),
    ("atleast_2d", np.atleast_2d, Arr((3,), "int8")),
    ("atleast_3d", np.atleast_3d, Arr((2, 3), "int8")),
    ("hstack-0d", lambda a, b: np.hstack([a, b]), Arr((), "float32"), Arr((), "float64")),
    ("vstack-1d", lambda a, b: np.vstack([a, b]), Arr((3,), "int8"), Arr((3,), "bool")),
    ("dstack", lambda a, b: np.dstack([a, b]), Arr((2, 3), "int8"), Arr((2, 3), "int8")),
    ("column_stack", lambda a, b: np.column_stack([a, b]), Arr((3,), "int8"),
     Arr((3, 2), "float32")),
    ("hstack-python-scalar", lambda a: np.hstack([a, 2.5]), Arr((), "float32")),
    ("concatenate-out", lambda a, b, o: np.concatenate((a, b), out=o), Arr((2, 3), "int8"),
     Arr((2, 3), "int8"), Arr((4, 3), "float64")),
    ("concatenate-0d", lambda a, b: np.concatenate([a, b]), Arr((), "int8"), Arr((), "int8")),
    ("concatenate-ranks", lambda a, b: np.concatenate([a, b]), Arr((2, 3), "int8"),
     Arr((3,), "int8")),
    ("stack-out", lambda a, b, o: np.stack([a, b], out=o), Arr((3,), "int8"),
     Arr((3,), "int8"), Arr((2, 3), "float32")),
    ("stack-bad-axis", lambda a, b: np.stack([a, b], axis=3), Arr((2, 3), "int8"),
     Arr((2, 3), "int8")),
    ("repeat-0d-axis", lambda x: np.repeat(x, 3, axis=0), Arr((), "float32")),
    ("repeat-counts", lambda x: np.repeat(x, [1, 0, 2], axis=0), Arr((3, 2), "int8")),
    ("take-wrap", lambda x: np.take(x, np.array([5, -7, 1]), mode="wrap"), Arr((3, 4), "float32")),
    ("take-clip", lambda x: np.take(x, np.array([[5], [-7]]), axis=1, mode="clip"),
     Arr((3, 4), "float32")),
    ("take-traced-wrap", lambda x, i: np.take(x, i, axis=0, mode="wrap"),
     Arr((3, 4), "float32"), Arr((5,), "int32", low=-6, high=6)),
    ("take-traced-clip", lambda x, i: x.take(i, mode="clip"),
     Arr((3, 4), "float32"), Arr((5,), "int32", low=-20, high=20)),
    ("getitem-arrays-around-ellipsis", lambda x: x[:, np.array([0, 1]), ..., np.array([0, 1])],
     Arr((3, 4, 5), "float64")),
    ("getitem-true", lambda x: x[True], X),
    ("getitem-false", lambda x: x[..., False, 1:], X),
    ("getitem-float-array", lambda x: x[np.array([0.0])], X),
    ("getitem-out-of-range", lambda x: x[5], X),
    ("round-bool", np.round, Arr((2, 3), "bool")),
    ("round-int-negative-decimals", lambda x: np.round(x, -1), Arr((2, 3), "int16", low=-99,
                                                                    high=99)),
    ("copyto-int-into-bool", lambda x: (np.copyto(x, 1), x)[1], Arr((2, 3), "bool")),
    ("outer-weak", lambda b: np.outer(2.5, b), Arr((4,), "float32")),
    ("inner-weak", lambda b: np.inner(2.5, b), Arr((4,), "float32")),
    ("dot-weak", lambda b: np.dot(b, 3), Arr((4,), "int8")),
    ("inner-nd", np.inner, Arr((3, 4), "float64"), Arr((4, 3, 4), "float64")),
    ("inner-mismatch", np.inner, Arr((3, 4), "float64"), Arr((3,), "float64")),
    ("vdot-int8", np.vdot, Arr((2, 3), "int8"), Arr((3, 2), "bool")),
    ("vdot-mismatch", np.vdot, Arr((3,), "float64"), Arr((), "float64")),
    ("overflowing-python-int", lambda x: x * 2 ** 40, Arr((3,), "int32")),
    ("square-bool", np.square, Arr((3,), "bool")),
    ("pow-bool", lambda x: x ** 2, Arr((3,), "bool")),
    ("sin-int8", np.sin, Arr((3,), "int8")),
    ("sqrt-bool", np.sqrt, Arr((3,), "bool")),
    ("nextafter-float16", lambda x: np.nextafter(x, np.float16(0)), Arr((6,), "float16")),
    ("spacing-float16", np.spacing, Arr((6,), "float16")),
    ("less-float-dtype", lambda a: np.less(a, a, dtype=np.float64), Arr((3,), "float32")),
    ("add-dtype", lambda a: np.add(a, a, dtype=np.float64), Arr((3,), "float32")),
    ("add-unsafe-dtype", lambda a: np.add(a, 1, dtype=np.int8), Arr((3,), "float32")),
    ("fmax-bad-shapes", np.fmax, Arr((2, 3), "float64"), Arr((4,), "float64")),
    ("frexp-out-not-tuple", lambda x, o: np.frexp(x, out=o), Arr((3,), "float64"),
     Arr((3,), "float64")),
)


@pytest.mark.parametrize("fn, specs", SHAPE_CASES)
def test_shape_and_indexing_functions(fn, specs):
    check(fn, *specs)


def test_equal_of_python_scalars_only():
    check(lambda a, b: np.equal(a, b), 2, 3)
    check(lambda x: (np.equal(2, 3), x)[0], Arr((2,), "int8"))


# ---------------------------------------------------------------- NumPy's Python-level functions

ARRAY_FUNCTIONS = {
    "flip": np.flip, "flip-axes": lambda x: np.flip(x, (0, -1)), "fliplr": np.fliplr,
    "flipud": np.flipud, "roll": lambda x: np.roll(x, 2),
    "roll-axes": lambda x: np.roll(x, (1, -2), axis=(0, 1)), "rot90": np.rot90,
    "rot90-k3": lambda x: np.rot90(x, 3, axes=(-1, 0)), "diff": np.diff,
    "diff-n2-axis0": lambda x: np.diff(x, 2, axis=0),
    "diff-prepend-append": lambda x: np.diff(x, prepend=0, append=1), "tril": np.tril,
    "triu-k": lambda x: np.triu(x, -1), "trace": np.trace,
    "trace-dtype": lambda x: np.trace(x, 1, dtype=np.float32), "nan_to_num": np.nan_to_num,
    "nan_to_num-values": lambda x: np.nan_to_num(x, nan=1.5, posinf=2.0, neginf=-2.0),
    "isclose": lambda x: np.isclose(x, 1.0),
    "isclose-equal-nan": lambda x: np.isclose(x, x[::-1], equal_nan=True),
    "allclose": lambda x: np.allclose(x, x + 1e-9),
    "allclose-equal-nan": lambda x: np.allclose(x, x, equal_nan=True),
    "array_equal": lambda x: np.array_equal(x, x[::-1]),
    "array_equal-equal-nan": lambda x: np.array_equal(x, x, equal_nan=True),
    "array_equiv": lambda x: np.array_equiv(x, x[:1]),
}


@pytest.mark.parametrize("name", sorted(ARRAY_FUNCTIONS))
def test_array_functions(name):
    function = ARRAY_FUNCTIONS[name]
    for spec in (Arr((), "float32"), Arr((0, 3), "int8"), Arr((3,), "bool"),
                 Arr((2, 3), "float16"), Arr((2, 3, 4), "uint8", "nc"), Arr((3, 4), "float64")):
        check(function, spec)
