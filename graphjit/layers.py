"""Keras-style layers written in plain NumPy, so a model's forward pass traces into one graph.

A layer keeps its weights as NumPy arrays in `self.params` (trained) and `self.state` (updated
by the forward pass, e.g. BatchNormalization's moving statistics). A custom layer subclasses
`Layer`, creates weights in `build(input_shape)` with `add_weight`, and reads them in
`call(inputs, training=False)`:

    class Scale(layers.Layer):
        def build(self, input_shape):
            self.add_weight("scale", (input_shape[-1],), "ones")

        def call(self, x):
            return x * self.params["scale"]

While a model traces its training step it binds tracers in place of the arrays (see
`Model.apply`), so `call` is written once and runs both eagerly and compiled.
"""
from __future__ import annotations

import inspect
import itertools
import math
import re
from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError, ShapeError

Shape = tuple[int | None, ...]

# ---------------------------------------------------------------- activations


def relu(x: Any) -> Any:
    return np.maximum(x, 0)


def sigmoid(x: Any) -> Any:
    # the tanh form is exact and never overflows, unlike 1 / (1 + exp(-x))
    return 0.5 * (1 + np.tanh(0.5 * x))


def softmax(x: Any, axis: int = -1) -> Any:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def gelu(x: Any) -> Any:
    """GELU, tanh approximation (the IR has no erf): within 1e-3 of the exact form."""
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def silu(x: Any) -> Any:
    return x * sigmoid(x)


def softplus(x: Any) -> Any:
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def elu(x: Any) -> Any:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def linear(x: Any) -> Any:
    return x


ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "relu": relu, "tanh": np.tanh, "sigmoid": sigmoid, "softmax": softmax, "gelu": gelu,
    "silu": silu, "swish": silu, "softplus": softplus, "elu": elu, "linear": linear,
}


def get_activation(identifier: str | Callable | None) -> Callable[[Any], Any]:
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if identifier not in ACTIVATIONS:
        raise GraphjitError(f"unknown activation {identifier!r}; choose one of "
                            f"{sorted(ACTIVATIONS)} or pass a function")
    return ACTIVATIONS[identifier]


# ---------------------------------------------------------------- initializers

_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of a unit normal truncated at +-2
_INIT_RNG = [np.random.default_rng()]


def set_seed(seed: int | None) -> None:
    """Seed the generator that initializes weights (like keras.utils.set_random_seed)."""
    _INIT_RNG[0] = np.random.default_rng(seed)


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        size = shape[0] if shape else 1
        return size, size
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2
    return values * (std / _TRUNCATED_NORMAL_STD)


def _uniform(limit: float) -> Callable:
    return lambda rng, shape: rng.uniform(-limit, limit, shape)


INITIALIZERS: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "zeros": lambda rng, shape: np.zeros(shape),
    "ones": lambda rng, shape: np.ones(shape),
    "random_normal": lambda rng, shape: rng.normal(0.0, 0.05, shape),
    "random_uniform": lambda rng, shape: _uniform(0.05)(rng, shape),
    "glorot_uniform": lambda rng, shape: _uniform(math.sqrt(6 / sum(_fans(shape))))(rng, shape),
    "glorot_normal": lambda rng, shape: _truncated_normal(rng, shape,
                                                          math.sqrt(2 / sum(_fans(shape)))),
    "he_uniform": lambda rng, shape: _uniform(math.sqrt(6 / _fans(shape)[0]))(rng, shape),
    "he_normal": lambda rng, shape: _truncated_normal(rng, shape, math.sqrt(2 / _fans(shape)[0])),
    "lecun_uniform": lambda rng, shape: _uniform(math.sqrt(3 / _fans(shape)[0]))(rng, shape),
    "lecun_normal": lambda rng, shape: _truncated_normal(rng, shape,
                                                         math.sqrt(1 / _fans(shape)[0])),
}


