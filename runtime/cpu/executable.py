"""The Executable: a compiled Program as a flat list of calls over preallocated buffers.

Every buffer of the program has a slot in a table of raw pointers (`char **`), which is what
native kernels receive. A `Workspace` owns the TEMP memory of one in-flight call and a table
pre-filled with the TEMP and CONST pointers; workspaces are pooled, so concurrent calls from
several Python threads never share intermediates. Per call, only the PARAM and OUTPUT slots are
filled (by the first native entry function, straight from the lists of arrays), OUTPUT arrays are
fresh (medium ones recycled by their allocator once nothing holds them, big ones from a pool of
blocks that return when the user's arrays die), and the steps run
in order. Each step is a callable `step(workspace)` prepared at compile time: a native entry
function (a run of serial kernels), a parallel loop, a matmul, or a host step.
"""
from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphjit.compiler.errors import ArgumentError, GraphjitError, execution_error
from graphjit.compiler.ops import OPS
from graphjit.compiler.ir import Node
from graphjit.compiler.kernel import Buffer, BufferKind, HostKernel, Program
from graphjit.compiler.printer import format_node

PYTHON_SCALARS = (float, int, bool)
ALIGNMENT = 64   # bytes: a cache line, and enough for any vector load

RunStep = Callable[["Workspace"], None]
# entry(table address): binds the call's arrays (from the workspace's `call_args`) into the
# table, runs the first native kernels
Entry = Callable[[int], None]


def aligned_empty(nbytes: int) -> tuple[np.ndarray, int]:
    """Raw memory of at least `nbytes` (never zero) and its ALIGNMENT-aligned address."""
    raw = np.empty(max(nbytes, 1) + ALIGNMENT, np.uint8)
    address = raw.ctypes.data
    return raw, address + (-address % ALIGNMENT)


class Workspace:
    """The TEMP memory of one in-flight call, and its pointer table (and the table's address)."""

    def __init__(self, buffers: Sequence[Buffer], consts: dict[int, np.ndarray],
                 scalar_dtypes: Sequence[np.dtype] = ()):
        # 0-d arrays the call's Python scalar arguments are written into (cheaper than making
        # an array of each per call, and at a fixed address for the host steps' view cache)
        self.scalars = [np.empty((), dtype) for dtype in scalar_dtypes]
        # the last slot points at `call_args`, where a call puts [leaves, outputs] for the native
        # entry function to bind (runtime/cpu/llvm.py); it lives as long as the table
        self.table = (ctypes.c_void_p * (len(buffers) + 1))()
        self.address = ctypes.addressof(self.table)
        self.call_args: list = [None, None]
        self.table[len(buffers)] = id(self.call_args)
        self._memory: list[np.ndarray] = []
        slot_address: dict[int, int] = {}
        for buffer in _temps_largest_first(buffers):
            if buffer.slot is not None and buffer.slot in slot_address:
                self.table[buffer.index] = slot_address[buffer.slot]
                continue
            raw, address = aligned_empty(_slot_bytes(buffers, buffer))
            self._memory.append(raw)
            self.table[buffer.index] = address
            if buffer.slot is not None:
                slot_address[buffer.slot] = address
        for index, value in consts.items():
            self.table[index] = value.ctypes.data


def _temps_largest_first(buffers: Sequence[Buffer]) -> list[Buffer]:
    temps = [b for b in buffers if b.kind is BufferKind.TEMP]
    return sorted(temps, key=lambda b: -b.nbytes)


def _slot_bytes(buffers: Sequence[Buffer], buffer: Buffer) -> int:
    if buffer.slot is None:
        return buffer.nbytes
    return max(b.nbytes for b in buffers if b.kind is BufferKind.TEMP and b.slot == buffer.slot)


class _Block:
    """Owner of one pooled output allocation: the base object of the arrays made from it.

    NumPy keeps the base alive while any view of it lives; when the last one dies the block
    goes back to its pool, so the next call writes to pages that are already mapped."""

    __slots__ = ("memory", "nbytes", "pool", "__array_interface__")

    def __init__(self, memory: tuple[np.ndarray, int], nbytes: int, pool: BlockPool,
                 interface: dict):
        self.memory, self.nbytes, self.pool = memory, nbytes, pool   # (raw bytes, aligned address)
        self.__array_interface__ = interface

    def __del__(self) -> None:
        try:
            self.pool.give_back(self.nbytes, self.memory)
        except Exception:  # interpreter shutdown: nothing to give back to
            pass


