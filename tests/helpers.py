"""Shared test helpers: `check_against_numpy` and the differential case lists.

`check_against_numpy(fn, *args)` runs the undecorated `fn` and `gj.jit(fn)` on copies of the same
arguments and asserts that both give the same result (structure, shape, dtype, values with
dtype-aware tolerances, NaN and inf positions), leave the arguments in the same state (writebacks),
and that a second call hits the cache instead of recompiling.

The case lists (`UNARY_CASES`, `BINARY_CASES`, `REDUCTION_CASES`, `FUNCTION_CASES`) hold
`Case(name, fn, make_args)` triples. `make_args(rng, shapes, dtype)` returns the argument tuple for
one example: `shapes` has one shape per array operand (one for unary ops and reductions, two for
binary ops), `dtype` is the dtype of the arrays. They are shared with the CUDA tests, which run
the same cases with `target="cuda"`.
"""
from __future__ import annotations

import copy
import inspect
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

import graphjit as gj

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
BOOL_DTYPES = (np.dtype(bool),)
NUMERIC_DTYPES = FLOAT_DTYPES + INT_DTYPES
ALL_DTYPES = NUMERIC_DTYPES + BOOL_DTYPES

# Default tolerances per result dtype: (rtol, atol). Native backends may use their own
# approximations of transcendentals and their own summation order, so floats are not exact;
# integers and booleans always are.
TOLERANCES: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.float32): (2e-5, 2e-5),
    np.dtype(np.float64): (1e-11, 1e-11),
}


# ---------------------------------------------------------------- comparing results

def tolerance_for(dtype: np.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    default_rtol, default_atol = TOLERANCES.get(np.dtype(dtype), (0.0, 0.0))
    return (default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


def _is_python_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float)) and not isinstance(value, np.generic)


def assert_same_leaf(expected: Any, actual: Any, where: str, rtol: float | None = None,
                     atol: float | None = None) -> None:
    """One output leaf: same kind (Python scalar / NumPy value), shape, dtype and values."""
    if not isinstance(expected, (np.ndarray, np.generic, bool, int, float)):
        assert type(actual) is type(expected) and actual == expected, (
            f"{where}: NumPy gives {expected!r}, jit gives {actual!r}")
        return
    if _is_python_scalar(expected):
        assert type(actual) is type(expected), (
            f"{where}: NumPy gives a Python {type(expected).__name__}, jit gives "
            f"{type(actual).__name__} ({actual!r})")
        expected_array, actual_array = np.asarray(expected), np.asarray(actual)
    else:
        assert isinstance(actual, (np.ndarray, np.generic)), (
            f"{where}: NumPy gives {type(expected).__name__}, jit gives {type(actual).__name__}")
        expected_array, actual_array = np.asarray(expected), np.asarray(actual)
        assert actual_array.dtype == expected_array.dtype, (
            f"{where}: dtype {actual_array.dtype} != NumPy's {expected_array.dtype}")
    assert actual_array.shape == expected_array.shape, (
        f"{where}: shape {actual_array.shape} != NumPy's {expected_array.shape}")
    if expected_array.dtype.kind in "biu":
        np.testing.assert_array_equal(actual_array, expected_array, err_msg=where)
        return
    rtol, atol = tolerance_for(expected_array.dtype, rtol, atol)
    np.testing.assert_array_equal(np.isnan(actual_array), np.isnan(expected_array),
                                  err_msg=f"{where}: NaN positions differ")
    np.testing.assert_array_equal(np.isposinf(actual_array), np.isposinf(expected_array),
                                  err_msg=f"{where}: +inf positions differ")
    np.testing.assert_array_equal(np.isneginf(actual_array), np.isneginf(expected_array),
                                  err_msg=f"{where}: -inf positions differ")
    np.testing.assert_allclose(actual_array, expected_array, rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=where)