def initialize(initializer: str | Callable, shape: tuple[int, ...], dtype: Any,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Weights from an initializer name or a callable `fn(shape, dtype) -> array`."""
    if isinstance(initializer, str):
        if initializer not in INITIALIZERS:
            raise GraphjitError(f"unknown initializer {initializer!r}; choose one of "
                                f"{sorted(INITIALIZERS)} or pass fn(shape, dtype)")
        values = INITIALIZERS[initializer](rng or _INIT_RNG[0], tuple(shape))
    else:
        values = initializer(tuple(shape), np.dtype(dtype))
    return np.ascontiguousarray(values, dtype=dtype)


# ---------------------------------------------------------------- the base class

_NAME_COUNTS: dict[str, itertools.count] = {}


def _unique_name(prefix: str) -> str:
    counter = _NAME_COUNTS.setdefault(prefix, itertools.count())
    n = next(counter)
    return prefix if n == 0 else f"{prefix}_{n}"


def _snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _is_symbolic(inputs: Any) -> bool:
    if isinstance(inputs, (list, tuple)):
        return any(isinstance(i, SymbolicTensor) for i in inputs)
    return isinstance(inputs, SymbolicTensor)


def _shape_of(inputs: Any) -> Any:
    if isinstance(inputs, (list, tuple)):
        return [tuple(i.shape) for i in inputs]
    return tuple(inputs.shape)


def _resolve(identifier: Any, module: str, what: str) -> Any:
    """A regularizer or constraint from None, a callable, or a name/config that graphjit's
    `regularizers`/`constraints` module resolves with its `get`."""
    if identifier is None or (callable(identifier) and not isinstance(identifier, (str, dict))):
        return identifier
    import importlib

    try:
        resolver = importlib.import_module(f"graphjit.{module}").get
    except (ImportError, AttributeError):
        raise GraphjitError(f"cannot resolve the {what} {identifier!r}: pass a function of the "
                            "weight instead") from None
    return resolver(identifier)


def get_regularizer(identifier: Any) -> Any:
    return _resolve(identifier, "regularizers", "regularizer")


def get_constraint(identifier: Any) -> Any:
    return _resolve(identifier, "constraints", "constraint")


# ---------------------------------------------------------------- serialisation by class name

_REGISTRY: dict[str, type] = {}


def register(cls: type | None = None, *, name: str | None = None,
             package: str | None = None) -> Any:
    """Register a layer class for `model.save`/`load_model` under `name` (default: the class
    name, prefixed "package>" when a package is given, as Keras' `register_keras_serializable`).

        @layers.register
        class Scale(layers.Layer): ...

    graphjit's own layers register themselves; a custom layer must be registered (before
    `load_model` runs) to load."""

    def decorate(klass: type) -> type:
        key = name or klass.__name__
        if package:
            key = f"{package}>{key}"
        klass._registered_name = key
        _REGISTRY[key] = klass
        return klass

    return decorate if cls is None else decorate(cls)


def registered_name(cls: type) -> str:
    """The name a layer class is saved under (its registered name, else its class name)."""
    return cls.__dict__.get("_registered_name", cls.__name__)


def get_registered(name: str) -> type:
    """The layer class saved under `name`; a clear error when nothing registered it."""
    if name not in _REGISTRY:
        raise GraphjitError(f"unknown layer class {name!r}: a custom layer must be registered "
                            "before loading, with the @graphjit.layers.register decorator on "
                            "its class (or pass custom_objects={name: cls} to load_model)")
    return _REGISTRY[name]


def serialize_value(value: Any) -> Any:
    """A config value as JSON-able data: activations and dtypes by name, tuples as lists."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.dtype, type)) and (isinstance(value, np.dtype)
                                                or issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, (list, tuple)):
        return [serialize_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): serialize_value(v) for k, v in value.items()}
    for table in (ACTIVATIONS, INITIALIZERS):
        for table_name, fn in table.items():
            if value is fn:
                return table_name
    if hasattr(value, "get_config") and callable(value.get_config):
        # regularizers, constraints, initializer objects: {"class_name", "config"}
        return {"class_name": type(value).__name__, "config": serialize_value(value.get_config())}
    return value  # left as is: saving reports what cannot be stored