class BlockPool:
    """A caching allocator for outputs (fresh pages cost a page fault each: ~4x slower writes
    for a 1e8-element output). Blocks return when the user's arrays die; at most `per_size` free
    blocks are kept per size, `max_sizes` sizes (oldest size dropped) and `max_bytes` in all.

    Medium outputs need it too: a call whose 100 KB outputs the caller drops at once frees them
    at the top of malloc's heap, which glibc then trims (past M_TRIM_THRESHOLD, 128 KB) and
    faults back in on the next call: 0.3 ms a call for sgd_momentum's two (256, 100) outputs
    on a VM, against 30 us with the pages kept."""

    MIN_BYTES = 16 * 1024   # below this, np.empty (malloc's own free lists) is faster

    def __init__(self, per_size: int = 2, max_sizes: int = 32, max_bytes: int = 1 << 30):
        self.per_size, self.max_sizes, self.max_bytes = per_size, max_sizes, max_bytes
        self._free: dict[int, list[tuple[np.ndarray, int]]] = {}
        self._cached = 0

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        return self.allocator(tuple(shape), dtype, nbytes)()

    def allocator(self, shape: tuple[int, ...], dtype: np.dtype, nbytes: int
                  ) -> Callable[[], np.ndarray]:
        """A function making one array of this shape from the pool (a few us a call)."""
        free, typestr, asarray = self._free, dtype.str, np.asarray

        def allocate() -> np.ndarray:
            blocks = free.get(nbytes)
            if blocks:
                raw, address = blocks.pop()
                self._cached -= nbytes
            else:
                raw, address = aligned_empty(nbytes)
            interface = {"data": (address, False), "shape": shape, "typestr": typestr,
                         "version": 3}
            return asarray(_Block((raw, address), nbytes, self, interface))

        return allocate

    def give_back(self, nbytes: int, memory: tuple[np.ndarray, int]) -> None:
        if self._cached + nbytes > self.max_bytes:
            return
        free = self._free.get(nbytes)
        if free is None:
            while len(self._free) >= self.max_sizes:
                size = next(iter(self._free))
                self._cached -= size * len(self._free.pop(size))
            free = self._free.setdefault(nbytes, [])
        if len(free) < self.per_size:
            free.append(memory)
            self._cached += nbytes

    def clear(self) -> None:
        self._free.clear()
        self._cached = 0

    def cached_bytes(self) -> int:
        return sum(size * len(blocks) for size, blocks in list(self._free.items()))


# Shared by every executable: outputs of one size are usually made by many calls of one function.
output_blocks = BlockPool()


RECYCLE_MAX_BYTES = 16 << 20   # outputs up to this size are recycled per allocator (below)
RECYCLE_KEEP = 2               # arrays each such allocator keeps: a result fed back in, a new one


