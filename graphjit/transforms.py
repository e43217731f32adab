"""`gj.grad`, `gj.value_and_grad` and `gj.vjp`: reverse-mode autodiff of plain NumPy functions.

    loss_and_grads = gj.jit(gj.value_and_grad(loss, argnums=0))
    loss, grads = loss_and_grads(params, x, y)   # grads has the structure of params

How it works: the function is traced into the *current* graph (the graph of an enclosing
`gj.jit`, or of a fresh one), each differentiated argument leaf entering through an identity node
that marks where cotangents stop; then `compiler.autodiff.append_backward` appends the reverse
pass to the same graph. So `jit(value_and_grad(f))` compiles forward and backward as one graph
(fusion spans both), closures over traced values work, and `grad(jit(f))` works because a jitted
function called with tracers inlines itself. Called with concrete arrays, a transformed function
compiles itself with `gj.jit` (cached per argument signature, see `cache_info()`).

Derivative conventions: at ties, `np.maximum`/`np.minimum` split the gradient 0.5/0.5 between
their operands (as JAX does) and `np.max`/`np.min` share it equally among the tied positions;
`np.abs` has gradient 0 at 0. Comparisons, argmax/argmin, floor/ceil/sign, integer casts and
random numbers have zero gradient. Differentiating with respect to an integer or boolean argument
is an error.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.autodiff import append_backward
from graphjit.compiler.errors import ArgumentError, DTypeError, GraphjitError
from graphjit.compiler.ops import Op
from graphjit.frontend.pytree import flatten, unflatten
from graphjit.frontend.source import user_source
from graphjit.frontend.tracer import PYTHON_SCALARS, TraceContext, Tracer

from .jit import JitFunction

ArgNums = int | Sequence[int]


# ---------------------------------------------------------------- tracing helpers

def _contains_tracer(tree: Any) -> bool:
    return any(isinstance(leaf, Tracer) for leaf in flatten(tree)[0])


def _context(tree: Any) -> TraceContext:
    for leaf in flatten(tree)[0]:
        if isinstance(leaf, Tracer):
            return leaf._ctx
    raise AssertionError("no tracer among the arguments")


def _leaf_dtype(leaf: Any) -> np.dtype:
    if isinstance(leaf, Tracer):
        return leaf.dtype
    if isinstance(leaf, int) and not isinstance(leaf, bool):
        return np.dtype(np.int64)
    return np.asarray(leaf).dtype


def _check_differentiable(leaf: Any, what: str, transform: str) -> None:
    dtype = _leaf_dtype(leaf)
    if dtype.kind != "f":
        raise DTypeError(
            f"{transform}: {what} has dtype {dtype}; gradients are defined only for float "
            "arguments. Convert it with .astype(np.float32) / np.float64, or leave it out of "
            "argnums (pass it as another argument, or close over it)", user_source())


def _entry_point(ctx: TraceContext, leaf: Any) -> Tracer:
    """A fresh identity node for one differentiated leaf: cotangents stop here, so each leaf gets
    its own gradient even when two leaves are the same traced value or depend on each other."""
    node_id = ctx.node_of(leaf)
    dtype = ctx.graph.node(node_id).dtype
    weak = isinstance(leaf, PYTHON_SCALARS) or (isinstance(leaf, Tracer) and leaf._weak)
    return Tracer(ctx, ctx.add(Op.CAST, (node_id,), {"dtype": dtype}), weak=weak)


def _enter(ctx: TraceContext, tree: Any, what: str, transform: str) -> tuple[Any, list[Tracer]]:
    """Replace every leaf of `tree` by an entry point; return the new tree and the entries."""
    leaves, treedef = flatten(tree)
    for n, leaf in enumerate(leaves):
        _check_differentiable(leaf, f"{what} (leaf {n})" if len(leaves) > 1 else what, transform)
    entries = [_entry_point(ctx, leaf) for leaf in leaves]
    return unflatten(treedef, entries), entries


def _seed(ctx: TraceContext, output: Tracer, cotangent: Any) -> int:
    """The cotangent for one output leaf as a node of the output's shape and dtype."""
    node = output._node
    cotangent_id = ctx.node_of(cotangent, node.dtype)
    if ctx.graph.node(cotangent_id).shape != node.shape:
        cotangent_id = ctx.add(Op.BROADCAST, (cotangent_id,), {"shape_to": node.shape})
    return cotangent_id


