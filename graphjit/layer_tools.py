"""What the layers of recurrent.py, convolution.py, attention.py and preprocessing.py share:

- `ConfigLayer`: a Layer whose `get_config()` returns its constructor arguments (Keras'
  `get_config`/`from_config` contract) without each layer restating them;
- weights with a regularizer and a constraint (`add_weight(..., regularizer=, constraint=)`),
  summed by `regularization_loss(params)` and applied by `apply_constraints(params)`;
- wrapped sub-layers (Bidirectional, TimeDistributed) whose weights live in the wrapper's own
  flat `params`/`state` under a prefix, so the model's weight trees stay one level deep;
- the `orthogonal` initializer Keras' recurrent kernels use.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from . import constraints as constraints_module
from . import regularizers as regularizers_module
from .layers import INITIALIZERS, Layer, _INIT_RNG, initialize


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...], gain: float = 1.0) -> np.ndarray:
    """Keras' Orthogonal: QR of a normal matrix over (prod(shape[:-1]), shape[-1])."""
    rows, cols = math.prod(shape[:-1]) if len(shape) > 1 else 1, shape[-1]
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


INITIALIZERS.setdefault("orthogonal", _orthogonal)
INITIALIZERS.setdefault("identity", lambda rng, shape: np.eye(*shape[-2:]) * np.ones(shape))
INITIALIZERS.setdefault("truncated_normal",
                        lambda rng, shape: np.clip(rng.normal(0.0, 0.05, shape), -0.1, 0.1))

_BASE_ARGUMENTS = ("name", "trainable", "dtype")


def _serialize(value: Any) -> Any:
    if hasattr(value, "get_config") and not isinstance(value, type):
        return {"class_name": type(value).__name__, "config": value.get_config()}
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, type) and issubclass(value, np.generic):
        return np.dtype(value).name
    if isinstance(value, tuple):
        return list(value)
    return value


def _records_config(init: Callable) -> Callable:
    """Wrap a layer's __init__ so the outermost call records its arguments in `_config`."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        # every level of the __init__ chain adds its arguments (defaults included); the outer
        # levels, called first, win
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        config = self.__dict__.setdefault("_config", {})
        for name, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                for key, item in value.items():
                    config.setdefault(key, item)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                config.setdefault(name, value)
        init(self, *args, **kwargs)

    return wrapper


class ConfigLayer(Layer):
    """A Layer that remembers its constructor arguments for `get_config`, and whose weights may
    carry regularizers and constraints."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _records_config(cls.__dict__["__init__"])

    def get_config(self) -> dict[str, Any]:
        base = {}
        parent = getattr(super(), "get_config", None)
        if parent is not None:
            try:
                base = dict(parent())
            except NotImplementedError:
                base = {}
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype.name}
        config.update(base)
        config.update({k: _serialize(v) for k, v in self.__dict__.get("_config", {}).items()
                       if k not in _BASE_ARGUMENTS})
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    # -------------------------------------------------------------- weights
    def add_weight(self, name: str, shape: Sequence[int], initializer: str | Callable = "zeros",
                   trainable: bool = True, regularizer: Any = None,
                   constraint: Any = None) -> np.ndarray:
        value = initialize(initializer, tuple(int(d) for d in shape), self.dtype,
                           self._rng or _INIT_RNG[0])
        (self.params if trainable else self.state)[name] = value
        regularizer = regularizers_module.get(regularizer)
        constraint = constraints_module.get(constraint)
        if regularizer is not None:
            self.__dict__.setdefault("weight_regularizers", {})[name] = regularizer
        if constraint is not None:
            self.__dict__.setdefault("weight_constraints", {})[name] = constraint
        return value

    def regularization_loss(self, params: dict[str, Any] | None = None) -> Any:
        """The sum of this layer's weight penalties for these weights (0.0 when it has none)."""
        params = self.params if params is None else params
        total = 0.0
        for name, regularizer in self.__dict__.get("weight_regularizers", {}).items():
            if name in params:
                total = total + regularizer(params[name])
        return total

    def apply_constraints(self, params: dict[str, Any]) -> dict[str, Any]:
        """These weights with each one's constraint applied (run after every optimizer step)."""
        constraints = self.__dict__.get("weight_constraints", {})
        return {name: constraints[name](value) if name in constraints else value
                for name, value in params.items()}


def run_sublayer(parent: Layer, sub: Layer, prefix: str, inputs: Any, training: bool,
                 mask: Any = None) -> Any:
    """Call `sub` with the weights stored in `parent` under `prefix`, and store back the state
    it updates (BatchNormalization's statistics) under the same prefix."""
    sub.params = {k[len(prefix):]: v for k, v in parent.params.items() if k.startswith(prefix)}
    sub.state = {k[len(prefix):]: v for k, v in parent.state.items() if k.startswith(prefix)}
    sub._key = parent._key
    try:
        kwargs = {"training": training}
        if mask is not None:
            kwargs["mask"] = mask
        outputs = sub(inputs, **kwargs)
        if sub.state:
            parent.state = {**parent.state, **{prefix + k: v for k, v in sub.state.items()}}
    finally:
        sub._key = None
    return outputs


def adopt_weights(parent: Layer, sub: Layer, prefix: str) -> None:
    """Copy a freshly built sub-layer's weights (and penalties) into `parent` under `prefix`."""
    parent.params.update({prefix + k: v for k, v in sub.params.items()})
    parent.state.update({prefix + k: v for k, v in sub.state.items()})
    for attribute in ("weight_regularizers", "weight_constraints"):
        entries = sub.__dict__.get(attribute, {})
        if entries:
            parent.__dict__.setdefault(attribute, {}).update(
                {prefix + k: v for k, v in entries.items()})


def check_rank(layer: Layer, input_shape: Any, rank: int, layout: str) -> None:
    if len(input_shape) != rank:
        raise GraphjitError(f"{type(layer).__name__} {layer.name!r} expects inputs {layout}, "
                            f"got shape {tuple(input_shape)}")


__all__ = ["ConfigLayer", "run_sublayer", "adopt_weights", "check_rank"]
