"""What the layers of recurrent.py, convolution.py, attention.py and preprocessing.py share:

- wrapped sub-layers (Bidirectional, TimeDistributed) whose weights live in the wrapper's own
  flat `params`/`state` under a prefix, so the model's weight trees stay one level deep;
- the `orthogonal` initializer Keras' recurrent kernels use.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from .layers import _INIT_RNG, INITIALIZERS, Layer


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...], gain: float = 1.0) -> np.ndarray:
    """Keras' Orthogonal: QR of a normal matrix over (prod(shape[:-1]), shape[-1])."""
    rows, cols = math.prod(shape[:-1]) if len(shape) > 1 else 1, shape[-1]
    flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


# initializers Keras' recurrent layers name that the shared table (layers.INITIALIZERS) lacks
EXTRA_INITIALIZERS = {"orthogonal": _orthogonal,
                      "identity": lambda rng, shape: np.eye(*shape[-2:]) * np.ones(shape)}


def resolve_initializer(layer: Layer, initializer: Any) -> Any:
    """`initializer`, or for a name only this module knows, a `fn(shape, dtype)` drawing from
    the layer's generator (its seed) like the shared initializers do."""
    if isinstance(initializer, str) and initializer not in INITIALIZERS and \
            initializer in EXTRA_INITIALIZERS:
        draw = EXTRA_INITIALIZERS[initializer]
        return lambda shape, dtype: draw(layer._rng or _INIT_RNG[0], tuple(shape))
    return initializer


def sublayer_weights(parent: Layer, prefix: str, params: dict[str, Any]) -> dict[str, Any]:
    """The weights of a wrapped sub-layer, without the prefix they have in `parent`."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


def sublayer_penalties(parent: Layer, subs: Sequence[tuple[Layer, str]],
                       params: dict[str, Any]) -> list[Any]:
    """`regularization_losses` of a wrapper: each sub-layer's, on its own slice of `params`."""
    penalties = []
    for sub, prefix in subs:
        penalties += sub.regularization_losses(sublayer_weights(parent, prefix, params))
    return penalties


def sublayer_constraints(parent: Layer, subs: Sequence[tuple[Layer, str]],
                         params: dict[str, Any]) -> dict[str, Any]:
    """`apply_constraints` of a wrapper: each sub-layer's, on its own slice of `params`."""
    constrained = dict(params)
    for sub, prefix in subs:
        own = sub.apply_constraints(sublayer_weights(parent, prefix, params))
        constrained.update({prefix + k: v for k, v in own.items()})
    return constrained


def run_sublayer(parent: Layer, sub: Layer, prefix: str, inputs: Any, training: bool,
                 mask: Any = None) -> Any:
    """Call `sub` with the weights stored in `parent` under `prefix`, and store back the state
    it updates (BatchNormalization's statistics) under the same prefix."""
    sub.params = sublayer_weights(parent, prefix, parent.params)
    sub.state = sublayer_weights(parent, prefix, parent.state)
    sub._key = parent._key
    try:
        kwargs = {"training": training}
        if mask is not None:
            kwargs["mask"] = mask
        outputs = sub(inputs, **kwargs)
        if sub.state:
            parent.state = {**parent.state, **{prefix + k: v for k, v in sub.state.items()}}
        for loss in sub._losses:
            parent.add_loss(loss)
    finally:
        sub._losses = []
        sub._key = None
    return outputs


def adopt_weights(parent: Layer, sub: Layer, prefix: str) -> None:
    """Copy a freshly built sub-layer's weights into `parent` under `prefix`."""
    parent.params.update({prefix + k: v for k, v in sub.params.items()})
    parent.state.update({prefix + k: v for k, v in sub.state.items()})


def check_rank(layer: Layer, input_shape: Any, rank: int, layout: str) -> None:
    if len(input_shape) != rank:
        raise GraphjitError(f"{type(layer).__name__} {layer.name!r} expects inputs {layout}, "
                            f"got shape {tuple(input_shape)}")


__all__ = ["resolve_initializer", "EXTRA_INITIALIZERS", "sublayer_weights", "sublayer_penalties", "sublayer_constraints", "run_sublayer", "adopt_weights", "check_rank"]
