"""One LSTM and one CNN training step (the models of examples/imdb_lstm.py and cifar_cnn.py):
graphjit's compiled step against the same step run eagerly, beside jax.jit of a hand-written
equivalent where JAX is installed (`pip install -e ".[bench]"`). Median of 5 samples.

    python benchmarks/layer_steps.py
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
import numpy as np  # noqa: E402

import graphjit as gj  # noqa: E402
import cifar_cnn  # noqa: E402
import imdb_lstm  # noqa: E402


def timeit(fn, n=30):
    fn(); fn()
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): fn()
        samples.append((time.perf_counter() - t) / n)
    return statistics.median(samples)

def gj_times(model, x, y, key):
    params, opt, state = model.params, model.optimizer.init(model.params), model.state
    eager = model.step_function("train", jit=False)
    comp = model.step_function("train", jit=True)
    e = timeit(lambda: eager(params, opt, state, [x], [y], key), n=5)
    c = timeit(lambda: comp(params, opt, state, [x], [y], key))
    return e, c

try:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_platforms", "cpu")
except ImportError:
    jax = None

def adam(params, grads, m, v, t, lr):
    t = t + 1
    m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
    v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
    corr = jnp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    params = jax.tree.map(lambda p, m, v: p - lr * corr * m / (jnp.sqrt(v) + 1e-7), params, m, v)
    return params, m, v, t

def jax_lstm(model, x, y):
    p = {l.name: {k: jnp.asarray(v) for k, v in l.params.items()} for l in model.layers}
    emb, lstm, dense = model.layers
    def loss(p, x, y):
        e = p[emb.name]["embeddings"][x]; mask = x != 0
        k, rk, b = p[lstm.name]["kernel"], p[lstm.name]["recurrent_kernel"], p[lstm.name]["bias"]
        u = rk.shape[0]; n, T = x.shape
        proj = (e.reshape(n * T, -1) @ k).reshape(n, T, -1) + b
        h = c = jnp.zeros((n, u))
        for t in range(T):
            z = proj[:, t] + h @ rk
            i, f, g, o = jax.nn.sigmoid(z[:, :u]), jax.nn.sigmoid(z[:, u:2*u]), jnp.tanh(z[:, 2*u:3*u]), jax.nn.sigmoid(z[:, 3*u:])
            c2 = f * c + i * g; h2 = o * jnp.tanh(c2)
            keep = mask[:, t][:, None]
            h, c = jnp.where(keep, h2, h), jnp.where(keep, c2, c)
        out = jax.nn.sigmoid(h @ p[dense.name]["kernel"] + p[dense.name]["bias"])
        out = jnp.clip(out, 1e-7, 1 - 1e-7)
        return -jnp.mean(y * jnp.log(out) + (1 - y) * jnp.log(1 - out))
    return p, loss

def jax_cnn(model, x, y):
    p = {l.name: {k: jnp.asarray(v) for k, v in l.params.items()} for l in model.layers if l.params}
    L = model.layers
    def conv(x, k, b):
        return jax.nn.relu(jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b)
    def bn(x, g, b):
        mean = x.mean((0, 1, 2)); var = ((x - mean) ** 2).mean((0, 1, 2))
        return (x - mean) / jnp.sqrt(var + 1e-3) * g + b
    def loss(p, x, y):
        x = x / 255.0
        x = conv(x, p[L[1].name]["kernel"], p[L[1].name]["bias"]); x = bn(x, p[L[2].name]["gamma"], p[L[2].name]["beta"])
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = conv(x, p[L[4].name]["kernel"], p[L[4].name]["bias"]); x = bn(x, p[L[5].name]["gamma"], p[L[5].name]["beta"])
        x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4
        x = x.reshape(x.shape[0], -1)  # (Dropout omitted in the jax step)
        logits = x @ p[L[-1].name]["kernel"] + p[L[-1].name]["bias"]
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])
    return p, loss

def jax_time(p, loss, x, y):
    zeros = jax.tree.map(jnp.zeros_like, p)
    @jax.jit
    def step(p, m, v, t, x, y):
        l, g = jax.value_and_grad(loss)(p, x, y)
        p, m, v, t = adam(p, g, m, v, t, 0.01)
        return p, m, v, t, l
    args = (p, zeros, zeros, 0, jnp.asarray(x), jnp.asarray(y))
    return timeit(lambda: jax.block_until_ready(step(*args)))

def jax_column(build_loss, model, x, y) -> str:
    if jax is None:
        return "jax.jit: not installed"
    p, loss = build_loss(model, x, y)
    return f"jax.jit {jax_time(p, loss, x, y) * 1e3:.2f} ms"


def main() -> None:
    _, _, (xl, yl), _ = imdb_lstm.load(None, 200, 16)
    xl, yl = xl[:32], yl[:32, None]
    lstm_model = imdb_lstm.build(200, 16)
    e, c = gj_times(lstm_model, xl, yl, None)
    print(f"LSTM step (batch 32, 16 steps, 16 units): eager {e*1e3:.2f} ms, graphjit {c*1e3:.2f} ms "
          f"({e/c:.1f}x), {jax_column(jax_lstm, lstm_model, xl, yl)}")
    (xc, yc), _ = cifar_cnn.stand_in()
    xc, yc = xc[:32].astype(np.float32), yc[:32].reshape(-1)
    cnn = cifar_cnn.build(16)
    e, c = gj_times(cnn, xc, yc, gj.random.key(0))
    print(f"CNN step (batch 32, 16x16x3): eager {e*1e3:.2f} ms, graphjit {c*1e3:.2f} ms "
          f"({e/c:.1f}x), {jax_column(jax_cnn, cnn, xc, yc)}")


if __name__ == "__main__":
    main()
