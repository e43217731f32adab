"""`gj.jit`: the decorated function, its per-signature cache, and the path of one call."""
from __future__ import annotations

import functools
import gc
import importlib
import inspect
import os
import pickle
import sys
import uuid
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphjit.compiler.errors import AllocationError, ArgumentError, GraphjitError
from graphjit.compiler.pipeline import PassLog
from graphjit.compiler.pipeline import compile as compile_graph
from graphjit.frontend.pytree import flatten, unflatten
from graphjit.frontend.trace import (
    LeafSpec, TracedFunction, device_array_dtype, is_device_array, leaf_spec, trace,
)
from graphjit.frontend.tracer import Tracer

from . import backends
from .lowered import Lowered

RECOMPILE_WARNING_AFTER = 8
# Compiled specialisations kept per function (least recently used evicted beyond it): each holds
# native code, workspaces and the traced graph, ~0.1-0.2 MB for a small function.
DEFAULT_MAX_ENTRIES = 128
SHAPE_HISTORY = 64      # recent signatures kept for the recompilation warning
TREE_CACHE_FACTOR = 4   # call patterns remembered per compiled entry (then forgotten at once)
_SCALAR_TYPES = (bool, int, float)


@dataclass
class CompiledEntry:
    """One compiled specialisation: the traced graph, the executable and how to call it."""

    traced: TracedFunction
    executable: Any
    specs: list[LeafSpec]
    lowered: Lowered
    n_user: int = 0
    used: int = 0           # the function's hit count when last used (least recently used goes)

    def __post_init__(self) -> None:
        self.n_user = self.traced.n_user_outputs
        self.writebacks = self.traced.writebacks
        self.out_weak = self.traced.out_weak
        self.out_tree = self.traced.out_tree
        self.run = self.executable.run
        self.call_positional = self._positional_call()

    def _positional_call(self) -> Callable[[tuple], Any]:
        """The cache-hit path for positional array/scalar arguments, specialised once: the
        common case (one array result, nothing written back) is a single call of `run`.

        Its callers found this entry by a key holding every array argument's exact class,
        shape and dtype (_fast_key, _walk_tree), so results without write-backs go through
        the Executable's `run_keyed` where it has one (it checks only the layouts)."""
        run = getattr(self.executable, "run_keyed", self.run)
        # the CPU Executable checks layouts itself (and copies only non-contiguous arguments)
        checks_layouts = getattr(self.executable, "checks_layouts", False)
        single_array = (not self.writebacks and self.out_tree == ("leaf",)
                        and _output_ndims(self.traced) == [True])
        if checks_layouts and single_array:
            return lambda args: run(list(args))[0]
        build = None if self.writebacks else _result_builder(
            self.out_tree, self.out_weak, _output_ndims(self.traced))
        if checks_layouts and build is not None:
            return lambda args: build(run(list(args)))
        if checks_layouts:
            return lambda args: self(list(args), args)
        return lambda args: self(_contiguous_leaves(args), args)

    def __call__(self, leaves: list, originals: Sequence | None = None) -> Any:
        # write back into the caller's arrays, not the contiguous copies made for the call
        # (a NumPy scalar is immutable: `v += 1` rebinds it); checked before anything runs,
        # so a refused call changes nothing
        targets = leaves if originals is None else originals
        written = [(targets[leaf], leaf, out) for leaf, out in self.writebacks
                   if not isinstance(targets[leaf], np.generic)]
        for target, leaf, out in written:
            flags = getattr(target, "flags", None)
            if flags is not None and not flags.writeable:
                raise self._read_only_error(leaf, out)
        outs = self.run(leaves)
        for target, _, out in written:
            value = outs[out]
            if is_device_array(target) or is_device_array(value):    # target="cuda"
                from graphjit.runtime.cuda.device import copy_into

                copy_into(target, value)
            else:
                np.copyto(target, value)
        result = outs[: self.n_user] if self.writebacks else outs
        result = [_to_user(r, weak) for r, weak in zip(result, self.out_weak)]
        if self.out_tree == ("leaf",):
            return result[0]
        return unflatten(self.out_tree, result)

    def _read_only_error(self, leaf_index: int, out_index: int) -> ArgumentError:
        graph = self.traced.graph
        source = graph.node(graph.outputs[out_index]).source if out_index < len(
            graph.outputs) else ""
        spec = self.specs[leaf_index]
        return ArgumentError(
            f"{self.lowered.jitted.__name__}() updates argument leaf {leaf_index} "
            f"({spec.shape} {spec.dtype}) in place, but the array passed is read-only "
            "(flags.writeable is False); pass a writeable array (a.copy()), or return the "
            "new value instead of updating the argument", source or None)

    def allocation_error(self, exc: MemoryError) -> AllocationError:
        """The user's array behind a failed allocation: the result or intermediate the
        requested size belongs to (the largest one, when the size names none)."""
        program = self.lowered.program
        graph = program.graph
        requested = _requested_bytes(str(exc))
        candidates = [b for b in program.buffers if b.kind.name in ("OUTPUT", "TEMP")]
        if not candidates:
            return AllocationError(f"out of memory: {exc}")
        exact = [b for b in candidates if requested is not None
                 and requested - 64 <= b.nbytes <= requested]
        buffer = max(exact or candidates, key=lambda b: b.nbytes)
        outputs = [b.index for b in program.buffers if b.kind.name == "OUTPUT"]
        what = (f"result {outputs.index(buffer.index)}" if buffer.index in outputs
                else "an intermediate array")
        source = graph.node(buffer.node).source if buffer.node in graph else ""
        return AllocationError(
            f"{self.lowered.jitted.__name__}(): out of memory allocating {what} of shape "
            f"{buffer.shape} and dtype {buffer.dtype} ({_format_bytes(buffer.nbytes)}); "
            "call it on smaller inputs, or split the work into chunks", source or None)


