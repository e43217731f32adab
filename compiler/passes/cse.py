"""Common-subexpression elimination: one node per distinct (op, operands, attrs, type)."""
from __future__ import annotations

from ..ir import Graph, Node, rebuild
from ..ops import Op


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    seen: dict[tuple, int] = {}

    def merge(new: Graph, node_id: int, node: Node):
        if node.op is Op.PARAM:
            return None
        key = node.key()
        if key in seen:
            return seen[key]
        seen[key] = new.add_node(node)
        return seen[key]

    return rebuild(graph, merge)