def _normalize_argnums(argnums: ArgNums) -> tuple[tuple[int, ...], bool]:
    if isinstance(argnums, (int, np.integer)):
        return (int(argnums),), True
    argnums = tuple(int(a) for a in argnums)
    if not argnums:
        raise ArgumentError("argnums must name at least one argument")
    return argnums, False


def _function_name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


# ---------------------------------------------------------------- value_and_grad

class GradFunction:
    """`value_and_grad(f)` / `grad(f)`: traced inline under a trace, compiled when called with
    concrete arrays (the compiled versions are cached per signature on this object)."""

    def __init__(self, fn: Callable, argnums: ArgNums = 0, has_aux: bool = False,
                 return_value: bool = True, transform: str = "value_and_grad",
                 static_argnums: Sequence[int] | int = (),
                 static_argnames: Sequence[str] | str = ()):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.argnums, self._single = _normalize_argnums(argnums)
        self.has_aux = has_aux
        self.return_value = return_value
        self.transform = transform
        self.__name__ = f"{transform}_{_function_name(fn)}"
        # called with concrete arrays, the transformed function compiles itself; static
        # arguments (flags such as training=True) stay Python values, as under gj.jit
        self._compiled = JitFunction(_named(self._traced_call, self.__name__, fn),
                                     static_argnums=static_argnums,
                                     static_argnames=static_argnames)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _contains_tracer((args, kwargs)):
            return self._traced_call(*args, **kwargs)
        return self._compiled(*args, **kwargs)

    # ------------------------------------------------------------ inspection
    def lower(self, *args: Any, **kwargs: Any):
        """The compilation stages for these arguments (see `JitFunction.lower`)."""
        return self._compiled.lower(*args, **kwargs)

    def cache_info(self) -> dict[str, int]:
        return self._compiled.cache_info()

    def __repr__(self) -> str:
        return f"<graphjit.{self.transform} of {_function_name(self.fn)} argnums={self.argnums}>"

    # ------------------------------------------------------------ the transform
    def _traced_call(self, *args: Any, **kwargs: Any) -> Any:
        for n in self.argnums:
            if not -len(args) <= n < len(args):
                raise ArgumentError(f"{self.transform}: argnums={n} but "
                                    f"{_function_name(self.fn)} was called with {len(args)} "
                                    "positional arguments", user_source())
        ctx = _context((args, kwargs))
        args = list(args)
        structures, entries = [], []
        for n in self.argnums:
            args[n], leaf_entries = _enter(ctx, args[n], f"argument {n}", self.transform)
            structures.append(flatten(args[n])[1])
            entries.append(leaf_entries)
        result = self.fn(*args, **kwargs)
        value, aux = self._split(result)
        grads = self._backward(ctx, value, [e for group in entries for e in group])
        pending = iter(grads)
        trees = [unflatten(tree, [next(pending) for _ in group])
                 for tree, group in zip(structures, entries)]
        grad_tree = trees[0] if self._single else tuple(trees)
        if not self.return_value:
            return (grad_tree, aux) if self.has_aux else grad_tree
        return ((value, aux) if self.has_aux else value), grad_tree

    def _split(self, result: Any) -> tuple[Any, Any]:
        if not self.has_aux:
            return result, None
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise GraphjitError(f"{self.transform}(has_aux=True): "
                                f"{_function_name(self.fn)} must return a pair "
                                "(value, aux)", user_source())
        return result[0], result[1]

    def _backward(self, ctx: TraceContext, value: Any, entries: list[Tracer]) -> list[Tracer]:
        if not _is_float_scalar(value):
            raise GraphjitError(
                f"{self.transform}: {_function_name(self.fn)} must return a float scalar (the "
                f"value to differentiate), got {_describe(value)}; reduce it (e.g. np.sum or "
                "np.mean), or use gj.vjp for non-scalar outputs", user_source())
        wrt = [e._id for e in entries]
        seeds = []
        if isinstance(value, Tracer):
            ctx.check_same_trace(value)
            seeds.append((value._id, ctx.node_of(np.ones((), value.dtype))))
        return [Tracer(ctx, g) for g in append_backward(ctx.graph, seeds, wrt)]


def _is_float_scalar(value: Any) -> bool:
    if isinstance(value, Tracer):
        return value.shape == () and value.dtype.kind == "f"
    if isinstance(value, (tuple, list, dict)) or value is None:
        return False
    return np.shape(value) == () and _leaf_dtype(value).kind == "f"


