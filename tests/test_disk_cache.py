"""The disk cache: atomic entries, damage detection, refusal of unsafe directories."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from graphjit.runtime.disk_cache import HEADER, DiskCache


@pytest.fixture
def cache(tmp_path):
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    return DiskCache(directory)


def test_round_trip_and_info(cache):
    key = cache.make_key("module text", "skylake", "0.1")
    assert cache.load(key) is None
    assert cache.store(key, b"\x7fELF object code")
    assert cache.load(key) == b"\x7fELF object code"
    assert cache.info()["entries"] == 1
    assert cache.clear() == 1 and cache.load(key) is None


def test_keys_separate_their_parts():
    assert DiskCache.make_key("ab", "c") != DiskCache.make_key("a", "bc")


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_damaged_entry_is_discarded_with_a_warning(cache, damage):
    key = cache.make_key("x")
    cache.store(key, b"payload" * 100)
    path = cache.path_of(key)
    blob = bytearray(path.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[HEADER.size + 5] ^= 0xFF
    else:
        blob = bytearray(b"not a cache entry")
    path.write_bytes(bytes(blob))
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert cache.load(key) is None
    assert not path.exists()


def test_directory_writable_by_others_is_refused(tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o777)
    cache = DiskCache(directory)
    with pytest.warns(RuntimeWarning, match="writable by other users"):
        assert not cache.store("k", b"data")
    assert not list(directory.iterdir())


def test_concurrent_writers_never_leave_a_partial_entry(cache):
    script = textwrap.dedent(f"""
        import sys
        from graphjit.runtime.disk_cache import DiskCache
        cache = DiskCache({str(cache.directory)!r})
        payload = bytes([int(sys.argv[1])]) * 2_000_000
        for _ in range(20):
            cache.store("samekey", payload)
            got = cache.load("samekey")
            assert got is not None and len(got) == len(payload) and len(set(got)) == 1, "torn"
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)]) for n in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    final = cache.load("samekey")
    assert final is not None and len(set(final)) == 1
    assert not [p for p in cache.directory.iterdir() if p.name.startswith(".tmp-")]


# ---------------------------------------------------------------- wired into gj.jit

# Run in fresh processes: exp (the math library), a BLAS product (a relocated external symbol) and
# a reduction, so a loaded entry exercises everything object code can depend on.
JIT_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    import graphjit as gj

    def model(x, w):
        h = np.exp(x @ w * 0.1)
        return h / h.sum(axis=-1, keepdims=True)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    w = rng.standard_normal((5, 4)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn = gj.jit(model)
        got = fn(x, w)
    want = model(x, w)
    print(json.dumps({
        "ok": bool(got.dtype == want.dtype and np.allclose(got, want, rtol=1e-5, atol=1e-6)),
        "stats": fn.lower(x, w).compile_stats(),
        "warnings": [str(w.message) for w in caught],
    }))
""")


def run_jit_process(directory) -> dict:
    environment = dict(os.environ, GRAPHJIT_CACHE_DIR=str(directory))
    done = subprocess.run([sys.executable, "-c", JIT_SCRIPT], env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def entries_in(directory) -> list:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def cache_dir(tmp_path):
    directory = tmp_path / "gj-cache"
    directory.mkdir(mode=0o700)
    return directory


def test_second_process_loads_object_code_and_skips_llvm(cache_dir):
    first = run_jit_process(cache_dir)
    assert first["ok"] and "llvm" in first["stats"] and "load" not in first["stats"]
    assert len(entries_in(cache_dir)) == 1
    second = run_jit_process(cache_dir)
    assert second["ok"] and "load" in second["stats"] and "llvm" not in second["stats"]
    assert not second["warnings"]
    # everything a cache hit still does: trace, passes, schedule, render, load
    assert {"trace", "schedule", "render", "load"} <= set(second["stats"])
    assert any(name.startswith("pass:") for name in second["stats"])


def test_corrupt_entry_warns_recompiles_and_gives_the_right_result(cache_dir):
    run_jit_process(cache_dir)
    (entry,) = cache_dir.iterdir()
    blob = bytearray(entry.read_bytes())
    blob[HEADER.size + len(blob) // 3] ^= 0xFF
    entry.write_bytes(bytes(blob))
    second = run_jit_process(cache_dir)
    assert second["ok"] and "llvm" in second["stats"]
    assert any("damaged" in w for w in second["warnings"])
    third = run_jit_process(cache_dir)          # the recompiled entry replaced the damaged one
    assert third["ok"] and "load" in third["stats"] and not third["warnings"]


def test_two_processes_compiling_the_same_key_at_once(cache_dir):
    environment = dict(os.environ, GRAPHJIT_CACHE_DIR=str(cache_dir))
    procs = [subprocess.Popen([sys.executable, "-c", JIT_SCRIPT], env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    for out, _ in outputs:
        assert json.loads(out.strip().splitlines()[-1])["ok"]
    assert len(entries_in(cache_dir)) == 1        # one whole entry, no temporary files left
    third = run_jit_process(cache_dir)
    assert third["ok"] and "load" in third["stats"] and not third["warnings"]


def test_directory_writable_by_others_is_refused_and_the_call_still_works(tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o777)
    result = run_jit_process(directory)
    assert result["ok"] and "llvm" in result["stats"]
    assert any("writable by other users" in w for w in result["warnings"])
    assert entries_in(directory) == []


def test_cache_off_means_no_disk_cache(monkeypatch, tmp_path):
    from graphjit import backends

    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", "off")
    assert backends.object_cache() is None
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "c"))
    assert backends.object_cache().directory == tmp_path / "c"


def test_in_process_hit_for_a_new_function_object(monkeypatch, cache_dir):
    import numpy as np

    import graphjit as gj

    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(cache_dir))
    x = np.linspace(-2, 2, 37).astype(np.float32)
    stats = []
    for _ in range(2):
        fn = gj.jit(lambda v: np.tanh(v) * 2 + 1)
        np.testing.assert_allclose(fn(x), np.tanh(x) * 2 + 1, rtol=1e-6, atol=1e-6)
        stats.append(fn.lower(x).compile_stats())
    assert "llvm" in stats[0] and "load" in stats[1] and "llvm" not in stats[1]
