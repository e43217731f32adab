"""The per-function cache: a hit neither traces nor compiles; a new shape, dtype, static value
or argument structure is a new entry; after 8 recompilations a warning names what changes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphjit as gj


class CountingFunction:
    """A traceable function that counts how often Python runs it (each run is one trace)."""

    def __init__(self):
        self.calls = 0
        self.__name__ = "counted"

    def __call__(self, a, b):
        self.calls += 1
        return np.tanh(a) * b + 1.0


def _x(shape=(3, 4), dtype=np.float32):
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape) / 7


def test_hit_does_not_retrace():
    fn = CountingFunction()
    jitted = gj.jit(fn)
    a, b = _x(), _x()
    first = jitted(a, b)
    assert fn.calls == 1
    for _ in range(5):
        again = jitted(a + 1, b)
    assert fn.calls == 1
    assert jitted.cache_info() == {"hits": 5, "misses": 1, "entries": 1}
    np.testing.assert_allclose(again, np.tanh(a + 1) * b + 1.0, rtol=1e-6)
    np.testing.assert_allclose(first, np.tanh(a) * b + 1.0, rtol=1e-6)


def test_new_shape_and_dtype_make_new_entries():
    fn = CountingFunction()
    jitted = gj.jit(fn)
    jitted(_x((3, 4)), _x((3, 4)))
    jitted(_x((2, 4)), _x((2, 4)))
    jitted(_x((3, 4), np.float64), _x((3, 4)))
    jitted(_x((3, 4)), _x((4,)))
    assert fn.calls == 4
    assert jitted.cache_info() == {"hits": 0, "misses": 4, "entries": 4}
    jitted(_x((2, 4)), _x((2, 4)))
    jitted(_x((3, 4)), _x((4,)))
    assert fn.calls == 4
    assert jitted.cache_info() == {"hits": 2, "misses": 4, "entries": 4}


def test_scalar_arguments_key_on_type_not_value():
    fn = CountingFunction()
    jitted = gj.jit(fn)
    a = _x()
    np.testing.assert_allclose(jitted(a, 2.0), np.tanh(a) * 2.0 + 1, rtol=1e-6)
    np.testing.assert_allclose(jitted(a, 3.0), np.tanh(a) * 3.0 + 1, rtol=1e-6)
    assert fn.calls == 1
    jitted(a, 3)              # int: a different type, a different entry
    jitted(a, np.float64(3))  # a NumPy scalar is strong: another entry
    assert fn.calls == 3
    assert jitted.cache_info()["entries"] == 3


def test_static_arguments_key_on_value():
    calls = []

    def fn(a, axis):
        calls.append(axis)
        return a.sum(axis=axis)

    jitted = gj.jit(fn, static_argnums=1)
    a = _x()
    for axis in (0, 1, 0, 1, -1):
        np.testing.assert_allclose(jitted(a, axis), a.sum(axis=axis), rtol=1e-6)
    assert calls == [0, 1, -1]
    assert jitted.cache_info() == {"hits": 2, "misses": 3, "entries": 3}


def test_pytree_structure_is_part_of_the_key():
    calls = []

    def fn(params):
        calls.append(1)
        return sum(np.sum(v) for v in params.values())

    jitted = gj.jit(fn)
    jitted({"w": _x(), "b": _x((4,))})
    jitted({"w": _x(), "b": _x((4,))})
    jitted({"w": _x(), "c": _x((4,))})
    jitted({"w": _x()})
    assert len(calls) == 3
    assert jitted.cache_info() == {"hits": 1, "misses": 3, "entries": 3}


def test_keyword_and_positional_calls():
    calls = []

    def fn(a, b):
        calls.append(1)
        return a - b

    jitted = gj.jit(fn)
    a, b = _x(), _x() * 2
    np.testing.assert_allclose(jitted(a, b=b), a - b)
    np.testing.assert_allclose(jitted(a, b=b), a - b)
    np.testing.assert_allclose(jitted(b=b, a=a), a - b)
    assert jitted.cache_info()["hits"] >= 1
    assert len(calls) <= 2


def test_noncontiguous_arguments_share_the_entry():
    fn = CountingFunction()
    jitted = gj.jit(fn)
    big = _x((6, 8))
    jitted(big[::2, ::2], big[1::2, 1::2])
    result = jitted(big[:3, :4], np.ascontiguousarray(big[:3, 4:]))
    assert fn.calls == 1
    np.testing.assert_allclose(result, np.tanh(big[:3, :4]) * big[:3, 4:] + 1.0, rtol=1e-6)


def test_cache_clear():
    fn = CountingFunction()
    jitted = gj.jit(fn)
    jitted(_x(), _x())
    jitted.cache_clear()
    assert jitted.cache_info() == {"hits": 0, "misses": 0, "entries": 0}
    jitted(_x(), _x())
    assert fn.calls == 2


def test_caches_belong_to_each_function():
    fn_a, fn_b = CountingFunction(), CountingFunction()
    first, second = gj.jit(fn_a), gj.jit(fn_b)
    first(_x(), _x())
    assert second.cache_info() == {"hits": 0, "misses": 0, "entries": 0}


def test_recompile_warning_names_the_changing_argument():
    def fn(tokens, weights):
        return tokens @ weights

    jitted = gj.jit(fn)
    weights = _x((4, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for rows in range(1, 9):          # 8 compilations: no warning yet
            jitted(_x((rows, 4)), weights)
        assert not [w for w in caught if "graphjit" in str(w.message)]
        jitted(_x((9, 4)), weights)       # the 9th compilation is the 8th recompilation
        jitted(_x((10, 4)), weights)      # warned once only
    messages = [str(w.message) for w in caught if "graphjit" in str(w.message)]
    assert len(messages) == 1, messages
    assert "'tokens'" in messages[0]
    assert "'weights'" not in messages[0]
    assert jitted.cache_info()["misses"] == 10


def test_no_warning_for_a_few_shapes_called_many_times():
    jitted = gj.jit(lambda a: a * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(5):
            for rows in (1, 2, 3):
                jitted(_x((rows, 4)))
    assert jitted.cache_info() == {"hits": 12, "misses": 3, "entries": 3}


@pytest.mark.parametrize("decorate", ["bare", "called", "static"])
def test_decorator_forms(decorate):
    if decorate == "bare":
        @gj.jit
        def fn(a):
            return a + 1
    elif decorate == "called":
        @gj.jit()
        def fn(a):
            return a + 1
    else:
        @gj.jit(static_argnames=("unused",))
        def fn(a, unused=None):
            return a + 1
    np.testing.assert_allclose(fn(_x()), _x() + 1)
    assert isinstance(fn, gj.JitFunction)
    assert fn.cache_info()["entries"] == 1


def test_compile_stats_report_every_stage():
    from graphjit.compiler.pipeline import stage_names

    stats = gj.jit(lambda a, b: np.exp(a) @ b + 1.0).lower(_x((3, 4)), _x((4, 2))).compile_stats()
    assert {"trace", "schedule", "render"} <= set(stats)
    assert ("llvm" in stats) != ("load" in stats)      # compiled, or loaded from the disk cache
    assert {f"pass:{name}" for name in stage_names()[1:]} <= set(stats)
    assert all(isinstance(v, float) and v >= 0 for v in stats.values())


def test_cache_info_cli_shows_entries_bytes_and_cap(tmp_path, monkeypatch, capsys):
    from graphjit import cli

    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cli-cache"))
    monkeypatch.setenv("GRAPHJIT_CACHE_MAX_BYTES", "64M")
    assert cli.main(["cache", "info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["entries"] == "0" and lines["bytes"] == "0"
    assert lines["max_bytes"] == str(64 * 1024 ** 2)


# ---------------------------------------------------------------- bounds (issue 9)

def test_in_memory_entries_are_capped_with_lru_eviction():
    fn = CountingFunction()
    jitted = gj.jit(fn, max_entries=3)
    shapes = [(2,), (3,), (4,)]
    for shape in shapes:
        jitted(_x(shape), _x(shape))
    jitted(_x((2,)), _x((2,)))                 # (2,) is now the most recently used
    jitted(_x((5,)), _x((5,)))                 # evicts (3,), the least recently used
    assert jitted.cache_info()["entries"] == 3 and fn.calls == 4
    jitted(_x((2,)), _x((2,)))
    jitted(_x((4,)), _x((4,)))
    assert fn.calls == 4                       # both still compiled
    np.testing.assert_allclose(jitted(_x((3,)), _x((3,))), np.tanh(_x((3,))) * _x((3,)) + 1,
                               rtol=1e-6)
    assert fn.calls == 5                       # (3,) was evicted: compiled again
    assert gj.jit(fn).max_entries == 128 and gj.jit(fn, max_entries=None).max_entries is None
    with pytest.raises(gj.ArgumentError, match="max_entries"):
        gj.jit(fn, max_entries=0)


def test_max_entries_travels_through_pickle():
    import pickle

    pytest.importorskip("cloudpickle")
    jitted = gj.jit(lambda v: v + 1, max_entries=5)
    assert pickle.loads(pickle.dumps(jitted)).max_entries == 5


MANY_SHAPES = '''
import gc, json, os, sys, warnings
import numpy as np
import graphjit as gj
warnings.simplefilter("ignore")

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGESIZE") / 2**20

import llvmlite.binding as llvm
def engines():
    return sum(isinstance(o, llvm.ExecutionEngine) for o in gc.get_objects())

import tracemalloc
f = gj.jit(lambda x: np.tanh(x) * 2.0 + 1.0, max_entries=8)
shapes = int(sys.argv[1])
python_heap = []
tracemalloc.start()
for n in range(shapes):
    x = np.full(n + 1, 0.5)
    assert np.allclose(f(x), np.tanh(x) * 2.0 + 1.0)
    if n in (shapes // 4, shapes - 1):
        gc.collect()
        python_heap.append(tracemalloc.get_traced_memory()[0] / 2**20)
tracemalloc.stop()
gc.collect()
live = engines()
f.cache_clear()
print(json.dumps({"entries": f.cache_info()["entries"], "heap": python_heap,
                  "engines_before": live,
                  "engines_after": engines(), "disk": gj.cache.info()}))
'''


def test_many_shapes_stay_under_the_memory_and_disk_caps(tmp_path):
    import json
    import os
    import subprocess
    import sys

    shapes = 160
    env = dict(os.environ, GRAPHJIT_CACHE_DIR=str(tmp_path / "capped"),
               GRAPHJIT_CACHE_MAX_BYTES=str(64 * 1024))
    done = subprocess.run([sys.executable, "-c", MANY_SHAPES, str(shapes)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    disk = result["disk"]
    assert disk["bytes"] <= disk["max_bytes"] == 64 * 1024 and disk["entries"] < shapes // 4
    # at most max_entries engines live (+1 for the thread pool's own), none after cache_clear
    assert result["engines_before"] <= 8 + 2 and result["engines_after"] <= 2
    early, late = result["heap"]
    # 120 more compiled shapes (graphs, programs, workspaces, texts) would add several MiB of
    # Python heap without the cap; native code is bounded by the engine count above. (LLVM's
    # optimiser itself leaks ~0.1 MB of native memory per compilation, outside our reach.)
    assert late - early < 1.0, result["heap"]


# ---------------------------------------------------------------- keyword and pytree dispatch

def test_keyword_calls_in_any_order_take_the_right_leaves():
    def affine(x, w, b=None, *, scale=1.0):
        return (x @ w) * scale + (0.0 if b is None else b)

    fn = gj.jit(affine)
    x, w, b = _x((2, 3)), _x((3, 4)), _x((4,))
    for _ in range(3):     # the first call compiles, the others take the remembered order
        np.testing.assert_allclose(fn(scale=2.0, b=b, w=w, x=x), affine(x, w, b, scale=2.0),
                                   rtol=1e-5)
        np.testing.assert_allclose(fn(x, b=b, w=w, scale=2.0), affine(x, w, b, scale=2.0),
                                   rtol=1e-5)
        np.testing.assert_allclose(fn(w=x.T @ x, x=x), affine(x, x.T @ x), rtol=1e-5)
    assert fn.cache_info()["misses"] == 2      # (x, w, b, scale) and (x, w): one entry each


def test_dict_and_list_arguments_hit_and_follow_their_structure():
    fn = gj.jit(lambda tree: tree["a"] * 2 + tree["b"][0] - tree["b"][1])
    a, b0, b1 = _x(), _x() + 1, _x() * 3
    for scale in (1.0, 2.0, 3.0):
        tree = {"a": a * scale, "b": [b0, b1 * scale]}
        np.testing.assert_allclose(fn(tree), a * scale * 2 + b0 - b1 * scale, rtol=1e-6)
    swapped = {"b": [b0, b1], "a": a}                 # other key order: another tree
    np.testing.assert_allclose(fn(swapped), a * 2 + b0 - b1, rtol=1e-6)
    assert fn.cache_info()["misses"] == 2 and fn.cache_info()["hits"] >= 2


def test_one_object_passed_twice_is_never_mistaken_for_two():
    fn = gj.jit(lambda p, q: p - 2 * q)
    x, y = _x(), _x() + 5
    np.testing.assert_allclose(fn(p=x, q=x), x - 2 * x)
    np.testing.assert_allclose(fn(p=x, q=y), x - 2 * y)
    np.testing.assert_allclose(fn(q=x, p=y), y - 2 * x)
    np.testing.assert_allclose(fn(p=[x, y][1], q=x), y - 2 * x)


def test_keyword_arguments_updated_in_place_are_written_back():
    def accumulate(x, *, into):
        into += x
        return into.sum()

    fn = gj.jit(accumulate)
    x, total = _x(), np.zeros((3, 4), np.float32)
    for _ in range(3):
        fn(x, into=total)
    np.testing.assert_allclose(total, 3 * x, rtol=1e-6)


def test_evicted_entries_leave_no_remembered_call_pattern():
    fn = gj.jit(lambda tree: tree["x"] + 1, max_entries=2)
    for n in range(1, 7):
        x = np.ones(n, np.float32)
        np.testing.assert_array_equal(fn({"x": x}), x + 1)
    live = fn._cache.values()
    assert all(any(entry is e for e in live) for entry, _ in fn._tree_cache.values())
    assert len(fn._tree_cache) <= 2
    fn.cache_clear()
    assert not fn._tree_cache
