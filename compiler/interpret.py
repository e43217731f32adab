"""The reference interpreter: runs a graph op by op with the op table's NumPy implementations.

It is the oracle every backend is tested against, and the runtime's fallback for ops that have
no native lowering. When an op fails it says which node was running.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import GraphjitError, execution_error
from .ir import Graph, Node
from .ops import OPS, Op
from .printer import format_node


def eval_node(node: Node, values: Sequence[np.ndarray]) -> np.ndarray:
    result = OPS[node.op].impl(*values, **node.attrs)
    result = np.asarray(result)
    if result.dtype != node.dtype:
        result = result.astype(node.dtype)
    return result


def interpret(graph: Graph, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `graph` on concrete params; return the outputs in order."""
    env: dict[int, np.ndarray] = {}
    for param, value in zip(graph.params, args, strict=True):
        env[param] = np.asarray(value)
    for node_id, node in graph.items():
        if node.op is Op.PARAM:
            continue
        try:
            with np.errstate(all="ignore"):
                env[node_id] = eval_node(node, [env[a] for a in node.args])
        except GraphjitError:
            raise
        except Exception as exc:
            raise execution_error(
                f"while executing {format_node(node_id, node)}: {type(exc).__name__}: {exc}",
                exc, node.source) from exc
    return [env[o] for o in graph.outputs]
