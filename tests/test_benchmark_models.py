"""Smoke test of benchmarks/models.py (the model-level benchmarks of issues 2 and 5).

One `--quick` run (small sizes, 3 samples, one round) in a subprocess, as a user would start it;
the assertions read its report and JSON. Timings on a shared machine are noise, so the test checks
that every cell ran and matched NumPy, not who won.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "models.py")
WORKLOADS = ("block", "matmul", "train_step", "fit")
# which systems run which workload: the others show "-"
EXPECTED_CELLS = {"numpy": {"block", "matmul", "train_step"}, "eager": {"train_step", "fit"},
                  "graphjit": set(WORKLOADS)}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("models") / "report.md"
    command = [sys.executable, SCRIPT, "--quick", "--systems", "numpy", "eager", "graphjit",
               "--output", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120,
                               cwd=ROOT, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    with open(output.with_suffix(".json")) as handle:
        results = json.load(handle)
    return completed.stdout, output.read_text(), results


def test_every_cell_ran_and_matched_numpy(quick_run):
    _, _, results = quick_run
    for system, workloads in EXPECTED_CELLS.items():
        cells = results[system]["cells"]
        assert set(cells) == workloads, (system, sorted(cells))
        for name, cell in cells.items():
            assert "failed" not in cell, (system, name, cell.get("failed"))
            assert cell["check"]["ok"] and cell["check"]["dtype"], (system, name, cell["check"])
            assert 0 < cell["best_s"] <= cell["median_s"] < 10
            assert len(cell["samples"]) == 3


def test_report_has_the_table_the_verdicts_and_the_command(quick_run):
    printed, written, _ = quick_run
    assert printed.strip() == written.strip()
    assert "python benchmarks/models.py --quick" in written
    assert re.search(r"\d{4}-\d{2}-\d{2} · .* cores", written)     # date and machine
    for label in ("GELU+layernorm block", "matmul (256,784)x(784,512)",
                  "MLP 784-512-10 Adam train step", "fit() per step"):
        rows = [line for line in written.splitlines() if line.startswith(f"| {label}")]
        timed = [row for row in rows if re.search(r"\| \d+\.\d\dx \|$", row)]
        assert len(timed) == 2, rows             # the median table and the best-sample table
        assert len(rows) == 3, rows              # and the first-call table
        assert all("failed" not in row and "wrong" not in row for row in rows)
    assert written.count("**met**") + written.count("**NOT met**") == 3


def test_peers_that_are_not_installed_are_skipped_by_name(monkeypatch):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import models

    monkeypatch.setitem(models.MODULE_OF, "jax", "no_such_module_for_graphjit_tests")
    chosen, missing = models.available_systems(["numpy", "graphjit", "jax"])
    assert chosen == ["numpy", "graphjit"] and missing == ["jax"]


def test_checking_catches_a_subtly_wrong_optimizer(monkeypatch):
    """The check the report relies on: a step whose learning rate is 1.5x too large moves every
    weight by only ~5e-4 more, inside NumPy's value tolerance, but its updates are off by 50%."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import models

    data = models.training_data(32)
    expected = models.reference_after(data, models.CHECK_STEPS, [0] * models.CHECK_STEPS)
    verdict, _ = models.check(models.NumpyTrainRunner(data), expected, data.params)
    assert verdict["ok"] and verdict["error"] == 0.0
    monkeypatch.setattr(models, "LEARNING_RATE", 1.5 * models.LEARNING_RATE)
    verdict, _ = models.check(models.NumpyTrainRunner(data), expected, data.params)
    assert not verdict["ok"] and "parameter update off by" in verdict["why"], verdict
