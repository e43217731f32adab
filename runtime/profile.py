"""Where a compiled call's time goes: per kernel, per BLAS call, per host step, and the dispatch.

A backend that can be profiled gives its Executable a `profile_units()` method returning the
program's work as `ProfileUnit`s in execution order, each runnable on its own over a workspace
(runtime/cpu/backend.py: every kernel of a native segment separately, parallel loops through the
pool as in a real call, matmuls with their epilogues apart). `profile_executable` runs the whole
sequence in rounds, so every round is one complete, correct execution of the program, timing
each unit with `perf_counter`; the reported time of a unit is its median over the rounds.
Native units are called one by one from Python here, while a real call runs them inside one
native entry function: the cost of one such ctypes call (measured on the unit itself, with an
empty range) is subtracted. The dispatch overhead is what a whole call costs beyond its units:
the cache lookup, argument checks, output allocation and the native entry.

This module is backend-neutral and imports nothing of the frontend.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphjit.compiler.kernel import (BufferKind, HostKernel, Kernel, LoopKernel, MatmulKernel,
                                      Operand, Program)

ROUND_SECONDS = 0.2      # default time spent timing units (at least MIN_ROUNDS rounds)
MIN_ROUNDS = 20
MAX_ROUNDS = 20_000


@dataclass
class ProfileUnit:
    """One separately timed piece of a call: a loop kernel, a BLAS call, an epilogue, a host step."""

    kernel: Kernel | None          # the program step it runs (for names and bytes)
    kind: str                      # "loop", "blas sgemm", "matmul (numpy)", "epilogue", "host"
    run: Callable[[Any], None]     # run(workspace)
    threads: int = 1
    empty_call: Callable[[Any], None] | None = None   # the same native call over no work
    epilogue_of: MatmulKernel | None = None


@dataclass
class UnitTiming:
    name: str
    kind: str
    seconds: float
    threads: int
    bytes: int
    flops: int
    ops: str
    source: str

    @property
    def rate(self) -> str:
        if self.seconds <= 0:
            return "-"
        if self.flops:
            return f"{self.flops / self.seconds / 1e9:.1f} GFLOP/s"
        if self.bytes:
            return f"{self.bytes / self.seconds / 1e9:.1f} GB/s"
        return "-"


@dataclass
class Profile:
    """The profile of one compiled specialisation (`str()` prints the table)."""

    name: str
    call_seconds: float            # median of whole calls (the jitted function, as users call it)
    run_seconds: float             # median of executable runs (no cache lookup)
    units: list[UnitTiming] = field(default_factory=list)
    calls: int = 0
    rounds: int = 0
    eager_seconds: float | None = None

    @property
    def kernel_seconds(self) -> float:
        return sum(u.seconds for u in self.units)

    @property
    def dispatch_seconds(self) -> float:
        """What a call costs beyond its kernels: lookup, checks, outputs, workspace, entry."""
        return max(0.0, self.call_seconds - self.kernel_seconds)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "call_us": self.call_seconds * 1e6,
                "run_us": self.run_seconds * 1e6, "dispatch_us": self.dispatch_seconds * 1e6,
                "eager_us": None if self.eager_seconds is None else self.eager_seconds * 1e6,
                "units": [{"name": u.name, "kind": u.kind, "us": u.seconds * 1e6,
                           "threads": u.threads, "bytes": u.bytes, "flops": u.flops,
                           "ops": u.ops, "source": u.source} for u in self.units]}

    def __str__(self) -> str:
        total = max(self.call_seconds, self.kernel_seconds, 1e-12)
        head = (f"profile of {self.name}: {self.call_seconds * 1e6:.1f} us per call "
                f"(median of {self.calls} calls; units: median of {self.rounds} rounds)")
        if self.eager_seconds is not None:
            head += (f"; eager NumPy {self.eager_seconds * 1e6:.1f} us "
                     f"({self.eager_seconds / max(self.call_seconds, 1e-12):.2f}x)")
        lines = [head, f"{'#':>3} {'kernel':22} {'kind':16} {'us':>9} {'share':>6} {'thr':>3} "
                       f"{'bytes':>9} {'rate':>14}  ops @ source lines"]
        for number, unit in enumerate(self.units, 1):
            lines.append(
                f"{number:>3} {unit.name[:22]:22} {unit.kind[:16]:16} {unit.seconds * 1e6:9.2f} "
                f"{unit.seconds / total:6.1%} {unit.threads:>3} {_bytes(unit.bytes):>9} "
                f"{unit.rate:>14}  {unit.ops} @ {unit.source}")
        lines.append(f"{'':3} {'dispatch':22} {'call overhead':16} "
                     f"{self.dispatch_seconds * 1e6:9.2f} {self.dispatch_seconds / total:6.1%}"
                     f"      (lookup, checks, outputs, workspace, native entry; "
                     f"executable.run alone: {self.run_seconds * 1e6:.1f} us)")
        return "\n".join(lines)


def _bytes(count: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


# ---------------------------------------------------------------- naming and counting

def unit_name(unit: ProfileUnit) -> str:
    kernel = unit.epilogue_of if unit.epilogue_of is not None else unit.kernel
    name = kernel.name if kernel is not None else "?"
    return f"{name}.epilogue" if unit.epilogue_of is not None else name


def describe_nodes(program: Program, nodes: Sequence[int], limit: int = 8) -> tuple[str, str]:
    """(the ops of these graph nodes, their user source lines), short enough for one line."""
    graph = program.graph
    ops: list[str] = []
    lines: dict[str, list[str]] = {}
    for node_id in nodes:
        if graph is None or node_id not in graph:
            continue
        node = graph.node(node_id)
        op = node.op.value
        if op not in ("param", "const", "parameter", "constant") and op not in ops:
            ops.append(op)
        source = getattr(node, "source", "") or ""
        if source:
            path, _, line = source.rpartition(":")
            lines.setdefault(os.path.basename(path) or source, [])
            if line and line not in lines[os.path.basename(path)]:
                lines[os.path.basename(path)].append(line)
    op_text = ",".join(ops[:limit]) + (",..." if len(ops) > limit else "")
    source_text = " ".join(f"{path}:{','.join(sorted(nums, key=_line_key))}"
                           for path, nums in lines.items())
    return op_text or "-", source_text or "-"


def _line_key(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (1 << 30, text)


def _loop_bytes(kernel: LoopKernel, program: Program) -> int:
    """Bytes a loop kernel reads and writes: each distinct access once, as far as it reaches."""
    total = 0
    seen: set = set()
    for instr in kernel.instrs:
        if instr.op is Operand.LOAD:
            access = instr.attrs["access"]
            if access in seen:
                continue
            seen.add(access)
            total += _access_bytes(access, kernel.loop_shape, program)
    for store in kernel.stores:
        total += _access_bytes(store.access, kernel.loop_shape, program)
    return total


def _access_bytes(access: Any, loop_shape: tuple[int, ...], program: Program) -> int:
    buffer = program.buffers[access.buffer]
    touched = 1
    for stride, extent in zip(access.strides, loop_shape):
        if stride:
            touched *= extent
    return min(buffer.nbytes, touched * buffer.dtype.itemsize)


def unit_work(unit: ProfileUnit, program: Program) -> tuple[int, int]:
    """(bytes moved, floating-point operations) of one unit (estimates, for the rates)."""
    kernel = unit.kernel
    if isinstance(kernel, LoopKernel):
        return _loop_bytes(kernel, program), 0
    if isinstance(kernel, MatmulKernel):
        batch = int(np.prod(kernel.batch, dtype=np.int64)) if kernel.batch else 1
        item = np.dtype(kernel.dtype).itemsize
        moved = batch * item * (kernel.m * kernel.k + kernel.k * kernel.n + kernel.m * kernel.n)
        return moved, 2 * batch * kernel.m * kernel.n * kernel.k
    if isinstance(kernel, HostKernel):
        buffers = program.buffers
        return sum(buffers[i].nbytes for i in kernel.inputs) + buffers[kernel.out].nbytes, 0
    return 0, 0


# ---------------------------------------------------------------- timing

def median_call_seconds(call: Callable[[], Any], min_time: float, min_calls: int = 20) -> tuple[
        float, int]:
    """(median seconds per call over batches of calls, calls made) after two warm-up calls."""
    call()
    call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    per_batch = max(1, int(0.002 / once))
    batches = max(7, int(min_time / (once * per_batch)) + 1, -(-min_calls // per_batch))
    samples = []
    for _ in range(min(batches, 1000)):
        start = time.perf_counter()
        for _ in range(per_batch):
            call()
        samples.append((time.perf_counter() - start) / per_batch)
    return statistics.median(samples), per_batch * len(samples)


def time_units(program: Program, units: list[ProfileUnit], prepare: Callable[[], Any],
               finish: Callable[[Any], None], min_time: float = ROUND_SECONDS
               ) -> tuple[list[UnitTiming], int]:
    """Median seconds of every unit over rounds of the whole program (each round: `prepare()`
    a bound workspace, every unit in order, `finish(workspace)`)."""
    clock = time.perf_counter
    samples: list[list[float]] = [[] for _ in units]
    empty: list[list[float]] = [[] for _ in units]
    rounds = 0
    deadline = clock() + min_time
    while rounds < MIN_ROUNDS or (clock() < deadline and rounds < MAX_ROUNDS):
        workspace = prepare()
        try:
            for index, unit in enumerate(units):
                if unit.empty_call is not None:
                    start = clock()
                    unit.empty_call(workspace)
                    empty[index].append(clock() - start)
                start = clock()
                unit.run(workspace)
                samples[index].append(clock() - start)
        finally:
            finish(workspace)
        rounds += 1
    timings = []
    for unit, times, empties in zip(units, samples, empty):
        seconds = statistics.median(times[2:] or times)
        if empties:
            seconds = max(0.0, seconds - statistics.median(empties[2:] or empties))
        moved, flops = unit_work(unit, program)
        nodes = unit.kernel.nodes if unit.kernel is not None else ()
        ops, source = describe_nodes(program, nodes)
        if unit.epilogue_of is not None:
            ops, source = describe_nodes(program, unit.kernel.nodes)
        timings.append(UnitTiming(unit_name(unit), unit.kind, seconds, unit.threads, moved, flops,
                                  ops, source))
    return timings, rounds


def profile_executable(executable: Any, leaves: list, name: str,
                       call: Callable[[], Any] | None = None,
                       min_time: float = ROUND_SECONDS) -> Profile:
    """The Profile of one executable on these argument leaves; `call` is the whole user-level
    call (the jitted function on its arguments), timed for the dispatch overhead."""
    program: Program = executable.program
    run_seconds, _ = median_call_seconds(lambda: executable.run(leaves), min_time / 2)
    if call is not None:
        call_seconds, calls = median_call_seconds(call, min_time / 2)
    else:
        call_seconds, calls = run_seconds, 0
    units_of = getattr(executable, "profile_units", None)
    if units_of is None:
        units = [ProfileUnit(None, "whole program", lambda workspace: executable.run(leaves))]
        prepare, finish = (lambda: None), (lambda workspace: None)
    else:
        units = units_of()
        prepare, finish = executable.bound_workspace(leaves)
    timings, rounds = time_units(program, units, prepare, finish, min_time)
    if units_of is None:
        timings[0].name = program.graph.name if program.graph is not None else name
    return Profile(name, call_seconds, run_seconds, timings, calls, rounds)


def output_buffers(program: Program) -> list:
    return [b for b in program.buffers if b.kind is BufferKind.OUTPUT]