def _requested_bytes(message: str) -> int | None:
    """The byte count of NumPy's "Unable to allocate ... shape (N,) and data type uint8"."""
    import re

    match = re.search(r"shape \((\d+),\) and data type (?:u?int8|bool)", message)
    return int(match.group(1)) if match else None


def _format_bytes(count: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} bytes"


def _result_builder(tree: tuple, weak: list[bool], ndims: list[bool]
                    ) -> Callable[[list], Any] | None:
    """outputs -> the user's result, specialised for one leaf or a flat tuple of leaves (what
    __call__ computes with _to_user and unflatten, without walking the tree per call); None
    for other trees."""
    if len(weak) != len(ndims):
        return None
    scalars = [(n, w) for n, (w, has_dims) in enumerate(zip(weak, ndims)) if not has_dims]
    if tree == ("leaf",) and len(weak) == 1:
        if not scalars:
            return lambda outs: outs[0]
        return (lambda outs: outs[0].item()) if weak[0] else (lambda outs: outs[0][()])
    if tree[0] != "tuple" or any(child != ("leaf",) for child in tree[1]):
        return None
    if len(tree[1]) != len(weak):
        return None
    if not scalars:
        return tuple

    def build(outs: list) -> tuple:
        for n, is_weak in scalars:
            outs[n] = outs[n].item() if is_weak else outs[n][()]
        return tuple(outs)

    return build


def _to_user(array: np.ndarray, weak: bool) -> Any:
    if array.ndim:
        return array
    return array.item() if weak else array[()]


