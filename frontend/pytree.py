"""Flatten nested tuples, lists and dicts of leaves, and rebuild them."""
from __future__ import annotations

from typing import Any, Callable

# ("leaf",) | ("tuple", [defs]) | ("list", [defs]) | ("dict", keys, [defs]) | ("none",)
# | ("namedtuple", class, [defs]) (NumPy's results: np.linalg.svd's SVDResult, ...)
TreeDef = Any


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, TreeDef]:
    leaves: list = []
    treedef = _walk(tree, leaves, is_leaf)
    return leaves, treedef


def _walk(node: Any, leaves: list, is_leaf: Callable[[Any], bool] | None) -> TreeDef:
    # module-level (no self-referencing closure): nothing per call is left for the cyclic GC
    if is_leaf is not None and is_leaf(node):
        leaves.append(node)
        return ("leaf",)
    if node is None:
        return ("none",)
    if isinstance(node, tuple):
        children = [_walk(n, leaves, is_leaf) for n in node]
        return ("namedtuple", type(node), children) if hasattr(node, "_fields") else (
            "tuple", children)
    if isinstance(node, list):
        return ("list", [_walk(n, leaves, is_leaf) for n in node])
    if isinstance(node, dict):
        keys = list(node.keys())
        return ("dict", keys, [_walk(node[k], leaves, is_leaf) for k in keys])
    leaves.append(node)
    return ("leaf",)


def unflatten(treedef: TreeDef, leaves: list) -> Any:
    return _build(treedef, iter(leaves))


def _build(d: TreeDef, pending: Any) -> Any:
    # a module-level function, not a closure calling itself: that closure would be a reference
    # cycle holding `leaves` (a call's fresh outputs) until the cyclic GC ran, so their memory
    # would never be reused by the next call (new pages, page faults: 4x slower small calls)
    tag = d[0]
    if tag == "leaf":
        return next(pending)
    if tag == "none":
        return None
    if tag == "tuple":
        return tuple([_build(c, pending) for c in d[1]])
    if tag == "list":
        return [_build(c, pending) for c in d[1]]
    if tag == "dict":
        return {k: _build(c, pending) for k, c in zip(d[1], d[2])}
    if tag == "namedtuple":
        return d[1](*[_build(c, pending) for c in d[2]])
    raise ValueError(tag)