def output_allocator(shape: tuple[int, ...], dtype: np.dtype) -> Callable[[], np.ndarray]:
    """A function making one fresh output array: np.empty when small, a recycled array of
    this allocator when medium, a pooled block when large."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if nbytes < BlockPool.MIN_BYTES:
        return lambda: np.empty(shape, dtype)
    if nbytes <= RECYCLE_MAX_BYTES and _FREE_REFCOUNT is not None:
        return recycling_allocator(tuple(shape), dtype)
    return output_blocks.allocator(tuple(shape), dtype, nbytes)


def recycling_allocator(shape: tuple[int, ...], dtype: np.dtype,
                        keep: int = RECYCLE_KEEP) -> Callable[[], np.ndarray]:
    """Hands out its own earlier arrays again once nothing else holds them (their reference
    count says so: no user reference, no view, no buffer export), else a new np.empty, of
    which it keeps up to `keep`. Their pages stay mapped (the point of BlockPool: a dropped
    100 KB output is otherwise trimmed and faulted back in), at ~0.2 us a call instead of the
    ~1.5 us of making an array from a pooled block. An array whose shape, strides, dtype or
    writeable flag its last user changed is forgotten, not handed out."""
    ring: list[np.ndarray] = []
    strides = np.empty(shape, dtype).strides
    empty, free_count, refcount = np.empty, _FREE_REFCOUNT, sys.getrefcount

    def allocate() -> np.ndarray:
        for array in ring:
            # `array` is referenced by the ring, this loop and getrefcount: free (calibrated)
            if refcount(array) == free_count:
                if (array.shape == shape and array.strides == strides
                        and array.dtype == dtype and array.flags.writeable):
                    return array
                ring.remove(array)
                break
        fresh = empty(shape, dtype)
        if len(ring) < keep:
            ring.append(fresh)
        return fresh

    return allocate


def _calibrate_free_refcount() -> int | None:
    """The reference count recycling_allocator sees for an array nothing else holds, measured
    with the same loop (interpreters differ in what a loop variable holds); None disables
    recycling where the measure does not tell a held array from a free one."""
    ring = [np.empty(1)]

    def count() -> int:
        for array in ring:
            return sys.getrefcount(array)
        return -1

    free = count()
    held = ring[0]
    busy = count()
    del held
    return free if busy > free and count() == free else None


_FREE_REFCOUNT = _calibrate_free_refcount()


class WorkspacePool:
    """Workspaces handed out one per in-flight call (list pop/append are atomic under the GIL)."""

    def __init__(self, buffers: Sequence[Buffer], consts: dict[int, np.ndarray],
                 scalar_dtypes: Sequence[np.dtype] = ()):
        self._buffers = list(buffers)
        self._consts = consts
        self._scalar_dtypes = list(scalar_dtypes)
        self.free: list[Workspace] = [self.create()]

    def create(self) -> Workspace:
        return Workspace(self._buffers, self._consts, self._scalar_dtypes)

    def acquire(self) -> Workspace:
        try:
            return self.free.pop()
        except IndexError:
            return self.create()

    def release(self, workspace: Workspace) -> None:
        self.free.append(workspace)

    def __len__(self) -> int:
        return len(self.free)


@dataclass(frozen=True)
class ParamSpec:
    position: int          # index in the call's leaves
    shape: tuple[int, ...]
    dtype: np.dtype


class Executable:
    """Runs a compiled Program: `run(leaves) -> [one fresh array per program output]`."""

    # run() takes leaves of any layout: it copies only those that are not C-contiguous
    checks_layouts = True

    def __init__(self, program: Program, entry: Entry | None, steps: list[RunStep],
                 texts: Any = None, keep_alive: Any = None):
        self.program = program
        self.texts = texts if texts is not None else {}
        self._keep_alive = keep_alive          # the native library the steps point into
        self._entry = entry
        self._steps = steps
        buffers = program.buffers
        self.consts = {b.index: np.ascontiguousarray(b.value, dtype=b.dtype).reshape(b.shape)
                       for b in buffers if b.kind is BufferKind.CONST}
        self._outputs = [b for b in buffers if b.kind is BufferKind.OUTPUT]
        self._output_specs = [(b.shape, b.dtype) for b in self._outputs]
        self._params = _param_specs(buffers)
        self._n_leaves = max((p.position for p in self._params), default=-1) + 1
        self._scalar_params = [(p.position, p.dtype) for p in self._params if not p.shape]
        self.workspaces = WorkspacePool(buffers, self.consts,
                                        [dtype for _, dtype in self._scalar_params])
        self._array_params = [p for p in self._params if p.shape]
        self._array_checks = [(p.position, p.shape, p.dtype, _contiguous_strides(p))
                              for p in self._array_params]
        self._allocators = [output_allocator(shape, dtype) for shape, dtype in self._output_specs]
        self._free = self.workspaces.free
        self._python_bind = _python_binder(buffers, self._outputs) if entry is None else None
        self._results = _result_plan(program, self._outputs)
        # an instance attribute, shadowing the method below: one Python call less per hit
        self.run = self._make_run()
        self.run_keyed = self._make_run(keyed=True)

    # ------------------------------------------------------------ calling
    def run(self, leaves: Sequence[Any]) -> list[np.ndarray]:
        """[one fresh array per program output] for these argument leaves."""
        return self.run(leaves)   # the closure made by _make_run (set in __init__)

    def __call__(self, leaves: Sequence[Any]) -> list[np.ndarray]:
        return self.run(leaves)

    def _make_run(self, keyed: bool = False) -> Callable[[Sequence[Any]], list[np.ndarray]]:
        """The hot path of every cache hit, as one closure over precomputed locals (each Python
        attribute lookup or call costs ~30-50 ns here): check the leaves, allocate the outputs,
        take a workspace, call native code, give the workspace back.

        `keyed`: `run_keyed(leaves)`, for callers whose cache key already holds each array
        leaf's exact class (ndarray), shape and dtype (graphjit/jit.py's hit path): only the
        layouts are checked (~80 ns a leaf instead of ~250)."""
        if keyed:
            checks = tuple((position, strides) for position, _, _, strides
                           in self._array_checks)
            return self._make_keyed_run(checks)
        checks = tuple(self._array_checks)
        # (index in workspace.scalars, leaf position) for the scalar params
        scalars = tuple((n, position) for n, (position, _) in enumerate(self._scalar_params))
        checked_leaves = self._checked_leaves
        allocators = tuple(self._allocators)
        free, create = self._free, self.workspaces.create
        entry, steps, results = self._entry, tuple(self._steps), self._results
        bind, collect = self._python_bind, self._collect

        def run(leaves: Sequence[Any]) -> list[np.ndarray]:
            try:
                workspace = free.pop()
            except IndexError:
                workspace = create()
            call_args = workspace.call_args
            try:
                if scalars:
                    bound = bind_scalars(leaves, workspace.scalars)
                    leaves = checked_leaves(leaves) if bound is None else bound
                if leaves.__class__ is not list:
                    leaves = checked_leaves(leaves)
                else:
                    try:
                        for position, shape, dtype, strides in checks:
                            leaf = leaves[position]
                            # `is not` first: dtypes of ordinary arrays are the canonical ones
                            if (leaf.__class__ is not np.ndarray or leaf.shape != shape
                                    or (leaf.dtype is not dtype and leaf.dtype != dtype)
                                    or leaf.strides != strides):
                                raise TypeError
                    except (TypeError, AttributeError, IndexError):
                        leaves = checked_leaves(leaves)
                outputs = [allocate() for allocate in allocators]
                if entry is not None:
                    call_args[0] = leaves
                    call_args[1] = outputs
                    entry(workspace.address)
                else:
                    bind(leaves, outputs, workspace.table)
                for step in steps:
                    step(workspace)
                if results is None:
                    return outputs
                return collect(leaves, outputs, workspace.table)
            finally:
                # drop the references at once: pooled outputs go back when the user drops them
                call_args[0] = call_args[1] = None
                free.append(workspace)

        def bind_scalars(leaves: Sequence[Any], holders: list[np.ndarray]) -> list | None:
            """The leaves, with each Python scalar param written into its 0-d holder; the
            None (checked_leaves converts or refuses them) if one is not a Python scalar or
            does not fit."""
            bound = list(leaves)
            try:
                for n, position in scalars:
                    value = bound[position]
                    if value.__class__ not in PYTHON_SCALARS:
                        return None
                    holder = holders[n]
                    holder[()] = value
                    bound[position] = holder
            except (OverflowError, ValueError, TypeError, IndexError):
                return None
            return bound

        return run

    def _make_keyed_run(self, checks: tuple) -> Callable[[Sequence[Any]], list[np.ndarray]]:
        """run_keyed (see _make_run): the same steps, the leaves' layouts checked only."""
        scalars = tuple((n, position) for n, (position, _) in enumerate(self._scalar_params))
        checked_leaves, run = self._checked_leaves, self.run
        allocators = tuple(self._allocators)
        free, create = self._free, self.workspaces.create
        entry, steps, results = self._entry, tuple(self._steps), self._results
        bind, collect = self._python_bind, self._collect
        def run_keyed(leaves: list) -> list[np.ndarray]:
            for position, strides in checks:
                if leaves[position].strides != strides:
                    return run(leaves)
            try:
                workspace = free.pop()
            except IndexError:
                workspace = create()
            call_args = workspace.call_args
            try:
                if scalars:
                    # the key says each is a Python float, int or bool; one that does not fit
                    # (an int beyond int64) goes the full way, to its error
                    try:
                        holders = workspace.scalars
                        for n, position in scalars:
                            holder = holders[n]
                            holder[()] = leaves[position]
                            leaves[position] = holder
                    except (OverflowError, ValueError, TypeError):
                        free.append(workspace)
                        workspace = None
                        return run(leaves)
                outputs = [allocate() for allocate in allocators]
                if entry is not None:
                    call_args[0] = leaves
                    call_args[1] = outputs
                    entry(workspace.address)
                else:
                    bind(leaves, outputs, workspace.table)
                for step in steps:
                    step(workspace)
                if results is None:
                    return outputs
                return collect(leaves, outputs, workspace.table)
            finally:
                if workspace is not None:
                    call_args[0] = call_args[1] = None
                    free.append(workspace)

        return run_keyed

    def bound_workspace(self, leaves: Sequence[Any]
                        ) -> tuple[Callable[[], Workspace], Callable[[Workspace], None]]:
        """(prepare, finish) for running the program's pieces one by one (runtime/profile.py):
        prepare() takes a workspace with the leaves and fresh outputs bound into its table."""
        leaves = self._checked_leaves(leaves)
        bind = _python_binder(self.program.buffers, self._outputs)
        allocators = self._allocators
        held: dict[int, list] = {}

        def prepare() -> Workspace:
            workspace = self.workspaces.acquire()
            outputs = [allocate() for allocate in allocators]
            bind(leaves, outputs, workspace.table)
            held[id(workspace)] = outputs     # alive while the pieces write into them
            return workspace

        def finish(workspace: Workspace) -> None:
            held.pop(id(workspace), None)
            self.workspaces.release(workspace)

        return prepare, finish

    def _checked_leaves(self, leaves: Sequence[Any]) -> list:
        """The leaves as a list of C-contiguous arrays of the params' shapes and dtypes.

        Native code reads these arrays' memory directly, so a wrong shape must never get
        through: it is an error here, not an out-of-bounds read later."""
        leaves = list(leaves)
        if len(leaves) < self._n_leaves:
            raise ArgumentError(f"expected {self._n_leaves} argument leaves, got {len(leaves)}")
        for position, dtype in self._scalar_params:
            try:
                leaves[position] = np.asarray(leaves[position], dtype=dtype)
            except (OverflowError, ValueError, TypeError) as exc:
                raise ArgumentError(f"argument leaf {position}: cannot pass "
                                    f"{leaves[position]!r} as {dtype}: {exc}") from None
        for param in self._array_params:
            leaf = leaves[param.position]
            if (type(leaf) is not np.ndarray or leaf.shape != param.shape
                    or leaf.dtype != param.dtype or not leaf.flags.c_contiguous):
                leaves[param.position] = _coerce(leaf, param)
        return leaves

    def _collect(self, leaves: list, outputs: list, table: ctypes.Array) -> list[np.ndarray]:
        return [take(leaves, outputs, table) for take in self._results]


