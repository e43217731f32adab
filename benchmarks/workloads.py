"""The benchmark workloads of ../shared/bench/workloads.md: NumPy sources, inputs, and the ports
that the peers need (Numba loops where `@njit` cannot take the NumPy source, torch line-for-line
ports, a functional JAX training step). Importing this module imports NumPy only; numba, torch
and jax are imported by the functions that build their versions.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SEED = 1234
LEARNING_RATE = 0.1


# ------------------------------------------------------------------ NumPy sources (verbatim)
def chain(x):                       # n = 1e6 and 1.6e7
    return np.tanh(x * 0.5 + 1) * (1 / (1 + np.exp(-x))) - x ** 2


def gelu(x):                        # n = 1e6 and 1.6e7
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def softmax(x):                     # (256,128) and (4096,1024)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def layernorm(x, gamma, beta):      # (256,128) and (4096,1024); gamma, beta of shape (m,)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * gamma + beta


def mlp(x, W1, b1, W2, b2):         # x (B,784), W1 (784,512), W2 (512,10); B = 256 and 4096
    return np.maximum(x @ W1 + b1, 0) @ W2 + b2


def sumsq(x):                       # n = 1e6 and 1.6e7
    return np.sum(x * x)


def scale_shift(x):                 # n = 1e8: bandwidth-bound, compare with the triad
    return x * 0.5 + 1.0


def train_step(x, t, W1, b1, W2, b2, lr):   # B = 256, t one-hot (B,10), lr = 0.1
    B = x.shape[0]
    h = x @ W1 + b1
    a = np.maximum(h, 0)
    logits = a @ W2 + b2
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -np.sum(t * logp) / B
    g = (np.exp(logp) - t) / B
    dW2 = a.T @ g
    db2 = g.sum(axis=0)
    dh = (g @ W2.T) * (h > 0)
    dW1 = x.T @ dh
    db1 = dh.sum(axis=0)
    W1 -= lr * dW1          # in-place on the arguments: the caller's arrays change
    b1 -= lr * db1
    W2 -= lr * dW2
    b2 -= lr * db2
    return loss


def add_one(x):                     # dispatch overhead: an already-compiled call on 8 elements
    return x + 1


# ------------------------------------------------------------------ inputs
def _normal(rng: np.random.Generator, shape: Any) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _he(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return _normal(rng, (fan_in, fan_out)) * np.float32(math.sqrt(2 / fan_in))


def vector_inputs(n: int) -> tuple:
    return (_normal(np.random.default_rng(SEED), n),)


def matrix_inputs(rows: int, columns: int) -> tuple:
    return (_normal(np.random.default_rng(SEED), (rows, columns)),)


def layernorm_inputs(rows: int, columns: int) -> tuple:
    rng = np.random.default_rng(SEED)
    return _normal(rng, (rows, columns)), _normal(rng, columns), _normal(rng, columns)


def mlp_inputs(batch: int) -> tuple:
    rng = np.random.default_rng(SEED)
    x = _normal(rng, (batch, 784))
    return x, _he(rng, 784, 512), _normal(rng, 512), _he(rng, 512, 10), _normal(rng, 10)


def train_step_inputs(batch: int) -> tuple:
    rng = np.random.default_rng(SEED)
    x = _normal(rng, (batch, 784))
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    w1, w2 = _he(rng, 784, 512), _he(rng, 512, 10)
    b1, b2 = np.zeros(512, np.float32), np.zeros(10, np.float32)
    return x, t, w1, b1, w2, b2, LEARNING_RATE


# ------------------------------------------------------------------ the table of workloads
@dataclass(frozen=True)
class Size:
    label: str                  # as printed: "1e6", "(256,128)", "B=256"
    params: tuple               # passed to the workload's input maker
    quick: bool = False         # part of a --quick run


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable
    make_inputs: Callable[..., tuple]
    sizes: tuple[Size, ...]
    mutates: bool = False       # updates its arguments in place (check several steps)
    # bytes a perfect implementation moves (for GB/s), from the inputs; None: not reported
    bytes_moved: Callable[[tuple], int] | None = None
    extra: dict = field(default_factory=dict)


def _read_write_bytes(inputs: tuple) -> int:
    """One read of the input and one write of an output of the same size."""
    return 2 * inputs[0].nbytes


WORKLOADS: tuple[Workload, ...] = (
    Workload("chain", chain, vector_inputs,
             (Size("1e6", (10**6,), quick=True), Size("1.6e7", (16 * 10**6,))),
             bytes_moved=_read_write_bytes),
    Workload("gelu", gelu, vector_inputs,
             (Size("1e6", (10**6,), quick=True), Size("1.6e7", (16 * 10**6,))),
             bytes_moved=_read_write_bytes),
    Workload("softmax", softmax, matrix_inputs,
             (Size("(256,128)", (256, 128), quick=True), Size("(4096,1024)", (4096, 1024)))),
    Workload("layernorm", layernorm, layernorm_inputs,
             (Size("(256,128)", (256, 128), quick=True), Size("(4096,1024)", (4096, 1024)))),
    Workload("mlp", mlp, mlp_inputs, (Size("B=256", (256,), quick=True), Size("B=4096", (4096,)))),
    Workload("sumsq", sumsq, vector_inputs,
             (Size("1e6", (10**6,), quick=True), Size("1.6e7", (16 * 10**6,)))),
    Workload("scale_shift", scale_shift, vector_inputs,
             (Size("1e6", (10**6,), quick=True), Size("1e8", (10**8,))),
             bytes_moved=_read_write_bytes),
    Workload("train_step", train_step, train_step_inputs, (Size("B=256", (256,), quick=True),),
             mutates=True),
)
BY_NAME = {w.name: w for w in WORKLOADS}


def copy_inputs(inputs: tuple) -> list:
    """Fresh copies, so a workload that mutates its arguments cannot leak into another run."""
    return [a.copy() if isinstance(a, np.ndarray) else a for a in inputs]


# ------------------------------------------------------------------ Numba
def numba_versions() -> dict[str, Callable]:
    """`@njit` of the NumPy source where Numba accepts it; explicit loops where it does not
    (Numba has no `axis=`/`keepdims=` on max/mean)."""
    from numba import njit

    @njit(cache=False)
    def softmax_rows(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            row = x[i]
            e = np.exp(row - row.max())
            out[i] = e / e.sum()
        return out

    @njit(cache=False)
    def layernorm_rows(x, gamma, beta):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            row = x[i]
            mu = row.mean()
            var = ((row - mu) ** 2).mean()
            out[i] = (row - mu) / np.sqrt(var + 1e-5) * gamma + beta
        return out

    @njit(cache=False)
    def row_max(z):
        out = np.empty((z.shape[0], 1), z.dtype)
        for i in range(z.shape[0]):
            out[i, 0] = z[i].max()
        return out

    @njit(cache=False)
    def row_sum(z):
        out = np.empty((z.shape[0], 1), z.dtype)
        for i in range(z.shape[0]):
            out[i, 0] = z[i].sum()
        return out

    @njit(cache=False)
    def numba_train_step(x, t, W1, b1, W2, b2, lr):
        B = x.shape[0]
        h = x @ W1 + b1
        a = np.maximum(h, 0)
        logits = a @ W2 + b2
        z = logits - row_max(logits)
        logp = z - np.log(row_sum(np.exp(z)))
        loss = -np.sum(t * logp) / B
        g = (np.exp(logp) - t) / B
        dW2 = np.ascontiguousarray(a.T) @ g
        db2 = g.sum(axis=0)
        dh = (g @ np.ascontiguousarray(W2.T)) * (h > 0)
        dW1 = np.ascontiguousarray(x.T) @ dh
        db1 = dh.sum(axis=0)
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2
        return loss

    return {
        "chain": njit(chain), "gelu": njit(gelu), "softmax": softmax_rows,
        "layernorm": layernorm_rows, "mlp": njit(mlp), "sumsq": njit(sumsq),
        "scale_shift": njit(scale_shift), "train_step": numba_train_step,
        "add_one": njit(add_one),
    }


def numba_triad() -> Callable:
    """`a = b + s*c` over all cores (prange): the STREAM-style bandwidth reference."""
    from numba import njit, prange

    @njit(parallel=True, fastmath=False)
    def triad(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    return triad


# ------------------------------------------------------------------ torch (line-for-line ports)
def torch_versions(torch: Any) -> dict[str, Callable]:
    def t_chain(x):
        return torch.tanh(x * 0.5 + 1) * (1 / (1 + torch.exp(-x))) - x ** 2

    def t_gelu(x):
        return 0.5 * x * (1 + torch.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))

    def t_softmax(x):
        e = torch.exp(x - x.amax(dim=-1, keepdim=True))
        return e / e.sum(dim=-1, keepdim=True)

    def t_layernorm(x, gamma, beta):
        mu = x.mean(dim=-1, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * gamma + beta

    def t_mlp(x, W1, b1, W2, b2):
        return torch.clamp_min(x @ W1 + b1, 0) @ W2 + b2

    def t_sumsq(x):
        return torch.sum(x * x)

    def t_scale_shift(x):
        return x * 0.5 + 1.0

    def t_train_step(x, t, W1, b1, W2, b2, lr):
        B = x.shape[0]
        h = x @ W1 + b1
        a = torch.clamp_min(h, 0)
        logits = a @ W2 + b2
        z = logits - logits.amax(dim=1, keepdim=True)
        logp = z - torch.log(torch.exp(z).sum(dim=1, keepdim=True))
        loss = -torch.sum(t * logp) / B
        g = (torch.exp(logp) - t) / B
        dW2 = a.T @ g
        db2 = g.sum(dim=0)
        dh = (g @ W2.T) * (h > 0)
        dW1 = x.T @ dh
        db1 = dh.sum(dim=0)
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2
        return loss

    def t_add_one(x):
        return x + 1

    return {"chain": t_chain, "gelu": t_gelu, "softmax": t_softmax, "layernorm": t_layernorm,
            "mlp": t_mlp, "sumsq": t_sumsq, "scale_shift": t_scale_shift,
            "train_step": t_train_step, "add_one": t_add_one}


# ------------------------------------------------------------------ JAX
def jax_versions(jax: Any) -> dict[str, Callable]:
    """`jax.jit` of the NumPy sources with `np` rebound to `jax.numpy`; the training step is
    functional (jit of value_and_grad): it returns the loss and the updated parameters."""
    import types

    jnp = jax.numpy

    def rebound(fn: Callable) -> Callable:
        return types.FunctionType(fn.__code__, {**fn.__globals__, "np": jnp}, fn.__name__)

    def loss_fn(params, x, t):
        W1, b1, W2, b2 = params
        logits = jnp.maximum(x @ W1 + b1, 0) @ W2 + b2
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - jnp.log(jnp.exp(z).sum(axis=1, keepdims=True))
        return -jnp.sum(t * logp) / x.shape[0]

    def functional_step(x, t, W1, b1, W2, b2, lr):
        loss, grads = jax.value_and_grad(loss_fn)((W1, b1, W2, b2), x, t)
        new = [p - lr * g for p, g in zip((W1, b1, W2, b2), grads)]
        return (loss, *new)

    versions = {name: jax.jit(rebound(BY_NAME[name].fn)) for name in BY_NAME
                if name != "train_step"}
    versions["train_step"] = jax.jit(functional_step)
    versions["add_one"] = jax.jit(add_one)
    return versions