class Layer:
    """Base class of every layer: weights in `params`/`state`, `build` once, then `call`.

    The contract a layer family builds on:
    - `get_config()` returns the constructor's keyword arguments as JSON-able values (captured
      automatically from the call that made the layer; override it when a constructor argument is
      not stored as given), and `from_config(config)` rebuilds the layer from them.
    - `get_weights()`/`set_weights()` use Keras' order: the trainable weights (`params`) in
      creation order, then the non-trainable ones (`state`).
    - `regularization_losses(params)` gives the scalar penalties of this layer's weights, which
      `fit` adds to the training loss: by default `self.<weight>_regularizer(params[<weight>])`
      for every weight that has one (`kernel_regularizer`, `bias_regularizer`, ...).
      `add_loss(value)` inside `call` adds an activity penalty the same way.
    - Classes defined in graphjit register themselves by class name for saving; a custom layer
      uses the `@register` decorator.
    """

    uses_rng = False  # True for layers that need a random key while training (Dropout)
    accepts_integers = False  # True for first layers that take integer ids (Embedding)

    def __new__(cls, *args: Any, **kwargs: Any):
        layer = super().__new__(cls)
        # what the constructor was called with: the default `get_config` (Keras 3's auto-config)
        layer._init_args = (args, dict(kwargs))
        return layer

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("graphjit."):
            register(cls)

    def __init__(self, name: str | None = None, trainable: bool = True, seed: int | None = None,
                 dtype: Any = np.float32, activity_regularizer: Any = None):
        self.name = name or _unique_name(_snake_case(type(self).__name__))
        self.activity_regularizer = get_regularizer(activity_regularizer)
        self.trainable = trainable
        self.dtype = np.dtype(dtype)
        self.params: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        self.built = False
        self.input_shape: Any = None
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._key: Any = None  # random key bound by the model for one training call
        self._losses: list[Any] = []  # add_loss values of the current call
        self._takes_training = "training" in inspect.signature(self.call).parameters

    # -------------------------------------------------------------- to override
    def build(self, input_shape: Any) -> None:
        """Create the weights for inputs of this shape (batch dimension included)."""

    def call(self, inputs: Any, training: bool = False) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define call(inputs)")

    # -------------------------------------------------------------- config (Keras style)
    def get_config(self) -> dict[str, Any]:
        """The constructor's keyword arguments (defaults included), as JSON-able values."""
        args, kwargs = getattr(self, "_init_args", ((), {}))
        signature = inspect.signature(type(self).__init__)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:
            bound = None
        config: dict[str, Any] = {}
        if bound is not None:
            bound.apply_defaults()
            for param_name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[param_name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    config[param_name] = value
        config.update(name=self.name, trainable=self.trainable, dtype=self.dtype.name)
        if self.seed is not None:
            config["seed"] = self.seed
        return {k: serialize_value(v) for k, v in config.items()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        return cls(**config)

    # -------------------------------------------------------------- helpers for subclasses
    def add_weight(self, name: str, shape: Sequence[int], initializer: str | Callable = "zeros",
                   trainable: bool = True) -> np.ndarray:
        """Create a weight; trainable ones go in `params`, others in `state`."""
        value = initialize(initializer, tuple(int(d) for d in shape), self.dtype, self._rng)
        (self.params if trainable else self.state)[name] = value
        return value

    def add_loss(self, value: Any) -> None:
        """Add a scalar penalty to the training loss (call it from `call`)."""
        self._losses.append(value)

    def random_key(self) -> Any:
        """The random key for this training call (only inside a model's training step)."""
        if self._key is None:
            raise GraphjitError(f"layer {self.name!r} needs a random key: call it through a "
                                "model in training mode (fit), or bind one with layer._key")
        return self._key

    def regularization_losses(self, params: dict[str, Any]) -> list[Any]:
        """Scalar penalties of these weights (`params` maps weight names to arrays or tracers)."""
        penalties = []
        for weight_name, value in params.items():
            regularizer = getattr(self, f"{weight_name}_regularizer", None)
            if regularizer is not None:
                penalties.append(regularizer(value))
        return penalties

    def apply_constraints(self, params: dict[str, Any]) -> dict[str, Any]:
        """These weights after an optimizer step, projected by `self.<weight>_constraint` (fit
        calls this inside the compiled step)."""
        constrained = dict(params)
        for weight_name, value in params.items():
            constraint = getattr(self, f"{weight_name}_constraint", None)
            if constraint is not None:
                constrained[weight_name] = constraint(value)
        return constrained

    # -------------------------------------------------------------- weights (Keras order)
    @property
    def weights(self) -> list[np.ndarray]:
        return [*self.params.values(), *self.state.values()]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return list(self.params.values()) if self.trainable else []

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        frozen = [] if self.trainable else list(self.params.values())
        return [*frozen, *self.state.values()]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every weight: the trainable ones, then the non-trainable ones."""
        return [np.array(w) for w in self.weights]

    def set_weights(self, weights: Sequence[Any]) -> None:
        """Replace every weight, in `get_weights()` order; shapes must match."""
        slots = [(self.params, k) for k in self.params] + [(self.state, k) for k in self.state]
        weights = list(weights)
        if not self.built and not slots:
            raise GraphjitError(f"layer {self.name!r} is not built yet, so it has no weights to "
                                "set: call it on data (or build the model) first")
        if len(weights) != len(slots):
            raise GraphjitError(f"layer {self.name!r} ({type(self).__name__}) has {len(slots)} "
                                f"weights {[k for _, k in slots]}, got {len(weights)} arrays")
        for (table, key), value in zip(slots, weights):
            value = np.asarray(value)
            if value.shape != np.shape(table[key]):
                raise GraphjitError(f"layer {self.name!r} weight {key!r} has shape "
                                    f"{np.shape(table[key])}, got an array of shape "
                                    f"{value.shape}")
        for (table, key), value in zip(slots, weights):
            table[key] = np.array(value, dtype=np.asarray(table[key]).dtype)

    # -------------------------------------------------------------- calling
    def __call__(self, inputs: Any, training: bool = False) -> Any:
        if _is_symbolic(inputs):
            return SymbolicTensor.from_call(self, inputs)
        if not self.built:
            self.input_dtypes = [np.dtype(i.dtype) for i in
                                 (inputs if isinstance(inputs, (list, tuple)) else [inputs])]
        self.ensure_built(_shape_of(inputs))
        if self._takes_training:
            outputs = self.call(inputs, training=training)
        else:
            outputs = self.call(inputs)
        if self.activity_regularizer is not None:
            self.add_loss(self.activity_regularizer(outputs))
        return outputs

    # -------------------------------------------------------------- the Functional graph
    def _record_symbolic_call(self, inputs: Any, outputs: Any) -> None:
        self._symbolic_call = (inputs, outputs)

    def _last_call(self, what: str) -> tuple[Any, Any]:
        call = self.__dict__.get("_symbolic_call")
        if call is None:
            raise GraphjitError(f"layer {self.name!r} has no {what}: it has never been called "
                                "on Input tensors (layers.Input) or added to a built model")
        return call

    @property
    def input(self) -> Any:
        """The Input-derived tensor(s) the layer was last called on (Keras' `layer.input`)."""
        return self._last_call("input")[0]

    @property
    def output(self) -> Any:
        """The tensor(s) its last call on Input tensors made: `Model(model.input,
        model.get_layer("features").output)` extracts features, sharing the weights."""
        return self._last_call("output")[1]

    def ensure_built(self, input_shape: Any) -> None:
        if not self.built:
            self.input_shape = input_shape
            self.build(input_shape)
            self.built = True

    def count_params(self) -> int:
        return sum(int(np.size(w)) for w in self.params.values())

    def count_state(self) -> int:
        return sum(int(np.size(w)) for w in self.state.values())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_key"] = None  # a key bound for one traced call, possibly a tracer
        state["_losses"] = []
        return state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class SymbolicTensor:
    """The output of a layer called on `Input(...)`: a shape (batch None) and how it was made."""

    def __init__(self, shape: Shape, dtype: Any, layer: Layer | None = None,
                 inputs: Sequence[SymbolicTensor] = (), name: str = "",
                 list_input: bool = False):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.layer = layer
        self.inputs = tuple(inputs)
        self.list_input = list_input  # the layer was called with a list of tensors
        self.name = name or (layer.name if layer is not None else "input")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @staticmethod
    def from_call(layer: Layer, inputs: Any) -> SymbolicTensor:
        """Record `layer(inputs)`; infer the output shape by running the layer on a batch of 1."""
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        for tensor in tensors:
            if not isinstance(tensor, SymbolicTensor):
                raise GraphjitError(f"layer {layer.name!r} was called on a mix of Input tensors "
                                    f"and concrete values ({type(tensor).__name__})")
        probes = [np.zeros((1, *t.shape[1:]), t.dtype) for t in tensors]
        probe = probes if isinstance(inputs, (list, tuple)) else probes[0]
        try:
            out = layer(probe, training=False)
        except GraphjitError:
            raise
        except Exception as exc:
            raise GraphjitError(f"layer {layer.name!r} ({type(layer).__name__}) failed on inputs "
                                f"of shape {[t.shape for t in tensors]}: {exc}") from exc
        tensor = SymbolicTensor((None, *out.shape[1:]), out.dtype, layer, tensors,
                                list_input=isinstance(inputs, (list, tuple)))
        layer._record_symbolic_call(inputs, tensor)
        return tensor

    def __repr__(self) -> str:
        return f"<SymbolicTensor {self.name} shape={self.shape} dtype={self.dtype}>"


def Input(shape: Sequence[int], dtype: Any = np.float32, name: str | None = None,
          batch_size: int | None = None) -> SymbolicTensor:
    """A model input: `shape` excludes the batch dimension."""
    return SymbolicTensor((batch_size, *shape), dtype, None, (), name or _unique_name("input"))


# ---------------------------------------------------------------- core layers


class Dense(Layer):
    """y = activation(x @ kernel + bias), over the last axis of x."""

    def __init__(self, units: int, activation: str | Callable | None = None, use_bias: bool = True,
                 kernel_initializer: str | Callable = "glorot_uniform",
                 bias_initializer: str | Callable = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = get_activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self.bias_constraint = get_constraint(bias_constraint)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ShapeError(f"Dense {self.name!r} needs a known input width, got input shape "
                             f"{input_shape}")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)

    def call(self, x):
        kernel = self.params["kernel"]
        if x.ndim < 2 or x.shape[-1] != kernel.shape[0]:
            got = x.shape[-1] if x.ndim >= 2 else f"a {x.ndim}-D input"
            raise ShapeError(f"Dense {self.name!r} expects input width {kernel.shape[0]}, got "
                             f"{got} (input shape {tuple(x.shape)}; inputs are (batch, ..., "
                             f"{kernel.shape[0]}))")
        if x.ndim == 2:
            y = x @ kernel
        else:  # one 2-D matmul instead of a batched one over a broadcast kernel
            y = (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*x.shape[:-1], self.units)
        if self.use_bias:
            y = y + self.params["bias"]
        return self.activation(y)


class Activation(Layer):
    def __init__(self, activation: str | Callable, **kwargs: Any):
        super().__init__(**kwargs)
        self.activation = get_activation(activation)

    def call(self, x):
        return self.activation(x)


class Dropout(Layer):
    """Zero a fraction `rate` of the inputs while training and scale the rest by 1/(1-rate)."""

    uses_rng = True

    def __init__(self, rate: float, **kwargs: Any):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise GraphjitError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def call(self, x, training=False):
        if not training or self.rate == 0:
            return x
        from graphjit import random

        keep = random.bernoulli(self.random_key(), 1.0 - self.rate, tuple(x.shape))
        return np.where(keep, x / (1.0 - self.rate), 0)


class Lambda(Layer):
    """Any traceable function of the inputs. `model.save` stores it as its traced IR (not its
    bytecode), so it loads without the source; see graphjit/saving.py."""

    def __init__(self, function: Callable[[Any], Any], **kwargs: Any):
        kwargs.setdefault("name", _unique_name(getattr(function, "__name__", "lambda")
                                               .replace("<lambda>", "lambda")))
        super().__init__(**kwargs)
        self.function = function

    def call(self, x):
        return self.function(x)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        import pickle

        try:
            pickle.dumps(self.function)
        except Exception:  # a lambda or closure: pickle its traced IR instead of its code
            from graphjit.saving import trace_lambda

            state["function"] = trace_lambda(self)
            state["_init_args"] = ((), {})
        return state


class Flatten(Layer):
    def call(self, x):
        return x.reshape(x.shape[0], -1)


class Reshape(Layer):
    def __init__(self, target_shape: Sequence[int], **kwargs: Any):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)

    def call(self, x):
        return x.reshape(x.shape[0], *self.target_shape)


class Concatenate(Layer):
    def __init__(self, axis: int = -1, **kwargs: Any):
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, inputs):
        return np.concatenate(list(inputs), axis=self.axis)


class Add(Layer):
    def call(self, inputs):
        return reduce(lambda a, b: a + b, inputs)


# ---------------------------------------------------------------- normalization


def _normalize(x: Any, mean: Any, var: Any, epsilon: float) -> Any:
    return (x - mean) / np.sqrt(var + epsilon)


class LayerNormalization(Layer):
    """Normalize each sample over `axis` (the features), then scale by gamma and shift by beta."""

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.axis = tuple(axis) if isinstance(axis, Sequence) else (axis,)
        self.epsilon, self.center, self.scale = epsilon, center, scale

    def build(self, input_shape):
        shape = tuple(input_shape[a] for a in self.axis)
        if self.scale:
            self.add_weight("gamma", shape, "ones")
        if self.center:
            self.add_weight("beta", shape, "zeros")

    def _param_shape(self, x: Any) -> tuple[int, ...]:
        axes = {a % x.ndim for a in self.axis}
        return tuple(d if i in axes else 1 for i, d in enumerate(x.shape))

    def call(self, x):
        mean = np.mean(x, axis=self.axis, keepdims=True)
        var = np.mean(np.square(x - mean), axis=self.axis, keepdims=True)
        y = _normalize(x, mean, var, self.epsilon)
        if self.scale:
            y = y * self.params["gamma"].reshape(self._param_shape(x))
        if self.center:
            y = y + self.params["beta"].reshape(self._param_shape(x))
        return y


class BatchNormalization(Layer):
    """Normalize with batch statistics while training (updating the moving averages in `state`),
    with the moving statistics at inference."""

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.axis, self.momentum, self.epsilon = axis, momentum, epsilon
        self.center, self.scale = center, scale

    def build(self, input_shape):
        features = (input_shape[self.axis],)
        if self.scale:
            self.add_weight("gamma", features, "ones")
        if self.center:
            self.add_weight("beta", features, "zeros")
        self.add_weight("moving_mean", features, "zeros", trainable=False)
        self.add_weight("moving_variance", features, "ones", trainable=False)

    def call(self, x, training=False):
        axis = self.axis % x.ndim
        reduce_axes = tuple(i for i in range(x.ndim) if i != axis)
        shape = tuple(d if i == axis else 1 for i, d in enumerate(x.shape))
        if training:
            mean = np.mean(x, axis=reduce_axes)
            var = np.mean(np.square(x - mean.reshape(shape)), axis=reduce_axes)
            m = self.momentum
            self.state = {
                "moving_mean": self.state["moving_mean"] * m + mean * (1 - m),
                "moving_variance": self.state["moving_variance"] * m + var * (1 - m),
            }
        else:
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
        y = _normalize(x, mean.reshape(shape), var.reshape(shape), self.epsilon)
        if self.scale:
            y = y * self.params["gamma"].reshape(shape)
        if self.center:
            y = y + self.params["beta"].reshape(shape)
        return y


# ---------------------------------------------------------------- convolution and pooling


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, np.integer)) else tuple(value)


