"""Distributed benchmarks (issue 14) on a LocalCluster of process workers.

    python benchmarks/distributed_bench.py          # full sizes; writes results-distributed.md and .json
    python benchmarks/distributed_bench.py --quick  # small sizes, few samples: a smoke test (no files)

1. Dask `map_blocks` throughput, graphjit (`gj.dask.map_blocks`) against the same Dask graph
   calling the undecorated NumPy function, on the same cluster, inputs persisted in the workers'
   memory first (so only the blocks' work and Dask's scheduling are timed). Workloads: Black-Scholes
   call prices (examples/dask_blackscholes.py) and a GELU.
2. Data-parallel training: the step time of `fit` on an MLP 784-256-10 (Adam, global batch 256) in
   one process against `DaskDataParallel` on 1 and 2 local workers, with each step split into the
   slowest replica's gradient pass, the driver's optimizer update and the rest (communication:
   shards out, gradients to the reducing worker, the average back, scheduling). From the 1- and
   2-worker communication times it fits `comm(N) = a + b (N - 1)` and projects N machines.

Medians over steps after warm-up; every worker runs 1 thread (GRAPHJIT_NUM_THREADS=1), and so does
the single process, so that 2 workers on 2 cores are compared with 1 process on 1 core.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("GRAPHJIT_NUM_THREADS", "1")
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# this file's own folder must not be on the path: its name would shadow the `distributed` package
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

import graphjit as gj  # noqa: E402
from dask_blackscholes import call_price, option_inputs  # noqa: E402


@gj.jit
def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def median_seconds(client, array, repeats: int) -> tuple[float, float]:
    times, total = [], 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        total = float(client.compute(array.sum()).result())
        times.append(time.perf_counter() - start)
    return statistics.median(times), total


def map_blocks_rows(client, quick: bool) -> list[dict]:
    import dask.array as da

    count, chunk, repeats = (2_000_000, 500_000, 3) if quick else (20_000_000, 2_500_000, 3)
    rows = []
    options = client.persist(option_inputs(da, count, chunk))
    x = client.persist(da.random.default_rng(7).standard_normal(count, chunks=chunk))
    for label, fn, args in [("Black-Scholes call price", call_price, options),
                            ("GELU", gelu, [x])]:
        compiled = gj.dask.map_blocks(fn, *args)
        eager = da.map_blocks(fn.fn, *args, dtype=np.float64)
        client.compute(compiled.sum()).result()       # compile (or load) on every worker
        client.compute(eager.sum()).result()
        compiled_s, compiled_total = median_seconds(client, compiled, repeats)
        eager_s, eager_total = median_seconds(client, eager, repeats)
        assert np.isclose(compiled_total, eager_total, rtol=1e-9), (label, compiled_total,
                                                                    eager_total)
        rows.append({"workload": label, "elements": count, "blocks": compiled.numblocks[0],
                     "numpy_s": eager_s, "graphjit_s": compiled_s,
                     "numpy_melem_s": count / eager_s / 1e6,
                     "graphjit_melem_s": count / compiled_s / 1e6,
                     "speedup": eager_s / compiled_s})
    client.cancel(options + [x])
    return rows


def _nothing(*_: object) -> None:
    return None


def round_trip_ms(client, payload_bytes: int = 0, samples: int = 30) -> float:
    """Median ms of submitting a task (carrying `payload_bytes`) to one worker and waiting for
    it: Dask's own latency, the floor under each data-parallel step."""
    worker = sorted(client.nthreads())[0]
    payload = np.zeros(payload_bytes // 4, np.float32)
    times = []
    for _ in range(samples + 3):
        start = time.perf_counter()
        client.submit(_nothing, payload, workers=[worker], pure=False).result()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:]) * 1e3


def mlp(seed: int = 0):
    from graphjit import layers, losses

    layers.set_seed(seed)
    model = gj.Sequential([layers.Input((784,)), layers.Dense(256, activation="relu"),
                           layers.Dense(10)])
    model.compile(optimizer="adam",
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class StepTimes(gj.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds, self._start = [], 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def data_parallel_rows(client, quick: bool) -> tuple[list[dict], dict]:
    from graphjit.distribute import DaskDataParallel

    batch, steps, warmup = 256, (8 if quick else 40), 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch * steps, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch * steps)
    model = mlp()
    gradient_bytes = sum(w.nbytes for w in model.get_weights())
    rows = []

    single = StepTimes()
    model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0, callbacks=[single])
    one = statistics.median(single.seconds[warmup:])
    rows.append({"setup": "1 process", "step_ms": one * 1e3, "compute_ms": one * 1e3,
                 "update_ms": None, "communication_ms": 0.0, "communication_share": 0.0})
    for workers in (1, 2):
        model = mlp()
        with DaskDataParallel(client, workers=workers) as strategy:
            model.fit(x, y, batch_size=batch, epochs=2, shuffle=False, verbose=0,
                      distribute=strategy)
            timings = strategy.timings[warmup:]
        median = {k: statistics.median([t[k] for t in timings])
                  for k in ("step", "compute", "update", "communication")}
        rows.append({"setup": f"DaskDataParallel, {workers} worker(s)",
                     "step_ms": median["step"] * 1e3, "compute_ms": median["compute"] * 1e3,
                     "update_ms": median["update"] * 1e3,
                     "communication_ms": median["communication"] * 1e3,
                     "communication_share": median["communication"] / median["step"]})
    comm1, comm2 = rows[1]["communication_ms"], rows[2]["communication_ms"]
    model_fit = {"gradient_bytes": gradient_bytes, "batch": batch,
                 "round_trip_ms": round_trip_ms(client),
                 "round_trip_gradient_sized_ms": round_trip_ms(client, gradient_bytes),
                 "single_step_ms": one * 1e3, "update_ms": rows[2]["update_ms"],
                 "comm_a_ms": comm1, "comm_b_ms": max(comm2 - comm1, 0.0)}
    return rows, model_fit


