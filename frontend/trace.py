"""Trace a Python function on abstract arguments into a `Graph`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphjit.compiler.dtypes import is_supported, supported_list
from graphjit.compiler.errors import (
    ArgumentError, DTypeError, GraphjitError, UnsupportedError, as_graphjit_error,
)
from graphjit.compiler.ir import Graph
from graphjit.compiler.ops import Op

from .pytree import TreeDef, flatten
from .source import traceback_source, user_source
from .tracer import PYTHON_SCALARS, TraceContext, Tracer, is_python_scalar


@dataclass(frozen=True)
class LeafSpec:
    """What a compiled function knows of one argument leaf: shape, dtype, and NEP 50 weakness."""

    shape: tuple[int, ...]
    dtype: np.dtype
    weak: bool = False


@dataclass
class TracedFunction:
    graph: Graph
    out_tree: TreeDef
    # per output leaf: True where NumPy would return a Python scalar (weak results)
    out_weak: list[bool]
    # (flat argument leaf index, graph output index): arrays the function updated in place
    writebacks: list[tuple[int, int]] = field(default_factory=list)
    n_user_outputs: int = 0


def is_device_array(value: Any) -> bool:
    """A CUDA device array: Numba's (real or simulated) or anything exposing
    __cuda_array_interface__ (CuPy, torch.cuda tensors)."""
    return hasattr(value, "__cuda_array_interface__") or (
        hasattr(value, "copy_to_host") and hasattr(value, "shape") and hasattr(value, "dtype"))


def device_array_dtype(value: Any) -> np.dtype:
    """The NumPy dtype of a device array (a torch dtype is not one: read the interface's
    typestr)."""
    interface = getattr(value, "__cuda_array_interface__", None)
    if isinstance(interface, dict) and "typestr" in interface:
        return np.dtype(interface["typestr"])
    return np.dtype(value.dtype)


def leaf_spec(value: Any, where: str) -> LeafSpec:
    if isinstance(value, np.ndarray):
        if not is_supported(value.dtype):
            raise DTypeError(f"{where} has dtype {value.dtype}; graphjit compiles "
                             f"{supported_list()} arrays: convert it with .astype() before the "
                             "call, or mark the argument static", user_source())
        return LeafSpec(value.shape, value.dtype)
    if isinstance(value, np.generic):
        if not is_supported(value.dtype):
            raise DTypeError(f"{where} has dtype {value.dtype}; graphjit compiles "
                             f"{supported_list()}: convert it with .astype() before the call",
                             user_source())
        return LeafSpec((), value.dtype)
    if is_python_scalar(value):
        return LeafSpec((), np.asarray(value).dtype if not isinstance(value, int) or
                        isinstance(value, bool) else np.dtype(np.int64), weak=True)
    if is_device_array(value):   # target="cuda" uses device arrays in place (no host copy)
        dtype = device_array_dtype(value)
        if not is_supported(dtype):
            raise DTypeError(f"{where} is a device array of dtype {dtype}; graphjit compiles "
                             f"{supported_list()}: convert it on the device (.astype()) before "
                             "the call", user_source())
        return LeafSpec(tuple(value.shape), dtype)
    raise ArgumentError(f"{where} is of type {type(value).__name__}, which graphjit cannot pass "
                        "to compiled code: pass NumPy arrays, NumPy or Python scalars, or "
                        "tuples/lists/dicts of them, or mark the argument static with "
                        "gj.jit(static_argnums=...)", user_source())


def trace(fn: Callable, leaves_specs: Sequence[LeafSpec], rebuild_args: Callable[[list], tuple],
          name: str | None = None, same_as: dict[int, int] | None = None) -> TracedFunction:
    """Run `fn` on tracers standing for the argument leaves; record the graph.

    `rebuild_args(leaf_values) -> (args, kwargs)` puts tracers back where the leaves were, with
    static arguments as the concrete values. `same_as[j] = i`: leaf j is the very same array as
    leaf i (f(a, a)), so the function sees one traced array in both places (its param j is
    unused, and only leaf i is written back).
    """
    ctx = TraceContext(name or getattr(fn, "__name__", "fn"))
    tracers = [ctx.param(s.shape, s.dtype, weak=s.weak) for s in leaves_specs]
    same_as = same_as or {}
    args, kwargs = rebuild_args([tracers[same_as.get(n, n)] for n in range(len(tracers))])
    from . import numpy_api  # noqa: F401  (every handler registered before NumPy is wrapped)
    from .creation import creating_traced_arrays

    try:
        with creating_traced_arrays(ctx):
            result = fn(*args, **kwargs)
    except GraphjitError:
        raise
    except Exception as exc:
        # NumPy's (or Python's) own refusal, as a graphjit error of the same built-in type
        twin = as_graphjit_error(exc, traceback_source(exc.__traceback__))
        if twin is None:
            raise
        raise twin.with_traceback(exc.__traceback__) from None
    out_leaves, out_tree = flatten(result)
    graph = ctx.graph
    out_weak = []
    for leaf in out_leaves:
        if isinstance(leaf, Tracer):
            ctx.check_same_trace(leaf)
            graph.outputs.append(leaf._id)
            out_weak.append(leaf._weak)
        elif isinstance(leaf, (np.ndarray, np.generic) + PYTHON_SCALARS):
            graph.outputs.append(ctx.node_of(leaf))
            out_weak.append(is_python_scalar(leaf))
        else:
            raise UnsupportedError(f"{graph.name} returned a {type(leaf).__name__}; a jitted "
                                   "function returns arrays, scalars, and tuples/lists/dicts "
                                   "of them", user_source())
    traced = TracedFunction(graph, out_tree, out_weak, n_user_outputs=len(out_leaves))
    for index, tracer in enumerate(tracers):
        if tracer._id != graph.params[index] and not leaves_specs[index].weak:
            traced.writebacks.append((index, len(graph.outputs)))
            graph.outputs.append(tracer._id)
    for node_id in graph.params:
        if graph.node(node_id).op is not Op.PARAM:
            raise AssertionError("params must stay params")
    return traced