def _coerce(leaf: Any, param: ParamSpec) -> np.ndarray:
    array = np.asarray(leaf)
    if array.shape != param.shape or array.dtype != param.dtype:
        raise ArgumentError(
            f"argument leaf {param.position}: expected {param.dtype}{list(param.shape)}, got "
            f"{array.dtype}{list(array.shape)} (the compiled code was specialised for the first)")
    return np.ascontiguousarray(array)


def _contiguous_strides(param: ParamSpec) -> tuple[int, ...]:
    return np.empty(param.shape, param.dtype).strides if 0 not in param.shape else ()


def _param_specs(buffers: Sequence[Buffer]) -> list[ParamSpec]:
    return [ParamSpec(b.param_index, b.shape, b.dtype) for b in buffers
            if b.kind is BufferKind.PARAM and b.param_index is not None]


def _python_binder(buffers: Sequence[Buffer], outputs: list[Buffer]) -> Callable:
    """Binds the call's arrays into the table from Python (when native binding is unavailable)."""
    params = [(b.index, b.param_index) for b in buffers if b.kind is BufferKind.PARAM]
    outs = [(b.index, n) for n, b in enumerate(outputs)]

    def bind(leaves: list, arrays: list, table: ctypes.Array) -> None:
        for slot, position in params:
            table[slot] = leaves[position].ctypes.data
        for slot, position in outs:
            table[slot] = arrays[position].ctypes.data

    return bind


