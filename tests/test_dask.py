"""Jitted functions over Dask arrays on a real dask.distributed cluster of two process workers.

The cluster is started and stopped by a module fixture (every wait has a timeout); the module
skips when the `distributed` extra is not installed.
"""
import os
import signal
import time
import uuid

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import graphjit as gj  # noqa: E402

TIMEOUT = 60   # seconds any one computation may take before the test fails (never a hang)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("shared-gj-cache"))
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
        env={"GRAPHJIT_CACHE_DIR": cache_dir, "GRAPHJIT_NUM_THREADS": "1"})
    client = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        client.wait_for_workers(2, timeout=TIMEOUT)
        client.cache_dir = cache_dir
        yield client
    finally:
        client.close(timeout=20)
        cluster.close(timeout=30)


def _workers(client):
    return sorted(client.scheduler_info()["workers"])


def _fresh_function():
    """A jitted function no worker has compiled and no disk-cache entry holds: its constant is
    part of the generated code, hence of the cache key."""
    scale = 1.0 + int(uuid.uuid4().int % 10 ** 6) * 1e-9

    @gj.jit
    def scaled_sin(x):
        return np.sin(x) * scale + 0.5

    return scaled_sin, scale


def test_import_graphjit_does_not_import_dask():
    import subprocess
    import sys

    code = "import sys, graphjit; print('dask' in sys.modules, 'distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=TIMEOUT, check=True).stdout
    assert out.split() == ["False", "False"]


def test_map_blocks_ragged_chunks_against_numpy(client):
    @gj.jit
    def affine_tanh(x, bias, scale):
        return np.tanh(x * scale) + bias

    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((53, 37)).astype(np.float32)
    bias_np = rng.standard_normal(37).astype(np.float32)
    x = da.from_array(x_np, chunks=(20, 15))          # ragged along both axes
    bias = da.from_array(bias_np, chunks=15)          # broadcast along the rows
    y = gj.dask.map_blocks(affine_tanh, x, bias, scale=0.5)
    assert y.dtype == np.float32 and y.chunks == x.chunks
    assert type(y._meta) is np.ndarray and y._meta.ndim == 2
    got = client.compute(y).result(timeout=TIMEOUT)
    np.testing.assert_allclose(got, affine_tanh.eager(x_np, bias_np, 0.5), rtol=2e-6, atol=2e-6)


