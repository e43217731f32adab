"""gj.benchmark, the `graphjit` console script (dump, bench, cache) and benchmarks/run.py."""
from __future__ import annotations

import glob
import inspect
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import graphjit as gj
from graphjit import cli
from graphjit.benchmarking import compare_results, format_seconds, time_calls
from graphjit.jit import JitFunction

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
FAST = {"repeat": 2, "min_time": 0.001, "warmup": 1}


def scaled_tanh(x, y):
    return np.tanh(x * 0.5) + y


def small_args():
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 8), dtype=np.float32), rng.standard_normal(8, np.float32)


# ------------------------------------------------------------------ gj.benchmark
def test_benchmark_of_a_plain_function_reports_sane_numbers():
    result = gj.benchmark(scaled_tanh, *small_args(), **FAST)
    assert result.agree and result.max_abs_error < 1e-5
    assert len(result.eager_samples) == len(result.compiled_samples) == 2
    assert all(0 < s < 1 for s in result.eager_samples + result.compiled_samples)
    assert 0 < result.compile_time < 60
    assert result.speedup == pytest.approx(result.eager / result.compiled)
    text = str(result)
    for label in ("eager (NumPy), median", "compiled, median", "speedup", "compile (first call)",
                  "results agree          yes"):
        assert label in text
    assert "scaled_tanh(f32[16,8], f32[8])" in text


def test_benchmark_of_a_jit_function_keeps_its_cache_untouched():
    jitted = gj.jit(scaled_tanh)
    result = gj.benchmark(jitted, *small_args(), **FAST)
    assert result.agree and result.compile_time > 0
    assert jitted.cache_info()["misses"] == 0   # timed on a fresh JitFunction


def test_benchmark_never_changes_the_callers_arrays():
    def decay(w, g):
        w -= 0.1 * g
        return w.sum()

    w, g = np.ones(8, np.float32), np.ones(8, np.float32)
    result = gj.benchmark(decay, w, g, **FAST)
    assert result.agree
    np.testing.assert_array_equal(w, np.ones(8, np.float32))


def test_benchmark_reports_and_warns_when_results_differ():
    counter = itertools.count(1)

    def side_effect(x):   # a Python side effect: traced once, so compiled and eager disagree
        return x + float(next(counter))

    with pytest.warns(RuntimeWarning, match="differs from NumPy"):
        result = gj.benchmark(side_effect, np.zeros(4, np.float32), **FAST)
    assert not result.agree and result.max_abs_error == pytest.approx(1.0)
    assert "results agree          NO" in str(result)


def test_compare_results_walks_structures_and_checks_shapes():
    a = np.ones((2, 3), np.float32)
    assert compare_results((a, {"k": 2.0}), (a.copy(), {"k": 2.0})) == (True, 0.0)
    assert not compare_results(a, a[:1])[0]
    assert not compare_results((a,), (a, a))[0]
    ok, error = compare_results(a, a + np.float32(1e-3))
    assert not ok and error == pytest.approx(1e-3, rel=1e-3)


def test_time_calls_counts_calls_and_format_seconds_picks_units():
    calls = []
    samples, per_sample = time_calls(lambda: calls.append(1), repeat=3, min_time=0.001, warmup=2)
    assert len(samples) == 3 and len(calls) == 2 + 1 + 3 * per_sample
    assert format_seconds(1.5) == "1.5 s" and format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(4.5e-6) == "4.5 us" and format_seconds(2e-9) == "2 ns"


# ------------------------------------------------------------------ the CLI on every example
def dumpable_functions(path: str) -> list[str]:
    """Functions of an example that the example_args convention gives inputs for: its jitted
    functions, else its plain functions whose arity matches what `example_args()` returns."""
    module = cli.load_module(path)
    shared = hasattr(module, "example_args")
    jitted = sorted(name for name, value in vars(module).items()
                    if isinstance(value, JitFunction)
                    and (shared or hasattr(module, f"example_args_{name}")))
    if jitted or not shared:
        return jitted
    arity = len(module.example_args())
    return sorted(name for name, value in vars(module).items()
                  if inspect.isfunction(value) and value.__module__ == module.__name__
                  and not name.startswith("example_args")
                  and len(inspect.signature(value).parameters) == arity)