class JitFunction:
    """A function compiled on first call for each new argument signature."""

    def __init__(self, fn: Callable, *, static_argnums: Sequence[int] = (),
                 static_argnames: Sequence[str] = (), target: str = "cpu",
                 max_entries: int | None = DEFAULT_MAX_ENTRIES):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._options = {"static_argnums": static_argnums, "static_argnames": static_argnames,
                         "target": target, "max_entries": max_entries}
        if max_entries is not None and (not isinstance(max_entries, int) or max_entries < 1):
            raise ArgumentError(f"jit(max_entries=...) must be a positive int or None, "
                                f"got {max_entries!r}")
        self.max_entries = max_entries
        self._pickle_id: str | None = None
        self.target = target
        self.static_argnums = tuple(sorted({int(i) for i in ((static_argnums,) if isinstance(
            static_argnums, int) else static_argnums)}))
        self.static_argnames = tuple((static_argnames,) if isinstance(static_argnames, str)
                                     else static_argnames)
        self._signature = _signature_or_none(fn)
        if self._signature is not None and self.static_argnames:
            params = list(self._signature.parameters)
            for name in self.static_argnames:
                if name in params and params.index(name) not in self.static_argnums:
                    self.static_argnums += (params.index(name),)
        self._simple = not self.static_argnums and not self.static_argnames
        self._cache: dict[Any, CompiledEntry] = {}
        # call-pattern key -> (entry, leaf order) for keyword and pytree calls (_tree_key)
        self._tree_cache: dict[tuple, tuple[CompiledEntry, list[int] | None]] = {}
        self._lock = threading.RLock()
        self._key_locks: dict[Any, threading.Lock] = {}
        self.hits = 0
        self.misses = 0
        self._leaf_shapes: list[list[tuple]] = []
        self._warned = False
        self._random_warned = False
        _live_functions.add(self)

    # ------------------------------------------------------------ calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self._simple:
                fast = None if kwargs else _fast_key(args)
                if fast is not None:
                    # the hit path: a key from (shape, dtype) per argument, one dict lookup,
                    # one call (arguments that share memory matter only to a function that
                    # writes arguments); a miss goes to the slow path, since for flat
                    # positional arguments the tree key below would be this same key
                    entry = self._cache.get(fast)
                    if entry is not None and not (entry.writebacks and _may_alias(args)):
                        self.hits = entry.used = self.hits + 1
                        return entry.call_positional(args)
                    return self._call_slowly(args, kwargs, None)
                # keyword, dict, list and tuple arguments: one walk gives a key and the leaves,
                # and the order the compiled entry takes them in was remembered on first call
                tree = _tree_key(args, kwargs)
                if tree is not None:
                    known = self._tree_cache.get(tree[0])
                    if known is not None:
                        entry, order = known
                        leaves = tree[1] if order is None else [tree[1][i] for i in order]
                        if not (entry.writebacks and _may_alias(leaves)):
                            self.hits = entry.used = self.hits + 1
                            return entry.call_positional(leaves)
            else:
                tree = None
            return self._call_slowly(args, kwargs, tree)
        except MemoryError as exc:
            if isinstance(exc, GraphjitError):
                raise
            raise self._allocation_error(exc, args, kwargs) from None

    def _call_slowly(self, args: tuple, kwargs: dict, tree: tuple | None) -> Any:
        if _contains_tracer(args, kwargs):
            # called inside another trace (jit of jit, grad of jit): inline the function
            return self.fn(*args, **kwargs)
        key, leaves, rebuild = self._key_and_leaves(args, kwargs)
        aliases = alias_pattern(leaves)
        if aliases:
            key = (key, aliases)   # the alias pattern is part of the specialisation
        entry = self._cache.get(key)
        if entry is None:
            entry = self._compile_locked(key, leaves, rebuild, aliases)
        else:
            self.hits = entry.used = self.hits + 1
        if tree is not None and not aliases:    # alias-specialised entries stay off the fast map
            self._remember_tree(tree, leaves, entry)
        return entry(_contiguous_leaves(leaves), leaves)

    def _allocation_error(self, exc: MemoryError, args: tuple, kwargs: dict) -> GraphjitError:
        try:
            key, _, _ = self._key_and_leaves(args, kwargs)
            entry = self._cache.get(key)
        except GraphjitError:
            entry = None
        if entry is None:
            return AllocationError(f"{self.__name__}(): out of memory while compiling: {exc}")
        return entry.allocation_error(exc)

    def _remember_tree(self, tree: tuple[tuple, list], leaves: list, entry: CompiledEntry) -> None:
        """Map this call's tree key to `entry` and to the order its leaves are taken in (found
        by identity; a call that passes one object twice is not remembered, since another
        call with the same key may pass two)."""
        key, walked = tree
        ids = [id(leaf) for leaf in walked]
        position = {leaf_id: n for n, leaf_id in enumerate(ids)}
        if len(position) != len(ids) or len(walked) != len(leaves):
            return
        order = [position.get(id(leaf), -1) for leaf in leaves]
        if -1 in order:
            return
        with self._lock:
            if not any(known is entry for known in self._cache.values()):
                return       # evicted meanwhile
            if len(self._tree_cache) >= TREE_CACHE_FACTOR * (self.max_entries or 1024):
                self._tree_cache.clear()
            self._tree_cache[key] = (entry, None if order == list(range(len(order))) else order)

    def _key_and_leaves(self, args: tuple, kwargs: dict):
        """The cache key, the dynamic leaves and a function that rebuilds (args, kwargs)."""
        if self._signature is not None and (kwargs or self.static_argnums):
            try:
                bound = self._signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise ArgumentError(f"{self.__name__}(): {exc}") from None
            args, kwargs = tuple(bound.args), dict(bound.kwargs)
        static = {i: args[i] for i in self.static_argnums if i < len(args)}
        static.update({k: v for k, v in kwargs.items() if k in self.static_argnames})
        dynamic_args = [a for i, a in enumerate(args) if i not in static]
        dynamic_kwargs = {k: v for k, v in kwargs.items() if k not in static}
        leaves, treedef = flatten((dynamic_args, dynamic_kwargs))
        specs = []
        for n, leaf in enumerate(leaves):
            specs.append(_leaf_key(leaf, n, self.__name__, self.target))
        try:
            static_key = tuple(sorted((str(k), v) for k, v in static.items()))
            hash(static_key)
        except TypeError:
            raise ArgumentError(f"{self.__name__}(): static arguments must be hashable "
                                f"(got {static})") from None
        key = (_treedef_key(treedef), tuple(specs), static_key)

        def rebuild(values: list) -> tuple[tuple, dict]:
            dyn_args, dyn_kwargs = unflatten(treedef, values)
            pending = iter(dyn_args)
            full_args = tuple(static[i] if i in static else next(pending)
                              for i in range(len(args)))
            merged = dict(dyn_kwargs)
            merged.update({k: v for k, v in static.items() if isinstance(k, str)})
            return full_args, merged

        if self._simple and not kwargs:
            fast = _fast_key(args)
            if fast is not None:
                key = fast
        return key, leaves, rebuild

    # ------------------------------------------------------------ compiling
    def _compile_locked(self, key: Any, leaves: list, rebuild: Callable,
                        aliases: tuple = ()) -> CompiledEntry:
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            entry = self._cache.get(key)
            if entry is not None:
                self.hits += 1
                return entry
            self.misses += 1
            entry = self._compile(leaves, rebuild, aliases)
            entry.used = self.hits
            with self._lock:
                self._cache[key] = entry
                self._evict_beyond_cap(keep=key)
            self._note_shapes(entry.specs)
            return entry

    def _evict_beyond_cap(self, keep: Any) -> None:
        """Drop least recently used entries beyond max_entries (their native code and buffers
        are freed once no call still runs them)."""
        while self.max_entries is not None and len(self._cache) > self.max_entries:
            victim = min((k for k in self._cache if k != keep),
                         key=lambda k: self._cache[k].used)
            gone = self._cache.pop(victim)
            self._key_locks.pop(victim, None)
            for key in [k for k, (entry, _) in self._tree_cache.items() if entry is gone]:
                del self._tree_cache[key]

    def _compile(self, leaves: list, rebuild: Callable, aliases: tuple = ()) -> CompiledEntry:
        specs = [leaf_spec(leaf, f"argument leaf {n} of {self.__name__}()")
                 for n, leaf in enumerate(leaves)]
        lowered = self._lower_specs(specs, rebuild, aliases)
        return CompiledEntry(lowered.traced, lowered.executable, specs, lowered)

    def _lower_specs(self, specs: list[LeafSpec], rebuild: Callable,
                     aliases: tuple = ()) -> Lowered:
        stats: dict[str, float] = {}
        start = time.perf_counter()
        before = _global_random_states()
        same = {j: i for i, j, kind in aliases if kind == "same"}
        traced = trace(self.fn, specs, rebuild, getattr(self.fn, "__name__", "fn"), same_as=same)
        _refuse_overlapping_writes(traced, aliases, self.__name__)
        stats["trace"] = time.perf_counter() - start
        if not self._random_warned and _global_random_states() != before:
            self._random_warned = True
            warnings.warn(
                f"graphjit: {self.__name__}() drew random numbers from np.random or random "
                f"while it was traced ({_definition_site(self.fn)}): they were drawn once, at "
                "trace time, and every call returns the same values. Use gj.random with a key "
                "argument instead (key = gj.random.key(seed); gj.random.normal(key, shape); "
                "gj.random.split(key) for a new key per call).", RuntimeWarning, stacklevel=6)
        log = PassLog()
        program = compile_graph(traced.graph, log)
        stats.update(log.stats())
        traced.graph = program.graph
        executable = backends.compile(program, self.target, stats)
        lowered = Lowered(self, traced, log, program, executable, stats)
        _dump(lowered)
        return lowered

    def _note_shapes(self, specs: list[LeafSpec]) -> None:
        self._leaf_shapes.append([s.shape for s in specs])
        del self._leaf_shapes[:-SHAPE_HISTORY]
        if self.misses > RECOMPILE_WARNING_AFTER and not self._warned:
            self._warned = True
            changing = _changing_arguments(self._leaf_shapes, self._signature)
            warnings.warn(
                f"graphjit: {self.__name__} has been compiled {self.misses} times because "
                f"argument shapes keep changing ({changing}). Each new shape retraces and "
                "recompiles; pad inputs to a few fixed shapes, or mark non-array arguments "
                "static.", RuntimeWarning, stacklevel=5)

    # ------------------------------------------------------------ inspection
    def lower(self, *args: Any, **kwargs: Any) -> Lowered:
        """Trace and compile for these arguments (using the cache) and return the stages."""
        key, leaves, rebuild = self._key_and_leaves(args, kwargs)
        entry = self._cache.get(key)
        if entry is None:
            entry = self._compile_locked(key, leaves, rebuild)
        return entry.lowered

    def cache_info(self) -> dict[str, int]:
        """Hits, misses and live entries (at most `self.max_entries`)."""
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._cache)}

    def cache_clear(self) -> None:
        """Forget every compiled specialisation and free its native code (MCJIT engines) and
        buffers, returning the memory to the system where the allocator allows."""
        with self._lock:
            self._cache.clear()
            self._tree_cache.clear()
            self._key_locks.clear()
            self.hits = self.misses = 0
        _release_memory()

    def eager(self, *args: Any, **kwargs: Any) -> Any:
        """Run the undecorated function."""
        return self.fn(*args, **kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return functools.partial(self, instance)

    def __repr__(self) -> str:
        return f"<graphjit.jit {self.__name__} target={self.target}>"

    # ------------------------------------------------------------ pickling
    def __reduce__(self) -> tuple:
        """By reference when `module.qualname` finds this very object (as for plain functions
        and Numba's dispatchers); otherwise (closures, lambdas, `__main__`) by value, the Python
        function through cloudpickle. Compiled code never travels: the receiver compiles on
        first call, or loads the object code from the (shared) disk cache."""
        module = getattr(self, "__module__", None)
        qualname = getattr(self, "__qualname__", None)
        importable = _resolves_to(module, qualname, self)
        if importable and module != "__main__":
            return _jit_by_reference, (module, qualname)
        cloudpickle = _cloudpickle()
        if cloudpickle is None:
            if importable:
                return _jit_by_reference, (module, qualname)
            raise pickle.PicklingError(
                f"graphjit: cannot pickle {self.__name__}: it is not importable as "
                f"{module}.{qualname} (a closure, lambda or nested function). Install "
                "cloudpickle (pip install 'graphjit[pickle]') to send it by value, or define it "
                "at module level.")
        pickle_id = self._identity()
        active = _ids_being_pickled()
        if pickle_id in active:   # the function refers to itself: the outer pickle
            return _jit_by_value, (pickle_id, self._options)   # carries it
        active.add(pickle_id)
        try:
            payload = cloudpickle.dumps(self.fn)
        finally:
            active.discard(pickle_id)
        return _jit_by_value, (pickle_id, self._options), {"fn": payload}

    def __setstate__(self, state: dict) -> None:
        if hasattr(self, "fn"):       # already known in this process: one object per function
            return
        pickle_id = self._pickle_id
        self.__init__(_cloudpickle_or_fail().loads(state["fn"]), **self._options)
        self._pickle_id = pickle_id

    def _identity(self) -> str:
        """An id that names this function across processes (assigned on first pickle)."""
        if self._pickle_id is None:
            self._pickle_id = uuid.uuid4().hex
            _by_identity[self._pickle_id] = self
        return self._pickle_id


# Every JitFunction, so a forked child can replace locks that a parent thread may have held.
_live_functions: weakref.WeakSet[JitFunction] = weakref.WeakSet()


def _fresh_locks_after_fork() -> None:
    for function in list(_live_functions):
        function._lock = threading.RLock()
        function._key_locks = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


# Unpickling one function twice in a process gives one object (and one cache of compiled code).
_by_identity: weakref.WeakValueDictionary[str, JitFunction] = weakref.WeakValueDictionary()
_pickling_now = threading.local()   # ids of the functions this thread is pickling by value


def _ids_being_pickled() -> set[str]:
    ids = getattr(_pickling_now, "ids", None)
    if ids is None:
        ids = _pickling_now.ids = set()
    return ids


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError:
        return None
    return cloudpickle


def _cloudpickle_or_fail() -> Any:
    cloudpickle = _cloudpickle()
    if cloudpickle is None:
        raise pickle.UnpicklingError("graphjit: this jitted function was pickled by value with "
                                     "cloudpickle, which is not installed here")
    return cloudpickle


def _resolves_to(module: str | None, qualname: str | None, target: Any) -> bool:
    if not module or not qualname or "<" in qualname:
        return False
    value = sys.modules.get(module)
    for part in qualname.split("."):
        value = getattr(value, part, None)
    return value is target


def _jit_by_reference(module: str, qualname: str) -> Any:
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def _jit_by_value(pickle_id: str, options: dict) -> JitFunction:
    existing = _by_identity.get(pickle_id)
    if existing is not None:
        return existing
    function = JitFunction.__new__(JitFunction)
    function._pickle_id, function._options = pickle_id, options
    _by_identity[pickle_id] = function
    return function


def _release_memory() -> None:
    # entries hold reference cycles (closures over themselves), so their engines go on a collection
    gc.collect()
    try:
        from graphjit.runtime.cpu.executable import output_blocks
    except ImportError:
        pass
    else:
        output_blocks.clear()
    _trim_heap()


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    try:
        import ctypes
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):   # not glibc
        return None


