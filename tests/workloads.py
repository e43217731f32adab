"""The benchmark workloads' NumPy sources, shared by the tests.

They live, verbatim from shared/bench/workloads.md, in benchmarks/workloads.py; this module loads
that file so tests and benchmarks exercise the same functions.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "workloads.py"
_spec = importlib.util.spec_from_file_location("graphjit_bench_workloads", _PATH)
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module  # dataclasses look their module up while it executes
_spec.loader.exec_module(_module)

chain = _module.chain
gelu = _module.gelu
softmax = _module.softmax
layernorm = _module.layernorm
mlp = _module.mlp
sumsq = _module.sumsq
scale_shift = _module.scale_shift
train_step = _module.train_step

__all__ = ["chain", "gelu", "softmax", "layernorm", "mlp", "sumsq", "scale_shift", "train_step"]
