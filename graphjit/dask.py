"""Jitted functions over Dask arrays: `gj.dask.map_blocks`, `gj.dask.reduction`, and
`gj.dask.compile_counts` for what each worker compiled.

A `JitFunction` is already a valid function for `dask.array.map_blocks` / `blockwise` (it pickles
by reference, or by value through cloudpickle; each worker compiles once per block shape, or loads
the object code another worker wrote to a shared GRAPHJIT_CACHE_DIR). What these helpers add is
that nothing has to be spelled out: the output dtype, `meta` and chunks come from tracing the
function (no compilation) on each distinct block shape, ragged edge chunks included.

Needs the `distributed` extra (`pip install "graphjit[distributed]"`); `import graphjit` never
imports Dask.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import ArgumentError, ConfigurationError, ShapeError
from graphjit.frontend.trace import leaf_spec, trace

from .jit import JitFunction, jit

__all__ = ["map_blocks", "reduction", "output_spec", "compile_counts"]

# Jitted functions unpickled on a worker stay alive here (one compiled cache per worker process
# for the life of the worker, however Dask caches or drops the task's function object).
PINNED_PER_PROCESS = 256
_pinned: OrderedDict[int, JitFunction] = OrderedDict()
_pinned_lock = threading.Lock()


def _dask_array() -> Any:
    try:
        import dask.array as da
    except ImportError:
        raise ConfigurationError("graphjit.dask needs Dask: pip install 'graphjit[distributed]'"
                                 ) from None
    return da


def _as_jitted(fn: Callable, static_argnames: Sequence[str] = ()) -> JitFunction:
    """`fn` itself when it is already jitted with these static names, else a jitted form."""
    if isinstance(fn, JitFunction):
        if all(name in fn.static_argnames for name in static_argnames):
            return fn
        return jit(fn.fn, static_argnums=fn.static_argnums,
                   static_argnames=(*fn.static_argnames, *static_argnames), target=fn.target,
                   max_entries=fn.max_entries)
    if not callable(fn):
        raise ArgumentError(f"gj.dask needs a function, got {type(fn).__name__}")
    return jit(fn, static_argnames=tuple(static_argnames))


class BlockFunction:
    """The task function Dask runs on each block: calls the jitted function. Unpickled on a
    worker it pins the function there, so its compiled code lives as long as the worker."""

    def __init__(self, jitted: JitFunction):
        self.jitted = jitted
        self.__name__ = getattr(jitted, "__name__", "jitted")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.jitted(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {"jitted": self.jitted}

    def __setstate__(self, state: dict) -> None:
        self.jitted = state["jitted"]
        self.__name__ = getattr(self.jitted, "__name__", "jitted")
        _pin(self.jitted)

    def __repr__(self) -> str:
        return f"<graphjit.dask block function {self.__name__}>"


def _pin(jitted: JitFunction) -> None:
    with _pinned_lock:
        _pinned[id(jitted)] = jitted
        _pinned.move_to_end(id(jitted))
        while len(_pinned) > PINNED_PER_PROCESS:
            _pinned.popitem(last=False)


# ---------------------------------------------------------------- shape and dtype, traced
def output_spec(fn: Callable, *args: Any, **kwargs: Any) -> list[tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each output `fn` returns for these arguments, found by tracing it
    (nothing is compiled or run). Arguments may be arrays, scalars or anything with `.shape`
    and `.dtype` (a Dask array's block stands in by its shape)."""
    jitted = _as_jitted(fn)
    args = tuple(_stand_in(a) for a in args)
    kwargs = {k: _stand_in(v) for k, v in kwargs.items()}
    _, leaves, rebuild = jitted._key_and_leaves(args, kwargs)
    name = getattr(jitted, "__name__", "fn")
    specs = [leaf_spec(leaf, f"argument leaf {n} of {name}()") for n, leaf in enumerate(leaves)]
    traced = trace(jitted.fn, specs, rebuild, name)
    graph = traced.graph
    outputs = graph.outputs[: traced.n_user_outputs] if traced.writebacks else graph.outputs
    return [(tuple(graph.node(i).shape), np.dtype(graph.node(i).dtype)) for i in outputs]


def _stand_in(value: Any) -> Any:
    """A zero-cost array of the value's shape and dtype (a broadcast view of one element)."""
    if isinstance(value, np.ndarray) or not (hasattr(value, "shape") and hasattr(value, "dtype")):
        return value
    return np.broadcast_to(np.zeros((), np.dtype(value.dtype)), tuple(value.shape))


