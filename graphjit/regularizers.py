"""Weight penalties, as Keras' `keras.regularizers`: `l1`, `l2`, `l1_l2` (and their classes).

A layer given `kernel_regularizer=l2(1e-4)` (or the string "l2") adds `1e-4 * sum(kernel**2)` to
the training loss that `fit` minimises; `ActivityRegularization` penalises a layer's outputs.
Each penalty is plain NumPy, so it traces into the training step with the rest of the loss.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError


class Regularizer:
    """A penalty `regularizer(weight) -> scalar`."""

    def __call__(self, x: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regularizer:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """l1 * sum(|x|) + l2 * sum(x**2)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, x):
        total = 0.0
        if self.l1:
            total = total + self.l1 * np.sum(np.abs(x))
        if self.l2:
            total = total + self.l2 * np.sum(np.square(x))
        return total

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """factor * mean of the squared off-diagonal entries of the rows' (or columns') Gram matrix of
    L2-normalised vectors, as Keras'."""

    def __init__(self, factor: float = 0.01, mode: str = "rows"):
        if mode not in ("rows", "columns"):
            raise GraphjitError(f"OrthogonalRegularizer mode must be 'rows' or 'columns', "
                                f"got {mode!r}")
        self.factor, self.mode = float(factor), mode

    def __call__(self, x):
        if self.mode == "columns":
            x = x.T
        x = x / np.sqrt(np.maximum(np.sum(np.square(x), axis=1, keepdims=True), 1e-12))
        size = x.shape[0]
        product = x @ x.T
        off_diagonal = product * (1 - np.eye(size, dtype=x.dtype))
        return self.factor * np.sum(np.abs(off_diagonal)) / (size * (size - 1))

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


def l1(l1: float = 0.01) -> L1:  # noqa: E741 - Keras' names
    return L1(l1)


def l2(l2: float = 0.01) -> L2:
    return L2(l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    return L1L2(l1=l1, l2=l2)


_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01), "l1l2": L1L2,
            "orthogonal_regularizer": OrthogonalRegularizer}
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2, "OrthogonalRegularizer": OrthogonalRegularizer}


def get(identifier: Any) -> Regularizer | None:
    """A regularizer from None, a name ('l1', 'l2', 'l1_l2'), a Keras-style config dict
    ({'class_name': 'L2', 'config': {'l2': 0.01}}), or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier.lower() not in _BY_NAME:
            raise GraphjitError(f"unknown regularizer {identifier!r}; choose one of "
                                f"{sorted(_BY_NAME)} or pass a callable")
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        if name not in _CLASSES:
            raise GraphjitError(f"unknown regularizer class {name!r}; known: {sorted(_CLASSES)}")
        return _CLASSES[name].from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise GraphjitError(f"a regularizer must be a name, a config dict or a callable, got "
                        f"{type(identifier).__name__}")


__all__ = ["Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "l1", "l2", "l1_l2", "get"]
