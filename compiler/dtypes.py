"""The dtypes graphjit compiles, the narrower set its loop kernels compute in, and their short
names in printed IR.

Every dtype in `SUPPORTED_DTYPES` can be an argument, a result and an intermediate, with NumPy's
values. Loop kernels compute in `LOOP_DTYPES` only: the `legalize_dtypes` pass rewrites each
computation on another dtype into its `COMPUTE_DTYPE` with explicit casts, which is what NumPy
does itself for float16 (computed in float32, rounded to float16 after every op) and is exact
for the narrow integers (wrapping arithmetic modulo 2**bits agrees in any wider width).
Backends only load, store and cast the narrow dtypes.
"""
from __future__ import annotations

import numpy as np

SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
))
LOOP_DTYPES: frozenset[np.dtype] = frozenset(
    np.dtype(name) for name in ("bool", "int32", "int64", "float32", "float64"))
COMPUTE_DTYPE: dict[np.dtype, np.dtype] = {
    np.dtype(narrow): np.dtype(wide) for narrow, wide in (
        ("int8", "int32"), ("int16", "int32"), ("uint8", "int32"), ("uint16", "int32"),
        ("uint32", "int64"), ("uint64", "int64"), ("float16", "float32"),
    )
}

SHORT_NAMES: dict[np.dtype, str] = {
    np.dtype("bool"): "bool",
    np.dtype("int8"): "i8",
    np.dtype("int16"): "i16",
    np.dtype("int32"): "i32",
    np.dtype("int64"): "i64",
    np.dtype("uint8"): "u8",
    np.dtype("uint16"): "u16",
    np.dtype("uint32"): "u32",
    np.dtype("uint64"): "u64",
    np.dtype("float16"): "f16",
    np.dtype("float32"): "f32",
    np.dtype("float64"): "f64",
}


def short_name(dtype: np.dtype) -> str:
    return SHORT_NAMES.get(np.dtype(dtype), np.dtype(dtype).name)


def is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_integer(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind in "iu"


def is_bool(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "b"


def supported_list(conjunction: str = "and") -> str:
    """The supported dtypes as error messages name them ("bool, int8, ... and float64")."""
    names = [d.name for d in SUPPORTED_DTYPES]
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def is_supported(dtype: np.dtype) -> bool:
    return np.dtype(dtype) in SUPPORTED_DTYPES


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype loop kernels compute a value of `dtype` in."""
    dtype = np.dtype(dtype)
    return COMPUTE_DTYPE.get(dtype, dtype)


def canonical(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype in SUPPORTED_DTYPES:
        return dtype
    raise TypeError(dtype)
