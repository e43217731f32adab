"""Keras' array utilities: `pad_sequences` (lists of ids to one padded array) and
`to_categorical` (integer labels to one-hot rows)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError


def pad_sequences(sequences: Sequence[Sequence[Any]], maxlen: int | None = None,
                  dtype: Any = "int32", padding: str = "pre", truncating: str = "pre",
                  value: Any = 0.0) -> np.ndarray:
    """An array (len(sequences), maxlen) as keras.utils.pad_sequences: sequences longer than
    `maxlen` lose entries at the start ('pre') or end ('post'); shorter ones are padded with
    `value` before ('pre') or after ('post'). `maxlen` defaults to the longest sequence."""
    for name, choice in (("padding", padding), ("truncating", truncating)):
        if choice not in ("pre", "post"):
            raise GraphjitError(f"pad_sequences {name} must be 'pre' or 'post', got {choice!r}")
    rows = [np.asarray(s) for s in sequences]
    for i, row in enumerate(rows):
        if row.ndim == 0:
            raise GraphjitError(f"pad_sequences: sequence {i} is a scalar ({row!r}), not a "
                                "sequence")
    if maxlen is None:
        maxlen = max((len(r) for r in rows), default=0)
    elif maxlen < 0:
        raise GraphjitError(f"pad_sequences maxlen must be >= 0, got {maxlen}")
    sample_shape = next((r.shape[1:] for r in rows if len(r)), ())
    dtype = np.dtype(dtype)
    if dtype.kind in "iu" and isinstance(value, str):
        raise GraphjitError(f"pad_sequences: value {value!r} does not fit dtype {dtype}")
    out = np.full((len(rows), maxlen, *sample_shape), value, dtype=dtype)
    for i, row in enumerate(rows):
        if not len(row) or not maxlen:
            continue
        kept = row[-maxlen:] if truncating == "pre" else row[:maxlen]
        if kept.shape[1:] != sample_shape:
            raise GraphjitError(f"pad_sequences: sequence {i} has entries of shape "
                                f"{kept.shape[1:]}, the others {sample_shape}")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, maxlen - len(kept):] = kept
    return out


def to_categorical(x: Any, num_classes: int | None = None) -> np.ndarray:
    """One-hot float32 rows for integer labels (keras.utils.to_categorical): shape
    x.shape + (num_classes,), a trailing axis of size 1 dropped first."""
    labels = np.asarray(x)
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise GraphjitError("to_categorical takes integer class labels")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iub":
        raise GraphjitError(f"to_categorical takes integer class labels, got {labels.dtype}")
    if labels.ndim > 1 and labels.shape[-1] == 1:
        labels = labels.reshape(labels.shape[:-1])
    if num_classes is None:
        num_classes = int(labels.max(initial=-1)) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise GraphjitError(f"to_categorical: labels must be in [0, {num_classes}), found "
                            f"{int(labels.min())}..{int(labels.max())}")
    return np.eye(num_classes, dtype=np.float32)[labels.astype(np.int64)]


__all__ = ["pad_sequences", "to_categorical"]
