"""Price 1e8 European options with Black-Scholes on a Dask cluster: the same Dask graph calling
the jitted function (`gj.dask.map_blocks`) and the undecorated NumPy function, timed.

    python examples/dask_blackscholes.py                  # 1e8 options, LocalCluster of 2 workers
    python examples/dask_blackscholes.py --small          # 1e6 options (what the tests run)
    python examples/dask_blackscholes.py --scheduler tcp://host:8786 --options 1e9   # a cluster

Needs the `distributed` extra: pip install -e ".[distributed]".
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import graphjit as gj

RSQRT2PI = 0.3989422804014327


def normal_cdf(d):
    """Abramowitz-Stegun 26.2.17 (|error| < 7.5e-8), the classic Black-Scholes benchmark form."""
    k = 1.0 / (1.0 + 0.2316419 * np.abs(d))
    poly = k * (0.31938153 + k * (-0.356563782 + k * (1.781477937 + k * (-1.821255978
                                                                          + k * 1.330274429))))
    tail = RSQRT2PI * np.exp(-0.5 * d * d) * poly
    return np.where(d > 0, 1.0 - tail, tail)


@gj.jit
def call_price(spot, strike, years, rate, volatility):
    root_t = np.sqrt(years)
    d1 = (np.log(spot / strike) + (rate + 0.5 * volatility * volatility) * years) / (
        volatility * root_t)
    d2 = d1 - volatility * root_t
    return spot * normal_cdf(d1) - strike * np.exp(-rate * years) * normal_cdf(d2)


def option_inputs(da, count: int, chunk: int, seed: int = 42) -> list:
    rng = da.random.default_rng(seed)
    ranges = [(5.0, 30.0), (1.0, 100.0), (0.25, 10.0), (0.01, 0.05), (0.1, 0.5)]
    return [rng.uniform(lo, hi, size=count, chunks=chunk) for lo, hi in ranges]


def timed(client, array, repeats: int) -> tuple[float, list[float]]:
    """Sum of the prices and the wall time of each computation."""
    times, total = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        total = client.compute(array.sum()).result()
        times.append(time.perf_counter() - start)
    return float(total), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", type=float, default=1e8, help="how many options")
    parser.add_argument("--chunk", type=float, default=5e6, help="options per block")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster process workers")
    parser.add_argument("--scheduler", default=None, help="address of an existing scheduler")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="1e6 options (a quick check)")
    args = parser.parse_args()
    if args.small:
        args.options, args.chunk, args.repeats = 1e6 + 3, 2.5e5, 2   # + 3: one ragged block

    import dask.array as da
    from distributed import Client, LocalCluster

    count, chunk = int(args.options), int(args.chunk)
    cluster = None
    if args.scheduler is None:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(args.scheduler or cluster)
    try:
        # the inputs are generated on the workers and kept there: both runs price the same data
        inputs = client.persist(option_inputs(da, count, chunk))
        client.wait_for_workers(1)
        compiled = gj.dask.map_blocks(call_price, *inputs)        # dtype and chunks inferred
        eager = da.map_blocks(call_price.fn, *inputs, dtype=np.float64)
        # first call on each worker: trace + compile per block shape (or load the disk cache)
        start = time.perf_counter()
        client.compute(compiled.sum()).result()
        first = time.perf_counter() - start
        compiled_total, compiled_times = timed(client, compiled, args.repeats)
        eager_total, eager_times = timed(client, eager, args.repeats)

        sample = [np.asarray(x[:1000].compute()) for x in inputs]
        agree = (np.isclose(compiled_total, eager_total, rtol=1e-9) and np.allclose(
            compiled[:1000].compute(), call_price.fn(*sample), rtol=1e-10, atol=1e-12))
        blocks = compiled.numblocks[0]
        workers = len(client.nthreads())
        compiled_s, eager_s = statistics.median(compiled_times), statistics.median(eager_times)
        counts = gj.dask.compile_counts(client, call_price)
        compiles = sum(c["misses"] for c in counts.values())
        print(f"Black-Scholes call prices: {count:,} options in {blocks} blocks on {workers} "
              "workers")
        print(f"mean price             {compiled_total / count:.6f}")
        print(f"NumPy map_blocks       {eager_s:8.3f} s  {count / eager_s / 1e6:9.1f} M options/s")
        print(f"graphjit map_blocks    {compiled_s:8.3f} s  {count / compiled_s / 1e6:9.1f} "
              "M options/s")
        print(f"speedup                {eager_s / compiled_s:8.2f} x")
        print(f"first run (compiles)   {first:8.3f} s  ({compiles} compilations over "
              f"{workers} workers)")
        print(f"results agree          {'yes' if agree else 'NO'}")
        if not agree:
            raise SystemExit("graphjit and NumPy disagree")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    main()
