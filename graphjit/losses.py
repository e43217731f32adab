"""Losses, written in plain NumPy so they trace into the training step's graph.

Each loss function returns one value per sample (reducing the last axis like Keras); a `Loss`
object averages those over the batch. Labels are cast to the prediction's dtype so a float64 target
never promotes a float32 model to float64.

    loss = losses.get("sparse_categorical_crossentropy")
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

EPSILON = 1e-7  # Keras' backend.epsilon(): keeps log() away from 0 for probability inputs


def _like(y_true: Any, y_pred: Any) -> Any:
    return y_true.astype(y_pred.dtype)


def log_softmax(logits: Any, axis: int = -1) -> Any:
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def one_hot(labels: Any, depth: int, dtype: Any) -> Any:
    """One-hot by comparison with a constant range: no gather, so nothing to differentiate."""
    classes = np.arange(depth, dtype=labels.dtype)
    return (labels[..., None] == classes).astype(dtype)


def sparse_labels(y_true: Any, y_pred: Any) -> Any:
    """Integer labels of shape (batch,) or (batch, 1) as (batch,)."""
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true.reshape(y_true.shape[:-1])
    if y_true.dtype.kind == "f":
        y_true = y_true.astype(np.int64)
    return y_true


def mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    return np.mean(np.square(y_pred - _like(y_true, y_pred)), axis=-1)


def mean_absolute_error(y_true: Any, y_pred: Any) -> Any:
    return np.mean(np.abs(y_pred - _like(y_true, y_pred)), axis=-1)


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> Any:
    y_true = _like(y_true, y_pred)
    if from_logits:
        # max(x, 0) - x*y + log(1 + exp(-|x|)): stable for logits of any size
        per_element = (np.maximum(y_pred, 0) - y_pred * y_true
                       + np.log1p(np.exp(-np.abs(y_pred))))
    else:
        p = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
        per_element = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))
    return np.mean(per_element, axis=-1)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> Any:
    y_true = _like(y_true, y_pred)
    if from_logits:
        log_p = log_softmax(y_pred)
    else:
        p = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
        log_p = np.log(np.clip(p, EPSILON, 1.0 - EPSILON))
    return -np.sum(y_true * log_p, axis=-1)


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> Any:
    labels = sparse_labels(y_true, y_pred)
    return categorical_crossentropy(one_hot(labels, y_pred.shape[-1], y_pred.dtype), y_pred,
                                    from_logits=from_logits)


class Loss:
    """A per-sample loss function plus its options; calling it gives the batch mean."""

    fn: Callable[..., Any] = staticmethod(mean_squared_error)
    name = "loss"
    takes_logits = False  # whether `from_logits` applies

    def __init__(self, from_logits: bool = False):
        self.from_logits = from_logits

    def per_sample(self, y_true: Any, y_pred: Any) -> Any:
        if self.takes_logits:
            return type(self).fn(y_true, y_pred, from_logits=self.from_logits)
        return type(self).fn(y_true, y_pred)

    def __call__(self, y_true: Any, y_pred: Any) -> Any:
        return np.mean(self.per_sample(y_true, y_pred))

    def __repr__(self) -> str:
        logits = ", from_logits=True" if self.from_logits else ""
        return f"{type(self).__name__}({logits.lstrip(', ')})"


class MeanSquaredError(Loss):
    fn = staticmethod(mean_squared_error)
    name = "mean_squared_error"


class MeanAbsoluteError(Loss):
    fn = staticmethod(mean_absolute_error)
    name = "mean_absolute_error"


class BinaryCrossentropy(Loss):
    fn = staticmethod(binary_crossentropy)
    name = "binary_crossentropy"
    takes_logits = True


class CategoricalCrossentropy(Loss):
    fn = staticmethod(categorical_crossentropy)
    name = "categorical_crossentropy"
    takes_logits = True


class SparseCategoricalCrossentropy(Loss):
    fn = staticmethod(sparse_categorical_crossentropy)
    name = "sparse_categorical_crossentropy"
    takes_logits = True


class FunctionLoss(Loss):
    """Wraps any traceable `fn(y_true, y_pred) -> per-sample loss`."""

    def __init__(self, fn: Callable[[Any, Any], Any]):
        super().__init__()
        self.function = fn
        self.name = getattr(fn, "__name__", "loss")

    def per_sample(self, y_true: Any, y_pred: Any) -> Any:
        return self.function(y_true, y_pred)


LOSSES: dict[str, type[Loss]] = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
}


def get(identifier: str | Loss | Callable) -> Loss:
    """A `Loss` from a name, an instance, or a per-sample function."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in LOSSES:
            raise GraphjitError(f"unknown loss {identifier!r}; choose one of {sorted(LOSSES)} "
                                "or pass a function fn(y_true, y_pred)")
        return LOSSES[identifier]()
    if callable(identifier):
        return FunctionLoss(identifier)
    raise GraphjitError(f"cannot use {identifier!r} as a loss")