def _result_plan(program: Program, outputs: list[Buffer]) -> list[Callable] | None:
    """How to produce each program output; None when it is exactly the fresh OUTPUT arrays.

    Outputs must never alias inputs, constants or each other, so a program output that is a
    PARAM, CONST or TEMP buffer, or repeats an OUTPUT buffer, is copied."""
    position_of = {b.index: n for n, b in enumerate(outputs)}
    if program.outputs == [b.index for b in outputs]:
        return None
    plan: list[Callable] = []
    used: set[int] = set()
    for index in program.outputs:
        buffer = program.buffers[index]
        if buffer.kind is BufferKind.OUTPUT and index not in used:
            used.add(index)
            plan.append(lambda leaves, outs, table, n=position_of[index]: outs[n])
        else:
            plan.append(_copier(buffer, position_of))
    return plan


def _copier(buffer: Buffer, position_of: dict[int, int]) -> Callable:
    if buffer.kind is BufferKind.PARAM:
        return lambda leaves, outs, table: np.array(leaves[buffer.param_index], copy=True)
    if buffer.kind is BufferKind.OUTPUT:
        return lambda leaves, outs, table: outs[position_of[buffer.index]].copy()
    return lambda leaves, outs, table: buffer_view(table, buffer).copy()


def buffer_view(table: ctypes.Array, buffer: Buffer) -> np.ndarray:
    """A NumPy view of a buffer's memory through the pointer table."""
    count = 1
    for d in buffer.shape:
        count *= d
    dtype = np.dtype(buffer.dtype)
    address = table[buffer.index]
    if count == 0 or not address:
        return np.empty(buffer.shape, dtype)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(raw, dtype).reshape(buffer.shape)


