"""Benchmarks: graphjit against NumPy eager and its peers (JAX jit, torch eager, torch.compile,
Numba), following the Method of ../shared/bench/workloads.md.

    python benchmarks/run.py                        # everything importable; writes results.md
    python benchmarks/run.py --quick                # small sizes, few samples (a smoke test)
    python benchmarks/run.py --only softmax mlp --systems numpy graphjit

Each system runs in its own fresh process (`--worker SYSTEM`), with the thread variables set
before anything is imported. Every result is checked against NumPy before it is timed; a
workload that updates its arguments (train_step) gets fresh copies per system and is checked over
several steps. Times are medians of >= 7 samples of >= 20 ms each, after >= 3 warm-up calls.
"""
from __future__ import annotations

import os
import sys

CORES = os.cpu_count() or 1
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")
for _variable in THREAD_VARIABLES:   # before NumPy (and its BLAS) is imported
    os.environ.setdefault(_variable, str(CORES))

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads as wl  # noqa: E402

SYSTEMS = ("numpy", "graphjit", "numba", "jax", "torch", "torch.compile")
TITLES = {"numpy": "NumPy", "graphjit": "graphjit", "numba": "Numba", "jax": "jax.jit",
          "torch": "torch eager", "torch.compile": "torch.compile"}
PEERS = ("numba", "jax", "torch", "torch.compile")
MODULE_OF = {"numpy": "numpy", "graphjit": "graphjit", "numba": "numba", "jax": "jax",
             "torch": "torch", "torch.compile": "torch"}
FIRST_CALL_WORKLOADS = ("chain", "mlp")
COMPILING = ("graphjit", "numba", "jax", "torch.compile")   # first-call compile time is theirs
CHECK_STEPS = 3                     # training steps compared with NumPy, one by one
RERUN_CHANGE = 0.25                 # re-run a cell that moved more than this since the last run
RTOL, ATOL = 2e-3, 1e-3             # float32 results against NumPy's
WORKER_TIMEOUT_S = 3600


# ================================================================== timing
def timing_plan(quick: bool) -> dict[str, float]:
    if quick:
        return {"warmup": 3, "samples": 3, "min_time": 0.005}
    return {"warmup": 3, "samples": 7, "min_time": 0.02}


def time_call(call: Callable[[], Any], plan: dict[str, float]) -> list[float]:
    """Seconds per call: `samples` samples of >= `min_time`, after `warmup` calls."""
    for _ in range(int(plan["warmup"])):
        call()
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-9)
    calls = max(1, math.ceil(plan["min_time"] / once))
    samples = []
    for _ in range(int(plan["samples"])):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        samples.append((time.perf_counter() - start) / calls)
    return samples


# ================================================================== systems (inside a worker)
class System:
    """How one system runs a workload: convert inputs, build the function, read results."""

    name = "numpy"

    def functions(self) -> dict[str, Callable]:
        return {w.name: w.fn for w in wl.WORKLOADS} | {"add_one": wl.add_one}

    def to_native(self, value: Any) -> Any:
        return value

    def to_numpy(self, value: Any) -> Any:
        return np.asarray(value)

    def sync(self, value: Any) -> Any:
        return value

    def stepper(self, fn: Callable, workload: str) -> Callable[[list], Any]:
        """A call on a list of native arguments; a stateful training step keeps its updated
        parameters in that list (in place, or by replacing them for functional systems)."""
        return lambda args: self.sync(fn(*args))


class GraphjitSystem(System):
    name = "graphjit"

    def functions(self) -> dict[str, Callable]:
        import graphjit as gj

        return {name: gj.jit(fn) for name, fn in super().functions().items()}


class NumbaSystem(System):
    name = "numba"

    def functions(self) -> dict[str, Callable]:
        return wl.numba_versions()


class JaxSystem(System):
    name = "jax"

    def __init__(self) -> None:
        import jax

        self.jax = jax

    def functions(self) -> dict[str, Callable]:
        return wl.jax_versions(self.jax)

    def to_native(self, value: Any) -> Any:
        return self.jax.device_put(value) if isinstance(value, np.ndarray) else value

    def sync(self, value: Any) -> Any:
        return self.jax.block_until_ready(value)

    def stepper(self, fn: Callable, workload: str) -> Callable[[list], Any]:
        if workload != "train_step":
            return super().stepper(fn, workload)

        def step(args: list) -> Any:   # functional: the new parameters replace the old ones
            loss, *params = self.sync(fn(*args))
            args[2:6] = params
            return loss

        return step


