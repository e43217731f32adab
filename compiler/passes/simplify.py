"""Placeholder pass (being written): returns the graph unchanged."""
from __future__ import annotations

from ..ir import Graph


def simplify(graph: Graph) -> Graph:
    return graph