def assert_same_tree(expected: Any, actual: Any, where: str = "result", rtol: float | None = None,
                     atol: float | None = None) -> None:
    """Nested tuples/lists/dicts of leaves: same structure, then `assert_same_leaf` per leaf."""
    if isinstance(expected, (tuple, list)):
        assert type(actual) is type(expected), (
            f"{where}: NumPy gives a {type(expected).__name__}, jit a {type(actual).__name__}")
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same_tree(e, a, f"{where}[{i}]", rtol, atol)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: jit gives {type(actual).__name__}, not dict"
        assert list(actual) == list(expected), f"{where}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same_tree(expected[key], actual[key], f"{where}[{key!r}]", rtol, atol)
    elif expected is None:
        assert actual is None, f"{where}: NumPy gives None, jit gives {actual!r}"
    else:
        assert_same_leaf(expected, actual, where, rtol, atol)


def _copy_args(args: Sequence[Any]) -> list[Any]:
    """Deep copies that keep each array's memory layout (non-contiguous stays non-contiguous)."""
    return [copy_keeping_strides(a) if isinstance(a, np.ndarray) else copy.deepcopy(a)
            for a in args]


def copy_keeping_strides(array: np.ndarray) -> np.ndarray:
    """A copy with the same values; a non-contiguous array stays non-contiguous."""
    if array.flags.c_contiguous or array.ndim == 0:
        return array.copy()
    if array.flags.f_contiguous:
        return array.copy(order="F")
    return noncontiguous(array.copy())


def run_quietly(fn: Callable, args: Sequence[Any], kwargs: dict) -> Any:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def check_against_numpy(fn: Callable, *args: Any, rtol: float | None = None,
                        atol: float | None = None, kwargs: dict | None = None,
                        target: str = "cpu", static_argnums: Sequence[int] | int = (),
                        static_argnames: Sequence[str] | str = (),
                        check_cache: bool = True) -> Any:
    """Assert `gj.jit(fn)` matches the undecorated `fn` on `args`; return the jitted result.

    Also compares every argument after the call (in-place writes must be visible to the caller
    exactly as NumPy would have left them) and, with `check_cache`, that a second call with the
    same argument types hits the cache and gives the same result.
    """
    kwargs = kwargs or {}
    eager_args = _copy_args(args)
    expected = run_quietly(fn, eager_args, kwargs)
    jitted = gj.jit(fn, target=target, static_argnums=static_argnums,
                    static_argnames=static_argnames)
    jit_args = _copy_args(args)
    actual = run_quietly(jitted, jit_args, kwargs)  # host steps warn where NumPy would
    assert_same_tree(expected, actual, "result", rtol, atol)
    assert_same_tree(list(eager_args), list(jit_args), "arguments after the call", rtol, atol)
    if check_cache:
        misses = jitted.cache_info()["misses"]
        again_args = _copy_args(args)
        again = run_quietly(jitted, again_args, kwargs)
        info = jitted.cache_info()
        assert info["misses"] == misses, f"second call recompiled: {info}"
        assert info["hits"] >= 1, f"second call did not hit the cache: {info}"
        assert_same_tree(expected, again, "result of the second call", rtol, atol)
        assert_same_tree(list(eager_args), list(again_args), "arguments after the second call",
                         rtol, atol)
    return actual


# ---------------------------------------------------------------- making arguments

SPECIAL_FLOATS = (np.nan, np.inf, -np.inf, 0.0, -0.0)


