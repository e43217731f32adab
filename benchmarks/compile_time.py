"""Compile time against program size: unrolled loops of 100 to 20,000 traced ops, time per op.

    python benchmarks/compile_time.py                  # every program kind, every size
    python benchmarks/compile_time.py --kinds chain --sizes 100 1000

Each cell is one first call in a fresh process with the disk cache off (GRAPHJIT_CACHE_DIR=off), so
nothing is shared between sizes; `ops` counts the nodes of the traced graph. The split comes
from `lower().compile_stats()`: trace, the compiler's passes, rendering LLVM IR, and LLVM itself.
Program kinds:
- chain:   `x = x * a + b`: every op fuses into one loop kernel;
- reduce:  `x = x * a + x.mean() * b`: a reduction per iteration, so one kernel each;
- update:  `x[i % n] = x[(i + 1) % n] * a + b`: a row update per iteration (mutation).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

SIZES = (100, 1000, 5000, 20000)
KINDS = ("chain", "reduce", "update")
OPS_PER_ITERATION = {"chain": 6, "reduce": 10, "update": 9}   # traced nodes, measured

WORKER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import graphjit as gj

    kind, iterations = sys.argv[1], int(sys.argv[2])

    def chain(x):
        for _ in range(iterations):
            x = x * 1.0001 + 0.0001
        return x

    def reduce(x):
        for _ in range(iterations):
            x = x * 1.0001 + x.mean() * 1e-4
        return x

    def update(x):
        x = x * 1.0
        for i in range(iterations):
            x[i % 8] = x[(i + 1) % 8] * 1.0001 + 0.0001
        return x

    fn = gj.jit({"chain": chain, "reduce": reduce, "update": update}[kind])
    x = np.ones((8, 128))
    start = time.perf_counter()
    lowered = fn.lower(x)
    fn(x)
    total = time.perf_counter() - start
    stats = lowered.compile_stats()
    ops = sum(1 for line in lowered.as_text("traced").splitlines() if " = " in line)
    kernels = lowered.as_text("program").count("\\nk")
    passes = sum(v for k, v in stats.items() if k.startswith("pass:"))
    print(json.dumps({"ops": ops, "kernels": kernels, "total": total, "trace": stats["trace"],
                      "passes": passes, "render": stats.get("render", 0.0),
                      "llvm": stats.get("llvm", 0.0)}))
""")


def measure(kind: str, ops: int, timeout: float) -> dict | None:
    iterations = max(1, ops // OPS_PER_ITERATION[kind])
    env = dict(os.environ, GRAPHJIT_CACHE_DIR="off")
    try:
        done = subprocess.run([sys.executable, "-c", WORKER, kind, str(iterations)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"{kind} x{iterations} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--sizes", nargs="*", type=int, default=list(SIZES))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")
    parser.add_argument("--json", help="write the rows to this file")
    options = parser.parse_args()
    rows = []
    print(f"{'kind':8} {'ops':>7} {'kernels':>8} {'total s':>8} {'us/op':>7}  "
          f"{'trace':>6} {'passes':>6} {'render':>6} {'llvm':>6}")
    for kind in options.kinds:
        for size in options.sizes:
            row = measure(kind, size, options.timeout)
            if row is None:
                print(f"{kind:8} {size:>7}  timed out after {options.timeout:.0f} s", flush=True)
                continue
            row.update(kind=kind, requested=size)
            rows.append(row)
            print(f"{kind:8} {row['ops']:>7} {row['kernels']:>8} {row['total']:>8.2f} "
                  f"{row['total'] / row['ops'] * 1e6:>7.0f}  {row['trace']:>6.2f} "
                  f"{row['passes']:>6.2f} {row['render']:>6.2f} {row['llvm']:>6.2f}", flush=True)
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
