"""Placeholder pass (being written): returns the graph unchanged."""
from __future__ import annotations

from ..ir import Graph


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    return graph
