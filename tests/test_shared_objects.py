"""Warm starts through shared objects (runtime/cpu/shared_object.py): a process that finds a
program's shared object in the disk cache loads it with dlopen and never imports LLVM; a damaged,
foreign or unloadable one is discarded with one warning and the object code (MCJIT) takes over."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from graphjit.runtime.cpu import shared_object
from graphjit.runtime.disk_cache import HEADER, DiskCache

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shared_object.linker() is None,
    reason="shared objects need Linux and a C compiler driver (cc) to link them")

# a matmul with a fused epilogue (BLAS through the stubs), a row reduction, and a loop big enough
# for the thread pool (whose native hand-off is a shared object of its own)
SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    import graphjit as gj

    def model(x, w):
        h = np.tanh(x @ w + 1.0)
        return h / h.sum(axis=-1, keepdims=True)

    def chain(x):
        return np.exp(-x) * x + 1.0

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 48))
    w = rng.standard_normal((48, 32)).astype(np.float64)
    big = np.linspace(-1, 1, 600_000, dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f, g = gj.jit(model), gj.jit(chain)
        ok = bool(np.allclose(f(x, w), model(x, w), rtol=1e-12, atol=1e-12)
                  and np.allclose(g(big), chain(big), rtol=1e-6, atol=1e-6)
                  and np.allclose(f(x * 2, w), model(x * 2, w), rtol=1e-12, atol=1e-12))
        as_text = "define" in f.lower(x, w).as_text("llvm") if "--text" in sys.argv else True
    print(json.dumps({
        "ok": ok and as_text,
        "binding_imported": "llvmlite.binding" in sys.modules,
        "stats": [sorted(f.lower(x, w).compile_stats()), sorted(g.lower(big).compile_stats())],
        "warnings": [str(w.message) for w in caught],
    }))
""")


def run(cache_dir, *arguments: str) -> dict:
    environment = dict(os.environ, GRAPHJIT_CACHE_DIR=str(cache_dir), GRAPHJIT_NUM_THREADS="2",
                       GRAPHJIT_SHARED_OBJECTS="1")
    done = subprocess.run([sys.executable, "-c", SCRIPT, *arguments], env=environment,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr        # never an abort
    return json.loads(done.stdout.strip().splitlines()[-1])


def shared_entries(cache_dir) -> list:
    """The cache entries that hold shared objects (an ELF shared object after the summaries)."""
    found = []
    for path in sorted(cache_dir.iterdir()):
        blob = path.read_bytes()
        start = blob.find(b"\x7fELF")
        if start >= 0 and blob[start + 16] == 3:        # e_type ET_DYN
            found.append(path)
    return found


@pytest.fixture
def cache_dir(tmp_path):
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    return directory


def test_a_later_process_loads_shared_objects_and_never_imports_llvm(cache_dir):
    cold = run(cache_dir)
    assert cold["ok"] and cold["binding_imported"]
    assert len(shared_entries(cache_dir)) == 3      # two programs and the pool's hand-off
    warm = run(cache_dir)
    assert warm["ok"] and not warm["binding_imported"] and not warm["warnings"], warm
    for stats in warm["stats"]:
        assert "load" in stats and "llvm" not in stats and "render" not in stats
    texts = run(cache_dir, "--text")                 # as_text still works: made when asked
    assert texts["ok"] and texts["binding_imported"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign", "not_a_library"])
def test_a_damaged_shared_object_is_discarded_and_the_object_code_runs(cache_dir, damage):
    run(cache_dir)
    entries = shared_entries(cache_dir)
    victim = entries[0]
    blob = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        victim.write_bytes(os.urandom(len(blob)))
    else:
        # well-formed entries for the victim's key whose content is no shared object of it
        other = next(p for p in entries if p != victim).read_bytes()[HEADER.size:]
        payload = other if damage == "foreign" else blob[HEADER.size:].replace(b"\x7fELF", b"\0ELF")
        DiskCache(cache_dir).store(victim.name[: -len(".gjo")], payload)
    second = run(cache_dir)
    assert second["ok"], second
    discarded = [w for w in second["warnings"] if "discarding disk-cache entry" in w]
    assert len(discarded) == 1 and discarded == second["warnings"], second["warnings"]
    third = run(cache_dir)                   # the shared object was linked and stored again
    assert third["ok"] and not third["warnings"] and not third["binding_imported"], third


def test_switched_off_no_shared_object_is_made(cache_dir):
    environment = dict(os.environ, GRAPHJIT_CACHE_DIR=str(cache_dir), GRAPHJIT_SHARED_OBJECTS="0")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=environment, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"]
    assert shared_entries(cache_dir) == [] and len(list(cache_dir.iterdir())) == 3


def test_stub_slots_reach_the_bound_address(tmp_path):
    """The BLAS stubs jump through their slots: a stub bound to a ctypes callback calls it."""
    import ctypes

    import llvmlite.binding as llvm

    from graphjit.runtime.cpu import llvm as graphjit_llvm

    module = textwrap.dedent("""
        declare void @gj_blas_sgemm(ptr)
        define void @call_it(ptr %p) {
          call void @gj_blas_sgemm(ptr %p)
          ret void
        }
    """)
    target = graphjit_llvm._host_target()
    with graphjit_llvm._LLVM_LOCK:
        object_code = target.machine.emit_object(llvm.parse_assembly(module))
    shared = shared_object.link(object_code, shared_object.slotted_symbols())
    assert shared is not None
    library = shared_object.SharedObjectLibrary(shared, required=["call_it"])
    seen = []
    callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda p: seen.append(p))
    library.bind("gj_blas_sgemm", ctypes.cast(callback, ctypes.c_void_p).value)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(library.address("call_it"))(1234)
    assert seen == [1234]
    with pytest.raises(Exception, match="missing"):
        library.address("no_such_symbol")