def _trim_heap() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_dump_warnings: set[str] = set()


def _dump(lowered: Lowered) -> None:
    """GRAPHJIT_DUMP is a debugging aid: if it cannot write, say so once, and never fail."""
    try:
        lowered.dump_if_requested()
    except OSError as exc:
        directory = os.environ.get("GRAPHJIT_DUMP", "")
        if directory not in _dump_warnings:
            _dump_warnings.add(directory)
            warnings.warn(f"graphjit: GRAPHJIT_DUMP={directory!r}: cannot write the "
                          f"compilation dump there ({exc.strerror or exc}); compiling without "
                          "it. Point GRAPHJIT_DUMP at a directory you can create, or unset it.",
                          RuntimeWarning, stacklevel=7)


def _global_random_states() -> tuple:
    """The states of NumPy's global RandomState and of Python's `random`: a trace that changes
    them drew values that are now frozen into the compiled program."""
    numpy_state = np.random.get_state()
    python_random = sys.modules.get("random")
    return (numpy_state[1].tobytes(), *numpy_state[2:],
            python_random.getstate() if python_random is not None else None)


def _definition_site(fn: Callable) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return "its definition"
    return f"defined at {os.path.basename(code.co_filename)}:{code.co_firstlineno}"


def _owner(array: np.ndarray) -> int:
    base = array
    while isinstance(base.base, np.ndarray):
        base = base.base
    return id(base if base.base is None else base.base)