class TorchSystem(System):
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        torch.set_num_threads(CORES)

    def functions(self) -> dict[str, Callable]:
        return wl.torch_versions(self.torch)

    def to_native(self, value: Any) -> Any:
        return self.torch.from_numpy(value) if isinstance(value, np.ndarray) else value

    def to_numpy(self, value: Any) -> Any:
        return value.detach().numpy() if isinstance(value, self.torch.Tensor) else np.asarray(value)

    def stepper(self, fn: Callable, workload: str) -> Callable[[list], Any]:
        def call(args: list) -> Any:
            with self.torch.no_grad():
                return fn(*args)

        return call


class TorchCompileSystem(TorchSystem):
    name = "torch.compile"

    def functions(self) -> dict[str, Callable]:
        return {name: self.torch.compile(fn) for name, fn in super().functions().items()}


SYSTEM_CLASSES = {"numpy": System, "graphjit": GraphjitSystem, "numba": NumbaSystem,
                  "jax": JaxSystem, "torch": TorchSystem, "torch.compile": TorchCompileSystem}


def make_system(name: str) -> System:
    return SYSTEM_CLASSES[name]()


# ================================================================== checking
def compare(expected: Any, actual: Any) -> dict[str, Any]:
    """{'ok': values close, 'dtype': same dtype, 'error': max relative error}."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return {"ok": False, "dtype": False, "error": math.inf,
                "why": f"shape {actual.shape} != {expected.shape}"}
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    scale = np.maximum(np.abs(expected.astype(np.float64)), 1.0)
    error = float(np.max(difference / scale)) if difference.size else 0.0
    ok = bool(np.allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True))
    return {"ok": ok, "dtype": actual.dtype == expected.dtype, "error": error, "why": ""}


def check_workload(system: System, fn: Callable, workload: wl.Workload,
                   inputs: tuple) -> dict[str, Any]:
    """Compare with NumPy before timing: one call, or CHECK_STEPS steps of a mutating workload
    (loss and every updated argument after each step)."""
    steps = CHECK_STEPS if workload.mutates else 1
    reference_args = wl.copy_inputs(inputs)
    native_args = [system.to_native(a) for a in wl.copy_inputs(inputs)]
    call = system.stepper(fn, workload.name)
    worst = {"ok": True, "dtype": True, "error": 0.0, "why": ""}
    for step in range(steps):
        expected = workload.fn(*reference_args)
        actual = system.to_numpy(call(native_args))
        pairs = [(expected, actual)]
        if workload.mutates:
            pairs += [(ref, system.to_numpy(new)) for ref, new in zip(reference_args, native_args)
                      if isinstance(ref, np.ndarray)]
        for want, got in pairs:
            result = compare(want, got)
            if not result["ok"] and worst["ok"]:
                result["why"] = result["why"] or f"differs at step {step + 1}"
                worst.update(result)
            worst["dtype"] = worst["dtype"] and result["dtype"]
            worst["error"] = max(worst["error"], result["error"])
    return worst


# ================================================================== worker
def run_worker(options: argparse.Namespace) -> dict[str, Any]:
    system = make_system(options.worker)
    start = time.perf_counter()
    functions = system.functions()
    report: dict[str, Any] = {"system": options.worker, "cells": {},
                              "setup_s": time.perf_counter() - start}
    plan = timing_plan(options.quick)
    for workload, size in selected_cells(options):
        key = cell_key(workload.name, size.label)
        if options.cells and key not in options.cells:
            continue
        report["cells"][key] = measure_cell(system, functions[workload.name], workload, size, plan)
    if not options.cells:
        report["dispatch_us"] = measure_dispatch(system, functions["add_one"], plan)
        report["dispatch_kinds_us"] = measure_dispatch_kinds(system, plan)
    return report


def measure_cell(system: System, fn: Callable, workload: wl.Workload, size: wl.Size,
                 plan: dict[str, float]) -> dict[str, Any]:
    inputs = workload.make_inputs(*size.params)
    try:
        check = check_workload(system, fn, workload, inputs)
        native_args = [system.to_native(a) for a in wl.copy_inputs(inputs)]
        call = system.stepper(fn, workload.name)
        samples = time_call(lambda: call(native_args), plan)
    except Exception as exc:   # one failing cell must not lose the others
        return {"failed": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    cell = {"median_s": statistics.median(samples), "samples": samples, "check": check}
    if workload.bytes_moved is not None:
        cell["gbps"] = workload.bytes_moved(inputs) / cell["median_s"] / 1e9
    return cell


def measure_dispatch(system: System, fn: Callable, plan: dict[str, float]) -> float | None:
    """Microseconds per call of an already-compiled `x + 1` on 8 float32 elements."""
    x = system.to_native(np.arange(8, dtype=np.float32))
    call = system.stepper(fn, "add_one")
    try:
        call([x])
        return statistics.median(time_call(lambda: call([x]), plan)) * 1e6
    except Exception:
        return None


def _dispatch_positional(x):
    return x + 1


def _dispatch_dict(tree):
    return tree["x"] + 1


def _dispatch_list(items):
    return items[0] + 1


DISPATCH_KINDS = ("positional", "keyword", "dict", "list")


def dispatch_compiler(system: System) -> Callable[[Callable], Callable] | None:
    """How `system` compiles a plain Python function with pytree arguments (None: it can't)."""
    if system.name == "graphjit":
        import graphjit as gj

        return gj.jit
    if system.name == "jax":
        return system.jax.jit
    if system.name in ("numpy", "torch"):
        return lambda fn: fn
    return None


def measure_dispatch_kinds(system: System, plan: dict[str, float]) -> dict[str, float] | None:
    """Microseconds per already-compiled call of `x + 1` on 8 float32 elements, by how the
    argument is passed: positionally, by keyword, in a dict, in a list."""
    compile_fn = dispatch_compiler(system)
    if compile_fn is None:
        return None
    x = system.to_native(np.arange(8, dtype=np.float32))
    positional, from_dict, from_list = (compile_fn(f) for f in (
        _dispatch_positional, _dispatch_dict, _dispatch_list))
    sync = system.sync
    calls = {"positional": lambda: sync(positional(x)),
             "keyword": lambda: sync(positional(x=x)),
             "dict": lambda: sync(from_dict({"x": x})),
             "list": lambda: sync(from_list([x]))}
    result = {}
    for kind in DISPATCH_KINDS:
        try:
            calls[kind]()
            result[kind] = statistics.median(time_call(calls[kind], plan)) * 1e6
        except Exception:
            result[kind] = None
    return result


def run_first_call(options: argparse.Namespace) -> dict[str, Any]:
    """In this fresh process: seconds to import the system and build its functions, then for
    the first call (trace + compile + run) of one workload, after that import."""
    workload = wl.BY_NAME[options.first_call]
    size = workload.sizes[0]
    inputs = [a for a in workload.make_inputs(*size.params)]
    start = time.perf_counter()
    system = make_system(options.worker)
    fn = system.functions()[workload.name]
    imported = time.perf_counter() - start
    native_args = [system.to_native(a) for a in inputs]
    call = system.stepper(fn, workload.name)
    start = time.perf_counter()
    call(native_args)
    first = time.perf_counter() - start
    start = time.perf_counter()
    call(native_args)
    return {"first_s": first, "second_s": time.perf_counter() - start, "import_s": imported,
            "size": size.label}


def run_triad(options: argparse.Namespace) -> dict[str, Any]:
    """STREAM-style triad a = b + s*c on float32, parallel over all cores; 3 arrays moved."""
    n = 10**7 if options.quick else 10**8
    rng = np.random.default_rng(wl.SEED)
    b, c = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    a = np.empty_like(b)
    scalar = np.float32(3.0)
    try:
        triad = wl.numba_triad()
        how = f"numba prange, {CORES} threads"
    except ImportError:
        def triad(a, b, c, s):    # NumPy fallback: two passes, so it understates the machine
            np.multiply(c, s, out=a)
            np.add(a, b, out=a)
        how = "NumPy (single thread, 2 passes: a lower bound)"
    triad(a, b, c, scalar)
    if not np.allclose(a, b + scalar * c):
        return {"failed": "triad result wrong"}
    samples = time_call(lambda: triad(a, b, c, scalar), timing_plan(options.quick))
    median = statistics.median(samples)
    return {"n": n, "median_s": median, "gbps": 3 * a.nbytes / median / 1e9, "how": how}


# ================================================================== driver (parent process)
def cell_key(workload: str, size: str) -> str:
    return f"{workload} {size}"


def selected_cells(options: argparse.Namespace) -> list[tuple[wl.Workload, wl.Size]]:
    cells = []
    for workload in wl.WORKLOADS:
        if options.only and workload.name not in options.only:
            continue
        for size in workload.sizes:
            if not options.quick or size.quick:
                cells.append((workload, size))
    return cells


def available_systems(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """(systems to run, systems skipped because they are not importable)."""
    chosen, missing = [], []
    for name in requested or SYSTEMS:
        if importlib.util.find_spec(MODULE_OF[name]) is None:
            missing.append(name)
        else:
            chosen.append(name)
    return chosen, missing


def spawn(arguments: list[str], environment: dict[str, str] | None = None,
          script: str | None = None) -> dict[str, Any]:
    """Run `script` (default: this one) in a fresh process with the thread variables set to the
    core count (then `environment`), and read back the JSON it writes."""
    with tempfile.TemporaryDirectory(prefix="gj-bench-") as folder:
        out = os.path.join(folder, "result.json")
        env = dict(os.environ)
        env.update({v: str(CORES) for v in THREAD_VARIABLES})
        env.update(environment or {})
        command = [sys.executable, os.path.abspath(script or __file__), *arguments, "--json", out]
        completed = subprocess.run(command, env=env, capture_output=True, text=True,
                                   timeout=WORKER_TIMEOUT_S, check=False)
        if completed.returncode != 0 or not os.path.exists(out):
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
            return {"failed": " | ".join(tail) or f"exit {completed.returncode}"}
        with open(out) as handle:
            return json.load(handle)


def common_arguments(options: argparse.Namespace) -> list[str]:
    arguments = ["--quick"] if options.quick else []
    if options.only:
        arguments += ["--only", *options.only]
    return arguments


def measure_systems(options: argparse.Namespace, systems: list[str]) -> dict[str, dict]:
    results = {}
    for system in systems:
        print(f"  running {TITLES[system]} ...", file=sys.stderr, flush=True)
        results[system] = spawn(["--worker", system, *common_arguments(options)])
    return results


def rerun_changed(options: argparse.Namespace, results: dict[str, dict],
                  previous: dict[str, Any]) -> list[str]:
    """Re-run (in a fresh process) every cell that moved more than 25% since the last run, and
    keep the new figure: the machine is shared and noisy."""
    notes = []
    for system, report in results.items():
        old_cells = previous.get("results", {}).get(system, {}).get("cells", {})
        changed = []
        for key, cell in report.get("cells", {}).items():
            old = old_cells.get(key, {}).get("median_s")
            new = cell.get("median_s")
            if old and new and abs(new - old) / old > RERUN_CHANGE:
                changed.append(key)
        if not changed:
            continue
        again = spawn(["--worker", system, *common_arguments(options), "--cells", *changed])
        for key, cell in again.get("cells", {}).items():
            if "median_s" in cell:
                cell["rerun_of_s"] = report["cells"][key].get("median_s")
                report["cells"][key] = cell
                notes.append(f"{TITLES[system]} {key}: re-run (moved > 25% since the last run)")
    return notes


FIRST_CALL_REPEATS = 3     # fresh processes per figure (the median is reported)


def first_call_environment(pycache: str) -> dict[str, str]:
    """Bytecode on, in a private prefix: an installed package has compiled .pyc files (pip
    writes them), so neither graphjit's editable checkout nor a PYTHONDONTWRITEBYTECODE
    environment should charge source compilation to its first call."""
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": pycache}


def median_entry(entries: list[dict]) -> dict:
    """The entry with the median first_s (failures win: they must be seen)."""
    failed = [e for e in entries if "first_s" not in e]
    if failed:
        return failed[0]
    ordered = sorted(entries, key=lambda e: e["first_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_first_s"] = [e["first_s"] for e in entries]
    return chosen


def measure_first_calls(options: argparse.Namespace, systems: list[str]) -> dict[str, dict]:
    """First call in a fresh process with empty caches (cold); for graphjit also over the disk
    cache a first process filled (warm: a second fresh process). Each the median of
    FIRST_CALL_REPEATS processes, after one untimed process per system that compiles the
    bytecode both use."""
    names = [n for n in FIRST_CALL_WORKLOADS if not options.only or n in options.only]
    repeats = 1 if options.quick else FIRST_CALL_REPEATS
    first: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gj-pyc-") as pycache:
        base = first_call_environment(pycache)
        for system in (s for s in systems if s in COMPILING):
            for name in names:
                with tempfile.TemporaryDirectory(prefix="gj-warmup-") as cache:
                    spawn(["--worker", system, "--first-call", name],
                          {**base, "GRAPHJIT_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache,
                           "TORCHINDUCTOR_CACHE_DIR": cache})
                colds, warms = [], []
                for _ in range(repeats):
                    with tempfile.TemporaryDirectory(prefix="gj-cache-") as cache:
                        environment = {**base, "GRAPHJIT_CACHE_DIR": cache,
                                       "TORCHINDUCTOR_CACHE_DIR": cache, "NUMBA_CACHE_DIR": cache}
                        arguments = ["--worker", system, "--first-call", name]
                        colds.append(spawn(arguments, environment))
                        if system == "graphjit":
                            warms.append(spawn(arguments, environment))
                entry = {"cold": median_entry(colds)}
                if warms:
                    entry["disk_cache"] = median_entry(warms)
                first.setdefault(system, {})[name] = entry
    return first


# ================================================================== report
def format_ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    milliseconds = seconds * 1e3
    return f"{milliseconds:.3g}" if milliseconds < 1000 else f"{milliseconds:.0f}"


def cell_text(cell: dict | None, footnotes: dict[str, list[str]], system: str, key: str) -> str:
    """The table cell; problems go to `footnotes` (note -> cells), printed once per note."""
    if cell is None:
        return "-"
    if "failed" in cell:
        footnotes.setdefault(f"{TITLES[system]} failed: {cell['failed']}", []).append(key)
        return "failed"
    text = format_ms(cell["median_s"])
    check = cell["check"]
    if not check["ok"]:
        note = (f"{TITLES[system]} {key}: WRONG result vs NumPy (max rel err "
                f"{check['error']:.2g}; {check['why']})")
        footnotes.setdefault(note, [])
        return text + " (wrong)"
    if not check["dtype"]:
        note = f"{TITLES[system]}: values match NumPy but the result dtype differs"
        footnotes.setdefault(note, []).append(key)
        return text + " (dtype)"
    return text


def format_footnotes(footnotes: dict[str, list[str]]) -> list[str]:
    return [f"{note} ({', '.join(cells)})" if cells else note
            for note, cells in footnotes.items()]


def valid_time(cell: dict | None) -> float | None:
    if not cell or "median_s" not in cell or not cell["check"]["ok"]:
        return None
    return cell["median_s"]


def timing_table(options: argparse.Namespace, systems: list[str],
                 results: dict[str, dict]) -> tuple[list[str], list[str]]:
    footnotes: dict[str, list[str]] = {}
    header = ["workload", *(TITLES[s] for s in systems)]
    show_numpy_ratio = "numpy" in systems and "graphjit" in systems
    peers = [s for s in systems if s in PEERS]
    if show_numpy_ratio:
        header.append("NumPy / graphjit")
    if peers and "graphjit" in systems:
        header.append("best peer / graphjit")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload, size in selected_cells(options):
        key = cell_key(workload.name, size.label)
        cells = {s: results.get(s, {}).get("cells", {}).get(key) for s in systems}
        row = [key] + [cell_text(cells[s], footnotes, s, key) for s in systems]
        ours = valid_time(cells.get("graphjit"))
        if show_numpy_ratio:
            numpy_time = valid_time(cells.get("numpy"))
            row.append(f"{numpy_time / ours:.2f}x" if ours and numpy_time else "-")
        if peers and "graphjit" in systems:
            timed = [(valid_time(cells[p]), p) for p in peers if valid_time(cells[p])]
            if ours and timed:
                best, peer = min(timed)
                row.append(f"{best / ours:.2f}x ({TITLES[peer]})")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    return lines, format_footnotes(footnotes)


def bandwidth_lines(systems: list[str], results: dict[str, dict], triad: dict | None) -> list[str]:
    lines = []
    if triad and "gbps" in triad:
        lines.append(f"Triad `a = b + s*c` ({triad['n']:.0e} float32, {triad['how']}): "
                     f"**{triad['gbps']:.1f} GB/s** (3 arrays moved).")
    elif triad:
        lines.append(f"Triad: {triad.get('failed', 'not measured')}")
    rows = []
    largest = {}   # workload -> its largest size run: small sizes sit in cache, not in memory
    for key in (k for report in results.values() for k in report.get("cells", {})):
        largest[key.split()[0]] = key
    for system in systems:
        for key, cell in results.get(system, {}).get("cells", {}).items():
            if "gbps" in cell and largest[key.split()[0]] == key:
                share = (f"{cell['gbps'] / triad['gbps']:.0%} of triad"
                         if triad and "gbps" in triad else "-")
                rows.append(f"| {key} | {TITLES[system]} | {cell['gbps']:.1f} | {share} |")
    if rows:
        lines += ["", "| workload (2 arrays moved) | system | GB/s | vs triad |",
                  "|---|---|---|---|"]
        lines += rows
    return lines


def dispatch_lines(systems: list[str], results: dict[str, dict]) -> list[str]:
    cells = []
    for system in systems:
        value = results.get(system, {}).get("dispatch_us")
        cells.append(f"{value:.2f}" if value is not None else "-")
    return ["| | " + " | ".join(TITLES[s] for s in systems) + " |",
            "|---|" + "---|" * len(systems),
            "| dispatch: `x + 1` on 8 elements, us per call | " + " | ".join(cells) + " |"]


def dispatch_kind_lines(systems: list[str], results: dict[str, dict]) -> list[str]:
    """us per call by argument kind, and each kind's cost over the positional call."""
    shown = [s for s in systems if results.get(s, {}).get("dispatch_kinds_us")]
    if not shown:
        return []
    lines = ["| `x + 1` on 8 elements, us per call (x vs positional) | "
             + " | ".join(TITLES[s] for s in shown) + " |", "|---|" + "---|" * len(shown)]
    for kind in DISPATCH_KINDS:
        cells = []
        for system in shown:
            kinds = results[system]["dispatch_kinds_us"]
            value, base = kinds.get(kind), kinds.get("positional")
            if value is None:
                cells.append("-")
            elif kind == "positional" or not base:
                cells.append(f"{value:.2f}")
            else:
                cells.append(f"{value:.2f} ({value / base:.1f}x)")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def first_call_lines(systems: list[str], first: dict[str, dict]) -> list[str]:
    lines = ["| first call (fresh process) | system | import | first call after import |",
             "|---|---|---|---|"]

    def cells(entry: dict) -> tuple[str, str]:
        if "first_s" not in entry:
            return "-", entry.get("failed", "-")
        return f"{entry['import_s'] * 1e3:.0f} ms", f"{entry['first_s'] * 1e3:.1f} ms"

    for name in FIRST_CALL_WORKLOADS:
        for system in systems:
            entry = first.get(system, {}).get(name)
            if not entry:
                continue
            cold = entry["cold"]
            imported, call = cells(cold)
            lines.append(f"| {name} {cold.get('size', '')}, empty caches | {TITLES[system]} | "
                         f"{imported} | {call} |")
            disk = entry.get("disk_cache")
            if disk:
                imported, call = cells(disk)
                lines.append(f"| {name}, warm disk cache | {TITLES[system]} | {imported} | "
                             f"{call} |")
    return lines


def machine_line() -> str:
    versions = []
    for system in ("numpy", "graphjit", "numba", "jax", "torch"):
        if importlib.util.find_spec(MODULE_OF[system]) is None:
            continue
        try:
            from importlib.metadata import version

            versions.append(f"{system} {version(system)}")
        except Exception:
            versions.append(system)
    return (f"{datetime.date.today()} · {platform.processor() or platform.machine()} · "
            f"{CORES} cores · Python {platform.python_version()} · " + ", ".join(versions))


def build_report(options, systems, missing, results, triad, first, notes) -> str:
    table, footnotes = timing_table(options, systems, results)
    plan = timing_plan(options.quick)
    lines = [
        "# graphjit benchmarks" + (" (--quick)" if options.quick else ""), "",
        machine_line(), "",
        f"Median ms per call of {int(plan['samples'])} samples of >= {plan['min_time'] * 1e3:.0f}"
        f" ms after {int(plan['warmup'])} warm-ups; each system in its own process; every result"
        " checked against NumPy first (train_step over several steps). Ratios > 1: graphjit is "
        "faster.", "",
        "Command: `python benchmarks/run.py " + " ".join(options.argv) + "`", "",
        *table, "",
    ]
    if missing:
        lines += [f"Not installed here (skipped): {', '.join(TITLES[m] for m in missing)}.", ""]
    for failed in (s for s in systems if "failed" in results.get(s, {})):
        footnotes.append(f"{TITLES[failed]} worker failed: {results[failed]['failed']}")
    if footnotes or notes:
        lines += [f"- {note}" for note in footnotes + notes] + [""]
    lines += ["## Bandwidth", "", *bandwidth_lines(systems, results, triad), ""]
    lines += ["## Dispatch overhead", "", *dispatch_lines(systems, results), ""]
    kinds = dispatch_kind_lines(systems, results)
    if kinds:
        lines += ["By argument kind (keyword: `f(x=x)`, dict: `f({'x': x})`, list: `f([x])`):",
                  "", *kinds, ""]
    if first:
        lines += ["## First-call compile time", "",
                  f"Median of {1 if options.quick else FIRST_CALL_REPEATS} fresh processes each;"
                  " bytecode compiled beforehand for every system (as in an installed package)."
                  " Import: the system and its workload functions; first call: trace, compile"
                  " (or load) and run, after that import.", "",
                  *first_call_lines(systems, first), ""]
    return "\n".join(lines)


def load_previous(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def run_driver(options: argparse.Namespace) -> int:
    systems, missing = available_systems(options.systems)
    if not systems:
        print("no requested system is importable", file=sys.stderr)
        return 1
    output = options.output or os.path.join(
        HERE, "results-quick.md" if options.quick else "results.md")
    json_path = os.path.splitext(output)[0] + ".json"
    print(f"benchmarking {', '.join(TITLES[s] for s in systems)} on {CORES} cores",
          file=sys.stderr)
    results = measure_systems(options, systems)
    notes = [] if options.no_rerun else rerun_changed(options, results, load_previous(json_path))
    wants_bandwidth = any(w.bytes_moved for w, _ in selected_cells(options))
    triad = spawn(["--triad"] + (["--quick"] if options.quick else [])) if wants_bandwidth else None
    first = {} if options.no_first_call else measure_first_calls(options, systems)
    report = build_report(options, systems, missing, results, triad, first, notes)
    print(report)
    with open(output, "w") as handle:
        handle.write(report + "\n")
    with open(json_path, "w") as handle:
        json.dump({"results": results, "triad": triad, "first_call": first}, handle, indent=1)
    print(f"\nwritten to {output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few samples")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(wl.BY_NAME),
                        help="workloads to run: " + ", ".join(wl.BY_NAME))
    parser.add_argument("--systems", nargs="+", metavar="SYSTEM", choices=list(SYSTEMS),
                        help="systems to run (default: all importable): " + ", ".join(SYSTEMS))
    parser.add_argument("--output", metavar="PATH", help="the markdown report (default "
                        "benchmarks/results.md, or results-quick.md with --quick)")
    parser.add_argument("--no-rerun", action="store_true",
                        help="do not re-run cells that moved > 25%% since the last run")
    parser.add_argument("--no-first-call", action="store_true",
                        help="skip the first-call compile and disk-cache measurements")
    # internal: the fresh processes the driver starts
    parser.add_argument("--worker", choices=list(SYSTEMS), help=argparse.SUPPRESS)
    parser.add_argument("--cells", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--first-call", choices=FIRST_CALL_WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--triad", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = build_parser().parse_args(argv)
    options.argv = argv
    if options.triad or options.worker:
        if options.triad:
            result = run_triad(options)
        elif options.first_call:
            result = run_first_call(options)
        else:
            result = run_worker(options)
        with open(options.json, "w") as handle:
            json.dump(result, handle)
        return 0
    return run_driver(options)


if __name__ == "__main__":
    sys.exit(main())