def test_map_blocks_infers_changed_block_shapes_and_dtype(client):
    @gj.jit
    def pairs_mean(x):       # (n, m) -> (n // 2, m): each block halves along axis 0, as int64
        return (x.reshape(x.shape[0] // 2, 2, x.shape[1]).sum(axis=1) > 0).astype(np.int64)

    x_np = np.random.default_rng(1).standard_normal((36, 10))
    x = da.from_array(x_np, chunks=((16, 16, 4), (6, 4)))
    y = gj.dask.map_blocks(pairs_mean, x)
    assert y.chunks == ((8, 8, 2), (6, 4)) and y.dtype == np.int64
    expected = np.concatenate([pairs_mean.eager(x_np[a:b]) for a, b in
                               [(0, 16), (16, 32), (32, 36)]])
    np.testing.assert_array_equal(client.compute(y).result(timeout=TIMEOUT), expected)


def test_plain_function_is_jitted_and_blockwise_takes_a_jitted_function(client):
    def softplus(x):
        return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)

    x_np = np.linspace(-30, 30, 101)
    x = da.from_array(x_np, chunks=30)
    np.testing.assert_allclose(
        client.compute(gj.dask.map_blocks(softplus, x)).result(timeout=TIMEOUT),
        softplus(x_np), rtol=1e-12)
    jitted = gj.jit(softplus)
    y = da.blockwise(jitted, "i", x, "i", dtype=np.float64)
    np.testing.assert_allclose(client.compute(y).result(timeout=TIMEOUT), softplus(x_np),
                               rtol=1e-12)


def test_map_blocks_refuses_what_dask_chunks_cannot_express(client):
    x = da.ones((10, 4), chunks=5)
    with pytest.raises(gj.ShapeError, match="drop_axis"):
        gj.dask.map_blocks(lambda b: b.sum(axis=1), x)
    with pytest.raises(gj.ArgumentError, match="returns 2 arrays"):
        gj.dask.map_blocks(lambda b: (b, b), x)
    # with drop_axis the layout is Dask's; only the dtype is inferred
    y = gj.dask.map_blocks(lambda b: (b * 2).sum(axis=1), x, drop_axis=1)
    np.testing.assert_allclose(client.compute(y).result(timeout=TIMEOUT), np.full(10, 8.0))


def test_reduction_with_jitted_chunk_combine_aggregate(client):
    def sum_exp(block, axis, keepdims):
        return np.sum(np.exp(block), axis=axis, keepdims=keepdims)

    def total(block, axis, keepdims):
        return np.sum(block, axis=axis, keepdims=keepdims)

    x_np = np.random.default_rng(2).standard_normal((45, 12)).astype(np.float32)
    x = da.from_array(x_np, chunks=(10, 5))
    for axis in (None, 0, 1, (0, 1)):
        r = gj.dask.reduction(x, sum_exp, total, combine=total, axis=axis, split_every=2)
        expected = np.exp(x_np.astype(np.float64)).sum(axis=axis)
        assert r.dtype == np.float32 and r.shape == np.shape(expected)
        np.testing.assert_allclose(client.compute(r).result(timeout=TIMEOUT), expected,
                                   rtol=1e-5)
    peak = gj.dask.reduction(x, lambda b, axis, keepdims: np.max(np.abs(b), axis=axis,
                                                                 keepdims=keepdims),
                             np.max, keepdims=True)
    assert client.compute(peak).result(timeout=TIMEOUT).item() == np.abs(x_np).max()


def test_compile_once_per_worker_per_block_shape_and_shared_disk_cache(client):
    first, second = _workers(client)
    fn, scale = _fresh_function()
    x_np = np.random.default_rng(3).standard_normal(350)
    x = da.from_array(x_np, chunks=100)              # two block shapes: (100,) and (50,)
    expected = np.sin(x_np) * scale + 0.5

    def run(**where):   # a new graph each time, so no result is reused from worker memory
        y = gj.dask.map_blocks(fn, x, token=f"sin-{uuid.uuid4().hex}")
        return client.compute(y, **where).result(timeout=TIMEOUT)

    np.testing.assert_allclose(run(workers=[first]), expected, rtol=1e-12)
    counts = gj.dask.compile_counts(client, fn)
    # the first worker compiled each block shape once (LLVM), reusing it for the other blocks
    assert counts[first] == {"hits": 2, "misses": 2, "entries": 2, "compiled": 2, "loaded": 0}
    assert counts[second]["misses"] == 0

    np.testing.assert_allclose(run(workers=[second]), expected, rtol=1e-12)
    counts = gj.dask.compile_counts(client, fn)
    # the second worker traced both shapes but ran no LLVM: it loaded the first one's code
    assert counts[second] == {"hits": 2, "misses": 2, "entries": 2, "compiled": 0, "loaded": 2}

    for _ in range(2):   # anywhere, again: no worker compiles anything more
        np.testing.assert_allclose(run(), expected, rtol=1e-12)
    counts = gj.dask.compile_counts(client, fn)
    assert counts[first]["misses"] == counts[second]["misses"] == 2
    assert counts[first]["compiled"] + counts[second]["compiled"] == 2
    assert counts[first]["hits"] + counts[second]["hits"] == 4 + 8
    assert os.listdir(client.cache_dir)


def test_killed_worker_mid_run_is_retried_by_dask(client):
    @gj.jit
    def cube(x):
        return x * x * x

    def slow_cube(x):
        time.sleep(0.4)
        return cube(x)

    victim = _workers(client)[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    x_np = np.arange(80, dtype=np.float64)
    y = da.from_array(x_np, chunks=5).map_blocks(slow_cube, dtype=np.float64)
    future = client.compute(y)
    deadline = time.monotonic() + TIMEOUT
    while not any(state == "memory" for state in _task_states(client, future)):
        assert time.monotonic() < deadline, "no block finished"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)          # mid-run: some blocks done, others queued or running
    np.testing.assert_array_equal(future.result(timeout=TIMEOUT), x_np ** 3)
    client.wait_for_workers(2, timeout=TIMEOUT)    # the nanny restarted it


def _task_states(client, future):
    return client.run_on_scheduler(_states_on_scheduler).values()


def _states_on_scheduler(dask_scheduler=None):
    return {str(key): task.state for key, task in dask_scheduler.tasks.items()
            if "slow_cube" in str(key)}


def test_blackscholes_example_small():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "examples", "dask_blackscholes.py")
    done = subprocess.run([sys.executable, script, "--small"], capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "results agree          yes" in done.stdout
    assert "speedup" in done.stdout and "1,000,003 options in 5 blocks" in done.stdout
