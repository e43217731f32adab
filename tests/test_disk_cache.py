"""The disk cache: atomic entries, damage detection, refusal of unsafe directories."""
from __future__ import annotations

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
