"""Real model code, written the way people write it in NumPy: eager vs graphjit (vs jax.jit).

    python benchmarks/realcode.py                 # every function, a table and the summary
    python benchmarks/realcode.py attention rnn   # only names containing these words
    python benchmarks/realcode.py --profile NAME  # graphjit's per-kernel profile of one function
    python benchmarks/realcode.py --json out.json

Each function is small-to-medium model code in the style of cs231n's layers, Nielsen's column-
vector network, min-char-rnn, attention, losses, optimiser updates, accuracy and stencils. Eager
and compiled calls are interleaved in rounds (the machine is shared), each reported number is the
median per-call time over rounds, and every function gets at least MIN_CALLS calls per system.
jax.jit runs the same source with `np` bound to `jax.numpy` when jax is importable (functions
that update arrays in place cannot run there and show "-").
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import graphjit as gj

MIN_CALLS = 200
MIN_ROUNDS = 25
ROUND_SECONDS = 0.002
F32 = np.float32


# ================================================================== the model functions

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def affine_forward(x, w, b):                       # cs231n layers.py
    out = x.reshape(x.shape[0], -1).dot(w) + b
    return out


def affine_relu_fwd_bwd(x, w, b, dout):            # cs231n layer_utils: forward, then backward
    a = x.reshape(x.shape[0], -1).dot(w) + b
    out = np.maximum(0, a)
    da = dout * (a > 0)
    dx = da.dot(w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T.dot(da)
    db = np.sum(da, axis=0)
    return out, dx, dw, db


def relu_backward(dout, x):                        # cs231n
    dx = dout.copy()
    dx[x <= 0] = 0
    return dx


def softmax_loss(x, y):                            # cs231n layers.softmax_loss
    shifted = x - np.max(x, axis=1, keepdims=True)
    z = np.sum(np.exp(shifted), axis=1, keepdims=True)
    log_probs = shifted - np.log(z)
    probs = np.exp(log_probs)
    n = x.shape[0]
    loss = -np.sum(log_probs[np.arange(n), y]) / n
    dx = probs.copy()
    dx[np.arange(n), y] -= 1
    dx /= n
    return loss, dx


def svm_loss(x, y):                                # cs231n layers.svm_loss
    n = x.shape[0]
    correct = x[np.arange(n), y]
    margins = np.maximum(0, x - correct[:, np.newaxis] + 1.0)
    margins[np.arange(n), y] = 0
    loss = np.sum(margins) / n
    num_pos = np.sum(margins > 0, axis=1)
    dx = np.zeros_like(x)
    dx[margins > 0] = 1
    dx[np.arange(n), y] -= num_pos
    dx /= n
    return loss, dx


def batchnorm_forward(x, gamma, beta):             # cs231n, train mode
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc ** 2, axis=0)
    std = np.sqrt(var + 1e-5)
    xn = xc / std
    return gamma * xn + beta, xn, std


def batchnorm_backward_alt(dout, xn, std, gamma):  # cs231n
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dx = (n * dxn - dxn.sum(axis=0) - xn * (dxn * xn).sum(axis=0)) / (n * std)
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta):
    mu = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return gamma * (x - mu) / np.sqrt(var + 1e-5) + beta


def nielsen_feedforward(a, w1, b1, w2, b2):        # Nielsen network.py, column vectors
    a = sigmoid(np.dot(w1, a) + b1)
    return sigmoid(np.dot(w2, a) + b2)


def nielsen_backprop(x, y, w1, b1, w2, b2):        # Nielsen network.py backprop, one example
    z1 = np.dot(w1, x) + b1
    a1 = sigmoid(z1)
    z2 = np.dot(w2, a1) + b2
    a2 = sigmoid(z2)
    delta2 = (a2 - y) * sigmoid(z2) * (1 - sigmoid(z2))
    nabla_w2 = np.dot(delta2, a1.transpose())
    delta1 = np.dot(w2.transpose(), delta2) * sigmoid(z1) * (1 - sigmoid(z1))
    nabla_w1 = np.dot(delta1, x.transpose())
    return delta1, nabla_w1, delta2, nabla_w2


def rnn_step(x, h, wxh, whh, why, bh, by):         # min-char-rnn, one time step
    h = np.tanh(np.dot(wxh, x) + np.dot(whh, h) + bh)
    y = np.dot(why, h) + by
    p = np.exp(y) / np.sum(np.exp(y))
    return h, p


def rnn_loss(xs, targets, h, wxh, whh, why, bh, by):   # min-char-rnn lossFun, forward, 8 steps
    loss = 0.0
    for t in range(xs.shape[0]):
        x = xs[t][:, None]
        h = np.tanh(np.dot(wxh, x) + np.dot(whh, h) + bh)
        y = np.dot(why, h) + by
        p = np.exp(y) / np.sum(np.exp(y))
        loss = loss - np.log(p[targets[t], 0])
    return loss, h


def attention(q, k, v):                            # scaled dot-product attention, one head
    scores = q @ k.T / np.sqrt(q.shape[-1])
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ v


def cross_entropy(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -logp[np.arange(logits.shape[0]), labels].mean()


def mse_loss_grad(pred, target):
    diff = pred - target
    return np.mean(diff ** 2), 2.0 * diff / diff.size


def sgd_momentum(w, dw, v, lr, mu):                # cs231n optim.sgd_momentum
    v = mu * v - lr * dw
    w = w + v
    return w, v


def adam(w, dw, m, v, t):                          # cs231n optim.adam
    beta1, beta2, eps, lr = 0.9, 0.999, 1e-8, 1e-3
    m = beta1 * m + (1 - beta1) * dw
    v = beta2 * v + (1 - beta2) * (dw ** 2)
    mt = m / (1 - beta1 ** t)
    vt = v / (1 - beta2 ** t)
    w = w - lr * mt / (np.sqrt(vt) + eps)
    return w, m, v


def argmax_accuracy(logits, labels):
    return (logits.argmax(axis=1) == labels).mean()


def argmax_onehot(logits, labels):                 # from issue 12
    pred = logits.argmax(axis=1)
    onehot = (np.arange(logits.shape[1]) == pred[:, None]).astype(np.float32)
    return pred, onehot, (pred == labels).mean()


def laplacian_stencil(u):                          # 5-point stencil, one step of heat diffusion
    lap = (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4.0 * u[1:-1, 1:-1])
    return u[1:-1, 1:-1] + 0.1 * lap


def heat_1d(u):                                    # four explicit steps, boundaries held
    for _ in range(4):
        u = np.concatenate([u[:1], u[1:-1] + 0.25 * (u[:-2] - 2 * u[1:-1] + u[2:]), u[-1:]])
    return u


def kmeans_assign(x, centers):                     # one k-means assignment + inertia
    d = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(axis=-1)
    labels = d.argmin(axis=1)
    return labels, d.min(axis=1).sum()


def logistic_grad(x, y, w):                        # logistic regression gradient
    p = sigmoid(x @ w)
    return x.T @ (p - y) / x.shape[0]


def mlp_layer_backward(x, w, dout, h):             # dW = x.T @ dout, db, dx, ReLU mask
    dout = dout * (h > 0)
    dw = x.T @ dout
    db = dout.sum(axis=0)
    dx = dout @ w.T
    return dw, db, dx


def gelu_mlp_block(x, w1, b1, w2, b2):             # a transformer MLP block (tanh GELU)
    h = x @ w1 + b1
    h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))
    return h @ w2 + b2


def two_layer_net_loss(x, y, w1, b1, w2, b2):      # cs231n two-layer net, loss and grads
    n = x.shape[0]
    h = np.maximum(0, x @ w1 + b1)
    scores = h @ w2 + b2
    scores = scores - scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(n), y]).mean()
    dscores = probs.copy()
    dscores[np.arange(n), y] -= 1
    dscores /= n
    dw2 = h.T @ dscores
    db2 = dscores.sum(axis=0)
    dh = dscores @ w2.T
    dh[h <= 0] = 0
    dw1 = x.T @ dh
    db1 = dh.sum(axis=0)
    return loss, dw1, db1, dw2, db2


# ================================================================== inputs

def _rng() -> np.random.Generator:
    return np.random.default_rng(12)


def _n(*shape: int) -> np.ndarray:
    return _rng().standard_normal(shape).astype(F32)


def _labels(n: int, classes: int) -> np.ndarray:
    return _rng().integers(0, classes, n)


@dataclass
class Case:
    name: str
    fn: Callable
    make_inputs: Callable[[], tuple]


def _small_weights(*shape: int) -> np.ndarray:
    return (_n(*shape) * 0.1).astype(F32)


CASES = [
    Case("affine_forward", affine_forward,
         lambda: (_n(64, 3, 8, 8), _small_weights(192, 100), _n(100))),
    Case("affine_relu_fwd_bwd", affine_relu_fwd_bwd,
         lambda: (_n(128, 3, 8, 8), _small_weights(192, 100), _n(100), _n(128, 100))),
    Case("relu_backward", relu_backward, lambda: (_n(128, 256), _n(128, 256))),
    Case("softmax_loss", softmax_loss, lambda: (_n(128, 10), _labels(128, 10))),
    Case("svm_loss", svm_loss, lambda: (_n(128, 10), _labels(128, 10))),
    Case("batchnorm_forward", batchnorm_forward, lambda: (_n(128, 256), _n(256), _n(256))),
    Case("batchnorm_backward_alt", batchnorm_backward_alt,
         lambda: (_n(128, 256), _n(128, 256), np.abs(_n(256)) + 0.5, _n(256))),
    Case("layernorm_forward", layernorm_forward, lambda: (_n(128, 256), _n(256), _n(256))),
    Case("nielsen_feedforward", nielsen_feedforward,
         lambda: (_n(784, 1), _small_weights(30, 784), _n(30, 1), _small_weights(10, 30),
                  _n(10, 1))),
    Case("nielsen_backprop", nielsen_backprop,
         lambda: (_n(784, 1), _n(10, 1), _small_weights(30, 784), _n(30, 1),
                  _small_weights(10, 30), _n(10, 1))),
    Case("rnn_step", rnn_step,
         lambda: (_n(65, 1), _n(100, 1), _small_weights(100, 65), _small_weights(100, 100),
                  _small_weights(65, 100), _n(100, 1), _n(65, 1))),
    Case("rnn_loss", rnn_loss,
         lambda: (np.eye(65, dtype=F32)[_labels(8, 65)], _labels(8, 65), _n(100, 1),
                  _small_weights(100, 65), _small_weights(100, 100), _small_weights(65, 100),
                  _n(100, 1), _n(65, 1))),
    Case("attention", attention, lambda: (_n(64, 32), _n(64, 32), _n(64, 32))),
    Case("cross_entropy", cross_entropy, lambda: (_n(256, 10), _labels(256, 10))),
    Case("mse_loss_grad", mse_loss_grad, lambda: (_n(256, 10), _n(256, 10))),
    Case("sgd_momentum", sgd_momentum,
         lambda: (_n(256, 100), _n(256, 100), _n(256, 100), 1e-2, 0.9)),
    Case("adam", adam, lambda: (_n(256, 100), _n(256, 100), _n(256, 100) * 0.1,
                                np.abs(_n(256, 100)) * 0.1, 3)),
    Case("argmax_accuracy", argmax_accuracy, lambda: (_n(512, 10), _labels(512, 10))),
    Case("argmax_onehot", argmax_onehot, lambda: (_n(512, 10), _labels(512, 10))),
    Case("laplacian_stencil", laplacian_stencil, lambda: (_n(128, 128),)),
    Case("heat_1d", heat_1d, lambda: (_n(4096),)),
    Case("kmeans_assign", kmeans_assign, lambda: (_n(512, 8), _n(16, 8))),
    Case("logistic_grad", logistic_grad,
         lambda: (_n(256, 64), (_n(256) > 0).astype(F32), _n(64) * 0.1)),
    Case("mlp_layer_backward", mlp_layer_backward,
         lambda: (_n(128, 256), _small_weights(256, 128), _n(128, 128), _n(128, 128))),
    Case("gelu_mlp_block", gelu_mlp_block,
         lambda: (_n(64, 128), _small_weights(128, 512), _n(512), _small_weights(512, 128),
                  _n(128))),
    Case("two_layer_net_loss", two_layer_net_loss,
         lambda: (_n(128, 192), _labels(128, 10), _small_weights(192, 100), _n(100),
                  _small_weights(100, 10), _n(10))),
]


# ================================================================== measuring

def _copies(inputs: tuple) -> tuple:
    return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in inputs)


def _leaves(value) -> list:
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [np.asarray(value)]


def _agree(expected, actual) -> bool:
    for e, a in zip(_leaves(expected), _leaves(actual), strict=True):
        a = np.asarray(a)
        if e.shape != a.shape:
            return False
        tol = 1e-3 if e.dtype.kind == "f" else 0
        if not np.allclose(e.astype(np.float64), a.astype(np.float64), rtol=tol, atol=tol):
            return False
    return True


def _jax_version(fn: Callable) -> Callable | None:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    globals_ = dict(fn.__globals__)
    globals_["np"] = jnp
    ported = types.FunctionType(fn.__code__, globals_, fn.__name__, fn.__defaults__)
    jitted = jax.jit(ported)

    def call(*args):
        return jax.block_until_ready(jitted(*args))

    return call


def _per_call(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def measure(case: Case, with_jax: bool = True) -> dict:
    inputs = case.make_inputs()
    expected = case.fn(*_copies(inputs))
    compiled = gj.jit(case.fn)
    start = time.perf_counter()
    got = compiled(*_copies(inputs))
    compile_s = time.perf_counter() - start
    systems: dict[str, Callable[[], object]] = {
        "eager": lambda: case.fn(*inputs), "graphjit": lambda: compiled(*inputs)}
    jax_call = _jax_version(case.fn) if with_jax else None
    if jax_call is not None:
        try:
            jax_inputs = _copies(inputs)
            jax_call(*jax_inputs)
            systems["jax"] = lambda: jax_call(*jax_inputs)
        except Exception:   # in-place updates and other things jax cannot trace
            pass
    once = {name: max(_per_call(call, 3), 1e-7) for name, call in systems.items()}
    calls = {name: max(1, math.ceil(ROUND_SECONDS / t)) for name, t in once.items()}
    rounds = max(MIN_ROUNDS, *(math.ceil(MIN_CALLS / c) for c in calls.values()))
    samples: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(rounds):                      # interleaved: a busy moment hits every system
        for name, call in systems.items():
            samples[name].append(_per_call(call, calls[name]))
    result = {name: statistics.median(values) for name, values in samples.items()}
    result.update(name=case.name, agree=_agree(expected, got), compile_s=compile_s,
                  calls={name: calls[name] * rounds for name in systems})
    result["speedup"] = result["eager"] / result["graphjit"]
    return result


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:10.1f}"


def report(results: list[dict]) -> str:
    lines = [f"{'function':24} {'eager us':>10} {'graphjit us':>11} {'speedup':>8} "
             f"{'jax us':>10} {'agree':>6}"]
    for r in results:
        lines.append(f"{r['name']:24} {_us(r['eager'])} {_us(r['graphjit']):>11} "
                     f"{r['speedup']:7.2f}x {_us(r.get('jax'))} {'yes' if r['agree'] else 'NO':>6}")
    speedups = [r["speedup"] for r in results]
    slower = [r["name"] for r in results if r["speedup"] < 1.0]
    lines.append(f"median speedup {statistics.median(speedups):.2f}x, geometric mean "
                 f"{math.exp(statistics.mean(math.log(s) for s in speedups)):.2f}x, "
                 f"min {min(speedups):.2f}x; slower than eager: {', '.join(slower) or 'none'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only functions whose name contains one of these")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--profile", metavar="NAME", help="print graphjit's profile of NAME")
    parser.add_argument("--no-jax", action="store_true")
    options = parser.parse_args(argv)
    if options.profile:
        case = next(c for c in CASES if c.name == options.profile)
        inputs = case.make_inputs()
        print(gj.jit(case.fn).lower(*inputs).profile(*inputs))
        return 0
    cases = [c for c in CASES if not options.names or any(n in c.name for n in options.names)]
    results = []
    for case in cases:
        results.append(measure(case, with_jax=not options.no_jax))
        print(report(results[-1:]).splitlines()[1], flush=True)
    print(report(results))
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0 if all(r["agree"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
