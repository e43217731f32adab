"""Metrics: per-sample values in plain NumPy (they trace into the training step), averaged over
an epoch by the host.

`"accuracy"` resolves like Keras: from a crossentropy loss (sparse labels give sparse categorical
accuracy, one-hot labels categorical accuracy, binary losses binary accuracy, thresholded at 0 when
the loss takes logits, at 0.5 for probabilities), else from the shapes of targets and outputs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from . import losses as losses_module


def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> Any:
    labels = losses_module.sparse_labels(y_true, y_pred)
    return (np.argmax(y_pred, axis=-1) == labels).astype(np.float32)


def categorical_accuracy(y_true: Any, y_pred: Any) -> Any:
    return (np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)).astype(np.float32)


def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> Any:
    predicted = (y_pred > threshold).astype(y_pred.dtype)
    return np.mean((predicted == y_true.astype(y_pred.dtype)).astype(np.float32), axis=-1)


def mean_absolute_error(y_true: Any, y_pred: Any) -> Any:
    return losses_module.mean_absolute_error(y_true, y_pred)


def mean_squared_error(y_true: Any, y_pred: Any) -> Any:
    return losses_module.mean_squared_error(y_true, y_pred)


@dataclass(frozen=True)
class Metric:
    """A named per-sample metric function."""

    name: str
    fn: Callable[[Any, Any], Any]

    def __call__(self, y_true: Any, y_pred: Any) -> Any:
        return self.fn(y_true, y_pred)


METRICS: dict[str, Metric] = {
    "sparse_categorical_accuracy": Metric("sparse_categorical_accuracy",
                                          sparse_categorical_accuracy),
    "categorical_accuracy": Metric("categorical_accuracy", categorical_accuracy),
    "binary_accuracy": Metric("binary_accuracy", binary_accuracy),
    "mae": Metric("mae", mean_absolute_error),
    "mean_absolute_error": Metric("mean_absolute_error", mean_absolute_error),
    "mse": Metric("mse", mean_squared_error),
    "mean_squared_error": Metric("mean_squared_error", mean_squared_error),
}

# Which accuracy "accuracy"/"acc" means for each loss.
_ACCURACY_FOR_LOSS: dict[type, Callable[[Any, Any], Any]] = {
    losses_module.SparseCategoricalCrossentropy: sparse_categorical_accuracy,
    losses_module.CategoricalCrossentropy: categorical_accuracy,
    losses_module.BinaryCrossentropy: binary_accuracy,
}


def accuracy_by_shape(y_true: Any, y_pred: Any) -> Any:
    """Keras 3's "accuracy" for other losses, from the shapes: binary for a one-unit output,
    categorical when the targets have the output's shape, sparse otherwise."""
    if y_pred.shape[-1] == 1:
        return binary_accuracy(y_true.reshape(y_pred.shape), y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1]:
        return categorical_accuracy(y_true, y_pred)
    return sparse_categorical_accuracy(y_true, y_pred)


def _accuracy_for(loss: losses_module.Loss | None) -> Callable[[Any, Any], Any]:
    fn = _ACCURACY_FOR_LOSS.get(type(loss), accuracy_by_shape)
    if fn is binary_accuracy and loss is not None and loss.from_logits:
        return functools.partial(binary_accuracy, threshold=0.0)
    return fn


def get(identifier: str | Metric | Callable, loss: losses_module.Loss | None = None) -> Metric:
    """A `Metric` from a name, an instance or a per-sample function (`loss` resolves accuracy)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            return Metric(identifier, _accuracy_for(loss))
        if identifier not in METRICS:
            raise GraphjitError(f"unknown metric {identifier!r}; choose 'accuracy' or one of "
                                f"{sorted(METRICS)}, or pass a function fn(y_true, y_pred)")
        return METRICS[identifier]
    if callable(identifier):
        return Metric(getattr(identifier, "__name__", "metric"), identifier)
    raise GraphjitError(f"cannot use {identifier!r} as a metric")
