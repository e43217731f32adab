"""The dtypes graphjit compiles, and their short names in printed IR."""
from __future__ import annotations

import numpy as np

SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(
    np.dtype(name) for name in ("bool", "int32", "int64", "float32", "float64")
)

SHORT_NAMES: dict[np.dtype, str] = {
    np.dtype("bool"): "bool",
    np.dtype("int8"): "i8",
    np.dtype("int16"): "i16",
    np.dtype("int32"): "i32",
    np.dtype("int64"): "i64",
    np.dtype("uint8"): "u8",
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


def is_supported(dtype: np.dtype) -> bool:
    return np.dtype(dtype) in SUPPORTED_DTYPES


def canonical(dtype) -> np.dtype:
    """Narrow integer and float types compile as their nearest supported type."""
    dtype = np.dtype(dtype)
    if dtype in SUPPORTED_DTYPES:
        return dtype
    raise TypeError(dtype)
