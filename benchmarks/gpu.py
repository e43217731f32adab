"""GPU benchmarks of the CUDA backend (issue 4 §7).

Needs an NVIDIA GPU: `python benchmarks/gpu.py`.

Measures, on device-resident float32 inputs (no host copies in the timed region):
- the device's copy bandwidth (device-to-device copy of 1.6e8 float32, read + write counted);
- the elementwise chain and GELU on 1.6e8 float32, as a fraction of that copy bandwidth
  (each moves 2 x 4 bytes per element: one read, one write);
- softmax and layernorm on (65536, 1024);
- the MLP forward (784 -> 512 -> 10) at batch 4096;
- matmul 4096 x 4096 x 4096, against CuPy and torch when they are importable.
Every graphjit result is checked against NumPy (on a slice, for the big ones) before timing.
Timing: 3 warm-up calls, then the median of 7+ samples, each synchronised. Results go to
benchmarks/results-gpu.md with the date and the device.
"""
from __future__ import annotations

import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    from numba import config, cuda
except ImportError:
    sys.exit("numba-cuda is missing: pip install 'graphjit[cuda]'")

import graphjit as gj

RESULTS = Path(__file__).resolve().parent / "results-gpu.md"
N_ELEMENTWISE = 160_000_000
ROWS, COLS = 65536, 1024
MLP_BATCH = 4096
MLP_SIZES = (784, 512, 10)
MATMUL_SIZE = 4096


from workloads import chain, gelu, layernorm, mlp, softmax  # noqa: E402  (beside this file)


def matmul(a, b):
    return a @ b


def median_seconds(call, sync, warmup: int = 3, samples: int = 7, min_time: float = 0.02
                   ) -> float:
    for _ in range(warmup):
        call()
    sync()
    times = []
    while len(times) < samples or sum(times) < min_time * samples:
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
        if len(times) >= 50:
            break
    return statistics.median(times)


def copy_bandwidth(n: int) -> float:
    """GB/s of a device-to-device copy, counting the read and the write."""
    src = cuda.to_device(np.ones(n, np.float32))
    dst = cuda.device_array(n, np.float32)
    seconds = median_seconds(lambda: dst.copy_to_device(src), cuda.synchronize)
    return 2 * 4 * n / seconds / 1e9


def check(name: str, jitted, host_args, device_args, rtol: float, atol: float) -> None:
    expected = jitted.fn(*host_args)
    actual = jitted(*device_args)
    actual = actual.copy_to_host() if hasattr(actual, "copy_to_host") else np.asarray(actual)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"{name}: graphjit on the GPU disagrees with NumPy")


def time_graphjit(fn, host_args, rtol=2e-4, atol=2e-4, check_args=None):
    jitted = gj.jit(fn, target="cuda")
    device_args = [cuda.to_device(a) for a in host_args]
    if check_args is not None:   # check on a smaller problem of the same kind
        check(fn.__name__, gj.jit(fn, target="cuda"), check_args,
              [cuda.to_device(a) for a in check_args], rtol, atol)
    else:
        check(fn.__name__, jitted, host_args, device_args, rtol, atol)
    compile_start = time.perf_counter()
    jitted(*device_args)
    cuda.synchronize()
    first = time.perf_counter() - compile_start
    return median_seconds(lambda: jitted(*device_args), cuda.synchronize), first


