"""Checks the layer tests of issue 16 share: a layer's forward pass eagerly and compiled against a
NumPy reference, and its gradients against central finite differences."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import graphjit as gj

TOLERANCES = {np.dtype(np.float32): (2e-4, 2e-5), np.dtype(np.float64): (1e-9, 1e-10)}


def default_apply(layer, inputs, training):
    return layer(inputs, training=training)


def bound(layer, params, state, fn: Callable[[], Any], key=None) -> Any:
    """Run fn() with these weights bound to the layer (the layer's own are restored after)."""
    saved = layer.params, layer.state, layer._key
    layer.params, layer.state, layer._key = dict(params), dict(state), key
    try:
        return fn()
    finally:
        layer.params, layer.state, layer._key = saved


def forward(layer, apply=default_apply, training=False, target=None):
    """The layer's forward pass as a jitted function of (params, state, inputs)."""

    def run(params, state, inputs):
        return bound(layer, params, state, lambda: apply(layer, inputs, training))

    return gj.jit(run) if target is None else gj.jit(run, target=target)


def cast(tree, dtype):
    if isinstance(tree, dict):
        return {k: cast(v, dtype) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(cast(v, dtype) for v in tree)
    tree = np.asarray(tree)
    return tree.astype(dtype) if tree.dtype.kind == "f" else tree


def check_forward(layer, inputs, reference: Callable[..., Any], dtype=np.float32,
                  apply=default_apply, rtol=None, atol=None):
    """Build the layer in `dtype`, then compare eager and compiled outputs with
    `reference(params_in_float64, inputs_in_float64)` cast to `dtype`."""
    dtype = np.dtype(dtype)
    inputs = cast(inputs, dtype)
    eager = apply(layer, inputs, False)
    params64 = {k: np.asarray(v, np.float64) for k, v in {**layer.params, **layer.state}.items()}
    expected = reference(params64, cast(inputs, np.float64))
    compiled = forward(layer, apply)(layer.params, layer.state, inputs)
    default_rtol, default_atol = TOLERANCES[dtype]
    for result in (eager, compiled):
        compare(result, expected, dtype, rtol or default_rtol, atol or default_atol)
    return eager


def compare(result, expected, dtype, rtol, atol):
    if isinstance(expected, (list, tuple)):
        assert isinstance(result, (list, tuple)) and len(result) == len(expected)
        for r, e in zip(result, expected):
            compare(r, e, dtype, rtol, atol)
        return
    result = np.asarray(result)
    assert result.shape == np.shape(expected), (result.shape, np.shape(expected))
    if result.dtype.kind == "f":
        assert result.dtype == dtype, (result.dtype, dtype)
    np.testing.assert_allclose(result, np.asarray(expected, np.float64), rtol=rtol, atol=atol)


def check_gradients(layer, inputs, apply=default_apply, wrt_inputs=True, entries=4, seed=0,
                    training=False, key=None, rtol=1e-5, atol=1e-7):
    """d sum(out * r) / d weights (and float inputs), by gj.grad, against central differences
    on a few entries of each, in float64. The layer must have been built in float64."""
    rng = np.random.default_rng(seed)
    params = {k: np.asarray(v, np.float64) for k, v in layer.params.items()}
    inputs = cast(inputs, np.float64)
    probe = apply(layer, inputs, False) if key is None else bound(
        layer, params, layer.state, lambda: apply(layer, inputs, training), key)
    outs = probe if isinstance(probe, (list, tuple)) else [probe]
    weights = [rng.normal(size=np.shape(o)) for o in outs]

    def objective(params, inputs):
        out = bound(layer, params, layer.state, lambda: apply(layer, inputs, training), key)
        out = out if isinstance(out, (list, tuple)) else [out]
        return sum(np.sum(o * w) for o, w in zip(out, weights))

    grad = gj.jit(gj.grad(objective, argnums=(0, 1)), target="reference")
    grad_params, grad_inputs = grad(params, inputs)
    checks = [(params, name, grad_params[name]) for name in params]
    if wrt_inputs:
        if isinstance(inputs, list):
            checks += [(inputs, i, grad_inputs[i]) for i, v in enumerate(inputs)
                       if np.asarray(v).dtype.kind == "f"]
        elif np.asarray(inputs).dtype.kind == "f":
            holder = [inputs]
            checks.append((holder, 0, grad_inputs))
    for container, slot, analytic in checks:
        value = np.array(container[slot] if container is not None else None, dtype=np.float64)
        if value.size == 0:
            continue
        flat_indices = rng.choice(value.size, size=min(entries, value.size), replace=False)
        for flat in flat_indices:
            index = np.unravel_index(flat, value.shape)
            numeric = _central_difference(objective, params, inputs, container, slot, index)
            assert np.isclose(np.asarray(analytic)[index], numeric, rtol=rtol, atol=atol), (
                slot, index, np.asarray(analytic)[index], numeric)


def _central_difference(objective, params, inputs, container, slot, index, eps=1e-6):
    results = []
    for sign in (1, -1):
        value = np.array(container[slot], dtype=np.float64)
        value[index] += sign * eps
        if container is params:
            results.append(objective({**params, slot: value}, inputs))
        elif isinstance(inputs, list):
            moved = list(inputs)
            moved[slot] = value
            results.append(objective(params, moved))
        else:
            results.append(objective(params, value))
    return (results[0] - results[1]) / (2 * eps)


def weight_shapes(layer) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(np.shape(w))) for name, w in
            [*layer.params.items(), *layer.state.items()]]