def _same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same': output ceil(size/stride), extra padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _pad_axis(x: Any, axis: int, before: int, after: int, value: float) -> Any:
    """Pad one axis by concatenating constant blocks (traces to concat; np.pad does not trace)."""
    if before == after == 0:
        return x
    parts = []
    for width in (before, after):
        shape = tuple(width if i == axis else d for i, d in enumerate(x.shape))
        parts.append(np.full(shape, value, dtype=x.dtype) if width else None)
    pieces = [p for p in (parts[0], x, parts[1]) if p is not None]
    return np.concatenate(pieces, axis=axis)


def _pad_spatial(x: Any, window: tuple[int, int], strides: tuple[int, int], padding: str,
                 value: float = 0.0) -> Any:
    if padding == "valid":
        return x
    if padding != "same":
        raise GraphjitError(f"padding must be 'valid' or 'same', got {padding!r}")
    for axis in (1, 2):
        before, after = _same_padding(x.shape[axis], window[axis - 1], strides[axis - 1])
        x = _pad_axis(x, axis, before, after, value)
    return x


def _windows(x: Any, window: tuple[int, int], strides: tuple[int, int]) -> list[Any]:
    """The strided slices of x (N, H, W, C), one per window offset (di, dj), row-major."""
    out_h = (x.shape[1] - window[0]) // strides[0] + 1
    out_w = (x.shape[2] - window[1]) // strides[1] + 1
    if out_h <= 0 or out_w <= 0:
        raise GraphjitError(f"window {window} does not fit inputs of spatial shape "
                            f"{tuple(x.shape[1:3])}")
    slices = []
    for di in range(window[0]):
        for dj in range(window[1]):
            slices.append(x[:, di: di + (out_h - 1) * strides[0] + 1: strides[0],
                            dj: dj + (out_w - 1) * strides[1] + 1: strides[1], :])
    return slices


