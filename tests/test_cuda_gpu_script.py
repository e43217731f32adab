"""benchmarks/gpu.py, the one-call GPU run, end to end at toy sizes in Numba's simulator: every
measurement and check runs and the report is written (the figures mean nothing here; on a GPU
the same code gives the issue-15 table). A GPU-less machine must refuse to run the script."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("graphjit.runtime.cuda")
pytestmark = pytest.mark.cuda

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"


@pytest.fixture
def gpu_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("graphjit_gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sizes = {"N_ELEMENTWISE": 40, "ROWS": 4, "COLS": 6, "MATMUL_SIZE": 6, "SAMPLES": 1}
    for name, value in sizes.items():
        monkeypatch.setattr(module, name, value)
    monkeypatch.setattr(module, "optional", lambda name: None)   # no peers: graphjit only
    return module


def test_every_measurement_runs_and_the_report_is_written(gpu_script, tmp_path):
    peers = gpu_script.Peers()
    report = gpu_script.measure(peers)
    assert set(report["workloads"]) == {"chain", "gelu", "scale_shift", "softmax", "layernorm",
                                        "matmul"}
    assert report["copy_bandwidth_gbs"] > 0
    assert report["workloads"]["matmul"]["ms"]["graphjit tiled"] > 0
    tests = [{"file": "test_cuda.py", "status": "passed", "summary": "1 passed in 1s"}]
    text = gpu_script.markdown("simulator", peers.versions(), tests, report)
    chain_label = f"chain {gpu_script.N_ELEMENTWISE:,} f32"     # the size the run used
    for needle in ("Copy bandwidth", chain_label, "softmax", "matmul", "test_cuda.py"):
        assert needle in text


def test_without_a_gpu_the_script_refuses_with_a_reason(tmp_path):
    from numba import cuda

    from graphjit.runtime.cuda.device import simulator_enabled

    if not simulator_enabled() and cuda.is_available():
        pytest.skip("a GPU is present: the script would run for minutes")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "needs a real CUDA GPU" in done.stderr
