"""Print the IR one typed node per line, like a jaxpr, with the user's source line at the end."""
from __future__ import annotations

from .dtypes import short_name
from .ir import Graph, Node
from .ops import Op, attrs_repr

SOURCE_COLUMN = 48


def type_str(node: Node) -> str:
    return f"{short_name(node.dtype)}[{','.join(str(d) for d in node.shape)}]"


def format_node(node_id: int, node: Node) -> str:
    head = f"%{node_id}:{type_str(node)} = {node.op.value}"
    args = " ".join(f"%{a}" for a in node.args)
    attrs = attrs_repr(node.attrs) if node.op is not Op.PARAM else f"index={node.attrs['index']}"
    if node.op is Op.PARAM and "name" in node.attrs:
        attrs += f" name={node.attrs['name']}"
    text = " ".join(part for part in (head, args, attrs) if part)
    if node.source:
        text = f"{text.ljust(SOURCE_COLUMN)}  # {node.source}"
    return text


def format_graph(graph: Graph, group_of: dict[int, int] | None = None) -> str:
    """The whole graph; with `group_of`, each line also names the fused group it belongs to."""
    lines = [f"graph {graph.name}({', '.join(f'%{p}' for p in graph.params)}) {{"]
    for node_id, node in graph.items():
        line = format_node(node_id, node)
        if group_of is not None and node_id in group_of:
            line = f"{line}  [k{group_of[node_id]}]"
        lines.append("  " + line)
    lines.append(f"  return {', '.join(f'%{o}' for o in graph.outputs)}")
    lines.append("}")
    return "\n".join(lines)
