"""In-place updates (issue 10 item 6): the 80-sweep Jacobi stencil of the issue and a heat-1d
loop, compiled against eager NumPy. Reports the compile time (first call, disk cache off) and the
median call times (7 samples of at least 20 ms each) eager vs compiled, with their ratio.

    python benchmarks/stencil.py              # both workloads
    python benchmarks/stencil.py --program    # also print the stencil's Program (first sweeps)
"""
from __future__ import annotations

import os
import statistics
import sys
import time

os.environ["GRAPHJIT_CACHE_DIR"] = "off"   # a compile time, not a disk-cache load

import numpy as np  # noqa: E402

import graphjit as gj  # noqa: E402


def sweeps(x0, b):
    x = x0 * 1.0
    for _ in range(80):
        x[1:-1, 1:-1] = (b[1:-1, 1:-1] + x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2]
                         + x[1:-1, 2:]) * 0.2
        x[0, 1:-1] = x[1, 1:-1]
        x[-1, 1:-1] = x[-2, 1:-1]
    return x


def heat(u):
    u = u.copy()
    for _ in range(100):
        u[1:-1] = u[1:-1] + 0.25 * (u[2:] - 2.0 * u[1:-1] + u[:-2])
        u[0] = u[-1] = 0.0
    return u


def median_call(fn, args, min_seconds: float = 0.02, samples: int = 7) -> float:
    for _ in range(3):
        fn(*args)
    times = []
    for _ in range(samples):
        calls, start = 0, time.perf_counter()
        while True:
            fn(*args)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        times.append(elapsed / calls)
    return statistics.median(times)


def measure(name: str, fn, args) -> None:
    jitted = gj.jit(fn)
    start = time.perf_counter()
    result = jitted(*args)
    compile_s = time.perf_counter() - start
    np.testing.assert_allclose(result, fn(*args), rtol=1e-10, atol=1e-12)
    eager, compiled = median_call(fn, args), median_call(jitted, args)
    print(f"{name:<28} compile {compile_s:5.2f} s   eager {eager * 1e6:8.0f} us   "
          f"compiled {compiled * 1e6:8.0f} us   eager/compiled {eager / compiled:5.2f}x")


def main() -> None:
    rng = np.random.default_rng(0)
    x0, b = rng.random((66, 66)), rng.random((66, 66))
    measure("stencil 80 sweeps 66x66", sweeps, (x0, b))
    measure("heat-1d 100 steps n=4096", heat, (rng.random(4096),))
    if "--program" in sys.argv:
        print(gj.jit(sweeps).lower(x0, b).as_text("program")[:4000])


if __name__ == "__main__":
    main()