def _describe(value: Any) -> str:
    if isinstance(value, Tracer):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, (tuple, list, dict)):
        return f"a {type(value).__name__} (with has_aux=True, return (value, aux))"
    return f"a value of dtype {_leaf_dtype(value)} and shape {np.shape(value)}"


def _named(fn: Callable, name: str, signature_of: Callable | None = None) -> Callable:
    """`fn` under another name, with the signature of `signature_of` (for static_argnames)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    if signature_of is not None:
        call.__wrapped__ = signature_of  # inspect.signature follows __wrapped__
    return call


def value_and_grad(fn: Callable, argnums: ArgNums = 0, has_aux: bool = False, *,
                   static_argnums: Sequence[int] | int = (),
                   static_argnames: Sequence[str] | str = ()) -> GradFunction:
    """`f -> (lambda *args: (f(*args), df/dargs[argnums]))` for a float-scalar-valued `f`.

    With `has_aux=True`, `f` returns `(value, aux)` and the result is `((value, aux), grads)`.
    Gradients have the structure of the differentiated arguments (tuples/lists/dicts of arrays);
    with a tuple `argnums` they come as a tuple, one entry per argument. `static_argnums` /
    `static_argnames` act as in `gj.jit` when the result is called with concrete arrays.
    """
    return GradFunction(fn, argnums, has_aux, return_value=True, transform="value_and_grad",
                        static_argnums=static_argnums, static_argnames=static_argnames)


def grad(fn: Callable, argnums: ArgNums = 0, has_aux: bool = False, *,
         static_argnums: Sequence[int] | int = (),
         static_argnames: Sequence[str] | str = ()) -> GradFunction:
    """The gradient of a float-scalar-valued `fn` with respect to `args[argnums]`.

    With `has_aux=True`, `fn` returns `(value, aux)` and the result is `(grads, aux)`.
    """
    return GradFunction(fn, argnums, has_aux, return_value=False, transform="grad",
                        static_argnums=static_argnums, static_argnames=static_argnames)


# ---------------------------------------------------------------- vjp

def vjp(fn: Callable, *primals: Any) -> tuple[Any, Callable]:
    """`(fn(*primals), vjp_fn)` where `vjp_fn(cotangent)` returns one cotangent per primal.

    The cotangent has the structure of the output; the result of `vjp_fn` is a tuple with the
    structure of `primals`. Under a trace, both the output and the backward pass become nodes of
    the current graph; with concrete arrays each runs compiled (cached per `fn` and signature).
    """
    if _contains_tracer(primals):
        return _traced_vjp(fn, primals)
    forward, backward = _compiled_vjp(fn)
    out = forward(*primals)

    def vjp_fn(cotangent: Any) -> tuple:
        return backward(primals, cotangent)

    return out, vjp_fn


def _traced_vjp(fn: Callable, primals: tuple) -> tuple[Any, Callable]:
    ctx = _context(primals)
    entered, entries = _enter(ctx, tuple(primals), "primal", "vjp")
    out = fn(*entered)
    out_leaves, out_tree = flatten(out)
    structure = flatten(entered)[1]

    def vjp_fn(cotangent: Any) -> tuple:
        ct_leaves, ct_tree = flatten(cotangent)
        if len(ct_leaves) != len(out_leaves):
            raise ArgumentError(f"vjp: the cotangent has {len(ct_leaves)} leaves but the output "
                                f"of {_function_name(fn)} has {len(out_leaves)}", user_source())
        seeds = [(leaf._id, _seed(ctx, leaf, ct)) for leaf, ct in zip(out_leaves, ct_leaves)
                 if isinstance(leaf, Tracer) and leaf.dtype.kind == "f"]
        grads = append_backward(ctx.graph, seeds, [e._id for e in entries])
        return unflatten(structure, [Tracer(ctx, g) for g in grads])

    return out, vjp_fn


@functools.lru_cache(maxsize=64)
def _compiled_vjp(fn: Callable) -> tuple[JitFunction, JitFunction]:
    """The compiled forward and backward of `vjp(fn, ...)`, kept per function so repeated calls
    reuse their per-signature caches (`_compiled_vjp.cache_clear()` drops them)."""
    name = _function_name(fn)

    def backward(primals: tuple, cotangent: Any) -> tuple:
        return _traced_vjp(fn, primals)[1](cotangent)

    forward = fn if isinstance(fn, JitFunction) else JitFunction(fn)
    return forward, JitFunction(_named(backward, f"vjp_{name}"))
