"""Optimizers against their reference update equations (written out independently, in float64
loops), eagerly and inside a compiled function."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit import optimizers

STEPS = 4


def reference_sgd(w, grads, lr, momentum, nesterov):
    velocity = np.zeros_like(w)
    for g in grads:
        velocity = momentum * velocity - lr * g
        w = w + (momentum * velocity - lr * g if nesterov else velocity)
    return w


def reference_adam(w, grads, lr, b1, b2, eps, weight_decay=0.0):
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        w = w - lr * weight_decay * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return w


def reference_rmsprop(w, grads, lr, rho, momentum, eps, centered):
    v, mg, mom = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for g in grads:
        v = rho * v + (1 - rho) * g * g
        denominator = v
        if centered:
            mg = rho * mg + (1 - rho) * g
            denominator = v - mg * mg
        step = lr * g / np.sqrt(denominator + eps)
        mom = momentum * mom + step
        w = w - mom
    return w


CASES = [
    (optimizers.SGD(0.1), lambda w, gs: reference_sgd(w, gs, 0.1, 0.0, False)),
    (optimizers.SGD(0.05, momentum=0.9),
     lambda w, gs: reference_sgd(w, gs, 0.05, 0.9, False)),
    (optimizers.SGD(0.05, momentum=0.8, nesterov=True),
     lambda w, gs: reference_sgd(w, gs, 0.05, 0.8, True)),
    (optimizers.Adam(0.01), lambda w, gs: reference_adam(w, gs, 0.01, 0.9, 0.999, 1e-7)),
    (optimizers.Adam(0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
     lambda w, gs: reference_adam(w, gs, 0.02, 0.8, 0.99, 1e-4)),
    (optimizers.AdamW(0.01, weight_decay=0.1),
     lambda w, gs: reference_adam(w, gs, 0.01, 0.9, 0.999, 1e-7, weight_decay=0.1)),
    (optimizers.RMSprop(0.01), lambda w, gs: reference_rmsprop(w, gs, 0.01, 0.9, 0.0, 1e-7,
                                                                False)),
    (optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True),
     lambda w, gs: reference_rmsprop(w, gs, 0.01, 0.8, 0.5, 1e-7, True)),
]
IDS = ["sgd", "sgd-momentum", "sgd-nesterov", "adam", "adam-hyper", "adamw", "rmsprop",
       "rmsprop-centered-momentum"]


def run(optimizer, params, grad_sequence, step=None):
    state = optimizer.init(params)
    for grads in grad_sequence:
        if step is None:
            params, state = optimizer.update(params, grads, state)
        else:
            params, state = step(params, grads, state)
    return params, state


@pytest.mark.parametrize("optimizer,reference", CASES, ids=IDS)
def test_matches_reference_equations_eagerly(optimizer, reference):
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,))}}
    grads = [{"dense": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=(4,))}}
             for _ in range(STEPS)]
    final, state = run(optimizer, params, grads)
    for name in ("kernel", "bias"):
        expected = reference(params["dense"][name], [g["dense"][name] for g in grads])
        np.testing.assert_allclose(final["dense"][name], expected, rtol=1e-10, atol=1e-12)
    assert int(state["step"]) == STEPS


@pytest.mark.parametrize("optimizer,reference", CASES, ids=IDS)
def test_compiled_update_matches_reference_in_float32(optimizer, reference):
    rng = np.random.default_rng(1)
    params = [rng.normal(size=(5, 2)).astype(np.float32)]
    grads = [[rng.normal(size=(5, 2)).astype(np.float32)] for _ in range(STEPS)]
    step = gj.jit(optimizer.update)
    final, state = run(optimizer, params, grads, step)
    assert final[0].dtype == np.float32, "a float32 parameter must stay float32"
    expected = reference(params[0].astype(np.float64), [g[0].astype(np.float64) for g in grads])
    np.testing.assert_allclose(final[0], expected, rtol=2e-5, atol=2e-6)
    assert step.cache_info()["misses"] == 1, "the step count must not force a retrace"


@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3),
       lr=st.floats(1e-4, 0.5), b1=st.floats(0.0, 0.99), b2=st.floats(0.5, 0.9999))
def test_adam_any_shape_and_hyperparameters(shape, lr, b1, b2):
    rng = np.random.default_rng(2)
    w = rng.normal(size=shape)
    grads = [rng.normal(size=shape) for _ in range(3)]
    final, _ = run(optimizers.Adam(lr, b1, b2), w, grads)
    np.testing.assert_allclose(final, reference_adam(w, grads, lr, b1, b2, 1e-7), rtol=1e-9,
                               atol=1e-12)


def test_state_mirrors_params_and_starts_at_zero():
    params = {"a": np.ones((2, 3)), "b": [np.ones(4)]}
    state = optimizers.Adam().init(params)
    assert set(state) == {"step", "learning_rate", "m", "v"}
    assert state["m"]["a"].shape == (2, 3) and state["v"]["b"][0].shape == (4,)
    assert not state["m"]["a"].any() and int(state["step"]) == 0


def test_get_by_name_and_errors():
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    assert isinstance(optimizers.get("SGD"), optimizers.SGD)
    custom = optimizers.RMSprop(0.1)
    assert optimizers.get(custom) is custom
    with pytest.raises(gj.GraphjitError, match="unknown optimizer"):
        optimizers.get("adagrad-typo")
    with pytest.raises(gj.GraphjitError, match="gradients"):
        optimizers.SGD().update([np.ones(2)], [np.ones(2), np.ones(2)], {"step": np.int64(0)})