def _may_alias(args: Sequence) -> bool:
    """Whether two array arguments may share memory (one owner); cheap, for the hit path."""
    owners = [_owner(a) for a in args if a.__class__ is np.ndarray]
    return len(owners) > 1 and len(set(owners)) < len(owners)


def alias_pattern(leaves: Sequence) -> tuple:
    """(i, j, "same" | "overlap") for array leaves i < j that share memory: "same" where leaf j
    is the very same view as leaf i (f(a, a)), "overlap" where they overlap otherwise."""
    groups: dict[int, list[int]] = {}
    for n, leaf in enumerate(leaves):
        if isinstance(leaf, np.ndarray):
            groups.setdefault(_owner(leaf), []).append(n)
    pattern = []
    for members in groups.values():
        first_same: dict[int, int] = {}
        for a_pos, i in enumerate(members):
            for j in members[a_pos + 1:]:
                if j in first_same:
                    continue
                x, y = leaves[i], leaves[j]
                if (x.__array_interface__["data"][0] == y.__array_interface__["data"][0]
                        and x.shape == y.shape and x.strides == y.strides
                        and x.dtype == y.dtype):
                    first_same[j] = i
                    pattern.append((i, j, "same"))
                elif np.shares_memory(x, y):
                    pattern.append((i, j, "overlap"))
    return tuple(sorted(pattern))


