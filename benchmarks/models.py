"""Model-level benchmarks: the "Done when" figures of issues 2 and 5.

    python benchmarks/models.py             # full sizes; prints a table, writes results-models.md
    python benchmarks/models.py --quick     # small sizes, 3 samples: a smoke test
    python benchmarks/models.py --only train_step --systems eager graphjit jax

Workloads:
- `block`: issue 2's GELU + layernorm block `(x @ w + b) -> GELU -> layernorm * g`, x (4096,1024),
  w (1024,1024). Done when graphjit beats NumPy eager.
- `matmul`: (256,784) x (784,512) float32. Done when graphjit is within 1.5x of NumPy.
- `train_step`: one training step of the MLP 784-512-10 (ReLU, sparse categorical cross-entropy
  from logits, Keras' Adam), batch 256, built with the Keras-style API and timed through
  `model.step_function("train", jit)`. Done when the compiled step beats the eager one
  (`jit=False`, the same step run op by op on NumPy). A hand-written NumPy step (forward,
  backprop, Adam, in place) is the reference every system is checked against, and JAX
  (`jit` of `value_and_grad` + Adam), torch eager (autograd + the same Adam) and
  torch.compile (compiled loss and Adam update) are timed where installed.
- `fit`: milliseconds per step of `model.fit(..., epochs=1, shuffle=False, verbose=0)` on 8
  batches of 256 (the step plus fit's own batching and bookkeeping), eager vs compiled.

The method is benchmarks/run.py's (its timing and checking helpers are reused): each system runs
in its own fresh process with the thread variables set before NumPy is imported; every result is
checked against NumPy before it is timed (training over several steps: loss and all four
parameters); times are medians of >= 7 samples of >= 20 ms after >= 3 warm-up calls.
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as harness  # noqa: E402  (sets the thread variables before NumPy is imported)

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

SEED = 1234
CHECK_STEPS = 3                      # training steps compared with NumPy, one by one
UPDATE_TOLERANCE = 0.02              # parameter changes: error / largest change (float32: ~3e-4)
LEARNING_RATE, BETA_1, BETA_2, EPSILON = 1e-3, 0.9, 0.999, 1e-7   # Keras' Adam defaults
CLASSES, HIDDEN, FEATURES = 10, 512, 784
FIT_STEPS = 8                        # batches per timed fit() epoch
GRAPHJIT_THREADS = "GRAPHJIT_NUM_THREADS"

SYSTEMS = ("numpy", "eager", "graphjit", "jax", "torch", "torch.compile")
TITLES = {"numpy": "NumPy", "eager": "eager step (jit=False)", "graphjit": "graphjit",
          "jax": "jax.jit", "torch": "torch eager", "torch.compile": "torch.compile"}
MODULE_OF = {"numpy": "numpy", "eager": "graphjit", "graphjit": "graphjit", "jax": "jax",
             "torch": "torch", "torch.compile": "torch"}
PEERS = ("jax", "torch", "torch.compile")


# ================================================================== workloads and inputs
@dataclass(frozen=True)
class Workload:
    name: str
    label: str                # as printed
    sizes: dict[str, int]     # passed to the input maker
    training: bool = False    # stateful: checked over CHECK_STEPS steps


def workloads(quick: bool) -> list[Workload]:
    """The full sizes of the issues, or small ones for a smoke test."""
    rows, features, batch = (256, 128, 64) if quick else (4096, 1024, 256)
    return [
        Workload("block", f"GELU+layernorm block x({rows},{features}) w({features},{features})",
                 {"rows": rows, "features": features}),
        Workload("matmul", "matmul (256,784)x(784,512)", {"rows": 256, "inner": 784,
                                                          "columns": 512}),
        Workload("train_step", f"MLP 784-512-10 Adam train step, batch {batch}",
                 {"batch": batch}, training=True),
        Workload("fit", f"fit() per step, MLP 784-512-10 Adam, batch {batch}",
                 {"batch": batch}, training=True),
    ]


def block(x, w, b, g):              # issue 2, verbatim
    h = x @ w + b
    h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))   # GELU
    mu = h.mean(axis=-1, keepdims=True)
    var = ((h - mu) ** 2).mean(axis=-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-5) * g


def matmul(a, b):
    return a @ b


FUNCTIONS = {"block": block, "matmul": matmul}


def _normal(rng: np.random.Generator, shape: Any, scale: float = 1.0) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)


def block_inputs(rows: int, features: int) -> tuple:
    rng = np.random.default_rng(SEED)
    return (_normal(rng, (rows, features)), _normal(rng, (features, features), features ** -0.5),
            _normal(rng, features, 0.1), 1 + _normal(rng, features, 0.1))


def matmul_inputs(rows: int, inner: int, columns: int) -> tuple:
    rng = np.random.default_rng(SEED)
    return _normal(rng, (rows, inner)), _normal(rng, (inner, columns), inner ** -0.5)


@dataclass
class TrainingData:
    x: np.ndarray               # (samples, 784) float32
    labels: np.ndarray          # (samples,) int64
    params: list[np.ndarray]    # W1 (784,512), b1, W2 (512,10), b2: He-scaled, small biases
    batch: int


def training_data(batch: int, batches: int = 1) -> TrainingData:
    rng = np.random.default_rng(SEED)
    samples = batch * batches
    x = _normal(rng, (samples, FEATURES))
    labels = rng.integers(0, CLASSES, samples).astype(np.int64)
    params = [_normal(rng, (FEATURES, HIDDEN), math.sqrt(2 / FEATURES)),
              _normal(rng, HIDDEN, 0.01),
              _normal(rng, (HIDDEN, CLASSES), math.sqrt(2 / HIDDEN)),
              _normal(rng, CLASSES, 0.01)]
    return TrainingData(x, labels, params, batch)


# ================================================================== runners
class Runner:
    """One system running one workload: `step()` is the timed call, `result()` the values
    compared with NumPy's (the output, or [loss, W1, b1, W2, b2] after the last step)."""

    def step(self) -> None:
        raise NotImplementedError

    def result(self) -> list[np.ndarray]:
        raise NotImplementedError

    steps_per_call = 1          # training steps one `step()` runs (fit: a whole epoch)


