"""The verifier: every node's shape and dtype must be what its op's rules say."""
from __future__ import annotations

from .errors import VerifyError
from .ir import Graph, infer_type
from .ops import OPS, Op


def verify(graph: Graph) -> Graph:
    """Check arity, argument order, shape and dtype of every node; return the graph unchanged."""
    seen: set[int] = set()
    for node_id, node in graph.items():
        spec = OPS[node.op]
        where = f"%{node_id} = {node.op.value}"
        if spec.arity is not None and len(node.args) != spec.arity:
            raise VerifyError(f"{where}: expected {spec.arity} operands, got {len(node.args)}",
                              node.source)
        for arg in node.args:
            if arg not in seen:
                raise VerifyError(f"{where}: operand %{arg} is not defined before use", node.source)
        if node.op is not Op.PARAM:
            try:
                shape, dtype = infer_type(node.op, [graph.node(a) for a in node.args], node.attrs)
            except (ValueError, TypeError) as exc:
                raise VerifyError(f"{where}: {exc}", node.source) from None
            if shape != node.shape or dtype != node.dtype:
                raise VerifyError(
                    f"{where}: recorded {node.dtype}{list(node.shape)}, rules give "
                    f"{dtype}{list(shape)}", node.source)
        seen.add(node_id)
    for out in graph.outputs:
        if out not in seen:
            raise VerifyError(f"output %{out} is not a node of the graph")
    return graph