def _refuse_overlapping_writes(traced: TracedFunction, aliases: tuple, name: str) -> None:
    written = {leaf for leaf, _ in traced.writebacks}
    for i, j, kind in aliases:
        if kind == "overlap" and (i in written or j in written):
            raise ArgumentError(
                f"{name}(): argument leaves {i} and {j} overlap in memory (views of one array, "
                f"like f(a, a[1:])) and the function writes into leaf {i if i in written else j}; "
                "graphjit would not reproduce NumPy's result there. Pass a copy of one of them "
                "(f(a, a[1:].copy()))")


def _contains_tracer(args: tuple, kwargs: dict) -> bool:
    leaves, _ = flatten((args, kwargs))
    return any(isinstance(leaf, Tracer) for leaf in leaves)


def _signature_or_none(fn: Callable):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _fast_key(args: tuple, ndarray: type = np.ndarray) -> tuple | None:
    """Key for the common case of positional array arguments only: shape and dtype per array,
    the type for a Python scalar; None (never a cache key) for anything else. Flat, because
    building and hashing nested tuples costs more; unambiguous, because a type is never a shape
    or a dtype. (`ndarray` and `append` are locals: each global or attribute lookup costs.)"""
    key: list = []
    append = key.append
    for arg in args:
        if arg.__class__ is ndarray:
            append(arg.shape)
            append(arg.dtype)
        else:
            scalar = _SCALAR_KEYS.get(arg.__class__)
            if scalar is None:
                return None
            append(scalar)
    return tuple(key)