class Conv2D(Layer):
    """2-D convolution, channels-last, as im2col (strided slices concatenated) and one matmul."""

    def __init__(self, filters: int, kernel_size: int | Sequence[int], strides: int = 1,
                 padding: str = "valid", activation: str | Callable | None = None,
                 use_bias: bool = True, kernel_initializer: str | Callable = "glorot_uniform",
                 bias_initializer: str | Callable = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self.bias_constraint = get_constraint(bias_constraint)
        self.filters = int(filters)
        self.kernel_size, self.strides = _pair(kernel_size), _pair(strides)
        self.padding = padding.lower()
        self.activation = get_activation(activation)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise GraphjitError(f"Conv2D expects inputs (batch, height, width, channels), got "
                                f"shape {input_shape}")
        self.add_weight("kernel", (*self.kernel_size, input_shape[-1], self.filters),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def call(self, x):
        channels = self.params["kernel"].shape[2]
        if x.ndim != 4 or x.shape[-1] != channels:
            raise ShapeError(f"Conv2D {self.name!r} expects inputs (batch, height, width, "
                             f"{channels}), got shape {tuple(x.shape)}")
        x = _pad_spatial(x, self.kernel_size, self.strides, self.padding)
        patches = np.concatenate(_windows(x, self.kernel_size, self.strides), axis=-1)
        n, out_h, out_w, depth = patches.shape
        kernel = self.params["kernel"].reshape(depth, self.filters)
        y = (patches.reshape(n * out_h * out_w, depth) @ kernel).reshape(
            n, out_h, out_w, self.filters)
        if self.use_bias:
            y = y + self.params["bias"]
        return self.activation(y)


class MaxPooling2D(Layer):
    """Max over each window: the elementwise maximum of the window's strided slices."""

    def __init__(self, pool_size: int | Sequence[int] = 2, strides: int | None = None,
                 padding: str = "valid", **kwargs: Any):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size)
        self.strides = _pair(strides) if strides is not None else self.pool_size
        self.padding = padding.lower()

    def call(self, x):
        x = _pad_spatial(x, self.pool_size, self.strides, self.padding, value=-np.inf)
        return reduce(np.maximum, _windows(x, self.pool_size, self.strides))


class GlobalAveragePooling2D(Layer):
    def call(self, x):
        return np.mean(x, axis=(1, 2))


class Embedding(Layer):
    """Rows of a (input_dim, output_dim) table gathered by integer ids."""

    accepts_integers = True  # integer data stays integer (other layers get it cast to float)

    def __init__(self, input_dim: int, output_dim: int,
                 embeddings_initializer: str | Callable = "random_uniform",
                 embeddings_regularizer: Any = None, embeddings_constraint: Any = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.embeddings_regularizer = get_regularizer(embeddings_regularizer)
        self.embeddings_constraint = get_constraint(embeddings_constraint)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim),
                        self.embeddings_initializer)

    def call(self, ids):
        if ids.dtype.kind not in "iu":
            ids = ids.astype(np.int64)
        return self.params["embeddings"][ids]


