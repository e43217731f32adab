"""Flatten nested tuples, lists and dicts of leaves, and rebuild them."""
from __future__ import annotations

from typing import Any, Callable

# ("leaf",) | ("tuple", [defs]) | ("list", [defs]) | ("dict", keys, [defs]) | ("none",)
TreeDef = Any


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, TreeDef]:
    leaves: list = []

    def walk(node: Any) -> TreeDef:
        if is_leaf is not None and is_leaf(node):
            leaves.append(node)
            return ("leaf",)
        if node is None:
            return ("none",)
        if isinstance(node, tuple) and not hasattr(node, "_fields"):
            return ("tuple", [walk(n) for n in node])
        if isinstance(node, list):
            return ("list", [walk(n) for n in node])
        if isinstance(node, dict):
            keys = list(node.keys())
            return ("dict", keys, [walk(node[k]) for k in keys])
        leaves.append(node)
        return ("leaf",)

    treedef = walk(tree)
    return leaves, treedef


def unflatten(treedef: TreeDef, leaves: list) -> Any:
    pending = iter(leaves)

    def build(d: TreeDef) -> Any:
        tag = d[0]
        if tag == "leaf":
            return next(pending)
        if tag == "none":
            return None
        if tag == "tuple":
            return tuple(build(c) for c in d[1])
        if tag == "list":
            return [build(c) for c in d[1]]
        if tag == "dict":
            return {k: build(c) for k, c in zip(d[1], d[2])}
        raise ValueError(tag)

    return build(treedef)
