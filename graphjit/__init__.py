"""graphjit: a JIT graph compiler for plain NumPy code.

    import numpy as np, graphjit as gj

    @gj.jit
    def mlp(x, w1, b1, w2, b2):
        return np.maximum(x @ w1 + b1, 0) @ w2 + b2
"""
import importlib
from typing import Any

from graphjit.compiler.errors import (
    AllocationError, ArgumentError, CompileError, ConfigurationError, DTypeError, GraphjitError, ShapeError,
    TracerBoolError, UnsupportedError, LinAlgError,
)

from .jit import JitFunction, jit
from .lowered import Lowered

__version__ = "0.1.0"

# Public names that live in their own modules, imported on first use so `import graphjit` stays
# fast: name -> (module, attribute or None for the module itself).
_LAZY: dict[str, tuple[str, str | None]] = {
    "grad": ("graphjit.transforms", "grad"),
    "value_and_grad": ("graphjit.transforms", "value_and_grad"),
    "vjp": ("graphjit.transforms", "vjp"),
    "random": ("graphjit.random", None),
    "layers": ("graphjit.layers", None),
    "models": ("graphjit.models", None),
    "Sequential": ("graphjit.models", "Sequential"),
    "Model": ("graphjit.models", "Model"),
    "optimizers": ("graphjit.optimizers", None),
    "losses": ("graphjit.losses", None),
    "metrics": ("graphjit.metrics", None),
    "callbacks": ("graphjit.callbacks", None),
    "saving": ("graphjit.saving", None),
    "datasets": ("graphjit.datasets", None),
    "benchmark": ("graphjit.benchmarking", "benchmark"),
    "profile": ("graphjit.profiling", "profile"),
    "cache": ("graphjit.cache", None),
    "dask": ("graphjit.dask", None),
    "distribute": ("graphjit.distribute", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'graphjit' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


__all__ = [
    "jit", "JitFunction", "Lowered", "GraphjitError", "AllocationError", "TracerBoolError", "UnsupportedError",
    "ShapeError", "DTypeError", "ArgumentError", "CompileError", "ConfigurationError", "LinAlgError",
    "__version__", *_LAZY,
]
