"""GRAPHJIT_CPU: one machine's tests cover the narrower vector paths, and bad names are refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from graphjit.runtime.cpu import llvm

PROBE = textwrap.dedent("""
    import json, numpy as np, graphjit as gj
    from graphjit.runtime.cpu import llvm
    from vector_width import widest_float_vector_bytes, widest_register_bytes

    @gj.jit
    def f(x):
        return np.tanh(x) * 2.0 + np.exp(-x)

    x = np.linspace(-3, 3, 4099, dtype=np.float32)
    lowered = f.lower(x)
    ok = bool(np.allclose(f(x), np.tanh(x) * 2.0 + np.exp(-x), rtol=1e-5, atol=1e-6))
    print(json.dumps({"target": llvm.vector_bytes(), "ok": ok,
                      "widest": widest_float_vector_bytes(lowered.as_text("llvm")),
                      "register": widest_register_bytes(lowered.as_text("asm")),
                      "key": llvm.host_description()}))
""")


def probe(cpu: str) -> dict:
    env = dict(os.environ, GRAPHJIT_CPU=cpu, GRAPHJIT_CACHE_DIR="off")
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          cwd=os.path.dirname(__file__), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def host_can_run(cpu: str) -> bool:
    features = __import__("llvmlite.binding", fromlist=["x"]).get_host_cpu_features()
    return all(features.get(f, False) for f in llvm.NAMED_CPUS[cpu])


@pytest.mark.parametrize(("cpu", "width"), [("x86-64", 16), ("haswell", 32), ("x86-64-v4", 64)])
def test_named_cpu_compiles_for_its_own_vector_width(cpu, width):
    if not host_can_run(cpu):
        pytest.skip(f"this machine cannot run code built for {cpu}")
    result = probe(cpu)
    assert result["ok"]
    assert result["target"] == width
    assert min(width, 32) <= result["widest"] and result["register"] <= width
    assert f"|{cpu}|" in result["key"]        # the disk-cache key tells the targets apart


def test_host_is_the_default_target():
    result = probe("host")
    assert result["ok"] and result["register"] <= result["target"] == llvm.vector_bytes()


@pytest.mark.parametrize("cpu", ["pentium-9000", "x86_64"])
def test_unknown_cpu_name_is_a_clear_error(cpu):
    env = dict(os.environ, GRAPHJIT_CPU=cpu, GRAPHJIT_CACHE_DIR="off")
    code = "import numpy as np, graphjit as gj\ngj.jit(lambda x: x + 1)(np.ones(3))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "ConfigurationError" in done.stderr and "GRAPHJIT_CPU" in done.stderr
