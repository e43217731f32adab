"""The CUDA backend on a real GPU (issue 15): the CUDA test suite, then the figures, in one run.

    python benchmarks/gpu.py [--out DIR] [--skip-tests] [--tests-only] [--test-budget SECONDS]

1. Runs the CUDA test files (tests/test_cuda*.py) on the GPU: NUMBA_ENABLE_CUDASIM=0, so the
   simulator's tests run as real kernels and the `gpu`-marked tests run instead of skipping.
   Each file is its own pytest process, in order, within --test-budget seconds in all (the
   files left when it runs out are reported as not run); HYPOTHESIS_PROFILE=dev (10 examples).
2. Measures on device-resident float32 data, in the same process:
   - the copy bandwidth: a device-to-device copy of 1e8 float32 (CuPy, else torch, else Numba),
     counting the read and the write;
   - chain, GELU and scale_shift on 1e8 float32, as a share of that bandwidth (each moves one
     read and one write of 4 bytes per element); targets: at least 70%;
   - softmax and layernorm at (8192, 4096), as a share of the bandwidth (one read, one write of
     the matrix); targets: at least 60%;
   - matmul at 4096^3 float32: graphjit's tiled kernel, graphjit through cuBLAS (CuPy), and
     cuBLAS itself through CuPy and torch (TF32 off everywhere); target: tiled within 2x;
   - the same workloads with jax.jit and torch.compile (and torch eager); target: graphjit at
     least as fast as jax.jit on each.
   Each graphjit function is first checked against NumPy on a smaller problem of the same kind.
   Timing: after warm-up, a sample is `reps` back-to-back calls then one synchronisation, divided
   by `reps` (so launch overhead overlaps the device work, as in a real loop); the median of
   7 samples.
3. Writes DIR/results-gpu.md (the table, with the device, versions and the targets met or not),
   DIR/results-gpu.json and DIR/gpu-tests.txt (the test output). DIR defaults to benchmarks/.

Needs an NVIDIA GPU, numba-cuda; CuPy, torch and JAX where present (each missing one is
reported, not fatal). Not yet run on a GPU (written where none was lent; tests/test_cuda_gpu_script.py
runs every measurement at toy sizes in the simulator). Expect a few minutes for the figures
(mostly torch.compile and NVVM compilations) and more for the tests: with a 10-minute limit per
command, run `--tests-only --test-budget 500` and `--skip-tests` as two calls.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from workloads import chain, gelu, layernorm, scale_shift, softmax  # noqa: E402

N_ELEMENTWISE = 100_000_000
ROWS, COLS = 8192, 4096
MATMUL_SIZE = 4096
TEST_FILES = ["test_cuda.py", "test_cuda_inputs.py", "test_cuda_reductions.py",
              "test_cuda_matmul.py", "test_cuda_ptx.py", "test_cuda_suite.py"]
SAMPLES = 7
TARGETS = {"elementwise": 0.70, "rowwise": 0.60, "matmul_vs_cublas": 2.0}


# ---------------------------------------------------------------- tests on the GPU

def run_tests(out: Path, budget: float) -> list[dict]:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0", HYPOTHESIS_PROFILE="dev")
    deadline = time.monotonic() + budget
    results, log = [], []
    for name in TEST_FILES:
        left = deadline - time.monotonic()
        if left < 20:
            results.append({"file": name, "status": "not run (test budget spent)"})
            continue
        start = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
                   str(ROOT / "tests" / name)]
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=left)
            text = done.stdout + done.stderr
            summary = next((line for line in reversed(text.splitlines()) if " in " in line
                            and ("passed" in line or "failed" in line or "error" in line)),
                           f"rc={done.returncode}")
            status = "passed" if done.returncode == 0 else f"FAILED (rc={done.returncode})"
        except subprocess.TimeoutExpired as exc:
            text = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
                else (exc.stdout or "")
            summary, status = "timed out", "not finished (test budget spent)"
        results.append({"file": name, "status": status, "summary": summary.strip("= "),
                        "seconds": round(time.monotonic() - start, 1)})
        log.append(f"==== {name}: {status}\n{text[-20000:]}")
        print(f"tests/{name}: {status}: {summary.strip('= ')}", flush=True)
    (out / "gpu-tests.txt").write_text("\n".join(log))
    return results


# ---------------------------------------------------------------- timing

def median_seconds(call: Callable[[], Any], sync: Callable[[], None], samples: int | None = None,
                   min_sample: float = 0.02) -> float:
    samples = SAMPLES if samples is None else samples
    call()
    sync()
    start = time.perf_counter()
    call()
    sync()
    once = max(time.perf_counter() - start, 1e-6)
    reps = max(1, min(200, int(min_sample / once)))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(reps):
            call()
        sync()
        times.append((time.perf_counter() - start) / reps)
    return statistics.median(times)


def optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception:
        return None


class Peers:
    """The libraries this run can compare with, each with its device upload and its sync."""

    def __init__(self) -> None:
        self.cupy = optional("cupy")
        torch = optional("torch")
        self.torch = torch if torch is not None and torch.cuda.is_available() else None
        jax = optional("jax")
        if jax is not None:
            try:
                jax.config.update("jax_default_matmul_precision", "highest")   # no TF32
                if not any(d.platform == "gpu" for d in jax.devices()):
                    jax = None
            except Exception:
                jax = None
        self.jax = jax
        if self.torch is not None:
            self.torch.backends.cuda.matmul.allow_tf32 = False
            self.torch.backends.cudnn.allow_tf32 = False

    def versions(self) -> dict[str, str]:
        found = {}
        for name in ("numba", "numba_cuda", "cupy", "torch", "jax", "jaxlib"):
            module = optional(name)
            found[name] = getattr(module, "__version__", "present") if module else "missing"
        return found


# ---------------------------------------------------------------- measurements

def copy_bandwidth(peers: Peers, n: int) -> tuple[float, str]:
    """GB/s of a device-to-device copy, read + write counted."""
    from numba import cuda

    if peers.cupy is not None:
        cp = peers.cupy
        src, dst = cp.ones(n, cp.float32), cp.empty(n, cp.float32)
        seconds = median_seconds(lambda: cp.copyto(dst, src), cp.cuda.runtime.deviceSynchronize)
        how = "CuPy copyto"
    elif peers.torch is not None:
        t = peers.torch
        src, dst = t.ones(n, device="cuda"), t.empty(n, device="cuda")
        seconds = median_seconds(lambda: dst.copy_(src), t.cuda.synchronize)
        how = "torch copy_"
    else:
        src, dst = cuda.to_device(np.ones(n, np.float32)), cuda.device_array(n, np.float32)
        seconds = median_seconds(lambda: dst.copy_to_device(src), cuda.synchronize)
        how = "Numba copy_to_device"
    return 2 * 4 * n / seconds / 1e9, how


def check_graphjit(fn: Callable, jitted: Callable, small_args: tuple, rtol: float,
                   atol: float) -> None:
    from numba import cuda

    expected = fn(*small_args)
    actual = jitted(*[cuda.to_device(a) for a in small_args])
    actual = actual.copy_to_host() if hasattr(actual, "copy_to_host") else np.asarray(actual)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"{fn.__name__}: graphjit on the GPU disagrees with NumPy")


def time_graphjit(fn: Callable, args: tuple, small_args: tuple, rtol=2e-4, atol=2e-4
                  ) -> tuple[float, float]:
    import graphjit as gj
    from numba import cuda

    check_graphjit(fn, gj.jit(fn, target="cuda"), small_args, rtol, atol)
    jitted = gj.jit(fn, target="cuda")
    device_args = [cuda.to_device(a) for a in args]
    start = time.perf_counter()
    jitted(*device_args)
    cuda.synchronize()
    first = time.perf_counter() - start
    return median_seconds(lambda: jitted(*device_args), cuda.synchronize), first


def torch_port(torch: Any, name: str) -> Callable:
    from workloads import torch_versions

    return torch_versions(torch)[name]


def time_peers(peers: Peers, name: str, fn: Callable, args: tuple) -> dict[str, float]:
    """jax.jit, torch.compile and torch eager of the same workload; a failing peer is skipped
    with its error printed (it is not graphjit's figure)."""
    found: dict[str, float] = {}
    if peers.jax is not None:
        try:
            import types

            jax = peers.jax
            rebound = types.FunctionType(fn.__code__, {**fn.__globals__, "np": jax.numpy},
                                         fn.__name__)
            jitted = jax.jit(rebound)
            device_args = [jax.device_put(a) for a in args]
            found["jax.jit"] = median_seconds(lambda: jitted(*device_args).block_until_ready(),
                                              lambda: None)
        except Exception as exc:
            print(f"  jax.jit {name}: {type(exc).__name__}: {exc}", flush=True)
    if peers.torch is not None:
        torch = peers.torch
        try:
            eager = torch_port(torch, name) if name != "matmul" else (lambda a, b: a @ b)
            device_args = [torch.from_numpy(a).cuda() for a in args]
            found["torch eager"] = median_seconds(lambda: eager(*device_args),
                                                  torch.cuda.synchronize)
            compiled = torch.compile(eager)
            found["torch.compile"] = median_seconds(lambda: compiled(*device_args),
                                                    torch.cuda.synchronize)
        except Exception as exc:
            print(f"  torch {name}: {type(exc).__name__}: {exc}", flush=True)
    return found


def matmul(a, b):
    return a @ b


def time_matmul_paths(peers: Peers, a: np.ndarray, b: np.ndarray, small: tuple
                      ) -> dict[str, float]:
    """graphjit's tiled kernel and its cuBLAS path, cuBLAS through CuPy and torch."""
    from graphjit.runtime.cuda import library

    found: dict[str, float] = {}
    for label, enabled in (("graphjit tiled", False), ("graphjit via cuBLAS", True)):
        if enabled and not library.CuPyGemm().available():
            continue
        library.ENABLED = enabled
        try:
            found[label], _ = time_graphjit(matmul, (a, b), small, rtol=1e-3, atol=1e-2)
        finally:
            library.ENABLED = True
    if peers.cupy is not None:
        cp = peers.cupy
        da, db = cp.asarray(a), cp.asarray(b)
        found["cuBLAS (CuPy)"] = median_seconds(lambda: da @ db,
                                                cp.cuda.runtime.deviceSynchronize)
    found.update(time_peers(peers, "matmul", matmul, (a, b)))
    return found


def measure(peers: Peers) -> dict[str, Any]:
    rng = np.random.default_rng(1234)
    bandwidth, how = copy_bandwidth(peers, N_ELEMENTWISE)
    report: dict[str, Any] = {"copy_bandwidth_gbs": bandwidth, "copy_by": how, "workloads": {}}
    print(f"copy bandwidth: {bandwidth:.0f} GB/s ({how})", flush=True)

    x = rng.standard_normal(N_ELEMENTWISE, dtype=np.float32)
    small = (rng.standard_normal(min(100_003, N_ELEMENTWISE // 3 + 1), dtype=np.float32),)
    for fn in (chain, gelu, scale_shift):
        seconds, first = time_graphjit(fn, (x,), small)
        moved = 2 * 4 * N_ELEMENTWISE
        report["workloads"][fn.__name__] = entry(
            f"{fn.__name__} {N_ELEMENTWISE:,} f32", seconds, first, moved, bandwidth, "elementwise",
            time_peers(peers, fn.__name__, fn, (x,)))
        print(f"{fn.__name__}: {report['workloads'][fn.__name__]}", flush=True)
    del x

    m = rng.standard_normal((ROWS, COLS), dtype=np.float32)
    gamma = rng.standard_normal(COLS, dtype=np.float32)
    beta = rng.standard_normal(COLS, dtype=np.float32)
    few = m[:min(300, ROWS // 2 + 1)].copy()
    cases = {"softmax": (softmax, (m,), (few,)),
             "layernorm": (layernorm, (m, gamma, beta), (few, gamma, beta))}
    for name, (fn, args, small_args) in cases.items():
        seconds, first = time_graphjit(fn, args, small_args)
        report["workloads"][name] = entry(
            f"{name} {ROWS}x{COLS} f32", seconds, first, 2 * m.nbytes, bandwidth, "rowwise",
            time_peers(peers, name, fn, args))
        print(f"{name}: {report['workloads'][name]}", flush=True)
    del m

    size = MATMUL_SIZE
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    small_mm = (a[:min(300, size), :min(200, size)].copy(),
                b[:min(200, size), :min(260, size)].copy())
    paths = time_matmul_paths(peers, a, b, small_mm)
    flops = 2 * size ** 3
    cublas = min((v for k, v in paths.items() if k in ("cuBLAS (CuPy)", "torch eager")),
                 default=None)
    tiled = paths.get("graphjit tiled")
    report["workloads"]["matmul"] = {
        "label": f"matmul {size}^3 f32",
        "ms": {k: v * 1e3 for k, v in paths.items()},
        "tflops": {k: flops / v / 1e12 for k, v in paths.items()},
        "tiled_vs_cublas": None if cublas is None or tiled is None else tiled / cublas,
        "target_met": None if cublas is None or tiled is None
        else tiled / cublas <= TARGETS["matmul_vs_cublas"],
    }
    print(f"matmul: {report['workloads']['matmul']}", flush=True)
    return report


def entry(label: str, seconds: float, first: float, moved: int, bandwidth: float, kind: str,
          peers: dict[str, float]) -> dict[str, Any]:
    achieved = moved / seconds / 1e9
    share = achieved / bandwidth
    jax_seconds = peers.get("jax.jit")
    return {
        "label": label, "ms": seconds * 1e3, "first_call_s": first, "gbs": achieved,
        "share_of_copy": share, "target_share": TARGETS[kind],
        "share_met": share >= TARGETS[kind],
        "peers_ms": {k: v * 1e3 for k, v in peers.items()},
        "vs_jax": None if jax_seconds is None else jax_seconds / seconds,
        "jax_met": None if jax_seconds is None else seconds <= jax_seconds,
    }


# ---------------------------------------------------------------- the report

def markdown(device: str, versions: dict, tests: list[dict], report: dict | None) -> str:
    lines = ["# graphjit on a GPU (target=\"cuda\")", "",
             f"- date: {datetime.date.today().isoformat()}", f"- device: {device}",
             f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}",
             "- command: `python benchmarks/gpu.py` (device-resident float32 inputs; median of 7 "
             "samples of back-to-back calls, each sample synchronised)", ""]
    if tests:
        lines += ["## CUDA tests on the GPU", "", "| file | status | summary |", "|---|---|---|"]
        lines += [f"| {t['file']} | {t['status']} | {t.get('summary', '')} |" for t in tests]
        lines.append("")
    if report:
        bandwidth = report["copy_bandwidth_gbs"]
        lines += ["## Figures", "",
                  f"Copy bandwidth: **{bandwidth:.0f} GB/s** ({report['copy_by']}, read + write).",
                  "", "| workload | graphjit | share of copy (target) | jax.jit | torch.compile "
                  "| torch eager | graphjit vs jax.jit |", "|---|---|---|---|---|---|---|"]
        for name, w in report["workloads"].items():
            if name == "matmul":
                continue
            peers = w["peers_ms"]
            vs_jax = "n/a" if w["vs_jax"] is None else (
                f"{w['vs_jax']:.2f}x ({'met' if w['jax_met'] else 'NOT met'})")
            lines.append(
                f"| {w['label']} | {w['ms']:.3f} ms | {w['share_of_copy']:.0%} "
                f"({w['target_share']:.0%}: {'met' if w['share_met'] else 'NOT met'}) | "
                f"{_ms(peers.get('jax.jit'))} | {_ms(peers.get('torch.compile'))} | "
                f"{_ms(peers.get('torch eager'))} | {vs_jax} |")
        mm = report["workloads"].get("matmul")
        if mm:
            lines += ["", f"{mm['label']}:", "", "| path | ms | TFLOP/s |", "|---|---|---|"]
            lines += [f"| {k} | {v:.3f} | {mm['tflops'][k]:.1f} |" for k, v in mm["ms"].items()]
            if mm["tiled_vs_cublas"] is not None:
                lines += ["", f"Tiled kernel at {mm['tiled_vs_cublas']:.2f}x cuBLAS's time "
                          f"(target within {TARGETS['matmul_vs_cublas']:.0f}x: "
                          f"{'met' if mm['target_met'] else 'NOT met'})."]
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--tests-only", action="store_true")
    parser.add_argument("--test-budget", type=float, default=300.0)
    options = parser.parse_args()
    os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
    try:
        from numba import config, cuda
    except ImportError:
        sys.exit("numba-cuda is missing: pip install 'graphjit[cuda]'")
    if config.ENABLE_CUDASIM or not cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a real CUDA GPU (and NUMBA_ENABLE_CUDASIM unset).")
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    options.out.mkdir(parents=True, exist_ok=True)
    peers = Peers()
    versions = peers.versions()
    print(f"device: {name}; {versions}", flush=True)
    tests = [] if options.skip_tests else run_tests(options.out, options.test_budget)
    report = None if options.tests_only else measure(peers)
    text = markdown(name, versions, tests, report)
    (options.out / "results-gpu.md").write_text(text)
    (options.out / "results-gpu.json").write_text(json.dumps(
        {"device": name, "versions": versions, "tests": tests, "figures": report}, indent=1,
        default=str))
    print(text)


if __name__ == "__main__":
    main()
