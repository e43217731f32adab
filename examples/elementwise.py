"""Long elementwise chains (GELU, a tanh/sigmoid chain) that fuse into one loop each.

    python examples/elementwise.py
    graphjit dump examples/elementwise.py:gelu --stage llvm
    graphjit bench examples/elementwise.py:chain
"""
import numpy as np

import graphjit as gj


@gj.jit
def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


@gj.jit
def chain(x):
    return np.tanh(x * 0.5 + 1) * (1 / (1 + np.exp(-x))) - x ** 2


def example_args(n=1 << 16):
    """One float32 vector, shared by both functions."""
    rng = np.random.default_rng(1234)
    return (rng.standard_normal(n, dtype=np.float32),)


if __name__ == "__main__":
    (x,) = example_args()
    for function in (gelu, chain):
        np.testing.assert_allclose(function(x), function.fn(x), rtol=1e-5, atol=1e-6)
        print(function.lower(x))      # the optimised IR: [kN] names the fused kernel of a node
        print()
        print(gj.benchmark(function, x))
        print()
