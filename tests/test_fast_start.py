"""Fast start: `import graphjit` stays light, and a fresh process's first call over a warm disk
cache runs no LLVM pass and renders no IR (the cache is keyed by the optimised Program)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphjit as gj
from graphjit.runtime.disk_cache import Uncacheable, canonical_text

HEAVY = ("networkx", "llvmlite", "numba", "scipy", "matplotlib", "cloudpickle",
         "graphjit.runtime.cpu")


def _python(code: str, env: dict[str, str] | None = None) -> dict:
    environment = dict(os.environ, **(env or {}))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_graphjit_imports_nothing_heavy():
    loaded = _python(f"""
        import json, sys
        import graphjit
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    assert loaded == []


# A fresh process: count every entry into LLVM's IR path (parse/link, optimise, render), call
# a function whose loop is big enough to go to the thread pool (its native hand-off is LLVM IR
# too), and report what ran.
WARM_SCRIPT = """
    import json, sys, warnings
    import numpy as np
    import graphjit as gj
    import graphjit.runtime.cpu.llvm as llvm

    calls = []
    for name in ("compile_ir", "link_modules", "optimise"):
        original = getattr(llvm, name)
        def counting(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)
        setattr(llvm, name, counting)

    def model(x, w):
        return np.tanh(x @ w + 1.0) * 0.5

    def chain(x):
        return np.exp(-x) * x + 1.0

    x = np.linspace(-1, 1, 48, dtype=np.float32).reshape(8, 6)
    w = np.linspace(0, 1, 24, dtype=np.float32).reshape(6, 4)
    big = np.linspace(-1, 1, 400_000, dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f, g = gj.jit(model), gj.jit(chain)
        ok = bool(np.allclose(f(x, w), model(x, w), rtol=1e-5, atol=1e-6)
                  and np.allclose(g(big), chain(big), rtol=1e-5, atol=1e-6))
    print(json.dumps({
        "ok": ok, "llvm_calls": calls,
        "stats": [sorted(f.lower(x, w).compile_stats()), sorted(g.lower(big).compile_stats())],
        "renderer_imported": "graphjit.runtime.cpu.loops" in sys.modules,
        "networkx_imported": "networkx" in sys.modules,
        "warnings": [str(w.message) for w in caught],
    }))
"""


def test_warm_cache_first_call_runs_no_llvm_and_renders_nothing(tmp_path):
    env = {"GRAPHJIT_CACHE_DIR": str(tmp_path / "cache"), "GRAPHJIT_NUM_THREADS": "2"}
    cold = _python(WARM_SCRIPT, env)
    assert cold["ok"] and cold["llvm_calls"] and cold["renderer_imported"]
    warm = _python(WARM_SCRIPT, env)
    assert warm["ok"], warm
    assert warm["llvm_calls"] == [] and not warm["renderer_imported"], warm
    assert not warm["networkx_imported"] and not warm["warnings"]
    for stats in warm["stats"]:
        assert "load" in stats and "render" not in stats and "llvm" not in stats


def _scaled_by(factor: float):
    def scale(v):
        return v * factor
    return scale


def test_programs_that_differ_only_in_a_constant_never_share_an_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cache"))
    x = np.arange(6, dtype=np.float64)
    for factor in (2.0, 3.0, 2.5):
        function = gj.jit(_scaled_by(factor))
        np.testing.assert_array_equal(function(x), x * factor)
        assert "llvm" in function.lower(x).compile_stats()


def test_canonical_text_is_exact():
    assert canonical_text(1) != canonical_text(1.0) != canonical_text(True)
    assert canonical_text(0.1) != canonical_text(0.1 + 1e-17 * 2)
    a = np.arange(2000, dtype=np.float32)
    b = a.copy()
    b[1234] += 1
    assert canonical_text(a) != canonical_text(b)          # no "..." summary of big arrays
    assert canonical_text(a) != canonical_text(a.astype(np.float64))
    assert canonical_text({"b": 1, "a": 2}) == canonical_text({"a": 2, "b": 1})
    with pytest.raises(Uncacheable):
        canonical_text((1, lambda: 0))