class CallRunner(Runner):
    """A pure function on fixed arguments; `sync` waits for asynchronous systems."""

    def __init__(self, fn: Callable, args: tuple, to_numpy: Callable = np.asarray,
                 sync: Callable = lambda value: value):
        self.fn, self.args, self.to_numpy, self.sync = fn, args, to_numpy, sync
        self.output = None

    def step(self) -> None:
        self.output = self.sync(self.fn(*self.args))

    def result(self) -> list[np.ndarray]:
        return [self.to_numpy(self.output)]


class NumpyTrainRunner(Runner):
    """The hand-written reference: forward, backprop and Keras' Adam, updating in place."""

    def __init__(self, data: TrainingData):
        self.params = [p.copy() for p in data.params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0
        self.use_batch(data, 0)
        self.loss = None

    def use_batch(self, data: TrainingData, index: int) -> None:
        rows = slice(index * data.batch, (index + 1) * data.batch)
        self.x = data.x[rows]
        self.onehot = np.eye(CLASSES, dtype=np.float32)[data.labels[rows]]

    def gradients(self) -> list[np.ndarray]:
        W1, b1, W2, b2 = self.params
        x, onehot = self.x, self.onehot
        h = x @ W1 + b1
        a = np.maximum(h, 0)
        logits = a @ W2 + b2
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        self.loss = -np.sum(onehot * logp) / x.shape[0]
        g = (np.exp(logp) - onehot) / np.float32(x.shape[0])
        dh = (g @ W2.T) * (h > 0)
        return [x.T @ dh, dh.sum(axis=0), a.T @ g, g.sum(axis=0)]

    def step(self) -> None:
        grads = self.gradients()
        self.t += 1
        alpha = np.float32(LEARNING_RATE * math.sqrt(1 - BETA_2 ** self.t)
                           / (1 - BETA_1 ** self.t))
        for weight, grad, m, v in zip(self.params, grads, self.m, self.v):
            m += (grad - m) * np.float32(1 - BETA_1)
            v += (np.square(grad) - v) * np.float32(1 - BETA_2)
            weight -= alpha * m / (np.sqrt(v) + np.float32(EPSILON))

    def result(self) -> list[np.ndarray]:
        return [np.asarray(self.loss), *self.params]


def reference_after(data: TrainingData, steps: int, batch_indices: list[int]) -> list:
    """NumPy's [loss, W1, b1, W2, b2] after each of `steps` steps on the given batches."""
    runner = NumpyTrainRunner(data)
    results = []
    for index in batch_indices[:steps]:
        runner.use_batch(data, index)
        runner.step()
        results.append([r.copy() for r in runner.result()])
    return results


def keras_model(data: TrainingData) -> Any:
    """The MLP through the Keras-style API, starting from the shared weights."""
    import graphjit as gj
    from graphjit import layers, losses, optimizers

    model = gj.Sequential([
        layers.Input(shape=(FEATURES,)),
        layers.Dense(HIDDEN, activation="relu", name="hidden"),
        layers.Dense(CLASSES, name="logits"),
    ])
    model.compile(optimizer=optimizers.Adam(LEARNING_RATE, BETA_1, BETA_2, EPSILON),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    W1, b1, W2, b2 = (p.copy() for p in data.params)
    model.set_params({"hidden": {"kernel": W1, "bias": b1},
                      "logits": {"kernel": W2, "bias": b2}})
    return model


def _flat_params(params: dict) -> list[np.ndarray]:
    return [np.asarray(params[layer][name]) for layer in ("hidden", "logits")
            for name in ("kernel", "bias")]


class KerasStepRunner(Runner):
    """`model.step_function("train", jit)` with its outputs threaded back in, as fit does."""

    def __init__(self, data: TrainingData, use_jit: bool):
        model = keras_model(data)
        self.fn = model.step_function("train", use_jit)
        self.params, self.state = model.params, model.state
        self.opt_state = model.optimizer.init(self.params)
        self.xs, self.ys = [data.x[:data.batch]], [data.labels[:data.batch]]
        self.loss = None

    def step(self) -> None:
        self.params, self.opt_state, self.state, self.loss, _ = self.fn(
            self.params, self.opt_state, self.state, self.xs, self.ys, None)

    def result(self) -> list[np.ndarray]:
        return [np.asarray(self.loss), *_flat_params(self.params)]


class KerasFitRunner(Runner):
    """One epoch of `model.fit` over FIT_STEPS batches (in order) per call."""

    def __init__(self, data: TrainingData, use_jit: bool):
        self.model, self.data, self.use_jit = keras_model(data), data, use_jit
        self.steps_per_call = len(data.x) // data.batch
        self.history = None

    def step(self) -> None:
        self.history = self.model.fit(self.data.x, self.data.labels, epochs=1,
                                      batch_size=self.data.batch, shuffle=False, verbose=0,
                                      jit=self.use_jit)

    def result(self) -> list[np.ndarray]:
        return _flat_params(self.model.params)


# ------------------------------------------------------------------ JAX
def jax_train_step(jax: Any) -> Callable:
    """jit of value_and_grad plus Keras' Adam, functional: returns the new state."""
    jnp = jax.numpy

    def loss_fn(params, x, labels):
        W1, b1, W2, b2 = params
        logits = jnp.maximum(x @ W1 + b1, 0) @ W2 + b2
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    def step(params, m, v, t, x, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, labels)
        t = t + 1
        alpha = LEARNING_RATE * jnp.sqrt(1 - BETA_2 ** t) / (1 - BETA_1 ** t)
        m = [mi + (g - mi) * (1 - BETA_1) for mi, g in zip(m, grads)]
        v = [vi + (g * g - vi) * (1 - BETA_2) for vi, g in zip(v, grads)]
        params = [p - alpha * mi / (jnp.sqrt(vi) + EPSILON) for p, mi, vi in zip(params, m, v)]
        return loss, params, m, v, t

    return jax.jit(step)


class JaxTrainRunner(Runner):
    def __init__(self, data: TrainingData):
        import jax

        self.jax, self.fn = jax, jax_train_step(jax)
        self.params = [jax.device_put(p) for p in data.params]
        self.m = [jax.numpy.zeros_like(p) for p in self.params]
        self.v = [jax.numpy.zeros_like(p) for p in self.params]
        self.t = jax.numpy.zeros((), jax.numpy.float32)
        self.x = jax.device_put(data.x[:data.batch])
        self.labels = jax.device_put(data.labels[:data.batch].astype(np.int32))
        self.loss = None

    def step(self) -> None:
        out = self.fn(self.params, self.m, self.v, self.t, self.x, self.labels)
        self.loss, self.params, self.m, self.v, self.t = self.jax.block_until_ready(out)

    def result(self) -> list[np.ndarray]:
        return [np.asarray(self.loss), *(np.asarray(p) for p in self.params)]


def jax_function(name: str) -> Callable:
    """jax.jit of the NumPy source with `np` rebound to jax.numpy."""
    import jax

    fn = FUNCTIONS[name]
    rebound = types.FunctionType(fn.__code__, {**fn.__globals__, "np": jax.numpy}, fn.__name__)
    return jax.jit(rebound)


# ------------------------------------------------------------------ torch
def torch_function(name: str, torch: Any) -> Callable:
    def t_block(x, w, b, g):            # line-for-line port
        h = x @ w + b
        h = 0.5 * h * (1 + torch.tanh(0.7978845608 * (h + 0.044715 * h**3)))
        mu = h.mean(dim=-1, keepdim=True)
        var = ((h - mu) ** 2).mean(dim=-1, keepdim=True)
        return (h - mu) / torch.sqrt(var + 1e-5) * g

    def t_matmul(a, b):
        return a @ b

    return {"block": t_block, "matmul": t_matmul}[name]


def torch_adam_update(params: list, grads: list, m: list, v: list, alpha: Any) -> None:
    """Keras' Adam in place (epsilon outside the sqrt, unscaled): `torch.optim.Adam` scales its
    epsilon by the bias correction, which moves small-gradient weights by up to ~70% of a step
    on the first steps and would fail the update check."""
    for weight, grad, mean, square in zip(params, grads, m, v):
        mean.add_((grad - mean) * (1 - BETA_1))
        square.add_((grad * grad - square) * (1 - BETA_2))
        weight.sub_(alpha * mean / (square.sqrt() + EPSILON))


class TorchTrainRunner(Runner):
    """Autograd and Keras' Adam (as the JAX step); compiled: torch.compile of the loss (forward
    and, through AOTAutograd, backward) and of the update (alpha a 0-d tensor, so a new step
    count does not recompile)."""

    def __init__(self, data: TrainingData, compiled: bool):
        import torch

        self.torch = torch
        self.params = [torch.from_numpy(p.copy()).requires_grad_() for p in data.params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self.x = torch.from_numpy(data.x[:data.batch].copy())
        self.labels = torch.from_numpy(data.labels[:data.batch].copy())
        self.loss_fn = torch.compile(self._loss) if compiled else self._loss
        self.update = torch.compile(torch_adam_update) if compiled else torch_adam_update
        self.loss = None

    def _loss(self, params, x, labels):
        W1, b1, W2, b2 = params
        logits = self.torch.relu(x @ W1 + b1) @ W2 + b2
        return self.torch.nn.functional.cross_entropy(logits, labels)

    def step(self) -> None:
        torch = self.torch
        for weight in self.params:
            weight.grad = None
        loss = self.loss_fn(self.params, self.x, self.labels)
        loss.backward()
        self.t += 1
        alpha = torch.tensor(LEARNING_RATE * math.sqrt(1 - BETA_2 ** self.t)
                             / (1 - BETA_1 ** self.t), dtype=torch.float32)
        with torch.no_grad():
            self.update(self.params, [w.grad for w in self.params], self.m, self.v, alpha)
        self.loss = loss.detach()

    def result(self) -> list[np.ndarray]:
        return [self.loss.numpy(), *(p.detach().numpy() for p in self.params)]


# ------------------------------------------------------------------ the table of runners
def input_maker(workload: Workload) -> Callable[[], Any]:
    makers = {"block": lambda: block_inputs(**workload.sizes),
              "matmul": lambda: matmul_inputs(**workload.sizes),
              "train_step": lambda: training_data(workload.sizes["batch"]),
              "fit": lambda: training_data(workload.sizes["batch"], FIT_STEPS)}
    return makers[workload.name]


def numpy_runner(workload: Workload, inputs: Any) -> Runner | None:
    builders = {"block": lambda: CallRunner(block, inputs),
                "matmul": lambda: CallRunner(matmul, inputs),
                "train_step": lambda: NumpyTrainRunner(inputs)}
    return builders.get(workload.name, lambda: None)()


def eager_runner(workload: Workload, inputs: Any) -> Runner | None:
    builders = {"train_step": lambda: KerasStepRunner(inputs, use_jit=False),
                "fit": lambda: KerasFitRunner(inputs, use_jit=False)}
    return builders.get(workload.name, lambda: None)()


def graphjit_runner(workload: Workload, inputs: Any) -> Runner | None:
    import graphjit as gj

    builders = {"block": lambda: CallRunner(gj.jit(block), inputs),
                "matmul": lambda: CallRunner(gj.jit(matmul), inputs),
                "train_step": lambda: KerasStepRunner(inputs, use_jit=True),
                "fit": lambda: KerasFitRunner(inputs, use_jit=True)}
    return builders.get(workload.name, lambda: None)()


def jax_runner(workload: Workload, inputs: Any) -> Runner | None:
    import jax

    if workload.name == "train_step":
        return JaxTrainRunner(inputs)
    if workload.name == "fit":
        return None
    native = tuple(jax.device_put(a) for a in inputs)
    return CallRunner(jax_function(workload.name), native, sync=jax.block_until_ready)


def torch_runner(workload: Workload, inputs: Any, compiled: bool = False) -> Runner | None:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", harness.CORES)))
    if workload.name == "train_step":
        return TorchTrainRunner(inputs, compiled)
    if workload.name == "fit":
        return None
    fn = torch_function(workload.name, torch)
    fn = torch.compile(fn) if compiled else fn
    native = tuple(torch.from_numpy(a) for a in inputs)

    def call(*args):
        with torch.no_grad():
            return fn(*args)

    return CallRunner(call, native, to_numpy=lambda t: t.detach().numpy())


RUNNERS: dict[str, Callable[[Workload, Any], Runner | None]] = {
    "numpy": numpy_runner, "eager": eager_runner, "graphjit": graphjit_runner,
    "jax": jax_runner, "torch": torch_runner,
    "torch.compile": lambda workload, inputs: torch_runner(workload, inputs, compiled=True),
}


# ================================================================== checking and timing (worker)
def expected_results(workload: Workload, inputs: Any) -> list[list[np.ndarray]]:
    """NumPy's values after each checked call: one call, or CHECK_STEPS training steps
    (fit: one epoch over its batches in order, so only the final weights)."""
    if workload.name == "fit":
        batches = len(inputs.x) // inputs.batch
        return [reference_after(inputs, batches, list(range(batches)))[-1][1:]]
    if workload.training:
        return reference_after(inputs, CHECK_STEPS, [0] * CHECK_STEPS)
    return [[np.asarray(FUNCTIONS[workload.name](*inputs))]]


def compare_update(want: np.ndarray, got: np.ndarray, initial: np.ndarray) -> dict[str, Any]:
    """NumPy's comparison of a trained parameter, made strict enough to see the optimizer: an
    Adam step (~1e-3) hides under its absolute tolerance, so the change since the start must also
    agree to UPDATE_TOLERANCE of the largest change."""
    result = harness.compare(want, got)
    moved_want = want.astype(np.float64) - initial
    moved_got = np.asarray(got, np.float64) - initial
    largest = float(np.max(np.abs(moved_want))) if moved_want.size else 0.0
    error = float(np.max(np.abs(moved_got - moved_want))) / largest if largest else 0.0
    if result["ok"] and error > UPDATE_TOLERANCE:
        result.update(ok=False, why=f"parameter update off by {error:.1%} of the largest one")
    return result


def check(runner: Runner, expected: list[list[np.ndarray]],
          initial: list[np.ndarray] | None = None) -> tuple[dict[str, Any], float]:
    """(the worst comparison over every checked call and value, seconds of the first call).
    With the `initial` parameters, the last len(initial) values are parameters whose updates
    are compared too."""
    worst = {"ok": True, "dtype": True, "error": 0.0, "why": ""}
    first_call_s = 0.0
    for call, wanted in enumerate(expected):
        start = time.perf_counter()
        runner.step()
        first_call_s = first_call_s or time.perf_counter() - start
        got_values = runner.result()
        starts = [None] * len(wanted)
        if initial is not None:
            starts[len(wanted) - len(initial):] = initial
        for want, got, begin in zip(wanted, got_values, starts, strict=True):
            result = (harness.compare(want, got) if begin is None
                      else compare_update(want, got, begin))
            if not result["ok"] and worst["ok"]:
                result["why"] = result["why"] or f"differs after call {call + 1}"
                worst.update(result)
            worst["dtype"] = worst["dtype"] and result["dtype"]
            worst["error"] = max(worst["error"], result["error"])
    return worst, first_call_s


def measure(system: str, workload: Workload, plan: dict[str, float]) -> dict[str, Any] | None:
    inputs = input_maker(workload)()
    try:
        runner = RUNNERS[system](workload, inputs)
        if runner is None:
            return None
        initial = inputs.params if workload.training else None
        verdict, first_call_s = check(runner, expected_results(workload, inputs), initial)
        samples = harness.time_call(runner.step, plan)
    except Exception as exc:   # one failing cell must not lose the others
        return {"failed": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    per_step = [s / runner.steps_per_call for s in samples]
    return {"median_s": statistics.median(per_step), "best_s": min(per_step),
            "samples": per_step, "check": verdict, "first_call_s": first_call_s}


def run_worker(options: argparse.Namespace) -> dict[str, Any]:
    plan = harness.timing_plan(options.quick)
    cells = {}
    for workload in selected(options):
        cell = measure(options.worker, workload, plan)
        if cell is not None:
            cells[workload.name] = cell
    return {"system": options.worker, "cells": cells}


# ================================================================== driver (parent process)
def selected(options: argparse.Namespace) -> list[Workload]:
    return [w for w in workloads(options.quick) if not options.only or w.name in options.only]


def spawn(arguments: list[str], threads: int) -> dict[str, Any]:
    """Run this script in a fresh process (thread variables set) and read back its JSON."""
    environment = {v: str(threads) for v in (*harness.THREAD_VARIABLES, GRAPHJIT_THREADS)}
    return harness.spawn(arguments, environment, script=__file__)


def available_systems(requested: list[str] | None) -> tuple[list[str], list[str]]:
    chosen, missing = [], []
    for name in requested or SYSTEMS:
        found = importlib.util.find_spec(MODULE_OF[name]) is not None
        (chosen if found else missing).append(name)
    return chosen, missing


def valid_time(cell: dict | None, statistic: str) -> float | None:
    """The cell's time (`median_s` or `best_s`) if it ran and matched NumPy."""
    return cell[statistic] if harness.valid_time(cell) else None


def cell_text(cell: dict | None, system: str, workload: str, footnotes: list[str],
              statistic: str) -> str:
    if cell is None:
        return "-"
    if "failed" in cell:
        footnotes.append(f"{TITLES[system]} {workload} failed: {cell['failed']}")
        return "failed"
    text = harness.format_ms(cell[statistic])
    if not cell["check"]["ok"]:
        footnotes.append(f"{TITLES[system]} {workload}: WRONG vs NumPy (max rel err "
                         f"{cell['check']['error']:.2g}; {cell['check']['why']})")
        return text + " (wrong)"
    if not cell["check"]["dtype"]:
        footnotes.append(f"{TITLES[system]} {workload}: values match NumPy, dtype differs")
        return text + " (dtype)"
    return text


def ratio(numerator: float | None, denominator: float | None) -> str:
    return f"{numerator / denominator:.2f}x" if numerator and denominator else "-"


def baseline_of(workload: Workload, times: dict[str, float | None]) -> float | None:
    """What graphjit must beat: the eager Keras step for training, NumPy otherwise."""
    return times.get("eager") if workload.name in ("train_step", "fit") else times.get("numpy")


def timing_table(workload_list: list[Workload], systems: list[str], results: dict[str, dict],
                 statistic: str = "median_s") -> tuple[list[str], list[str]]:
    footnotes: list[str] = []
    peers = [s for s in systems if s in PEERS]
    ratio_titles = ["eager / graphjit"] + [f"{TITLES[p]} / graphjit" for p in peers]
    header = ["workload", *(TITLES[s] for s in systems), *ratio_titles]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workload_list:
        cells = {s: results.get(s, {}).get("cells", {}).get(workload.name) for s in systems}
        row = [workload.label] + [cell_text(cells[s], s, workload.name, footnotes, statistic)
                                  for s in systems]
        times = {s: valid_time(cells[s], statistic) for s in systems}
        ours = times.get("graphjit")
        row.append(ratio(baseline_of(workload, times), ours))
        row += [ratio(times[p], ours) for p in peers]
        lines.append("| " + " | ".join(row) + " |")
    return lines, footnotes


def first_call_table(workload_list: list[Workload], systems: list[str],
                     results: dict[str, dict]) -> list[str]:
    compiling = [s for s in systems if s in ("graphjit", "jax", "torch.compile")]
    lines = ["| first call, s (trace + compile + run) | " + " | ".join(
        TITLES[s] for s in compiling) + " |", "|---|" + "---|" * len(compiling)]
    for workload in workload_list:
        values = []
        for system in compiling:
            cell = results.get(system, {}).get("cells", {}).get(workload.name) or {}
            values.append(f"{cell['first_call_s']:.2f}" if "first_call_s" in cell else "-")
        lines.append(f"| {workload.label} | " + " | ".join(values) + " |")
    return lines


def done_when(workload_list: list[Workload], results: dict[str, dict]) -> list[str]:
    """The issues' criteria, read off this run."""
    def time_of(system: str, name: str, statistic: str = "median_s") -> float | None:
        return valid_time(results.get(system, {}).get("cells", {}).get(name), statistic)

    criteria = [("block", "numpy", 1.0, "issue 2: compiled beats NumPy eager on the block"),
                ("matmul", "numpy", 1 / 1.5, "issue 2: matmul within 1.5x of NumPy"),
                ("train_step", "eager", 1.0,
                 "issue 5: compiled training step faster than the eager step")]
    names = {w.name for w in workload_list}
    lines = []
    for name, baseline, needed, text in criteria:
        if name not in names:
            continue
        ours, theirs = time_of("graphjit", name), time_of(baseline, name)
        if not ours or not theirs:
            lines.append(f"- {text}: not measured")
            continue
        verdict = "met" if theirs / ours >= needed else "NOT met"
        best = ratio(time_of(baseline, name, "best_s"), time_of("graphjit", name, "best_s"))
        lines.append(f"- {text}: {TITLES[baseline]} / graphjit = {theirs / ours:.2f}x "
                     f"(needs >= {needed:.2f}x): **{verdict}** (best samples: {best})")
    return lines


def build_report(options: argparse.Namespace, systems: list[str], missing: list[str],
                 results: dict[str, dict]) -> str:
    workload_list = selected(options)
    table, footnotes = timing_table(workload_list, systems, results)
    best_table, _ = timing_table(workload_list, systems, results, "best_s")
    plan = harness.timing_plan(options.quick)
    lines = [
        "# graphjit model-level benchmarks" + (" (--quick)" if options.quick else ""), "",
        f"{harness.machine_line()} · {options.threads} thread(s) per system", "",
        "Command: `" + " ".join(["python benchmarks/models.py", *options.argv]) + "`", "",
        f"Median ms per call (per training step for `fit`) of {int(plan['samples'])} samples of "
        f">= {plan['min_time'] * 1e3:.0f} ms after {int(plan['warmup'])} warm-ups, best of "
        f"{options.rounds} interleaved round(s); each system in its own fresh process per round"
        "; every result checked against NumPy first (training: loss and "
        f"all parameters after each of {CHECK_STEPS} steps, their changes to "
        f"{UPDATE_TOLERANCE:.0%}; fit: the weights after one epoch). "
        "Ratios > 1: graphjit is faster. `eager / graphjit` compares with NumPy for block and "
        "matmul and with the eager Keras step (`jit=False`) for training. NumPy's training step "
        "is hand-written (forward, backprop, Adam in place).", "",
        *table, "",
    ]
    if missing:
        lines += [f"Not installed here (skipped): {', '.join(TITLES[m] for m in missing)}.", ""]
    for system in (s for s in systems if "failed" in results.get(s, {})):
        footnotes.append(f"{TITLES[system]} worker failed: {results[system]['failed']}")
    if footnotes:
        lines += [f"- {note}" for note in footnotes] + [""]
    lines += ["## Done when", "", *done_when(workload_list, results), ""]
    lines += ["## Best sample", "", "The fastest sample (ms) over all rounds: on a shared machine "
              "other processes only ever add time, so these ratios are the steadier ones.", "",
              *best_table, ""]
    lines += ["## First call", "", *first_call_table(workload_list, systems, results), ""]
    return "\n".join(lines)


def measure_rounds(options: argparse.Namespace, systems: list[str]) -> dict[str, dict]:
    """Every system once per round, interleaved, each time in a fresh process; per cell the
    best round is kept: the machine is shared, and other processes only ever add time."""
    arguments = (["--quick"] if options.quick else []) + (
        ["--only", *options.only] if options.only else [])
    rounds: dict[str, list[dict]] = {system: [] for system in systems}
    for number in range(options.rounds):
        for system in systems:
            print(f"  round {number + 1}/{options.rounds}: {TITLES[system]} ...",
                  file=sys.stderr, flush=True)
            rounds[system].append(spawn(["--worker", system, *arguments], options.threads))
    return {system: best_of_rounds(reports) for system, reports in rounds.items()}


def best_of_rounds(reports: list[dict]) -> dict[str, Any]:
    """One worker report: per workload the fastest correct round (else the first one seen),
    with every round's median kept as `round_medians_s`."""
    cells: dict[str, list[dict]] = {}
    for report in reports:
        for name, cell in report.get("cells", {}).items():
            cells.setdefault(name, []).append(cell)
    merged: dict[str, Any] = {"cells": {}}
    for name, candidates in cells.items():
        timed = [c for c in candidates if harness.valid_time(c)]
        best = min(timed, key=lambda c: c["median_s"]) if timed else candidates[0]
        merged["cells"][name] = {**best, "round_medians_s": [c.get("median_s")
                                                             for c in candidates]}
        if timed:
            merged["cells"][name]["best_s"] = min(c["best_s"] for c in timed)
    failures = [r["failed"] for r in reports if "failed" in r]
    if failures and not cells:
        merged["failed"] = failures[0]
    return merged


def run_driver(options: argparse.Namespace) -> int:
    systems, missing = available_systems(options.systems)
    if not systems:
        print("no requested system is importable", file=sys.stderr)
        return 1
    output = options.output or os.path.join(
        HERE, "results-models-quick.md" if options.quick else "results-models.md")
    results = measure_rounds(options, systems)
    report = build_report(options, systems, missing, results)
    print(report)
    with open(output, "w") as handle:
        handle.write(report + "\n")
    with open(os.path.splitext(output)[0] + ".json", "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"\nwritten to {output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    names = [w.name for w in workloads(quick=False)]
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few samples")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=names,
                        help="workloads to run: " + ", ".join(names))
    parser.add_argument("--systems", nargs="+", metavar="SYSTEM", choices=list(SYSTEMS),
                        help="systems to run (default: all importable): " + ", ".join(SYSTEMS))
    parser.add_argument("--output", metavar="PATH", help="the markdown report (default "
                        "benchmarks/results-models.md, or results-models-quick.md with --quick)")
    parser.add_argument("--rounds", type=int, metavar="N", help="run every system N times, "
                        "interleaved, and keep each cell's best round (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=harness.CORES, metavar="N",
                        help="threads for BLAS, OpenMP, Numba, torch and graphjit (default: the "
                        f"core count, {harness.CORES}); 1 is steadier on a busy machine")
    parser.add_argument("--worker", choices=list(SYSTEMS), help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = build_parser().parse_args(argv)
    options.argv = argv
    if options.rounds is None:
        options.rounds = 1 if options.quick else 3
    if options.worker:
        with open(options.json, "w") as handle:
            json.dump(run_worker(options), handle)
        return 0
    return run_driver(options)


if __name__ == "__main__":
    sys.exit(main())
