"""Dead-code elimination: drop every node no output depends on (params always stay)."""
from __future__ import annotations

from ..ir import Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    live: set[int] = set(graph.params)
    stack = list(graph.outputs)
    while stack:
        node_id = stack.pop()
        if node_id in live:
            continue
        live.add(node_id)
        stack.extend(graph.node(node_id).args)
    if len(live) == len(graph):
        return graph
    keep = live
    new = graph.empty_like()
    mapping: dict[int, int] = {}
    for node_id, node in graph.items():
        if node_id not in keep:
            continue
        mapping[node_id] = new.add(node.op, tuple(mapping[a] for a in node.args), node.attrs,
                                   node.source, node.shape, node.dtype)
    new.params = [mapping[p] for p in graph.params]
    new.outputs = [mapping[o] for o in graph.outputs]
    return new

