"""The compiler as one visible pipeline: `compile(graph) -> Program`.

    traced graph --GRAPH_PASSES-->  optimised graph --PROGRAM_PASSES-->  Program (for a backend)

GRAPH_PASSES are pure `Graph -> Graph` functions (compiler/passes/). PROGRAM_PASSES are the back
half, each a pure function of the previous value:

    fuse                  Graph -> FusionPlan     which nodes share a kernel (passes/fuse.py)
    schedule              FusionPlan -> Program   kernels, buffers, output copies (schedule.py)
    split_full_reductions Program -> Program      big reductions to a scalar -> partial + final
    plan_buffers          Program -> Program      TEMP buffers with disjoint lifetimes share slots

Under GRAPHJIT_VERIFY=1 (on in the tests) compiler/verify.py checks the graph after every graph
pass and compiler/verify_program.py the Program after every Program pass. A `PassLog` keeps the
value after every pass, printed only when asked (`lower().as_text(name)`, GRAPHJIT_DUMP).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .ir import Graph
from .kernel import Program
from .passes import (
    eliminate_common_subexpressions, eliminate_dead_code, fold_constants, legalize_dtypes,
    simplify,
)
from .passes.fuse import FusionPlan, plan_fusion
from .schedule import plan_buffers, schedule, split_full_reductions
from .verify import verify
from .verify_program import verify_program

GraphPass = Callable[[Graph], Graph]

GRAPH_PASSES: list[tuple[str, GraphPass]] = [
    ("legalize_dtypes", legalize_dtypes),
    ("fold_constants", fold_constants),
    ("simplify", simplify),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("eliminate_dead_code", eliminate_dead_code),
]

PROGRAM_PASSES: list[tuple[str, Callable[[Any], Any]]] = [
    ("fuse", plan_fusion),
    ("schedule", schedule),
    ("split_full_reductions", split_full_reductions),
    ("plan_buffers", plan_buffers),
]

Stage = Graph | FusionPlan | Program


def checks_enabled() -> bool:
    """Run the verifiers after every pass (tests set GRAPHJIT_VERIFY=1)."""
    return os.environ.get("GRAPHJIT_VERIFY", "0") not in ("", "0")


def stage_text(value: Stage) -> str:
    """The printed form of a stage's value."""
    from .report import format_fusion_plan, format_program

    if isinstance(value, Program):
        return format_program(value)
    if isinstance(value, FusionPlan):
        return format_fusion_plan(value)
    return str(value)


class PassLog(Mapping[str, str]):
    """What one compilation went through: the value after every stage ("traced", then each pass
    by name) and each pass's seconds. As a mapping, stage name -> printed text (made on demand)."""

    def __init__(self) -> None:
        self.values: dict[str, Stage] = {}
        self.times: dict[str, float] = {}
        self._texts: dict[str, str] = {}

    def record(self, name: str, value: Stage, seconds: float | None = None) -> None:
        self.values[name] = value
        self._texts.pop(name, None)
        if seconds is not None:
            self.times[name] = seconds

    def __getitem__(self, name: str) -> str:
        if name not in self._texts:
            self._texts[name] = stage_text(self.values[name])
        return self._texts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def stats(self) -> dict[str, float]:
        """`pass:<name>` seconds per pass, and "schedule": the whole back half."""
        stats = {f"pass:{name}": seconds for name, seconds in self.times.items()}
        stats["schedule"] = sum(self.times.get(name, 0.0) for name, _ in PROGRAM_PASSES)
        return stats


def optimize(graph: Graph, passes: list[tuple[str, GraphPass]] | None = None,
             log: PassLog | None = None, check: bool | None = None) -> Graph:
    """The graph after `passes` (GRAPH_PASSES by default)."""
    check = checks_enabled() if check is None else check
    if log is not None:
        log.record("traced", graph)
    if check:
        verify(graph)
    for name, graph_pass in GRAPH_PASSES if passes is None else passes:
        start = time.perf_counter()
        graph = graph_pass(graph)
        seconds = time.perf_counter() - start
        if check:
            verify(graph)
        if log is not None:
            log.record(name, graph, seconds)
    return graph


def lower_to_program(graph: Graph, log: PassLog | None = None,
                     check: bool | None = None) -> Program:
    """The Program of an optimised graph: PROGRAM_PASSES in order."""
    check = checks_enabled() if check is None else check
    value: Any = graph
    for name, program_pass in PROGRAM_PASSES:
        start = time.perf_counter()
        value = program_pass(value)
        seconds = time.perf_counter() - start
        if check and isinstance(value, Program):
            verify_program(value, after=name)
        if log is not None:
            log.record(name, value, seconds)
    if not isinstance(value, Program):
        raise TypeError(f"PROGRAM_PASSES ended with a {type(value).__name__}, not a Program")
    return value


def compile(graph: Graph, log: PassLog | None = None, check: bool | None = None) -> Program:
    """The Program that computes `graph`: GRAPH_PASSES, then PROGRAM_PASSES."""
    return lower_to_program(optimize(graph, log=log, check=check), log=log, check=check)


def stage_names() -> list[str]:
    """Every stage a compilation records, in order."""
    return ["traced", *(n for n, _ in GRAPH_PASSES), *(n for n, _ in PROGRAM_PASSES)]
