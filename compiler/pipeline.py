"""The ordered list of passes every compilation runs, and the record of each stage."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .ir import Graph
from .passes import (
    eliminate_common_subexpressions, eliminate_dead_code, fold_constants, fuse,
    legalize_dtypes, simplify,
)
from .verify import verify

Pass = Callable[[Graph], Graph]

PIPELINE: list[tuple[str, Pass]] = [
    ("legalize_dtypes", legalize_dtypes),
    ("fold_constants", fold_constants),
    ("simplify", simplify),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("eliminate_dead_code", eliminate_dead_code),
    ("fuse", fuse),
]


@dataclass
class PipelineResult:
    graph: Graph
    stages: dict[str, str] = field(default_factory=dict)   # stage name -> printed IR
    times: dict[str, float] = field(default_factory=dict)  # stage name -> seconds


def checks_enabled() -> bool:
    """Run the verifier after every pass (tests set GRAPHJIT_VERIFY=1)."""
    return os.environ.get("GRAPHJIT_VERIFY", "0") not in ("", "0")


def run_pipeline(graph: Graph, passes: list[tuple[str, Pass]] | None = None,
                 keep_text: bool = True, check: bool | None = None) -> PipelineResult:
    check = checks_enabled() if check is None else check
    result = PipelineResult(graph)
    if keep_text:
        result.stages["traced"] = str(graph)
    if check:
        verify(graph)
    for name, graph_pass in PIPELINE if passes is None else passes:
        start = time.perf_counter()
        graph = graph_pass(graph)
        result.times[name] = time.perf_counter() - start
        if check:
            verify(graph)
        if keep_text:
            result.stages[name] = str(graph)
    result.graph = graph
    return result
