"""Attention and normalisation layers as Keras 3 defines them: MultiHeadAttention, Attention,
GroupNormalization, UnitNormalization.

Attention layers take several inputs: `mha(query, value)` or `mha(query, value, key,
attention_mask=m, use_causal_mask=True)`; called on `Input` tensors they record one node whose
inputs are [query, value(, key)(, attention_mask)]. Masks of the query and value (from
`Embedding(mask_zero=True)`) combine with `attention_mask` and the causal mask as in Keras: a
masked score gets -1e9 before the softmax.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from .layers import Layer, _is_symbolic, get_constraint, get_regularizer, softmax

_LARGE_NEGATIVE = 1e9  # Keras' masking constant for float32 scores


def _masked_softmax(scores: Any, mask: Any) -> Any:
    if mask is None:
        return softmax(scores, axis=-1)
    return softmax(scores - _LARGE_NEGATIVE * (1 - mask.astype(scores.dtype)), axis=-1)


def _causal(query_steps: int, value_steps: int) -> np.ndarray:
    """Keras' causal mask: query i sees values j <= i (lower triangle)."""
    return np.tril(np.ones((query_steps, value_steps), dtype=bool))


def _and(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return np.logical_and(a, b)


def _dropout(layer: Layer, x: Any, rate: float, training: bool) -> Any:
    if not training or rate == 0:
        return x
    from graphjit import random

    keep = random.bernoulli(layer.random_key(), 1.0 - rate, tuple(x.shape))
    return np.where(keep, x / (1.0 - rate), 0)


class _MultiInput(Layer):
    """Called as layer(query, value, key=None, ...); records [query, value, key, mask] symbolically."""

    _options: dict[str, Any]

    def __call__(self, query, value=None, key=None, *, attention_mask=None,
                 use_causal_mask=False, return_attention_scores=False, training=False,
                 mask=None, query_mask=None, value_mask=None, key_mask=None):
        if isinstance(query, (list, tuple)) and value is None:  # a model node: the packed list
            inputs = list(query)
            options = self._options
        else:
            if value is None:
                raise GraphjitError(f"{type(self).__name__} {self.name!r} needs a query and a "
                                    "value: layer(query, value)")
            inputs = [query, value]
            if key is not None:
                inputs.append(key)
            if attention_mask is not None:
                inputs.append(attention_mask)
            options = {"has_key": key is not None, "has_mask": attention_mask is not None,
                       "use_causal_mask": bool(use_causal_mask),
                       "return_attention_scores": bool(return_attention_scores)}
            if _is_symbolic(inputs):
                previous = self.__dict__.get("_options")
                if previous is not None and previous != options:
                    raise GraphjitError(f"{type(self).__name__} {self.name!r} is called twice "
                                        "in one model with different options; use two layers")
                if return_attention_scores:
                    raise GraphjitError("return_attention_scores=True is only supported when "
                                        "calling the layer on arrays, not in a Functional model")
            self._options = options
        if _is_symbolic(inputs):
            return super().__call__(inputs, training=training)
        explicit = None
        if query_mask is not None or value_mask is not None:
            explicit = [query_mask, value_mask]
        saved = self.__dict__.get("_options")
        self._options = options
        try:
            return super().__call__(inputs, training=training, mask=explicit or mask)
        finally:
            self._options = saved if saved is not None else options

    # The options of the (one) symbolic call are part of the layer's config, so a loaded model
    # calls the layer on its packed inputs [query, value(, key)(, mask)] the same way.
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        if "_options" in self.__dict__:
            config["call_options"] = dict(self._options)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        config = dict(config)
        options = config.pop("call_options", None)
        layer = cls(**config)
        if options is not None:
            layer._options = {k: bool(v) for k, v in options.items()}
        return layer

    def _unpack(self, inputs: list) -> tuple[Any, Any, Any, Any]:
        options = self._options
        query, value = inputs[0], inputs[1]
        position = 2
        key = value
        if options["has_key"]:
            key, position = inputs[2], 3
        attention_mask = inputs[position] if options["has_mask"] else None
        return query, value, key, attention_mask

    def _combined_mask(self, query: Any, value: Any, attention_mask: Any) -> Any:
        """(batch, query steps, value steps) booleans, or None."""
        masks = getattr(self, "input_mask", None) or [None, None]
        query_mask, value_mask = masks[0], masks[1] if len(masks) > 1 else None
        mask = None
        if query_mask is not None:
            mask = query_mask[:, :, None]
        if value_mask is not None:
            mask = _and(mask, value_mask[:, None, :])
        if attention_mask is not None:
            mask = _and(mask, attention_mask.astype(bool))
        if self._options["use_causal_mask"]:
            mask = _and(mask, _causal(query.shape[1], value.shape[1])[None])
        return mask

    def compute_mask(self, inputs, mask):
        if isinstance(mask, (list, tuple)):
            return mask[0]
        return None


class MultiHeadAttention(_MultiInput):
    """Keras' MultiHeadAttention over (batch, steps, features) inputs. Weights, in Keras' order:
    query/key/value kernels (dim, num_heads, key_dim) with biases (num_heads, key_dim), then the
    output kernel (num_heads, value_dim, output dim) and bias."""

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None,
                 dropout: float = 0.0, use_bias: bool = True, output_shape: Any = None,
                 attention_axes: Any = None, kernel_initializer: str | Callable = "glorot_uniform",
                 bias_initializer: str | Callable = "zeros", kernel_regularizer: Any = None,
                 bias_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        if attention_axes is not None:
            raise GraphjitError("MultiHeadAttention(attention_axes=...) is not supported: "
                                "attention runs over axis 1 of (batch, steps, features)")
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim is not None else self.key_dim
        self.dropout = float(dropout)
        self.uses_rng = self.dropout > 0
        self.use_bias = use_bias
        if isinstance(output_shape, Sequence) and len(output_shape) != 1:
            raise GraphjitError("MultiHeadAttention output_shape must be one int")
        self.output_dim = None if output_shape is None else int(
            output_shape[0] if isinstance(output_shape, Sequence) else output_shape)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        regularizer, constraint = get_regularizer(kernel_regularizer), get_constraint(
            kernel_constraint)
        bias_reg, bias_con = get_regularizer(bias_regularizer), get_constraint(bias_constraint)
        for part in ("query", "key", "value", "attention_output"):
            setattr(self, f"{part}/kernel_regularizer", regularizer)
            setattr(self, f"{part}/kernel_constraint", constraint)
            setattr(self, f"{part}/bias_regularizer", bias_reg)
            setattr(self, f"{part}/bias_constraint", bias_con)

    def build(self, input_shape):
        shapes = list(input_shape)
        query_shape, value_shape = shapes[0], shapes[1]
        key_shape = shapes[2] if self._options["has_key"] else value_shape
        for shape in (query_shape, value_shape, key_shape):
            if len(shape) != 3:
                raise GraphjitError(f"MultiHeadAttention {self.name!r} expects inputs (batch, "
                                    f"steps, features), got shape {tuple(shape)}")
        heads = self.num_heads
        output_dim = self.output_dim or query_shape[-1]
        for part, width, depth in (("query", query_shape[-1], self.key_dim),
                                   ("key", key_shape[-1], self.key_dim),
                                   ("value", value_shape[-1], self.value_dim)):
            self.add_weight(f"{part}/kernel", (width, heads, depth), self.kernel_initializer)
            if self.use_bias:
                self.add_weight(f"{part}/bias", (heads, depth), self.bias_initializer)
        self.add_weight("attention_output/kernel", (heads, self.value_dim, output_dim),
                        self.kernel_initializer)
        if self.use_bias:
            self.add_weight("attention_output/bias", (output_dim,), self.bias_initializer)

    def _project(self, x: Any, part: str) -> Any:
        """(batch, steps, width) -> (batch, heads, steps, depth)."""
        kernel = self.params[f"{part}/kernel"]
        width, heads, depth = kernel.shape
        n, steps = x.shape[0], x.shape[1]
        y = (x.reshape(n * steps, width) @ kernel.reshape(width, heads * depth))
        if self.use_bias:
            y = y + self.params[f"{part}/bias"].reshape(heads * depth)
        return y.reshape(n, steps, heads, depth).transpose(0, 2, 1, 3)

    def call(self, inputs, training=False):
        query, value, key, attention_mask = self._unpack(inputs)
        q = self._project(query, "query") * (1.0 / math.sqrt(self.key_dim))
        k = self._project(key, "key")
        v = self._project(value, "value")
        scores = q @ k.transpose(0, 1, 3, 2)  # (batch, heads, query steps, key steps)
        mask = self._combined_mask(query, value, attention_mask)
        weights = _masked_softmax(scores, None if mask is None else mask[:, None])
        dropped = _dropout(self, weights, self.dropout, training)
        context = dropped @ v  # (batch, heads, query steps, value_dim)
        n, steps = query.shape[0], query.shape[1]
        kernel = self.params["attention_output/kernel"]
        flat = context.transpose(0, 2, 1, 3).reshape(n * steps, self.num_heads * self.value_dim)
        out = flat @ kernel.reshape(self.num_heads * self.value_dim, kernel.shape[-1])
        if self.use_bias:
            out = out + self.params["attention_output/bias"]
        out = out.reshape(n, steps, kernel.shape[-1])
        if self._options["return_attention_scores"]:
            return [out, weights]
        return out


class Attention(_MultiInput):
    """Keras' dot-product (Luong) attention: softmax(query @ key^T [* scale]) @ value, or
    score_mode='concat' (Bahdanau): sum(scale * tanh(query + key)). Inputs [query, value] or
    [query, value, key]; the value mask hides padded values, the query mask zeroes padded rows."""

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", dropout: float = 0.0,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if score_mode not in ("dot", "concat"):
            raise GraphjitError(f"Attention score_mode must be 'dot' or 'concat', got "
                                f"{score_mode!r}")
        self.use_scale, self.score_mode = use_scale, score_mode
        self.dropout = float(dropout)
        self.uses_rng = self.dropout > 0

    def __call__(self, inputs, value=None, key=None, **kwargs):
        if isinstance(inputs, (list, tuple)) and value is None and "_options" not in \
                self.__dict__:
            items = list(inputs)  # Keras' form: Attention()([query, value(, key)])
            return super().__call__(items[0], items[1], items[2] if len(items) > 2 else None,
                                    **kwargs)
        if isinstance(inputs, (list, tuple)) and value is None:
            return super().__call__(inputs, **kwargs)
        return super().__call__(inputs, value, key, **kwargs)

    def build(self, input_shape):
        if self.use_scale:
            self.add_weight("scale", (), "ones")
        if self.score_mode == "concat":
            self.add_weight("concat_score_weight", (), "ones")

    def call(self, inputs, training=False):
        query, value, key, attention_mask = self._unpack(inputs)
        if self.score_mode == "dot":
            scores = query @ key.transpose(0, 2, 1)
            if self.use_scale:
                scores = scores * self.params["scale"]
        else:
            summed = np.tanh(query[:, :, None, :] + key[:, None, :, :])
            if self.use_scale:
                summed = summed * self.params["scale"]
            scores = self.params["concat_score_weight"] * np.sum(summed, axis=-1)
        masks = getattr(self, "input_mask", None) or [None, None]
        value_mask = masks[1] if len(masks) > 1 else None
        mask = None if value_mask is None else value_mask[:, None, :]
        if attention_mask is not None:
            mask = _and(mask, attention_mask.astype(bool))
        if self._options["use_causal_mask"]:
            mask = _and(mask, _causal(query.shape[1], value.shape[1])[None])
        weights = _masked_softmax(scores, mask)
        result = _dropout(self, weights, self.dropout, training) @ value
        if masks[0] is not None:
            result = result * masks[0].astype(result.dtype)[:, :, None]
        if self._options["return_attention_scores"]:
            return [result, weights]
        return result


# ---------------------------------------------------------------- normalisation


class GroupNormalization(Layer):
    """Normalise each sample over groups of channels (the last axis split into `groups`), then
    scale by gamma and shift by beta (both of shape (channels,))."""

    def __init__(self, groups: int = 32, axis: int = -1, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True,
                 beta_initializer: str | Callable = "zeros",
                 gamma_initializer: str | Callable = "ones", beta_regularizer: Any = None,
                 gamma_regularizer: Any = None, beta_constraint: Any = None,
                 gamma_constraint: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.groups, self.axis, self.epsilon = int(groups), axis, float(epsilon)
        self.center, self.scale = center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.beta_regularizer = get_regularizer(beta_regularizer)
        self.gamma_regularizer = get_regularizer(gamma_regularizer)
        self.beta_constraint = get_constraint(beta_constraint)
        self.gamma_constraint = get_constraint(gamma_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        channels = input_shape[self.axis]
        if channels % self.groups:
            raise GraphjitError(f"GroupNormalization {self.name!r}: {channels} channels do not "
                                f"split into {self.groups} groups")
        if self.axis not in (-1, len(input_shape) - 1):
            raise GraphjitError("GroupNormalization supports axis=-1 (channels last) only")
        if self.scale:
            self.add_weight("gamma", (channels,), self.gamma_initializer)
        if self.center:
            self.add_weight("beta", (channels,), self.beta_initializer)

    def call(self, x):
        shape = tuple(x.shape)
        channels = shape[-1]
        grouped = x.reshape(*shape[:-1], self.groups, channels // self.groups)
        axes = tuple(range(1, len(shape) - 1)) + (len(shape),)
        mean = np.mean(grouped, axis=axes, keepdims=True)
        var = np.mean(np.square(grouped - mean), axis=axes, keepdims=True)
        y = ((grouped - mean) / np.sqrt(var + self.epsilon)).reshape(shape)
        if self.scale:
            y = y * self.params["gamma"]
        if self.center:
            y = y + self.params["beta"]
        return y


class UnitNormalization(Layer):
    """x / ||x||_2 over `axis` (the norm floored at 1e-6, as Keras' epsilon of 1e-12 on the
    squared sum)."""

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs: Any):
        super().__init__(**kwargs)
        self.axis = tuple(axis) if isinstance(axis, Sequence) else axis
        self.supports_masking = True

    def call(self, x):
        squares = np.sum(np.square(x), axis=self.axis, keepdims=True)
        return x / np.sqrt(np.maximum(squares, 1e-12))


__all__ = ["MultiHeadAttention", "Attention", "GroupNormalization", "UnitNormalization"]
