"""Weight constraints, as Keras' `keras.constraints`: applied to a weight after every optimizer
step (`kernel_constraint=max_norm(2.0)`). Each is a NumPy function of the weight, so it traces
into the compiled training step.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

_EPSILON = 1e-7  # Keras' backend epsilon


def _norms(w: Any, axis: Any) -> Any:
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


class Constraint:
    def __call__(self, w: Any) -> Any:
        return w

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constraint:
        return cls(**config)


class MaxNorm(Constraint):
    """Rescale each slice along `axis` whose L2 norm exceeds `max_value` down to it."""

    def __init__(self, max_value: float = 2.0, axis: int | tuple[int, ...] = 0):
        self.max_value, self.axis = float(max_value), axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return w * (desired / (_EPSILON + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Negative entries become 0."""

    def __call__(self, w):
        return w * (w >= 0).astype(w.dtype)


class UnitNorm(Constraint):
    """Each slice along `axis` scaled to unit L2 norm."""

    def __init__(self, axis: int | tuple[int, ...] = 0):
        self.axis = axis

    def __call__(self, w):
        return w / (_EPSILON + _norms(w, self.axis))

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Norms along `axis` pulled into [min_value, max_value] at `rate`."""

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0,
                 axis: int | tuple[int, ...] = 0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + \
            (1 - self.rate) * norms
        return w * (desired / (_EPSILON + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm
_BY_NAME = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
            "min_max_norm": MinMaxNorm}
_CLASSES = {cls.__name__: cls for cls in (MaxNorm, NonNeg, UnitNorm, MinMaxNorm)}


def get(identifier: Any) -> Constraint | None:
    """A constraint from None, a name ('max_norm', 'non_neg', 'unit_norm'), a config dict or a
    callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier.lower() not in _BY_NAME:
            raise GraphjitError(f"unknown constraint {identifier!r}; choose one of "
                                f"{sorted(_BY_NAME)} or pass a callable")
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        if name not in _CLASSES:
            raise GraphjitError(f"unknown constraint class {name!r}; known: {sorted(_CLASSES)}")
        return _CLASSES[name].from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise GraphjitError(f"a constraint must be a name, a config dict or a callable, got "
                        f"{type(identifier).__name__}")


__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "max_norm", "non_neg",
           "unit_norm", "min_max_norm", "get"]
