"""The reference backend: runs a Program's (optimised) graph with the NumPy interpreter.

It ignores the schedule on purpose: it is the oracle the native backends are tested against, so
it shares nothing with them below the graph."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphjit.compiler.interpret import interpret
from graphjit.compiler.ir import Graph
from graphjit.compiler.kernel import Program


class ReferenceExecutable:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.texts: dict[str, str] = {}

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.array(v, copy=True) for v in interpret(self.graph, inputs)]


class ReferenceBackend:
    name = "reference"

    def compile(self, program: Program, stats: dict[str, float] | None = None
                ) -> ReferenceExecutable:
        return ReferenceExecutable(program.graph)
