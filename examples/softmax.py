"""Row-wise softmax and log-softmax: reductions with their elementwise producers and consumers.

    python examples/softmax.py
    graphjit dump examples/softmax.py:log_softmax
    graphjit bench examples/softmax.py:softmax
"""
import numpy as np

import graphjit as gj


@gj.jit
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@gj.jit
def log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def example_args(rows=256, columns=128):
    """One float32 matrix of logits, shared by both functions."""
    rng = np.random.default_rng(1234)
    return (rng.standard_normal((rows, columns), dtype=np.float32) * np.float32(3),)


if __name__ == "__main__":
    (x,) = example_args()
    for function in (softmax, log_softmax):
        np.testing.assert_allclose(function(x), function.fn(x), rtol=1e-5, atol=1e-6)
        print(function.lower(x).as_text("optimized"))
        print()
        print(gj.benchmark(function, x))
        print()