_SCALAR_KEYS = {kind: kind for kind in _SCALAR_TYPES}
_KEYWORDS = object()     # separates positional from keyword arguments in a tree key


def _tree_key(args: tuple, kwargs: dict) -> tuple[tuple, list] | None:
    """(key, leaves) for arguments that are arrays, Python scalars, None, and exact tuples,
    lists and dicts of them, positional or keyword; None for anything else (the slow path
    decides). The key is a flat prefix code: every entry starts with a shape (an array), a
    scalar type, None, or a container's class, so two different argument trees never share
    a key; keyword names and dict keys (in order) are part of it."""
    key: list = []
    leaves: list = []
    for arg in args:
        if not _walk_tree(arg, key, leaves):
            return None
    if kwargs:
        key.append(_KEYWORDS)
        for name, value in kwargs.items():
            key.append(name)
            if not _walk_tree(value, key, leaves):
                return None
    return tuple(key), leaves


def _walk_tree(node: Any, key: list, leaves: list) -> bool:
    kind = node.__class__
    if kind is np.ndarray:
        key.append(node.shape)
        key.append(node.dtype)
        leaves.append(node)
        return True
    scalar = _SCALAR_KEYS.get(kind)
    if scalar is not None:
        key.append(scalar)
        leaves.append(node)
        return True
    if kind is tuple or kind is list:
        key.append(kind)
        key.append(len(node))
        return all(_walk_tree(item, key, leaves) for item in node)
    if kind is dict:
        key.append(dict)
        key.append(tuple(node))
        return all(_walk_tree(item, key, leaves) for item in node.values())
    if node is None:
        key.append(None)
        return True
    return False


