"""graphjit: a JIT graph compiler for plain NumPy code.

    import numpy as np, graphjit as gj

    @gj.jit
    def mlp(x, w1, b1, w2, b2):
        return np.maximum(x @ w1 + b1, 0) @ w2 + b2
"""
from graphjit.compiler.errors import (
    ArgumentError, CompileError, DTypeError, GraphjitError, ShapeError, TracerBoolError,
    UnsupportedError,
)

from .jit import JitFunction, jit
from .lowered import Lowered

__version__ = "0.1.0"

__all__ = [
    "jit", "JitFunction", "Lowered", "GraphjitError", "TracerBoolError", "UnsupportedError",
    "ShapeError", "DTypeError", "ArgumentError", "CompileError", "__version__",
]
