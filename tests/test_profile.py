"""The profiler (`lower().profile`, `graphjit.profile`, `graphjit profile FILE.py:FUNC`) and the
fixed costs of small calls it found (outputs that outlive their call, pooled medium outputs).
Timings are never asserted: only that the profile covers the program, names kernels by their
nodes and source lines, and leaves results and arguments alone."""
from __future__ import annotations

import gc
import textwrap
import weakref

import numpy as np
import pytest

import graphjit as gj
from graphjit.compiler.kernel import MatmulKernel
from graphjit.profiling import profile
from graphjit.runtime.profile import Profile

QUICK = 0.01   # seconds of timing per profile: enough rounds to exercise every path


def layer(x, w, b, labels):
    h = np.maximum(x @ w + b, 0)                     # a product with a fused epilogue
    picked = h[np.arange(h.shape[0]), labels]        # a host step (gather)
    return np.exp(h - h.max(axis=1, keepdims=True)).sum(), picked


def _layer_args():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((16, 8)).astype(np.float32),
            rng.standard_normal((8, 12)).astype(np.float32),
            rng.standard_normal(12).astype(np.float32), rng.integers(0, 12, 16))


def test_profile_covers_every_kernel_blas_call_and_host_step():
    args = _layer_args()
    jitted = gj.jit(layer)
    lowered = jitted.lower(*args)
    result = lowered.profile(*args, min_time=QUICK)
    assert isinstance(result, Profile)
    program = lowered.program
    expected = []
    for step in program.steps:
        expected.append(step.name)
        if isinstance(step, MatmulKernel) and step.epilogue is not None:
            expected.append(f"{step.name}.epilogue")
    assert [u.name for u in result.units] == expected
    kinds = {u.kind.split()[0] for u in result.units}
    assert {"blas", "epilogue", "host"} <= kinds
    assert all(u.seconds >= 0 for u in result.units)
    assert result.call_seconds > 0 and result.dispatch_seconds >= 0
    assert result.eager_seconds is not None and result.eager_seconds > 0
    blas_unit = next(u for u in result.units if u.kind.startswith("blas"))
    assert blas_unit.flops == 2 * 16 * 8 * 12
    text = str(result)
    assert "test_profile.py:" in text and "matmul" in text and "dispatch" in text
    assert "GFLOP/s" in text or "GB/s" in text
    line = layer.__code__.co_firstlineno + 1
    assert f"test_profile.py:{line}" in text            # the user's own source line
    assert result.as_dict()["units"][0]["name"] == expected[0]


def test_profiled_function_keeps_giving_numpy_results_and_leaves_arguments_alone():
    def step(w, g):
        w -= 0.1 * g
        return (w * w).sum()

    w, g = np.ones(64), np.full(64, 2.0)
    jitted = gj.jit(step)
    result = profile(jitted, w, g, min_time=QUICK)
    np.testing.assert_array_equal(w, np.ones(64))       # profiled on copies
    assert len(result.units) >= 1
    expected_w = w.copy()
    expected = step(expected_w, g)
    assert jitted(w, g) == pytest.approx(expected)
    np.testing.assert_allclose(w, expected_w)


def test_profile_of_a_plain_function_and_without_eager():
    result = gj.profile(lambda x: np.tanh(x) * 2, np.linspace(-1, 1, 1000), min_time=QUICK,
                        eager=False)
    assert result.eager_seconds is None
    assert [u.kind for u in result.units] == ["loop"]
    assert result.units[0].bytes == 2 * 1000 * 8
    assert "tanh" in result.units[0].ops


def test_cli_profile_prints_the_table(tmp_path, capsys):
    from graphjit.cli import main

    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent("""
        import numpy as np

        def loss(x, w):
            return np.mean((x @ w) ** 2)

        def example_args():
            return np.ones((8, 4)), np.ones((4, 3))
    """))
    assert main(["profile", f"{path}:loss", "--min-time", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "profile of loss" in out and "model.py:5" in out and "dispatch" in out


# ---------------------------------------------------------------- fixed costs of small calls

def test_outputs_of_a_multi_output_call_die_with_the_callers_last_reference():
    """No reference cycle keeps a call's outputs alive until the cyclic GC runs (their memory
    would then never be reused by the next call)."""
    f = gj.jit(lambda x: (x + 1, {"a": [x * 2, x - 1]}))
    x = np.arange(10.0)
    f(x)
    gc.disable()
    try:
        first, rest = f(x)
        refs = [weakref.ref(first), weakref.ref(rest["a"][0]), weakref.ref(rest["a"][1])]
        del first, rest
        assert all(r() is None for r in refs)
    finally:
        gc.enable()


def test_medium_outputs_are_pooled_and_reused_once_dropped():
    from graphjit.runtime.cpu.executable import BlockPool

    f = gj.jit(lambda x: (x * 2, x + 1))
    x = np.ones(BlockPool.MIN_BYTES // 8 * 2)
    a, b = f(x)
    addresses = {a.ctypes.data, b.ctypes.data}
    np.testing.assert_array_equal(a, x * 2)
    del a, b
    c, d = f(x)
    assert {c.ctypes.data, d.ctypes.data} == addresses
    np.testing.assert_array_equal(c, x * 2)
    np.testing.assert_array_equal(d, x + 1)
    e, g = f(x)                                          # c, d alive: fresh blocks
    assert not ({e.ctypes.data, g.ctypes.data} & addresses)


def test_block_pool_keeps_at_most_its_byte_cap():
    from graphjit.runtime.cpu.executable import BlockPool

    pool = BlockPool(per_size=2, max_sizes=4, max_bytes=3 * 4096)
    arrays = [pool.empty((512,), np.float64) for _ in range(4)]   # 4 KB each
    del arrays
    assert pool.cached_bytes() <= 3 * 4096
    for size in range(1, 7):
        pool.empty((512 * size,), np.float64)
    assert pool.cached_bytes() <= 3 * 4096 and len(pool._free) <= 4
