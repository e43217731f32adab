"""Safe under load: concurrent callers of one jitted function, and memory over many calls.

Each test proves one promise of issue 3 §6 through the public `gj.jit` path: every concurrent
caller gets its own right result, one signature compiles (traces) once however many threads miss
at the same moment, and a long loop of calls leaves RSS, the workspace pool and the output pool
flat.
"""
from __future__ import annotations

import gc
import os
import threading

import numpy as np
import pytest

import graphjit as gj

THREADS = 6


def _run_threads(target, count: int = THREADS) -> list[BaseException]:
    """Start `count` threads on target(n, barrier) at once; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n, barrier)
        except BaseException as exc:  # reported by the test, with its thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a caller hung"
    return errors


def _counting_jit(fn):
    """gj.jit(fn) plus the number of times fn's Python body ran (= traces: hits never run it)."""
    traces = []

    def counted(*args):
        traces.append(1)
        return fn(*args)

    counted.__name__ = fn.__name__
    return gj.jit(counted), traces


def _softmax_scale(x, w):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) * w


def test_threads_missing_at_once_trace_once_and_each_get_their_own_result():
    jitted, traces = _counting_jit(_softmax_scale)
    w = np.linspace(0.5, 1.5, 16).astype(np.float32)

    def caller(n, barrier):
        rng = np.random.default_rng(n)
        barrier.wait()                       # every thread's first call is a miss, together
        for _ in range(40):
            x = rng.standard_normal((32, 16)).astype(np.float32) * (n + 1)
            got = jitted(x, w)
            np.testing.assert_allclose(got, _softmax_scale(x, w), rtol=1e-5, atol=1e-6)

    assert not _run_threads(caller)
    assert len(traces) == 1
    info = jitted.cache_info()     # (the hit counter is a statistic: not exact across threads)
    assert info["misses"] == 1 and info["entries"] == 1


def test_threads_with_different_shapes_compile_each_signature_once():
    jitted, traces = _counting_jit(lambda x: np.tanh(x) * 2.0 - x)
    shapes = [(5,), (7, 3), (200_000,)]     # the last is big enough to run on the thread pool

    def caller(n, barrier):
        rng = np.random.default_rng(100 + n)
        barrier.wait()
        for round_ in range(12):
            x = rng.standard_normal(shapes[(n + round_) % len(shapes)])
            np.testing.assert_allclose(jitted(x), np.tanh(x) * 2.0 - x, rtol=1e-12, atol=1e-12)

    assert not _run_threads(caller)
    assert len(traces) == len(shapes)
    assert jitted.cache_info()["misses"] == len(shapes)


def test_concurrent_results_are_never_shared_buffers():
    jitted = gj.jit(lambda x, y: x * y + 1.0)
    results: dict[int, list[np.ndarray]] = {}

    def caller(n, barrier):
        x = np.full((64, 64), float(n))
        barrier.wait()
        results[n] = [jitted(x, x) for _ in range(50)]

    assert not _run_threads(caller)
    for n, outs in results.items():
        for out in outs:
            np.testing.assert_array_equal(out, np.full((64, 64), n * n + 1.0))
    every = [out for outs in results.values() for out in outs]
    addresses = {out.ctypes.data for out in every}
    assert len(addresses) == len(every)      # all alive at once, so all distinct memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                reason="needs /proc (Linux)")


@needs_proc
def test_100k_jit_calls_leave_memory_flat():
    jitted = gj.jit(lambda x: x + 1)
    x = np.ones(8, np.float32)
    for _ in range(5_000):                   # warm every free list and the result path
        jitted(x)
    gc.collect()
    before = _rss_bytes()
    for _ in range(100_000):
        jitted(x)
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 2 * 1024 * 1024, f"RSS grew by {grown} bytes over 100k calls"
    entry = jitted._cache[next(iter(jitted._cache))]
    assert len(entry.executable.workspaces) == 1
    assert jitted.cache_info()["misses"] == 1


@needs_proc
def test_big_outputs_matmuls_and_host_steps_leave_memory_flat():
    from graphjit.runtime.cpu.executable import output_blocks

    def block(x, w, idx):
        h = np.maximum(x @ w, 0.0)
        return h[idx].sum() + h * 0.5        # a host step (fancy index), BLAS, a big output

    jitted = gj.jit(block)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 40)).astype(np.float32)
    w = rng.standard_normal((40, 300)).astype(np.float32)   # output: 360 KB, pooled
    idx = np.array([0, 7, 299])
    np.testing.assert_allclose(jitted(x, w, idx), block(x, w, idx), rtol=1e-4, atol=1e-4)
    for _ in range(300):
        jitted(x, w, idx)
    gc.collect()
    before, pooled_before = _rss_bytes(), output_blocks.cached_bytes()
    for _ in range(3_000):
        jitted(x, w, idx)
    gc.collect()
    grown = _rss_bytes() - before
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown} bytes over 3000 calls"
    # the shared output pool keeps at most `per_size` free blocks of this output's size
    output_bytes = 300 * 300 * 4
    assert output_blocks.cached_bytes() <= pooled_before + output_blocks.per_size * output_bytes
