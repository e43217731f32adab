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
    with pytest.warns(RuntimeWarning, match="discarding disk-cache entry .* in .*cache"):
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
    # everything a cache hit still does: trace, passes, schedule, load; the key is the Program
    # itself, so no LLVM IR is rendered
    assert {"trace", "schedule", "load"} <= set(second["stats"])
    assert "render" not in second["stats"]
    assert any(name.startswith("pass:") for name in second["stats"])


def test_corrupt_entry_warns_recompiles_and_gives_the_right_result(cache_dir):
    run_jit_process(cache_dir)
    (entry,) = cache_dir.iterdir()
    blob = bytearray(entry.read_bytes())
    blob[HEADER.size + len(blob) // 3] ^= 0xFF
    entry.write_bytes(bytes(blob))
    second = run_jit_process(cache_dir)
    assert second["ok"] and "llvm" in second["stats"]
    assert sum("discarding disk-cache entry" in w for w in second["warnings"]) == 1
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


# ---------------------------------------------------------------- integrity (issue 9)

def test_an_entry_under_another_keys_name_is_never_returned(cache):
    first, second = cache.make_key("f"), cache.make_key("g")
    cache.store(first, b"code of f" * 50)
    cache.store(second, b"code of g" * 70)
    a, b = cache.path_of(first), cache.path_of(second)
    blob_a, blob_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(blob_b)
    b.write_bytes(blob_a)
    with pytest.warns(RuntimeWarning, match="another key"):
        assert cache.load(first) is None
    assert not a.exists() and b.exists()


def test_header_size_and_key_are_all_checked(cache):
    key = cache.make_key("k")
    cache.store(key, b"payload" * 10)
    path = cache.path_of(key)
    good = path.read_bytes()
    for position, reason in ((0, "not a graphjit entry"), (8, "another key"),
                             (8 + 32, "checksum"), (8 + 64, "size mismatch")):
        damaged = bytearray(good)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.warns(RuntimeWarning, match=reason):
            assert cache.load(key) is None
        assert not path.exists()
    path.write_bytes(good + b"extra")
    with pytest.warns(RuntimeWarning, match="size mismatch"):
        assert cache.load(key) is None


def test_temp_files_of_dead_writers_are_cleaned(cache):
    dead = cache.directory / ".tmp-999999999-abc.gjo"     # no such process
    old = cache.directory / ".tmp-oldwriter.gjo"
    live = cache.directory / f".tmp-{os.getpid()}-xyz.gjo"
    for path in (dead, old, live):
        path.write_bytes(b"partial")
    os.utime(old, (0, 0))
    assert cache.info()["stale_temp_files"] == 3 - 1
    cache.store(cache.make_key("k"), b"x")
    assert not dead.exists() and not old.exists() and live.exists()


def test_byte_cap_evicts_least_recently_used(tmp_path):
    cache = DiskCache(tmp_path / "capped", max_bytes=3 * (HEADER.size + 1000))
    keys = [cache.make_key(str(n)) for n in range(5)]
    for n, key in enumerate(keys[:3]):
        cache.store(key, bytes(1000))
        os.utime(cache.path_of(key), ns=(n * 10**9, n * 10**9))
    assert cache.load(keys[0]) is not None        # refreshed: now the most recent
    cache.store(keys[3], bytes(1000))
    assert cache.load(keys[1]) is None and cache.load(keys[0]) is not None
    info = cache.info()
    assert info["entries"] == 3 and info["bytes"] <= info["max_bytes"]


@pytest.mark.parametrize("value", ["abc", "-5", "12Q"])
def test_bad_max_bytes_setting_names_the_variable(monkeypatch, value):
    from graphjit.compiler.errors import ConfigurationError
    from graphjit.runtime import disk_cache

    monkeypatch.setenv("GRAPHJIT_CACHE_MAX_BYTES", value)
    with pytest.raises(ConfigurationError, match="GRAPHJIT_CACHE_MAX_BYTES"):
        disk_cache.max_bytes_setting()
    monkeypatch.setenv("GRAPHJIT_CACHE_MAX_BYTES", "2M")
    assert disk_cache.max_bytes_setting() == 2 * 1024 ** 2


# Two functions whose entries differ in code, kernel names and output shapes: an entry loaded for
# the wrong one would give wrong values, a missing symbol, or a heap corruption abort.
TWO_FUNCTIONS = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    import graphjit as gj

    def double(x):
        return x * 2.0

    def outer_sum(x):
        return np.exp(x[:, None] + x[None, :]).sum(axis=0)

    x = np.arange(4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = {}
        for name in sys.argv[1].split(","):
            fn = gj.jit({"double": double, "outer_sum": outer_sum}[name])
            got = fn(x)
            want = {"double": double, "outer_sum": outer_sum}[name](x)
            results[name] = [bool(got.shape == want.shape and np.allclose(got, want)),
                             sorted(k for k in ("llvm", "load") if k in fn.lower(x).compile_stats())]
    print(json.dumps({"results": results, "warnings": [str(w.message) for w in caught]}))
""")


def run_functions(directory, names: str) -> dict:
    environment = dict(os.environ, GRAPHJIT_CACHE_DIR=str(directory))
    done = subprocess.run([sys.executable, "-c", TWO_FUNCTIONS, names], env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr       # never an abort
    return json.loads(done.stdout.strip().splitlines()[-1])


def _entry_of(directory, names: str):
    before = set(directory.iterdir())
    run_functions(directory, names)
    (entry,) = set(directory.iterdir()) - before
    return entry


@pytest.mark.parametrize("damage", ["swap", "truncate", "header", "garbage", "foreign_code"])
def test_damaged_or_misplaced_entries_recompile_with_correct_results(cache_dir, damage):
    double, outer = _entry_of(cache_dir, "double"), _entry_of(cache_dir, "outer_sum")
    blob_double, blob_outer = double.read_bytes(), outer.read_bytes()
    damaged = [double]
    if damage == "swap":
        double.write_bytes(blob_outer)
        outer.write_bytes(blob_double)
        damaged = [double, outer]
    elif damage == "truncate":
        double.write_bytes(blob_double[: len(blob_double) // 2])
    elif damage == "header":
        double.write_bytes(b"\0" * HEADER.size + blob_double[HEADER.size:])
    elif damage == "garbage":
        for path in (double, outer):
            path.write_bytes(os.urandom(len(blob_double)))
        damaged = [double, outer]
        for n in range(20):                                  # and junk beside the entries
            (cache_dir / f"{n:064x}.gjo").write_bytes(os.urandom(100))
    elif damage == "foreign_code":
        # a well-formed entry for this key whose object code is another function's (made by an
        # incompatible build, say): its symbols are missing, so it is a load failure too
        key = double.name[: -len(".gjo")]
        DiskCache(cache_dir).store(key, blob_outer[HEADER.size:])
    second = run_functions(cache_dir, "double,outer_sum")
    assert all(ok for ok, _ in second["results"].values()), second
    discarded = [w for w in second["warnings"] if "discarding disk-cache entry" in w]
    assert len(discarded) == len(damaged) == len(second["warnings"]), second["warnings"]
    assert all(str(cache_dir) in w for w in discarded)
    for path in damaged:                           # each recompiled and stored again
        assert second["results"]["double" if path == double else "outer_sum"][1] == ["llvm"]
    third = run_functions(cache_dir, "double,outer_sum")
    assert not third["warnings"]
    assert third["results"] == {"double": [True, ["load"]], "outer_sum": [True, ["load"]]}
