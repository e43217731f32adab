"""A two-layer perceptron forward pass (784-512-10), compiled and compared with NumPy.

    python examples/mlp.py
    graphjit dump examples/mlp.py:mlp --stage optimized
    graphjit bench examples/mlp.py:mlp
"""
import numpy as np

import graphjit as gj


@gj.jit
def mlp(x, w1, b1, w2, b2):
    return np.maximum(x @ w1 + b1, 0) @ w2 + b2


def predict(x, w1, b1, w2, b2):
    """A plain NumPy function: `graphjit dump/bench` wraps it with gj.jit itself."""
    logits = mlp.fn(x, w1, b1, w2, b2)
    return np.argmax(logits, axis=-1)


def example_args(batch=256):
    """x (batch, 784) and He-scaled weights, float32 (shared by `mlp` and `predict`)."""
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((batch, 784), dtype=np.float32)
    w1 = rng.standard_normal((784, 512), dtype=np.float32) * np.float32(np.sqrt(2 / 784))
    b1 = np.zeros(512, dtype=np.float32)
    w2 = rng.standard_normal((512, 10), dtype=np.float32) * np.float32(np.sqrt(2 / 512))
    b2 = np.zeros(10, dtype=np.float32)
    return x, w1, b1, w2, b2


if __name__ == "__main__":
    args = example_args()
    np.testing.assert_allclose(mlp(*args), mlp.fn(*args), rtol=1e-4, atol=1e-4)
    print(mlp.lower(*args).as_text("optimized"))
    print()
    print(gj.benchmark(mlp, *args))
