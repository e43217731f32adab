"""Every example runs as a script and checks itself against NumPy (each asserts its own results);
the quickstart prints what the README promises: the IR, a picture path and the timing table."""
from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# digits.py trains two models: its run and accuracy are tested with the training API
# quickstart.py has its own test below
# dask_blackscholes.py starts a cluster (1e8 options by default): tests/test_dask.py runs --small
SCRIPTS = sorted(p for p in glob.glob(os.path.join(ROOT, "examples", "*.py"))
                 if os.path.basename(p) not in ("digits.py", "quickstart.py",
                                                "dask_blackscholes.py"))


def run_script(path: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, path, *args], capture_output=True, text=True,
                               timeout=300, check=False, cwd=cwd)
    assert completed.returncode == 0, f"{path} failed:\n{completed.stderr[-3000:]}"
    assert "Traceback" not in completed.stderr
    return completed


@pytest.mark.parametrize("path", SCRIPTS, ids=os.path.basename)
def test_example_runs(path, tmp_path):
    out = run_script(path, cwd=str(tmp_path)).stdout
    assert "gj.benchmark:" in out and "results agree          yes" in out


def test_there_are_scripts_to_run():
    assert len(SCRIPTS) >= 2


def test_quickstart_prints_ir_picture_and_table(tmp_path):
    picture = tmp_path / "block.svg"
    out = run_script(os.path.join(ROOT, "examples", "quickstart.py"), str(picture),
                     cwd=str(tmp_path)).stdout
    assert "compiled block matches NumPy" in out
    assert "graph block(" in out and "= matmul" in out and "quickstart.py:" in out
    assert f"graph picture: {picture}" in out
    assert "results agree          yes" in out
    assert picture.stat().st_size > 1000
    for row in ("eager (NumPy), median", "compiled, median", "speedup", "compile (first call)"):
        assert row in out