__all__ = [
    "Layer", "SymbolicTensor", "Input", "Dense", "Activation", "Dropout", "Lambda", "Flatten",
    "Reshape", "Concatenate", "Add", "LayerNormalization", "BatchNormalization", "Conv2D",
    "MaxPooling2D", "GlobalAveragePooling2D", "Embedding", "ACTIVATIONS", "INITIALIZERS",
    "get_activation", "initialize", "set_seed", "register", "registered_name", "get_registered",
    "serialize_value", "get_regularizer", "get_constraint",
]


# ---------------------------------------------------------------- issue 16: more Keras layers
# (recurrent, convolution and pooling, attention, preprocessing; masks). They live in their own
# modules, which import the base class above; this block only re-exports them.
from . import masking as _masking  # noqa: E402

_masking.install(Layer)
for _passes_masks in (Activation, Dropout, Dense, LayerNormalization, BatchNormalization):
    _passes_masks.supports_masking = True

from .attention import (Attention, GroupNormalization, MultiHeadAttention,  # noqa: E402
                        UnitNormalization)
from .convolution import (AveragePooling1D, AveragePooling2D, Conv1D,  # noqa: E402
                          Conv2DTranspose, Cropping1D, Cropping2D, DepthwiseConv2D,
                          GlobalAveragePooling1D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                          MaxPooling1D, SeparableConv2D, UpSampling1D, UpSampling2D,
                          ZeroPadding1D, ZeroPadding2D)
from .preprocessing import (ActivityRegularization, Average, CategoryEncoding, Dot,  # noqa: E402
                            Embedding, Identity, Masking, Maximum, Minimum, Multiply,
                            Normalization, Permute, RepeatVector, Rescaling, Subtract)
from .recurrent import GRU, LSTM, RNN, Bidirectional, SimpleRNN, TimeDistributed  # noqa: E402

from . import attention as _attention, convolution as _convolution  # noqa: E402
from . import preprocessing as _preprocessing, recurrent as _recurrent  # noqa: E402

__all__ += [n for m in (_attention, _convolution, _preprocessing, _recurrent)
            for n in m.__all__ if n not in __all__]
# ---------------------------------------------------------------- end of issue 16's block
