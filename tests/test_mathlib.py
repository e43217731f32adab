"""Accuracy of runtime/cpu/mathlib.py against NumPy, measured in ulp over the whole float range.

Each function is compiled alone (`mathlib.math_module`: y[i] = f(x[i]) over an array, the same
inlined code a kernel gets) and run on: random bit patterns (every exponent, both signs,
denormals, infinities, NaNs), dense sweeps of the interesting ranges, and a table of specials."""
from __future__ import annotations

import ctypes
import warnings

import numpy as np
import pytest

from graphjit.runtime.cpu import mathlib
from test_codegen import compile_module, ulp_distance
from vector_width import is_vectorised, widest_float_vector_bytes

FUNCTIONS = ["exp", "log", "log1p", "expm1", "tanh", "sin", "cos"]
FLOATS = [np.dtype(np.float32), np.dtype(np.float64)]
# Worst distance from NumPy allowed, in ulp. float32: "a few ulp"; float64: about 1e-15 relative.
MAX_ULP = {np.dtype(np.float32): 3, np.dtype(np.float64): 4}
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-45, 1e-310, 5e-324, 1e-38,
            3.4028235e38, -3.4028235e38, 1.7976931348623157e308, 88.72, 88.73, -87.3, -103.9,
            -104.0, 709.78, 709.79, -745.1, -745.2, 0.625, -0.625, 2.0 ** -30, np.pi, 1e5, 65536.0,
            -65536.0, 1e22, 8.8e7, -1.0 + 2.0 ** -24, -1.0 - 1e-7, 0.5, 20.0, -20.0]


def compiled_map(name: str, dtype: np.dtype):
    symbol, text = mathlib.math_module(name, dtype)
    compiled = compile_module(text, symbol)
    arity = mathlib.MATH_BODIES[name][0]
    signature = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * (arity + 1)), ctypes.c_int64)
    function = signature(compiled.address)

    def run(*inputs: np.ndarray) -> np.ndarray:
        arrays = [np.ascontiguousarray(x, dtype) for x in inputs]
        out = np.empty_like(arrays[0])
        function(*(a.ctypes.data for a in arrays), out.ctypes.data, out.size)
        return out

    run.compiled = compiled
    return run


def sample_inputs(dtype: np.dtype, seed: int = 0, count: int = 200_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    int_type = np.uint32 if dtype == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(int_type).max, count, dtype=int_type, endpoint=True)
    everywhere = bits.view(dtype)
    moderate = rng.standard_normal(count).astype(dtype) * np.asarray(
        rng.choice([1e-6, 0.1, 1, 5, 30, 100, 800], count), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        specials = np.array(SPECIALS).astype(dtype)
    return np.concatenate([everywhere, moderate, specials])


def reference(name: str, *inputs: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return getattr(np, "power" if name == "pow" else name)(*inputs)


def worst(actual: np.ndarray, expected: np.ndarray, inputs: tuple) -> tuple[float, str]:
    distance = ulp_distance(actual, expected)
    at = int(np.argmax(distance))
    where = ", ".join(repr(x[at]) for x in inputs)
    return distance[at], f"f({where}) = {actual[at]!r}, NumPy {expected[at]!r}"


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_unary_accuracy_over_the_whole_range(name, dtype):
    run = compiled_map(name, dtype)
    x = sample_inputs(dtype)
    actual, expected = run(x), reference(name, x)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    assert np.array_equal(np.isinf(actual), np.isinf(expected))
    ulps, where = worst(actual, expected, (x,))
    assert ulps <= MAX_ULP[dtype], f"{name} {dtype}: {ulps} ulp at {where}"


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "sin", "cos", "log1p", "expm1"])
def test_float32_functions_vectorise(name):
    """The point of mathlib: no libm call, so the loop becomes SIMD code."""
    run = compiled_map(name, np.dtype(np.float32))
    optimized = run.compiled.optimized_ir
    assert is_vectorised(optimized), widest_float_vector_bytes(optimized)
    assert "call float @exp" not in optimized and "@llvm.exp" not in optimized


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_exp_results_near_overflow_and_in_the_denormal_range(dtype):
    run = compiled_map("exp", dtype)
    top = 88.8 if dtype == np.float32 else 709.9
    bottom = -104.0 if dtype == np.float32 else -745.2
    x = np.linspace(bottom, top, 400_001).astype(dtype)
    actual, expected = run(x), reference("exp", x)
    ulps, where = worst(actual, expected, (x,))
    assert ulps <= MAX_ULP[dtype], where
    assert np.array_equal(actual == 0, expected == 0) and np.array_equal(np.isinf(actual),
                                                                         np.isinf(expected))


def test_log_of_denormals_and_special_values():
    for dtype in FLOATS:
        run = compiled_map("log", dtype)
        tiny = np.finfo(dtype).smallest_subnormal * np.arange(1, 5000, dtype=dtype)
        x = np.concatenate([tiny, np.array([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan], dtype)])
        actual, expected = run(x), reference("log", x)
        np.testing.assert_array_equal(actual[-6:], expected[-6:])
        ulps, where = worst(actual, expected, (x,))
        assert ulps <= MAX_ULP[dtype], where


def test_sin_cos_float32_huge_arguments_use_exact_reduction():
    """|x| up to 3.4e38: Payne-Hanek reduction, still within a few ulp of NumPy."""
    x = np.geomspace(65536.0, 3.4e38, 200_001).astype(np.float32)
    x = np.concatenate([x, -x])
    for name in ("sin", "cos"):
        actual, expected = compiled_map(name, np.dtype(np.float32))(x), reference(name, x)
        ulps, where = worst(actual, expected, (x,))
        assert ulps <= MAX_ULP[np.dtype(np.float32)], f"{name}: {ulps} ulp at {where}"


def test_float32_pow_over_pairs_of_values():
    run = compiled_map("pow", np.dtype(np.float32))
    rng = np.random.default_rng(1)
    specials = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, np.inf,
                         -np.inf, np.nan, 1e-40, 1e30, -7.0, 127.0, -128.0, 0.1], np.float32)
    grid_x, grid_y = (g.ravel() for g in np.meshgrid(specials, specials, indexing="ij"))
    random_x = (rng.standard_normal(100_000) * rng.choice([0.5, 5, 100], 100_000)).astype(
        np.float32)
    random_y = (rng.standard_normal(100_000) * rng.choice([1, 4, 40], 100_000)).astype(np.float32)
    random_y[::3] = np.round(random_y[::3])          # integer exponents of negative bases
    x, y = np.concatenate([grid_x, random_x]), np.concatenate([grid_y, random_y])
    actual, expected = run(x, y), reference("pow", x, y)
    assert np.array_equal(np.isnan(actual), np.isnan(expected))
    ulps, where = worst(actual, expected, (x, y))
    assert ulps <= 2, where


@pytest.mark.parametrize("dtype", [np.int32, np.int64], ids=["i32", "i64"])
def test_integer_power_by_squaring_wraps_like_numpy(dtype):
    run = compiled_map("ipow", np.dtype(dtype))
    rng = np.random.default_rng(2)
    base = rng.integers(-20, 20, 5000).astype(dtype)
    exponent = rng.integers(0, 70, 5000).astype(dtype)
    np.testing.assert_array_equal(run(base, exponent), np.power(base, exponent))
