"""Recurrent layers as Keras 3 defines them: SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed.

The time loop is unrolled for the static sequence length while tracing: the input projection of
every timestep is one matmul over (batch * time, features) up front, and each step adds one
(batch, units) @ (units, gates * units) matmul whose gate arithmetic fuses into its epilogue.

Weights, shapes, initializers and `get_weights()` order are Keras': `kernel` (features, gates *
units), `recurrent_kernel` (units, gates * units), `bias` (gates * units,) -- GRU with
`reset_after=True` has bias (2, 3 * units): input bias, recurrent bias. Gate order: LSTM i, f, c,
o; GRU z, r, h.

Masks (from `Embedding(mask_zero=True)` or `Masking`) work as in Keras: at a masked timestep the
states are carried over unchanged and the output repeats the previous output (zeros before the
first unmasked step), or is zero with `zero_output_for_mask=True` (what Bidirectional uses).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from .layer_tools import (adopt_weights, resolve_initializer, check_rank, run_sublayer, sublayer_constraints,
                          sublayer_penalties)
from .layers import (Layer, SymbolicTensor, get_activation, get_constraint, get_regularizer,
                     get_registered)

Shape = tuple[int | None, ...]


def _dropout_mask(key: Any, rate: float, shape: tuple[int, ...],
                  dtype: Any) -> Any:
    from graphjit import random

    keep = random.bernoulli(key, 1.0 - rate, shape)
    return np.where(keep, np.asarray(1.0 / (1.0 - rate), dtype), np.asarray(0.0, dtype))


class _StateSelector(Layer):
    """Picks output `index` of a layer that returns several (an RNN with return_state=True) in
    the Functional API."""

    def __init__(self, index: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[self.index]


def _symbolic_outputs(layer: Layer, inputs: Any) -> list[SymbolicTensor]:
    """Record a call returning several tensors: one node for the layer (its value the list of
    outputs) and one selector node per output. `inputs` is a tensor, or [sequence, *states]."""
    tensors = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    probes = [np.zeros((1, *t.shape[1:]), t.dtype) for t in tensors]
    outputs = layer(probes if len(tensors) > 1 else probes[0])
    whole = SymbolicTensor((None, *outputs[0].shape[1:]), outputs[0].dtype, layer, tensors,
                           list_input=len(tensors) > 1)
    selected = [SymbolicTensor((None, *out.shape[1:]), out.dtype,
                               _StateSelector(i, name=f"{layer.name}_output_{i}"), [whole])
                for i, out in enumerate(outputs)]
    layer._record_symbolic_call(inputs, selected)
    return selected


class RNN(Layer):
    """The loop shared by SimpleRNN, LSTM and GRU (their cells define `_gates` and `_step`)."""

    gates = 1
    state_count = 1

    def __init__(self, units: int, activation: str | Callable | None = "tanh",
                 recurrent_activation: str | Callable | None = "sigmoid", use_bias: bool = True,
                 kernel_initializer: str | Callable = "glorot_uniform",
                 recurrent_initializer: str | Callable = "orthogonal",
                 bias_initializer: str | Callable = "zeros", kernel_regularizer: Any = None,
                 recurrent_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 recurrent_constraint: Any = None, bias_constraint: Any = None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 return_sequences: bool = False, return_state: bool = False,
                 go_backwards: bool = False, stateful: bool = False, unroll: bool = False,
                 zero_output_for_mask: bool = False, **kwargs: Any):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if stateful:
            raise GraphjitError(f"{type(self).__name__}(stateful=True) is not supported: the "
                                "compiled step is a pure function of its inputs; carry the "
                                "state yourself with return_state=True")
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0 <= rate < 1:
                raise GraphjitError(f"{type(self).__name__} {what} must be in [0, 1), got {rate}")
        self.units = int(units)
        self.activation = get_activation(activation)
        self.recurrent_activation = get_activation(recurrent_activation)
        self.use_bias = use_bias
        self.initializers = (kernel_initializer, recurrent_initializer, bias_initializer)
        # read by Layer.regularization_losses / apply_constraints, by weight name
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.recurrent_kernel_regularizer = get_regularizer(recurrent_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)
        self.kernel_constraint = get_constraint(kernel_constraint)
        self.recurrent_kernel_constraint = get_constraint(recurrent_constraint)
        self.bias_constraint = get_constraint(bias_constraint)
        self.dropout, self.recurrent_dropout = float(dropout), float(recurrent_dropout)
        self.uses_rng = self.dropout > 0 or self.recurrent_dropout > 0
        self.return_sequences, self.return_state = return_sequences, return_state
        self.go_backwards = go_backwards
        self.zero_output_for_mask = zero_output_for_mask

    # -------------------------------------------------------------- weights
    def _bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def _bias_initializer(self) -> str | Callable:
        return self.initializers[2]

    def build(self, input_shape):
        if isinstance(input_shape, list):  # [sequence, *initial states]
            input_shape = input_shape[0]
        check_rank(self, input_shape, 3, "(batch, timesteps, features)")
        width = self.gates * self.units
        kernel_init, recurrent_init, _ = self.initializers
        self.add_weight("kernel", (input_shape[-1], width), resolve_initializer(self, kernel_init))
        self.add_weight("recurrent_kernel", (self.units, width),
                        resolve_initializer(self, recurrent_init))
        if self.use_bias:
            self.add_weight("bias", self._bias_shape(), self._bias_initializer())

    # -------------------------------------------------------------- calling
    def __call__(self, inputs, initial_state=None, training=False, **kwargs):
        """`layer(sequences, initial_state=[h(, c)])` as in Keras; the states travel with the
        sequence as one list input, `layer([sequences, *states])` (Keras 2's form, and how a
        model records and reloads the call)."""
        inputs = _with_initial_state(self, inputs, initial_state, self.state_count)
        if self.return_state and _any_symbolic(inputs):
            return _symbolic_outputs(self, inputs)
        return super().__call__(inputs, training=training, **kwargs)

    def _input_projection(self, x: Any) -> Any:
        """x @ kernel (+ input bias) for every timestep at once: (batch, time, gates * units)."""
        n, steps, features = x.shape
        projected = (x.reshape(n * steps, features) @ self.params["kernel"]).reshape(
            n, steps, self.gates * self.units)
        return projected + self._input_bias() if self.use_bias else projected

    def _input_bias(self) -> Any:
        return self.params["bias"]

    def _step(self, projected: Any, states: list[Any], recurrent_scale: Any) -> tuple[Any, list]:
        raise NotImplementedError

    def call(self, inputs, training=False):
        x, initial = (inputs[0], list(inputs[1:])) if isinstance(inputs, list) else (inputs, [])
        mask = getattr(self, "input_mask", None)
        if isinstance(mask, list):  # masks of [sequence, *states]: the sequence's counts
            mask = mask[0]
        n, steps = x.shape[0], x.shape[1]
        if steps is None or steps < 1:
            raise GraphjitError(f"{type(self).__name__} {self.name!r} needs at least one "
                                f"timestep, got inputs of shape {tuple(x.shape)}")
        dtype = np.result_type(x.dtype, self.params["kernel"].dtype)
        input_scale = recurrent_scale = None
        if training and self.uses_rng:
            from graphjit import random

            pair = random.split(self.random_key())
            if self.dropout:
                input_scale = _dropout_mask(pair[0], self.dropout, (n, x.shape[2]), dtype)
            if self.recurrent_dropout:
                recurrent_scale = _dropout_mask(pair[1], self.recurrent_dropout,
                                                (n, self.units), dtype)
        if input_scale is not None:
            x = x * input_scale[:, None, :]
        projected = self._input_projection(x)
        states = [np.zeros((n, self.units), dtype) for _ in range(self.state_count)]
        for i, state in enumerate(initial):
            if tuple(state.shape) != (n, self.units):
                raise GraphjitError(f"{type(self).__name__} {self.name!r}: initial state {i} "
                                    f"must have shape (batch, units) = ({n}, {self.units}), "
                                    f"got {tuple(state.shape)}")
            states[i] = state.astype(dtype) if state.dtype != dtype else state
        output = np.zeros((n, self.units), dtype)
        outputs = []
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        for t in order:
            new_output, new_states = self._step(projected[:, t], states, recurrent_scale)
            if mask is None:
                output, states = new_output, new_states
            else:
                keep = mask[:, t][:, None]
                states = [np.where(keep, new, old) for new, old in zip(new_states, states)]
                previous = np.zeros_like(new_output) if self.zero_output_for_mask else output
                output = np.where(keep, new_output, previous)
            outputs.append(output)
        result = np.stack(outputs, axis=1) if self.return_sequences else output
        if self.return_state:
            return [result, *states]
        return result

    def compute_mask(self, inputs, mask):
        if isinstance(mask, list):
            mask = mask[0]
        if not self.return_sequences or mask is None:
            return [None] * (1 + self.state_count) if self.return_state else None
        if self.go_backwards:
            mask = mask[:, ::-1]
        return [mask] + [None] * self.state_count if self.return_state else mask


class SimpleRNN(RNN):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    def __init__(self, units: int, activation: str | Callable | None = "tanh", **kwargs: Any):
        kwargs.pop("recurrent_activation", None)
        super().__init__(units, activation=activation, **kwargs)

    def _step(self, projected, states, recurrent_scale):
        h = states[0] if recurrent_scale is None else states[0] * recurrent_scale
        out = self.activation(projected + h @ self.params["recurrent_kernel"])
        return out, [out]


class LSTM(RNN):
    """Long short-term memory; states [h, c]; gates i, f, c, o in that order."""

    gates = 4
    state_count = 2

    def __init__(self, units: int, activation: str | Callable | None = "tanh",
                 recurrent_activation: str | Callable | None = "sigmoid",
                 unit_forget_bias: bool = True, use_cudnn: Any = "auto", **kwargs: Any):
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, **kwargs)
        self.unit_forget_bias = unit_forget_bias

    def _bias_initializer(self):
        initializer = self.initializers[2]
        if not self.unit_forget_bias:
            return initializer
        units = self.units

        def forget_ones(shape, dtype):
            from .layers import initialize

            part = initialize(initializer, (units,), dtype, self._rng)
            return np.concatenate([part, np.ones(units, dtype),
                                   initialize(initializer, (2 * units,), dtype, self._rng)])

        return forget_ones

    def _step(self, projected, states, recurrent_scale):
        h, c = states
        if recurrent_scale is not None:
            h = h * recurrent_scale
        z = projected + h @ self.params["recurrent_kernel"]
        u = self.units
        i = self.recurrent_activation(z[:, :u])
        f = self.recurrent_activation(z[:, u:2 * u])
        c = f * c + i * self.activation(z[:, 2 * u:3 * u])
        o = self.recurrent_activation(z[:, 3 * u:])
        h = o * self.activation(c)
        return h, [h, c]


class GRU(RNN):
    """Gated recurrent unit; gates z (update), r (reset), h in that order. `reset_after=True`
    (Keras' default) applies the reset gate after the recurrent matmul, with a separate
    recurrent bias: bias has shape (2, 3 * units)."""

    gates = 3

    def __init__(self, units: int, activation: str | Callable | None = "tanh",
                 recurrent_activation: str | Callable | None = "sigmoid",
                 reset_after: bool = True, use_cudnn: Any = "auto", **kwargs: Any):
        super().__init__(units, activation=activation,
                         recurrent_activation=recurrent_activation, **kwargs)
        self.reset_after = reset_after

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _input_bias(self):
        return self.params["bias"][0] if self.reset_after else self.params["bias"]

    def _step(self, projected, states, recurrent_scale):
        h_prev = states[0]
        h = h_prev if recurrent_scale is None else h_prev * recurrent_scale
        u = self.units
        kernel = self.params["recurrent_kernel"]
        x_z, x_r, x_h = projected[:, :u], projected[:, u:2 * u], projected[:, 2 * u:]
        if self.reset_after:
            inner = h @ kernel
            if self.use_bias:
                inner = inner + self.params["bias"][1]
            z = self.recurrent_activation(x_z + inner[:, :u])
            r = self.recurrent_activation(x_r + inner[:, u:2 * u])
            candidate = self.activation(x_h + r * inner[:, 2 * u:])
        else:
            inner = h @ kernel[:, :2 * u]
            z = self.recurrent_activation(x_z + inner[:, :u])
            r = self.recurrent_activation(x_r + inner[:, u:])
            candidate = self.activation(x_h + (r * h) @ kernel[:, 2 * u:])
        out = z * h_prev + (1 - z) * candidate
        return out, [out]


# ---------------------------------------------------------------- wrappers


class Bidirectional(Layer):
    """Runs `layer` forwards and a copy of it backwards over time and merges the two outputs
    (`merge_mode` 'concat', 'sum', 'mul', 'ave' or None for a list). Weights: the forward
    layer's, then the backward layer's, stored as `forward_<name>/...` and `backward_<name>/...`.
    """

    def __init__(self, layer: RNN, merge_mode: str | None = "concat",
                 backward_layer: RNN | None = None, **kwargs: Any):
        if not isinstance(layer, RNN):
            raise GraphjitError(f"Bidirectional wraps a recurrent layer, got "
                                f"{type(layer).__name__}")
        kwargs.setdefault("name", f"bidirectional_{layer.name}")
        super().__init__(**kwargs)
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise GraphjitError(f"Bidirectional merge_mode must be 'concat', 'sum', 'mul', 'ave' "
                                f"or None, got {merge_mode!r}")
        self.merge_mode = merge_mode
        self.forward_layer = layer
        if backward_layer is None:
            config = {**layer.get_config(), "name": f"backward_{layer.name}",
                      "go_backwards": not layer.go_backwards}
            backward_layer = type(layer).from_config(config)
        self.backward_layer = backward_layer
        self.forward_layer.name = f"forward_{layer.name}"
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = sub.return_sequences
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.uses_rng = layer.uses_rng or backward_layer.uses_rng

    def get_config(self):
        config = super().get_config()
        config["layer"] = _inner_config(self.forward_layer, "forward_")
        if config.get("backward_layer") is not None:
            config["backward_layer"] = _inner_config(self.backward_layer, "")
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = _layer_from_config(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = _layer_from_config(config["backward_layer"])
        return cls(**config)

    def _subs(self) -> list[tuple[Layer, str]]:
        return list(zip((self.forward_layer, self.backward_layer), self._prefixes()))

    def regularization_losses(self, params):
        return sublayer_penalties(self, self._subs(), params) + super().regularization_losses(
            params)

    def apply_constraints(self, params):
        return sublayer_constraints(self, self._subs(), params)

    def _prefixes(self) -> tuple[str, str]:
        return f"{self.forward_layer.name}/", f"{self.backward_layer.name}/"

    def __call__(self, inputs, initial_state=None, training=False, **kwargs):
        """`initial_state`: the forward layer's states, then the backward layer's (Keras)."""
        inputs = _with_initial_state(self, inputs, initial_state,
                                     2 * self.forward_layer.state_count)
        if self.return_state and _any_symbolic(inputs):
            return _symbolic_outputs(self, inputs)
        return super().__call__(inputs, training=training, **kwargs)

    def build(self, input_shape):
        if isinstance(input_shape, list):
            input_shape = input_shape[0]
        for sub, prefix in zip((self.forward_layer, self.backward_layer), self._prefixes()):
            sub.ensure_built(input_shape)
            adopt_weights(self, sub, prefix)

    def call(self, inputs, training=False):
        mask = getattr(self, "input_mask", None)
        if isinstance(mask, list):
            mask = mask[0]
        sub_inputs = [inputs, inputs]
        if isinstance(inputs, list):  # [sequence, *forward states, *backward states]
            half = self.forward_layer.state_count
            sub_inputs = [[inputs[0], *inputs[1:1 + half]], [inputs[0], *inputs[1 + half:]]]
        keys = [None, None]
        if training and self.uses_rng:
            from graphjit import random

            pair = random.split(self.random_key())
            keys = [pair[0], pair[1]]
        results = []
        for sub, prefix, key, sub_input in zip((self.forward_layer, self.backward_layer),
                                               self._prefixes(), keys, sub_inputs):
            saved = self._key
            self._key = key
            try:
                results.append(run_sublayer(self, sub, prefix, sub_input, training, mask))
            finally:
                self._key = saved
        forward, backward = results
        forward_states = backward_states = []
        if self.return_state:
            forward, *forward_states = forward
            backward, *backward_states = backward
        if self.return_sequences:
            backward = backward[:, ::-1]
        merged = self._merge(forward, backward)
        if self.return_state:
            outputs = merged if isinstance(merged, list) else [merged]
            return [*outputs, *forward_states, *backward_states]
        return merged

    def _merge(self, forward: Any, backward: Any) -> Any:
        if self.merge_mode == "concat":
            return np.concatenate([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "mul":
            return forward * backward
        if self.merge_mode == "ave":
            return (forward + backward) / 2
        return [forward, backward]

    def compute_mask(self, inputs, mask):
        if isinstance(mask, list) and isinstance(inputs, list):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.merge_mode is None:
            output_mask = [output_mask, output_mask]
        else:
            output_mask = [output_mask]
        if self.return_state:
            states = self.forward_layer.state_count * 2
            return output_mask + [None] * states
        return output_mask if self.merge_mode is None else output_mask[0]


class TimeDistributed(Layer):
    """Applies `layer` to every timestep: inputs (batch, time, ...) run through the layer as one
    batch of batch * time samples. Its weights are the inner layer's, under the same names."""

    def __init__(self, layer: Any, **kwargs: Any):
        kwargs.setdefault("name", f"time_distributed_{layer.name}")
        super().__init__(**kwargs)
        self.layer = layer
        self.uses_rng = layer.uses_rng
        self.supports_masking = True

    def get_config(self):
        config = super().get_config()
        config["layer"] = _inner_config(self.layer, "")
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = _layer_from_config(config["layer"])
        return cls(**config)

    def regularization_losses(self, params):
        return sublayer_penalties(self, [(self.layer, "")], params) + \
            super().regularization_losses(params)

    def apply_constraints(self, params):
        return sublayer_constraints(self, [(self.layer, "")], params)

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise GraphjitError(f"TimeDistributed {self.name!r} expects inputs (batch, time, "
                                f"...), got shape {tuple(input_shape)}")
        self.layer.ensure_built((None, *input_shape[2:]))
        adopt_weights(self, self.layer, "")

    def call(self, inputs, training=False):
        n, steps = inputs.shape[0], inputs.shape[1]
        flat = inputs.reshape(n * steps, *inputs.shape[2:])
        out = run_sublayer(self, self.layer, "", flat, training)
        return out.reshape(n, steps, *out.shape[1:])


def _any_symbolic(inputs: Any) -> bool:
    items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return any(isinstance(item, SymbolicTensor) for item in items)


def _with_initial_state(layer: Layer, inputs: Any, initial_state: Any, count: int) -> Any:
    """The call's input: the sequence alone, or the list [sequence, *initial states]."""
    if initial_state is not None:
        if isinstance(inputs, (list, tuple)):
            raise GraphjitError(f"{type(layer).__name__} {layer.name!r}: pass the initial "
                                "states either in the input list or as initial_state=, not both")
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else \
            [initial_state]
        inputs = [inputs, *states]
    if isinstance(inputs, (list, tuple)):
        inputs = list(inputs)
        if len(inputs) == 1:
            return inputs[0]
        if len(inputs) - 1 != count:
            raise GraphjitError(f"{type(layer).__name__} {layer.name!r} takes {count} initial "
                                f"state{'s' if count != 1 else ''} (each (batch, units)), got "
                                f"{len(inputs) - 1}")
    return inputs


def _inner_config(layer: Layer, prefix: str) -> dict[str, Any]:
    """A wrapped layer as {"class_name", "config"} (its name as the user gave it)."""
    from .layers import registered_name

    config = layer.get_config()
    config["name"] = config["name"].removeprefix(prefix)
    return {"class_name": registered_name(type(layer)), "config": config}


def _layer_from_config(entry: Any) -> Layer:
    if isinstance(entry, Layer):
        return entry
    return get_registered(entry["class_name"]).from_config(entry["config"])


__all__ = ["RNN", "SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed"]