def test_there_are_examples_to_test():
    assert len(EXAMPLES) >= 3 and any(p.endswith("quickstart.py") for p in EXAMPLES)


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_dump_and_bench_work_on_every_example(path, capsys):
    functions = dumpable_functions(path)
    assert functions, f"{path}: no @gj.jit function with example_args for `graphjit dump`"
    for name in functions:
        assert cli.main(["dump", f"{path}:{name}"]) == 0
        out = capsys.readouterr().out
        assert "==== traced ====" in out and f"graph {name}(" in out
    assert cli.main(["bench", f"{path}:{functions[0]}", "--repeat", "1",
                     "--min-time", "0.001"]) == 0
    out = capsys.readouterr().out
    assert f"gj.benchmark: {functions[0]}(" in out and "speedup" in out


def test_dump_one_stage_list_and_render(tmp_path, capsys):
    target = os.path.join(ROOT, "examples", "softmax.py") + ":softmax"
    assert cli.main(["dump", target, "--stage", "list"]) == 0
    stages = capsys.readouterr().out.split()
    assert stages[0] == "traced" and len(stages) >= 2
    assert cli.main(["dump", target, "--stage", stages[-1]]) == 0
    out = capsys.readouterr().out
    assert out.strip() and "====" not in out
    assert cli.main(["dump", target, "--stage", "optimized"]) == 0
    assert capsys.readouterr().out.startswith("graph softmax(")
    picture = str(tmp_path / "s.svg")
    assert cli.main(["dump", target, "--stage", "traced", "--render", picture]) == 0
    assert os.path.getsize(picture) > 0 and picture in capsys.readouterr().out


def test_dump_wraps_plain_functions_with_jit(capsys):
    target = os.path.join(ROOT, "examples", "mlp.py") + ":predict"
    assert cli.main(["dump", target, "--stage", "traced"]) == 0
    assert "argmax" in capsys.readouterr().out


def write_module(tmp_path, text: str) -> str:
    path = tmp_path / "user_mod.py"
    path.write_text("import numpy as np\nimport graphjit as gj\n" + text)
    return str(path)


def test_per_function_example_args_win_over_the_shared_ones(tmp_path, capsys):
    path = write_module(tmp_path, (
        "def f(x):\n    return x * 2\n"
        "def example_args():\n    return (np.ones(3, np.float32),)\n"
        "def example_args_f():\n    return np.ones((2, 5), np.float64)\n"))
    assert cli.main(["dump", f"{path}:f", "--stage", "traced"]) == 0
    assert "f64[2,5]" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["dump", "nofile.py:f"], "no such file"),
    (["dump", "examples/mlp.py"], "expected FILE.py:FUNC"),
    (["dump", "examples/mlp.py:nothing"], "has no function 'nothing'"),
    (["dump", "examples/mlp.py:mlp", "--stage", "nope"], "no stage 'nope'"),
])
def test_cli_errors_are_one_line_without_traceback(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("graphjit: error:") and message in err and "Traceback" not in err


def test_missing_example_args_is_explained(tmp_path, capsys):
    path = write_module(tmp_path, "def g(x):\n    return x\n")
    assert cli.main(["bench", f"{path}:g"]) == 1
    assert "example_args_g() nor example_args()" in capsys.readouterr().err


def test_cache_subcommands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHJIT_CACHE_DIR", str(tmp_path / "cache"))
    if cli._cache_module() is None:
        assert cli.main(["cache", "info"]) == 1
        assert "not part of this installation" in capsys.readouterr().err
        return
    assert cli.main(["cache", "info"]) == 0
    assert capsys.readouterr().out.strip()
    assert cli.main(["cache", "clear"]) == 0
    assert "cleared" in capsys.readouterr().out


def test_cache_subcommand_without_the_cache_module(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cache_module", lambda: None)
    assert cli.main(["cache", "clear"]) == 1
    assert "graphjit.cache" in capsys.readouterr().err


def test_console_script_help_documents_the_example_args_convention():
    completed = subprocess.run([sys.executable, "-m", "graphjit.cli", "dump", "--help"],
                               capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0
    assert "example_args_FUNC()" in completed.stdout and "example_args()" in completed.stdout


# ------------------------------------------------------------------ benchmarks/run.py
def test_benchmark_suite_quick_run(tmp_path):
    output = tmp_path / "results.md"
    completed = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick", "--systems",
         "numpy", "graphjit", "--only", "chain", "--output", str(output), "--no-rerun"],
        capture_output=True, text=True, timeout=120, check=False, cwd=str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = output.read_text()
    row = next(line for line in report.splitlines() if line.startswith("| chain 1e6 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) > 0 and float(cells[2]) > 0   # NumPy and graphjit ms, both checked
    assert cells[3].endswith("x")                        # the NumPy / graphjit ratio
    assert "wrong" not in row and "failed" not in report
    for section in ("Triad", "GB/s", "dispatch: `x + 1`", "First-call compile time"):
        assert section in report
    assert (tmp_path / "results.json").exists()
