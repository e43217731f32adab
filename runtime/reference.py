"""The reference backend: runs the optimised graph with the NumPy interpreter.

Used as the oracle in tests and as the fallback where a target has no native code path."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphjit.compiler.interpret import interpret
from graphjit.compiler.ir import Graph


class ReferenceExecutable:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.texts: dict[str, str] = {}

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.array(v, copy=True) for v in interpret(self.graph, inputs)]


class ReferenceBackend:
    name = "reference"

    def compile_graph(self, graph: Graph) -> ReferenceExecutable:
        return ReferenceExecutable(graph)
