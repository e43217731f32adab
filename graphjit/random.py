"""`gj.random`: explicit-key, counter-based random numbers that trace and compile.

    key = gj.random.key(0)
    key, sub = gj.random.split(key)
    noise = gj.random.normal(sub, (64, 10), np.float32)

A key is an int64 array of shape (2,) (a 128-bit Philox key), so it can be an argument of a jitted
function. Every function is a pure function of its key and shape: the same key always gives the
same numbers, eagerly (NumPy arrays out), interpreted or compiled (one `random_*` node in the IR).
Inside a jitted training step, pass a new key each step (e.g. `split` it outside, or
`fold_in(key, step)`) to get new numbers per step; reuse a key to reproduce them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import ArgumentError, DTypeError, ShapeError
from graphjit.compiler.ops import OPS, RANDOM_KEY_SHAPE, Op
from graphjit.frontend.source import user_source
from graphjit.frontend.tracer import Tracer

KEY_DTYPE = np.dtype(np.int64)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

__all__ = ["key", "split", "fold_in", "uniform", "normal", "bernoulli"]


def key(seed: int) -> np.ndarray:
    """A key from an integer seed (seeds are mixed by NumPy's SeedSequence, so nearby seeds give
    unrelated streams)."""
    if isinstance(seed, Tracer) or not isinstance(seed, (int, np.integer)) or isinstance(
            seed, (bool, np.bool_)):
        raise ArgumentError("gj.random.key(seed) takes a Python int seed; pass keys (not seeds) "
                            "into jitted functions", user_source())
    if seed < 0:
        raise ArgumentError(f"gj.random.key: the seed must be >= 0, got {seed}", user_source())
    words = np.random.SeedSequence(int(seed)).generate_state(2, np.uint64)
    return words.view(KEY_DTYPE)


def split(key: Any, num: int = 2) -> Any:
    """`num` new independent keys, as an array of shape (num, 2): `k1, k2 = split(key)`."""
    num = _static_int(num, "num")
    return _apply(Op.RANDOM_SPLIT, key, {"num": num})


def fold_in(key: Any, data: Any) -> Any:
    """A new key that depends on `key` and an integer `data` (e.g. the step number), which may
    be traced: handy to derive a fresh key per training step inside a compiled function."""
    if isinstance(data, Tracer):
        data = traced_astype(data, KEY_DTYPE)   # a weak Python-int tracer has no methods
    elif isinstance(data, (int, np.integer)) and not isinstance(data, bool):
        data = np.int64(data)
    else:
        raise ArgumentError(f"gj.random.fold_in: data must be an integer, got {data!r}",
                            user_source())
    if not isinstance(key, Tracer):
        key = _check_key(np.asarray(key), "fold_in").astype(KEY_DTYPE)
    mixed = key + np.asarray([0, 1], KEY_DTYPE) * data
    return split(mixed, 1)[0]


def uniform(key: Any, shape: Sequence[int] | int = (), dtype: Any = np.float64,
            minval: Any = 0.0, maxval: Any = 1.0) -> Any:
    """Floats uniform in [minval, maxval)."""
    bits = _apply(Op.RANDOM_UNIFORM, key, _float_attrs(shape, dtype))
    if _is_number(minval, 0.0) and _is_number(maxval, 1.0):
        return bits
    return _as_dtype(bits * _as_dtype(maxval - minval, dtype) + _as_dtype(minval, dtype), dtype)


def normal(key: Any, shape: Sequence[int] | int = (), dtype: Any = np.float64,
           mean: Any = 0.0, stddev: Any = 1.0) -> Any:
    """Normally distributed floats (standard normal unless `mean`/`stddev` are given)."""
    values = _apply(Op.RANDOM_NORMAL, key, _float_attrs(shape, dtype))
    if _is_number(mean, 0.0) and _is_number(stddev, 1.0):
        return values
    return _as_dtype(values * _as_dtype(stddev, dtype) + _as_dtype(mean, dtype), dtype)


def bernoulli(key: Any, p: Any = 0.5, shape: Sequence[int] | int | None = None) -> Any:
    """Booleans that are True with probability `p` (`shape` defaults to p's shape)."""
    shape = np.shape(p) if shape is None else shape
    dtype = p.dtype if isinstance(p, (Tracer, np.ndarray)) and p.dtype in FLOAT_DTYPES else \
        np.float64
    return uniform(key, shape, dtype) < p


# ---------------------------------------------------------------- helpers

def _apply(op: Op, key: Any, attrs: dict) -> Any:
    """One random op: a node under tracing, the op table's NumPy implementation otherwise (the
    same function the interpreter runs, so eager and compiled results agree bit for bit)."""
    if isinstance(key, Tracer):
        _check_key_type(key.shape, key.dtype, op.value)
        ctx = key._ctx
        key_id = key._id if key.dtype == KEY_DTYPE else ctx.add(
            Op.CAST, (key._id,), {"dtype": KEY_DTYPE})
        return Tracer(ctx, ctx.add(op, (key_id,), attrs))
    array = _check_key(np.asarray(key), op.value)
    return np.asarray(OPS[op].impl(array.astype(KEY_DTYPE), **attrs))


def _check_key(array: np.ndarray, where: str) -> np.ndarray:
    _check_key_type(array.shape, array.dtype, where)
    return array


def _check_key_type(shape: tuple, dtype: np.dtype, where: str) -> None:
    if tuple(shape) != RANDOM_KEY_SHAPE:
        raise ShapeError(f"gj.random.{_public_name(where)}: a key has shape {RANDOM_KEY_SHAPE} "
                         f"(from gj.random.key or split), got shape {tuple(shape)}; to use "
                         "the keys from split(key, n), index them: keys[i]", user_source())
    if np.dtype(dtype).kind not in "iu":
        raise DTypeError(f"gj.random.{_public_name(where)}: a key is an integer array, got "
                         f"dtype {dtype}", user_source())


def _public_name(where: str) -> str:
    return where.removeprefix("random_")


def _float_attrs(shape: Sequence[int] | int, dtype: Any) -> dict:
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise DTypeError(f"gj.random: random floats are float32 or float64, not {dtype}",
                         user_source())
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return {"shape": tuple(_static_int(d, "shape") for d in shape), "dtype": dtype}


def _static_int(value: Any, what: str) -> int:
    if isinstance(value, Tracer) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ArgumentError(f"gj.random: {what} must be a non-negative Python int (static), got "
                            f"{value!r}", user_source())
    return int(value)


def _is_number(value: Any, expected: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == expected


def traced_astype(value: Tracer, dtype: Any) -> Tracer:
    """`value.astype(dtype)` that also works for a weak (Python-scalar) tracer, which has no
    array methods, as a Python int has none."""
    from graphjit.frontend.creation import astype   # the frontend imports this module

    return astype(value, dtype)


def _as_dtype(value: Any, dtype: Any) -> Any:
    """Keep the requested float dtype (a float64 bound must not promote float32 samples)."""
    if isinstance(value, (int, float)):
        return value  # Python scalars are weak: they take the array's dtype
    if isinstance(value, Tracer):
        return traced_astype(value, dtype) if value.dtype != np.dtype(dtype) else value
    return np.asarray(value).astype(dtype)
