"""Constant folding: evaluate nodes whose operands are all constants with the op table's NumPy
implementation, so folding can never disagree with the reference interpreter."""
from __future__ import annotations

import numpy as np

from ..interpret import eval_node
from ..ir import Graph, Node, rebuild
from ..ops import OPS, Op, OpKind


def fold_constants(graph: Graph) -> Graph:
    def fold(new: Graph, node_id: int, node: Node):
        if node.op is Op.CONST or OPS[node.op].kind in (OpKind.SOURCE, OpKind.RANDOM):
            return None
        if not node.args or any(new.node(a).op is not Op.CONST for a in node.args):
            return None
        if node.size > max(new.node(a).size for a in node.args):
            return None  # a broadcast of a small constant stays small: kernels read it for free
        with np.errstate(all="ignore"):
            value = eval_node(node, [new.const_value(a) for a in node.args])
        # ascontiguousarray makes 0-d results 1-d: restore the node's shape
        return new.const(np.ascontiguousarray(value).reshape(node.shape), node.dtype, node.source)

    return rebuild(graph, fold)
