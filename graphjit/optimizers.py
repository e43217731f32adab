"""Optimizers with Keras' update equations, as pure functions of (params, grads, state).

Being pure NumPy, `update` traces into the compiled training step and also runs eagerly:

    opt = optimizers.Adam(1e-3)
    state = opt.init(params)   # {"step": int64 0-d, "learning_rate": float64 0-d, "m": .., "v": ..}
    params, state = opt.update(params, grads, state)

`params` and `grads` are the same nested dicts/lists of arrays; each slot of `state` mirrors them.
The learning rate is part of the state (an input of a compiled step, not a constant baked into
it), so a schedule or `ReduceLROnPlateau` changes it without recompiling. Scalars follow the
parameter's dtype (the step count and learning rate are cast, the other hyper-parameters are weak
Python floats), so float32 weights stay float32.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError
from graphjit.frontend.pytree import flatten, unflatten

Tree = Any


def tree_map(fn: Any, tree: Tree, *rest: Tree) -> Tree:
    """Apply `fn` leaf by leaf over trees of the same structure."""
    leaves, treedef = flatten(tree)
    others = [flatten(t)[0] for t in rest]
    return unflatten(treedef, [fn(*parts) for parts in zip(leaves, *others, strict=True)])


class Optimizer:
    """Base class: subclasses name their per-parameter slots and write `update_leaf`."""

    slots: tuple[str, ...] = ()

    def __init__(self, learning_rate: float = 0.001):
        self.learning_rate = float(learning_rate)

    def init(self, params: Tree) -> dict[str, Tree]:
        state: dict[str, Tree] = {"step": np.zeros((), np.int64),
                                  "learning_rate": np.asarray(self.learning_rate, np.float64)}
        for slot in self.slots:
            state[slot] = tree_map(np.zeros_like, params)
        return state

    def update(self, params: Tree, grads: Tree, state: dict[str, Tree]) -> tuple[Tree, dict]:
        leaves, treedef = flatten(params)
        grad_leaves, grad_def = flatten(grads)
        if len(grad_leaves) != len(leaves):
            raise GraphjitError(f"{type(self).__name__}.update: {len(grad_leaves)} gradients for "
                                f"{len(leaves)} parameters (structures {grad_def} vs {treedef})")
        slot_leaves = {slot: flatten(state[slot])[0] for slot in self.slots}
        step = state["step"] + 1
        learning_rate = state.get("learning_rate", self.learning_rate)
        new_leaves, new_slots = [], {slot: [] for slot in self.slots}
        for i, (weight, grad) in enumerate(zip(leaves, grad_leaves)):
            slots = {slot: slot_leaves[slot][i] for slot in self.slots}
            t = step.astype(weight.dtype)
            lr = learning_rate.astype(weight.dtype) if hasattr(learning_rate, "astype") \
                else learning_rate
            weight, slots = self.update_leaf(weight, grad.astype(weight.dtype), slots, t, lr)
            new_leaves.append(weight)
            for slot in self.slots:
                new_slots[slot].append(slots[slot])
        new_state = {"step": step}
        if "learning_rate" in state:
            new_state["learning_rate"] = state["learning_rate"]
        new_state.update({slot: unflatten(treedef, new_slots[slot]) for slot in self.slots})
        return unflatten(treedef, new_leaves), new_state

    def update_leaf(self, weight: Any, grad: Any, slots: dict[str, Any], t: Any,
                    lr: Any) -> tuple[Any, dict[str, Any]]:
        """One weight's update at step `t` with learning rate `lr` (both in its dtype)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "slots"}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """v = momentum*v - lr*g; w += v (nesterov: w += momentum*v - lr*g)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False):
        super().__init__(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slots = ("momentum",) if self.momentum else ()

    def update_leaf(self, weight, grad, slots, t, lr):
        if not self.momentum:
            return weight - lr * grad, slots
        velocity = self.momentum * slots["momentum"] - lr * grad
        if self.nesterov:
            weight = weight + self.momentum * velocity - lr * grad
        else:
            weight = weight + velocity
        return weight, {"momentum": velocity}


class Adam(Optimizer):
    """Keras' Adam: the bias corrections fold into the step size, epsilon outside the sqrt."""

    slots = ("m", "v")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def update_leaf(self, weight, grad, slots, t, lr):
        return self._adam(weight, grad, slots, t, lr)

    def _adam(self, weight, grad, slots, t, lr):
        b1, b2 = self.beta_1, self.beta_2
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = slots["m"] + (grad - slots["m"]) * (1 - b1)
        v = slots["v"] + (np.square(grad) - slots["v"]) * (1 - b2)
        weight = weight - alpha * m / (np.sqrt(v) + self.epsilon)
        return weight, {"m": m, "v": v}


class AdamW(Adam):
    """Adam with decoupled weight decay applied first: w -= lr * weight_decay * w."""

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
        super().__init__(learning_rate, beta_1, beta_2, epsilon)
        self.weight_decay = float(weight_decay)

    def update_leaf(self, weight, grad, slots, t, lr):
        weight = weight - weight * (lr * self.weight_decay)
        return self._adam(weight, grad, slots, t, lr)


class RMSprop(Optimizer):
    """v = rho*v + (1-rho)*g^2; step = lr*g/sqrt(v + eps) (centered: v - mean_g^2; momentum)."""

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False):
        super().__init__(learning_rate)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)
        self.slots = ("velocity",) + (("average_gradient",) if centered else ()) + (
            ("momentum",) if self.momentum else ())

    def update_leaf(self, weight, grad, slots, t, lr):
        rho = self.rho
        velocity = rho * slots["velocity"] + (1 - rho) * np.square(grad)
        new_slots = {"velocity": velocity}
        denominator = velocity
        if self.centered:
            average = rho * slots["average_gradient"] + (1 - rho) * grad
            new_slots["average_gradient"] = average
            denominator = velocity - np.square(average)
        increment = lr * grad / np.sqrt(denominator + self.epsilon)
        if self.momentum:
            increment = self.momentum * slots["momentum"] + increment
            new_slots["momentum"] = increment
        return weight - increment, new_slots


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict[str, Any]) -> Optimizer:
    classes = {cls.__name__: cls for cls in OPTIMIZERS.values()}
    name = config.get("class_name")
    if name not in classes:
        raise GraphjitError(f"unknown optimizer class {name!r} in a saved model; graphjit has "
                            f"{sorted(classes)}")
    return classes[name].from_config(config.get("config", {}))


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop,
}


def get(identifier: str | Optimizer) -> Optimizer:
    """An optimizer from a name (default hyper-parameters) or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise GraphjitError(f"unknown optimizer {identifier!r}; choose one of {sorted(OPTIMIZERS)} "
                        "or pass an optimizer instance")