def _output_ndims(traced: TracedFunction) -> list[bool]:
    """Per graph output: whether it has at least one dimension (0-d outputs become scalars)."""
    graph = traced.graph
    return [bool(graph.node(index).shape) for index in graph.outputs]


def _contiguous_leaves(args: Sequence) -> list:
    return [_contiguous(a) if type(a) is np.ndarray else a for a in args]


def _contiguous(array: np.ndarray) -> np.ndarray:
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _leaf_key(leaf: Any, n: int, name: str, target: str = "cpu") -> Any:
    kind = type(leaf)
    if kind is np.ndarray:
        return (leaf.shape, leaf.dtype)
    if kind in _SCALAR_TYPES:
        return kind
    if isinstance(leaf, np.generic):
        return ((), leaf.dtype)   # one specialisation with 0-d arrays; never written back
    if isinstance(leaf, np.ndarray):
        return (leaf.shape, leaf.dtype)
    if hasattr(leaf, "__cuda_array_interface__") or hasattr(leaf, "copy_to_host"):
        if target != "cuda":
            raise ArgumentError(
                f"argument leaf {n} of {name}() is a CUDA device array ({kind.__name__}), but "
                f"{name} compiles for target={target!r}: use gj.jit(..., target='cuda'), or "
                "copy it to the host first (.copy_to_host(), .get(), .cpu().numpy())")
        return (tuple(leaf.shape), device_array_dtype(leaf))
    leaf_spec(leaf, f"argument leaf {n} of {name}()")  # raises the clear error
    return kind


def _treedef_key(treedef: Any) -> Any:
    if isinstance(treedef, (list, tuple)):
        return tuple(_treedef_key(t) for t in treedef)
    return treedef


def _changing_arguments(history: list[list[tuple]], signature) -> str:
    if not history:
        return "unknown"
    width = max(len(h) for h in history)
    changing = []
    for i in range(width):
        shapes = {h[i] if i < len(h) else None for h in history}
        if len(shapes) > 1:
            changing.append(f"argument leaf {i}")
    if signature is not None and len(signature.parameters) == width:
        names = list(signature.parameters)
        changing = [f"'{names[int(c.split()[-1])]}'" for c in changing]
    return ", ".join(changing) or "static arguments"


def jit(fn: Callable | None = None, *, static_argnums: Sequence[int] | int = (),
        static_argnames: Sequence[str] | str = (), target: str = "cpu",
        max_entries: int | None = DEFAULT_MAX_ENTRIES) -> Any:
    """Compile `fn` on first call for each argument signature. Usable bare or with arguments.

    At most `max_entries` signatures stay compiled (least recently used evicted; None: no cap)."""
    if target not in backends.TARGETS:
        raise GraphjitError(f"unknown target {target!r}; choose one of {sorted(backends.TARGETS)}")

    def wrap(f: Callable) -> JitFunction:
        return JitFunction(f, static_argnums=static_argnums, static_argnames=static_argnames,
                           target=target, max_entries=max_entries)

    return wrap if fn is None else wrap(fn)