def projection(fit: dict, counts=(1, 2, 4, 8, 16, 32, 64)) -> list[dict]:
    """Strong scaling of the global batch: compute shrinks as 1/N (the one-process step minus its
    update), the update stays, communication grows as a + b (N - 1)."""
    update = fit["update_ms"] or 0.0
    compute_one = max(fit["single_step_ms"] - update, 0.0)
    rows = []
    for n in counts:
        comm = fit["comm_a_ms"] + fit["comm_b_ms"] * (n - 1)
        step = compute_one / n + update + comm
        rows.append({"machines": n, "step_ms": step, "speedup": fit["single_step_ms"] / step,
                     "communication_share": comm / step})
    return rows


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = []
    for row in rows:
        cells = []
        for _, key, spec in columns:
            value = row[key]
            cells.append("-" if value is None else format(value, spec) if spec else str(value))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, env={"GRAPHJIT_NUM_THREADS": "1"})
    client = Client(cluster)
    try:
        client.wait_for_workers(args.workers, timeout=120)
        blocks = map_blocks_rows(client, args.quick)
        training, fitted = data_parallel_rows(client, args.quick)
    finally:
        client.close()
        cluster.close()
    scaling = projection(fitted)

    header = (f"{time.strftime('%Y-%m-%d')} · {platform.machine()} · {os.cpu_count()} cores · "
              f"Python {platform.python_version()} · numpy {np.__version__} · graphjit "
              f"{gj.__version__} · LocalCluster of {args.workers} process workers, 1 thread each")
    report = "\n\n".join([
        "# graphjit distributed benchmarks", header,
        f"Command: `python benchmarks/distributed_bench.py{' --quick' if args.quick else ''}`",
        "## Dask map_blocks throughput (same cluster, inputs persisted; median s)",
        table(blocks, [("workload", "workload", ""), ("elements", "elements", ","),
                       ("blocks", "blocks", ""), ("NumPy s", "numpy_s", ".3f"),
                       ("graphjit s", "graphjit_s", ".3f"),
                       ("NumPy M elem/s", "numpy_melem_s", ".1f"),
                       ("graphjit M elem/s", "graphjit_melem_s", ".1f"),
                       ("speedup", "speedup", ".2f")]),
        f"## Data-parallel step, MLP 784-256-10 Adam, global batch {fitted['batch']} "
        f"(gradients {fitted['gradient_bytes'] / 1e6:.2f} MB; median ms)",
        table(training, [("setup", "setup", ""), ("step ms", "step_ms", ".2f"),
                         ("compute ms (slowest replica)", "compute_ms", ".2f"),
                         ("update ms (driver)", "update_ms", ".2f"),
                         ("communication ms", "communication_ms", ".2f"),
                         ("communication share", "communication_share", ".0%")]),
        f"Dask round trip of one task on this cluster: {fitted['round_trip_ms']:.2f} ms empty, "
        f"{fitted['round_trip_gradient_sized_ms']:.2f} ms carrying "
        f"{fitted['gradient_bytes'] / 1e6:.2f} MB (a data-parallel step is one such round trip "
        "per replica plus the gradients back).",
        f"## Projection to N machines (strong scaling of batch {fitted['batch']}; "
        f"comm(N) = {fitted['comm_a_ms']:.2f} + {fitted['comm_b_ms']:.2f} (N - 1) ms)",
        table(scaling, [("machines", "machines", ""), ("step ms", "step_ms", ".2f"),
                        ("speedup vs 1 process", "speedup", ".2f"),
                        ("communication share", "communication_share", ".0%")]),
    ])
    print(report)
    if not args.quick:
        with open(os.path.join(HERE, "results-distributed.md"), "w") as f:
            f.write(report + "\n")
        with open(os.path.join(HERE, "results-distributed.json"), "w") as f:
            json.dump({"map_blocks": blocks, "data_parallel": training, "fit": fitted,
                       "projection": scaling}, f, indent=1)


if __name__ == "__main__":
    main()
