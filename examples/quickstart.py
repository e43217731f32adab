"""graphjit quickstart: compile a GELU + layernorm block, check it, look inside it, time it.

    python examples/quickstart.py [PICTURE.svg]

Also usable from the command line (inputs come from `example_args_block()` below):
    graphjit dump examples/quickstart.py:block
    graphjit bench examples/quickstart.py:block
"""
import os
import sys
import tempfile

import numpy as np

import graphjit as gj


@gj.jit
def block(x, w, b, g):
    h = x @ w + b
    h = 0.5 * h * (1 + np.tanh(0.7978845608 * (h + 0.044715 * h**3)))   # GELU
    mu = h.mean(axis=-1, keepdims=True)
    var = ((h - mu) ** 2).mean(axis=-1, keepdims=True)
    return (h - mu) / np.sqrt(var + 1e-5) * g


def example_args_block(batch=512, features=256, hidden=512):
    """float32 inputs: x (batch, features), w (features, hidden), b and g (hidden,)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, features), dtype=np.float32)
    w = rng.standard_normal((features, hidden), dtype=np.float32) * np.float32(features ** -0.5)
    b = rng.standard_normal(hidden, dtype=np.float32) * np.float32(0.1)
    g = np.ones(hidden, dtype=np.float32)
    return x, w, b, g


def main(picture_path):
    args = example_args_block()

    y = block(*args)                    # traced, optimised, compiled, run
    expected = block.fn(*args)          # the undecorated NumPy function
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    print(f"compiled block matches NumPy: output {y.dtype}{list(y.shape)}\n")

    lowered = block.lower(*args)        # every stage of this compilation
    print(lowered)                      # the optimised IR, one node per line with its source line
    print(f"\ngraph picture: {lowered.render(picture_path)}\n")

    print(gj.benchmark(block, *args))   # eager NumPy vs compiled, and the compile time


if __name__ == "__main__":
    default_picture = os.path.join(tempfile.gettempdir(), "graphjit_block.svg")
    main(sys.argv[1] if len(sys.argv) > 1 else default_picture)