class HostStep:
    """A graph node without a native lowering, run with its NumPy reference implementation.

    Its fixed cost matters on small arrays (a gather of 128 elements takes NumPy 3 us): the
    views of its buffers are kept per (buffer, address), so a call whose arrays sit where the
    last call's did (every TEMP, and PARAMs passed again) makes none, and the op table's
    implementation is called directly with the node's attrs as a prepared dict."""

    MAX_VIEWS = 64

    def __init__(self, kernel: HostKernel, program: Program):
        self.kernel = kernel
        self.node = _node_of(kernel, program)
        self.inputs = [program.buffers[i] for i in kernel.inputs]
        self.out = program.buffers[kernel.out]
        self._impl = OPS[self.node.op].impl
        self._kwargs = dict(self.node.attrs)
        self._views: dict[tuple[int, int], np.ndarray] = {}

    def _view(self, table: ctypes.Array, buffer: Buffer) -> np.ndarray:
        key = (buffer.index, table[buffer.index])
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= self.MAX_VIEWS:
                self._views.clear()
            view = self._views[key] = buffer_view(table, buffer)
        return view

    def __call__(self, workspace: Workspace) -> None:
        table = workspace.table
        view = self._view
        values = [view(table, b) for b in self.inputs]
        try:
            with np.errstate(all="ignore"):
                result = self._impl(*values, **self._kwargs)
                np.copyto(view(table, self.out), result, casting="unsafe")
        except GraphjitError:
            raise
        except Exception as exc:
            raise execution_error(
                f"while executing {format_node(self.kernel.node, self.node)}: "
                f"{type(exc).__name__}: {exc}", exc, self.node.source) from exc


def _node_of(kernel: HostKernel, program: Program) -> Node:
    graph = program.graph
    if graph is not None and kernel.node in graph:
        return graph.node(kernel.node)
    out = program.buffers[kernel.out]
    return Node(kernel.op, tuple(kernel.inputs), out.shape, out.dtype, kernel.attrs)