def random_array(rng: np.random.Generator, shape: Sequence[int], dtype: Any,
                 low: float = -5.0, high: float = 5.0, specials: bool = True) -> np.ndarray:
    """Random values of `dtype`; floats get a sprinkling of NaN, +-inf and +-0 when `specials`."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if dtype.kind == "b":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype.kind in "iu":
        return np.asarray(rng.integers(math.floor(low), math.ceil(high) + 1, size=shape),
                          dtype=dtype)
    values = np.asarray(rng.uniform(low, high, size=shape), dtype=dtype)
    if specials and values.size >= 4:
        count = max(1, values.size // 8)
        positions = rng.choice(values.size, size=count, replace=False)
        flat = values.reshape(-1)
        flat[positions] = rng.choice(np.array(SPECIAL_FLOATS, dtype=dtype), size=count)
    return values


def noncontiguous(array: np.ndarray) -> np.ndarray:
    """The same values in a non-contiguous view (every other element of a bigger buffer)."""
    if array.ndim == 0:
        return array
    bigger = np.zeros(array.shape[:-1] + (array.shape[-1] * 2,), array.dtype)
    view = bigger[..., ::2]
    view[...] = array
    return view


def _arrays(low: float = -5.0, high: float = 5.0, specials: bool = True,
            nonzero: bool = False) -> Callable:
    """An argument maker: one random array per shape, all of `dtype`."""

    def make(rng: np.random.Generator, shapes: Sequence[Sequence[int]], dtype: Any) -> tuple:
        out = []
        for shape in shapes:
            array = random_array(rng, shape, dtype, low, high, specials)
            if nonzero and np.dtype(dtype).kind in "iu":
                array[array == 0] = 1
            out.append(array)
        return tuple(out)

    return make


def _int_exponent(rng: np.random.Generator, shapes: Sequence[Sequence[int]], dtype: Any) -> tuple:
    """Powers: small non-negative integer exponents keep integer powers defined and in range."""
    base = random_array(rng, shapes[0], dtype, -3, 3)
    if np.dtype(dtype).kind in "biu":
        exponent = random_array(rng, shapes[1], dtype, 0, 3)
    else:
        exponent = random_array(rng, shapes[1], dtype, -3, 3)
    return base, exponent


class Case(NamedTuple):
    """One differential case: `fn(*make_args(rng, shapes, dtype))` must match NumPy."""

    name: str
    fn: Callable
    make_args: Callable


# dtypes NumPy accepts for each case (default: all numeric plus bool where it makes sense)
CASE_DTYPES: dict[str, tuple[np.dtype, ...]] = {}


def _case(name: str, fn: Callable, make_args: Callable | None = None,
          dtypes: tuple[np.dtype, ...] = NUMERIC_DTYPES) -> Case:
    CASE_DTYPES[name] = dtypes
    return Case(name, fn, make_args or _arrays())


UNARY_CASES: list[Case] = [
    _case("negative", lambda x: -x),
    _case("np.negative", np.negative),
    _case("abs", lambda x: abs(x)),
    _case("np.abs", np.abs),
    _case("np.absolute", np.absolute),
    _case("np.fabs", np.fabs, dtypes=FLOAT_DTYPES),
    _case("np.exp", np.exp, _arrays(-20, 20)),
    _case("np.exp2", np.exp2, _arrays(-20, 20), dtypes=FLOAT_DTYPES),
    _case("np.log", np.log, _arrays(-1, 100)),
    _case("np.log2", np.log2, _arrays(-1, 100)),
    _case("np.log10", np.log10, _arrays(-1, 100)),
    _case("np.log1p", np.log1p, _arrays(-2, 100)),
    _case("np.expm1", np.expm1, _arrays(-20, 20)),
    _case("np.sqrt", np.sqrt, _arrays(-1, 100)),
    _case("np.square", np.square),
    _case("np.reciprocal", np.reciprocal, dtypes=FLOAT_DTYPES),
    _case("np.tanh", np.tanh, _arrays(-20, 20)),
    _case("np.sinh", np.sinh, _arrays(-5, 5), dtypes=FLOAT_DTYPES),
    _case("np.cosh", np.cosh, _arrays(-5, 5), dtypes=FLOAT_DTYPES),
    _case("np.arctan", np.arctan, _arrays(-50, 50), dtypes=FLOAT_DTYPES),
    _case("np.sin", np.sin),
    _case("np.cos", np.cos),
    _case("np.sign", np.sign),
    _case("np.floor", np.floor, dtypes=FLOAT_DTYPES),
    _case("np.ceil", np.ceil, dtypes=FLOAT_DTYPES),
    _case("np.round", np.round, _arrays(-50, 50)),
    _case("np.round_2", lambda x: np.round(x, 2), _arrays(-50, 50), dtypes=FLOAT_DTYPES),
    _case("np.logical_not", np.logical_not, dtypes=ALL_DTYPES),
    _case("invert_bool", lambda x: ~x, dtypes=BOOL_DTYPES),
    _case("np.isnan", np.isnan, dtypes=FLOAT_DTYPES),
    _case("np.isinf", np.isinf, dtypes=FLOAT_DTYPES),
    _case("np.isfinite", np.isfinite, dtypes=FLOAT_DTYPES),
    _case("np.positive", np.positive),
    _case("astype_f32", lambda x: x.astype(np.float32), dtypes=ALL_DTYPES),
    _case("astype_i64", lambda x: x.astype(np.int64), _arrays(-100, 100, specials=False),
          dtypes=ALL_DTYPES),
    _case("astype_bool", lambda x: x.astype(bool), dtypes=ALL_DTYPES),
    _case("scalar_mul_weak", lambda x: x * 2.5),
    _case("scalar_radd_weak", lambda x: 3 + x),
    _case("scalar_rsub", lambda x: 1.5 - x),
    _case("scalar_pow2", lambda x: x ** 2),
    _case("scalar_pow3", lambda x: x ** 3, _arrays(-4, 4)),
    _case("scalar_pow_half", lambda x: x ** 0.5, _arrays(-1, 100)),
    _case("scalar_rtruediv", lambda x: 1.0 / x),
    _case("scalar_gt", lambda x: x > 0.5),
    _case("scalar_eq", lambda x: x == 1),
]

BINARY_CASES: list[Case] = [
    _case("add", lambda a, b: a + b),
    _case("np.add", np.add),
    _case("subtract", lambda a, b: a - b),
    _case("multiply", lambda a, b: a * b, dtypes=ALL_DTYPES),
    _case("true_divide", lambda a, b: a / b, _arrays(nonzero=True)),
    _case("np.divide", np.divide, _arrays(nonzero=True)),
    _case("floor_divide", lambda a, b: a // b, _arrays(nonzero=True)),
    _case("remainder", lambda a, b: a % b, _arrays(nonzero=True)),
    _case("power", lambda a, b: a ** b, _int_exponent),
    _case("np.power", np.power, _int_exponent),
    _case("np.maximum", np.maximum, dtypes=ALL_DTYPES),
    _case("np.minimum", np.minimum, dtypes=ALL_DTYPES),
    _case("np.fmax", np.fmax, dtypes=FLOAT_DTYPES),
    _case("np.fmin", np.fmin, dtypes=FLOAT_DTYPES),
    _case("greater", lambda a, b: a > b, dtypes=ALL_DTYPES),
    _case("greater_equal", lambda a, b: a >= b),
    _case("less", lambda a, b: a < b),
    _case("less_equal", lambda a, b: a <= b),
    _case("equal", lambda a, b: a == b, dtypes=ALL_DTYPES),
    _case("not_equal", lambda a, b: a != b, dtypes=ALL_DTYPES),
    _case("np.greater", np.greater),
    _case("np.less_equal", np.less_equal),
    _case("np.logical_and", np.logical_and, dtypes=ALL_DTYPES),
    _case("np.logical_or", np.logical_or, dtypes=ALL_DTYPES),
    _case("np.logical_xor", np.logical_xor, dtypes=ALL_DTYPES),
    _case("and_bool", lambda a, b: a & b, dtypes=BOOL_DTYPES),
    _case("or_bool", lambda a, b: a | b, dtypes=BOOL_DTYPES),
    _case("np.logaddexp", np.logaddexp, _arrays(-30, 30), dtypes=FLOAT_DTYPES),
    _case("np.where_gt", lambda a, b: np.where(a > b, a, b)),
    _case("np.clip_arrays", lambda a, b: np.clip(a, b, b + 1)),
    _case("mixed_f64_scalar", lambda a, b: a * np.float64(2) + b),
]

# reductions take one array of rank >= 2
REDUCTION_CASES: list[Case] = [
    _case("sum_all", np.sum, dtypes=ALL_DTYPES),
    _case("sum_axis0", lambda x: x.sum(axis=0), dtypes=ALL_DTYPES),
    _case("sum_axis_last_keepdims", lambda x: np.sum(x, axis=-1, keepdims=True)),
    _case("sum_axes_tuple", lambda x: np.sum(x, axis=(0, -1))),
    _case("sum_dtype_f64", lambda x: np.sum(x, axis=0, dtype=np.float64)),
    _case("mean_all", np.mean, dtypes=ALL_DTYPES),
    _case("mean_axis", lambda x: x.mean(axis=-1, keepdims=True)),
    _case("prod_axis", lambda x: np.prod(x, axis=0), _arrays(-2, 2)),
    _case("max_axis", lambda x: np.max(x, axis=-1), dtypes=ALL_DTYPES),
    _case("max_method", lambda x: x.max(axis=0, keepdims=True)),
    _case("min_axis", lambda x: np.min(x, axis=0), dtypes=ALL_DTYPES),
    _case("amax_all", np.amax),
    _case("maximum_reduce", lambda x: np.maximum.reduce(x, axis=0)),
    _case("minimum_reduce", lambda x: np.minimum.reduce(x, axis=-1)),
    _case("add_reduce", lambda x: np.add.reduce(x, axis=0)),
    _case("var_all", np.var, _arrays(specials=False)),
    _case("var_axis_ddof", lambda x: np.var(x, axis=0, ddof=1), _arrays(specials=False)),
    _case("std_axis", lambda x: x.std(axis=-1), _arrays(specials=False)),
    _case("argmax_axis", lambda x: np.argmax(x, axis=-1), _arrays(specials=False)),
    _case("argmax_all", np.argmax, _arrays(specials=False)),
    _case("argmin_axis", lambda x: x.argmin(axis=0), _arrays(specials=False)),
    _case("any_axis", lambda x: np.any(x > 0, axis=0)),
    _case("all_all", lambda x: np.all(x > -4)),
    _case("logsumexp", lambda x: np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1)),
          _arrays(specials=False), dtypes=FLOAT_DTYPES),
    _case("softmax", lambda x: np.exp(x - x.max(-1, keepdims=True))
          / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True),
          _arrays(specials=False), dtypes=FLOAT_DTYPES),
]

# reductions whose identity is undefined for empty axes (NumPy raises): tests skip size-0 dims
NEEDS_NONEMPTY = {"max_axis", "max_method", "min_axis", "amax_all", "maximum_reduce",
                  "minimum_reduce", "argmax_axis", "argmax_all", "argmin_axis", "logsumexp",
                  "softmax"}
# reductions that need a rank >= 2 operand
ALL_CASES: list[Case] = UNARY_CASES + BINARY_CASES + REDUCTION_CASES


def case_ids(cases: Sequence[Case]) -> list[str]:
    return [case.name for case in cases]


def line_of(fn: Callable, text: str) -> int:
    """The line number of the first line of `fn`'s source containing `text` (for checking that
    an error names the user's line)."""
    lines, first = inspect.getsourcelines(fn)
    for offset, line in enumerate(lines):
        if text in line and not line.lstrip().startswith("def "):
            return first + offset
    raise AssertionError(f"{text!r} not in the source of {fn.__name__}")


def run_in_threads(work: Callable[[Any], None], arguments: Sequence[Any]) -> None:
    """work(argument) on one thread per argument, all started before any is joined."""
    threads = [threading.Thread(target=work, args=(a,)) for a in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