def peer_matmul(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    results = {}
    try:
        import cupy
        da, db = cupy.asarray(a), cupy.asarray(b)
        results["CuPy"] = median_seconds(lambda: da @ db, cupy.cuda.runtime.deviceSynchronize)
    except Exception:
        pass
    try:
        import torch
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = False   # the same float32 arithmetic
            ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
            results["torch"] = median_seconds(lambda: ta @ tb, torch.cuda.synchronize)
    except Exception:
        pass
    return results


def main() -> None:
    if config.ENABLE_CUDASIM or not cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a real CUDA GPU (unset NUMBA_ENABLE_CUDASIM).")
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    write_results(name, measure())


def measure() -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(1234)
    rows: list[tuple[str, str, str]] = []

    bandwidth = copy_bandwidth(N_ELEMENTWISE)
    copy_ms = 2 * 4 * N_ELEMENTWISE / bandwidth / 1e6
    rows.append((f"device copy, {N_ELEMENTWISE:.1e} f32", f"{copy_ms:.3f} ms",
                 f"{bandwidth:.0f} GB/s (read + write)"))

    small = rng.standard_normal(100_000, dtype=np.float32)
    x = rng.standard_normal(N_ELEMENTWISE, dtype=np.float32)
    for fn in (chain, gelu):
        seconds, first = time_graphjit(fn, (x,), check_args=(small,))
        achieved = 2 * 4 * N_ELEMENTWISE / seconds / 1e9
        rows.append((f"{fn.__name__}, {N_ELEMENTWISE:.1e} f32", f"{seconds * 1e3:.3f} ms",
                     f"{achieved:.0f} GB/s = {achieved / bandwidth:.0%} of copy bandwidth "
                     f"(first call {first:.2f} s)"))
    del x

    x = rng.standard_normal((ROWS, COLS), dtype=np.float32)
    gamma = rng.standard_normal(COLS, dtype=np.float32)
    beta = rng.standard_normal(COLS, dtype=np.float32)
    small_rows = (x[:512].copy(), gamma, beta)
    seconds, _ = time_graphjit(softmax, (x,), check_args=(x[:512].copy(),))
    rows.append((f"softmax {x.shape} f32", f"{seconds * 1e3:.3f} ms",
                 f"{2 * x.nbytes / seconds / 1e9:.0f} GB/s effective"))
    seconds, _ = time_graphjit(layernorm, (x, gamma, beta), check_args=small_rows)
    rows.append((f"layernorm {x.shape} f32", f"{seconds * 1e3:.3f} ms",
                 f"{2 * x.nbytes / seconds / 1e9:.0f} GB/s effective"))
    del x

    inputs, hidden, classes = MLP_SIZES
    batch = rng.standard_normal((MLP_BATCH, inputs), dtype=np.float32)
    w1 = (rng.standard_normal((inputs, hidden), dtype=np.float32)
          * np.float32(np.sqrt(2 / inputs)))
    b1 = np.zeros(hidden, np.float32)
    w2 = (rng.standard_normal((hidden, classes), dtype=np.float32)
          * np.float32(np.sqrt(2 / hidden)))
    b2 = np.zeros(classes, np.float32)
    seconds, _ = time_graphjit(mlp, (batch, w1, b1, w2, b2), rtol=1e-3, atol=1e-3)
    flops = 2 * MLP_BATCH * (inputs * hidden + hidden * classes)
    rows.append((f"MLP forward, batch {MLP_BATCH}", f"{seconds * 1e3:.3f} ms",
                 f"{flops / seconds / 1e12:.2f} TFLOP/s"))

    size = MATMUL_SIZE
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    seconds, _ = time_graphjit(matmul, (a, b), rtol=1e-3, atol=1e-2,
                               check_args=(a[:256, :512].copy(), b[:512, :128].copy()))
    flops = 2 * size ** 3
    rows.append((f"matmul {size}^3 f32, graphjit", f"{seconds * 1e3:.3f} ms",
                 f"{flops / seconds / 1e12:.2f} TFLOP/s"))
    for peer, peer_seconds in peer_matmul(a, b).items():
        rows.append((f"matmul {size}^3 f32, {peer}", f"{peer_seconds * 1e3:.3f} ms",
                     f"{flops / peer_seconds / 1e12:.2f} TFLOP/s; graphjit at "
                     f"{peer_seconds / seconds:.0%} of {peer}"))
    return rows


def write_results(device_name: str, rows: list[tuple[str, str, str]]) -> None:
    today = datetime.date.today().isoformat()
    lines = [
        "# graphjit GPU benchmarks (target=\"cuda\")", "",
        f"- date: {today}", f"- device: {device_name}",
        "- command: `python benchmarks/gpu.py`; device-resident float32 inputs; median of at "
        "least 7 synchronised samples after 3 warm-up calls", "",
        "| workload | median | throughput |", "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