def _block_stand_in(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.broadcast_to(np.zeros((), dtype), shape)


def _single_output(jitted: JitFunction, specs: list, where: str
                   ) -> tuple[tuple[int, ...], np.dtype]:
    if len(specs) != 1:
        raise ArgumentError(f"gj.dask.{where}: {jitted.__name__} returns {len(specs)} arrays; a "
                            "Dask array holds one: return one (stack them) or call "
                            f"{where} once per output")
    return specs[0]


# ---------------------------------------------------------------- map_blocks
def map_blocks(fn: Callable, *args: Any, name: str | None = None, token: str | None = None,
               dtype: Any = None, chunks: Any = None, drop_axis: Any = None,
               new_axis: Any = None, meta: Any = None, **kwargs: Any) -> Any:
    """`dask.array.map_blocks` for a (jitted or plain, then jitted) NumPy function, with the
    output's dtype, `meta` and chunks inferred by tracing `fn` once per distinct block shape.

    Arguments and keywords are those of `dask.array.map_blocks`: Dask arrays are aligned and
    split into blocks (right-aligned broadcasting), other arguments reach every call whole;
    `**kwargs` go to `fn`. Pass `chunks`/`drop_axis`/`new_axis` only when the output's blocks
    are not one per input block of the same rank (then only the dtype is inferred)."""
    da = _dask_array()
    jitted = _as_jitted(fn)
    arrays = [a for a in args if isinstance(a, da.Array)]
    if not arrays:
        raise ArgumentError("gj.dask.map_blocks needs at least one Dask array argument")
    if kwargs and any(isinstance(v, da.Array) for v in kwargs.values()):
        raise ArgumentError("gj.dask.map_blocks: pass Dask arrays positionally (keyword "
                            "arguments reach every block whole)")
    args = _aligned(da, args)
    explicit_layout = chunks is not None or drop_axis is not None or new_axis is not None
    if explicit_layout:
        first = [_first_block(a) if isinstance(a, da.Array) else a for a in args]
        out_shape, out_dtype = _single_output(jitted, output_spec(jitted, *first, **kwargs),
                                              "map_blocks")
        out_ndim = len(out_shape)
    else:
        chunks, out_dtype = _traced_chunks(da, jitted, args, kwargs)
        out_ndim = len(chunks)
    if dtype is not None and np.dtype(dtype) != out_dtype:
        raise ArgumentError(f"gj.dask.map_blocks: dtype={np.dtype(dtype)} was given but "
                            f"{jitted.__name__} returns {out_dtype} (leave dtype out: it is "
                            "inferred)")
    if meta is None:
        meta = np.empty((0,) * out_ndim, out_dtype)
    return da.map_blocks(BlockFunction(jitted), *args, name=name, token=token, dtype=out_dtype,
                         chunks=chunks, drop_axis=drop_axis, new_axis=new_axis, meta=meta,
                         **kwargs)


def _aligned(da: Any, args: tuple) -> tuple:
    """The arguments with Dask arrays given common chunks, as dask.array.map_blocks aligns them."""
    pairs = []
    for a in args:
        pairs += [a, tuple(range(a.ndim))[::-1] if isinstance(a, da.Array) else None]
    _, unified = da.core.unify_chunks(*pairs)
    return tuple(unified)


def _first_block(array: Any) -> np.ndarray:
    return _block_stand_in(tuple(c[0] for c in array.chunks), array.dtype)


def _traced_chunks(da: Any, jitted: JitFunction, args: tuple, kwargs: dict
                   ) -> tuple[tuple[tuple[int, ...], ...], np.dtype]:
    """Output chunks and dtype: the block grid's sizes along each axis factor into a few
    distinct "signatures" (each array's block size there, e.g. full and ragged); `fn` is traced
    once per combination of them and must give one output size per signature."""
    arrays = [(n, a) for n, a in enumerate(args) if isinstance(a, da.Array)]
    ndim = max(a.ndim for _, a in arrays)
    grid = [1] * ndim
    for _, a in arrays:
        for axis, blocks in enumerate(a.numblocks):
            position = ndim - a.ndim + axis
            grid[position] = max(grid[position], blocks)

    def size_at(a: Any, position: int, block: int) -> int | None:
        axis = position - (ndim - a.ndim)
        if axis < 0:
            return None
        return a.chunks[axis][block if a.numblocks[axis] > 1 else 0]

    # per axis: the signature of every block along it, and the distinct ones
    signatures = [[tuple(size_at(a, p, b) for _, a in arrays) for b in range(grid[p])]
                  for p in range(ndim)]
    distinct = [list(dict.fromkeys(s)) for s in signatures]
    out_sizes: list[dict[tuple, int]] = [{} for _ in range(ndim)]
    out_dtype = None
    for combination in itertools.product(*distinct):
        call = list(args)
        for k, (n, a) in enumerate(arrays):
            shape = tuple(combination[ndim - a.ndim + axis][k] for axis in range(a.ndim))
            call[n] = _block_stand_in(shape, a.dtype)
        shape, dtype = _single_output(jitted, output_spec(jitted, *call, **kwargs),
                                      "map_blocks")
        if len(shape) != ndim:
            raise ShapeError(
                f"gj.dask.map_blocks: {jitted.__name__} turns {ndim}-d blocks into {len(shape)}-d "
                "results; pass drop_axis=/new_axis= (and chunks=) as for "
                "dask.array.map_blocks, or keep the rank")
        if out_dtype is not None and dtype != out_dtype:
            raise ShapeError(f"gj.dask.map_blocks: {jitted.__name__} returns {out_dtype} for "
                             f"some blocks and {dtype} for others")
        out_dtype = dtype
        for p in range(ndim):
            seen = out_sizes[p].setdefault(combination[p], shape[p])
            if seen != shape[p]:
                raise ShapeError(
                    f"gj.dask.map_blocks: the size of {jitted.__name__}'s output along axis {p} "
                    "depends on the block's size along other axes, which Dask's chunks cannot "
                    "express; pass chunks= explicitly")
    chunks = tuple(tuple(out_sizes[p][s] for s in signatures[p]) for p in range(ndim))
    return chunks, out_dtype


# ---------------------------------------------------------------- reduction
def reduction(x: Any, chunk: Callable, aggregate: Callable, *, combine: Callable | None = None,
              axis: int | Sequence[int] | None = None, keepdims: bool = False,
              dtype: Any = None, split_every: int | None = None, name: str | None = None
              ) -> Any:
    """`dask.array.reduction` with jitted `chunk`, `combine` and `aggregate` functions, each
    called as `f(block, axis=tuple_of_ints, keepdims=bool)` (axis and keepdims are compiled in
    as static arguments). The dtype is inferred by tracing chunk then aggregate.

        total = gj.dask.reduction(x, chunk=lambda b, axis, keepdims: np.sum(np.exp(b), axis,
                                  keepdims=keepdims), aggregate=np.sum)
    """
    da = _dask_array()
    if not isinstance(x, da.Array):
        raise ArgumentError(f"gj.dask.reduction needs a Dask array, got {type(x).__name__}")
    static = ("axis", "keepdims")
    chunk_j = _as_jitted(chunk, static)
    aggregate_j = _as_jitted(aggregate, static)
    combine_j = _as_jitted(combine, static) if combine is not None else None
    axes = tuple(range(x.ndim)) if axis is None else tuple(
        a % x.ndim for a in ((axis,) if isinstance(axis, (int, np.integer)) else axis))
    partial_spec = output_spec(chunk_j, _first_block(x), axis=axes, keepdims=True)
    partial_shape, partial_dtype = _single_output(chunk_j, partial_spec, "reduction")
    out_shape, out_dtype = _single_output(
        aggregate_j, output_spec(aggregate_j, _block_stand_in(partial_shape, partial_dtype),
                                 axis=axes, keepdims=keepdims), "reduction")
    if dtype is not None and np.dtype(dtype) != out_dtype:
        raise ArgumentError(f"gj.dask.reduction: dtype={np.dtype(dtype)} was given but the "
                            f"aggregate returns {out_dtype}")
    return da.reduction(x, BlockFunction(chunk_j), BlockFunction(aggregate_j), axis=axes,
                        keepdims=keepdims, dtype=out_dtype, split_every=split_every,
                        combine=BlockFunction(combine_j) if combine_j is not None else None,
                        name=name, meta=np.empty((0,) * len(out_shape), out_dtype))


# ---------------------------------------------------------------- what the workers compiled
def compile_counts(client: Any, fn: Callable) -> dict[str, dict[str, int]]:
    """Per worker address: how often `fn` was compiled there (`misses`), its cache `hits`, the
    live `entries`, and of those how many ran LLVM (`compiled`) or loaded object code from the
    disk cache (`loaded`)."""
    jitted = fn.jitted if isinstance(fn, BlockFunction) else fn
    if not isinstance(jitted, JitFunction):
        raise ArgumentError("gj.dask.compile_counts needs a jitted function")
    return client.run(_worker_counts, BlockFunction(jitted))


def _worker_counts(block_function: BlockFunction) -> dict[str, int]:
    jitted = block_function.jitted
    counts = dict(jitted.cache_info())
    with jitted._lock:
        entries = list(jitted._cache.values())
    counts["compiled"] = sum("llvm" in entry.lowered.stats for entry in entries)
    counts["loaded"] = sum("load" in entry.lowered.stats for entry in entries)
    return counts
