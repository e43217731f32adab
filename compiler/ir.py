"""The IR: a graph of immutable typed `Node` records.

Node ids grow in creation order and a node can only refer to existing nodes, so sorting the ids
gives a topological order for free. Passes never mutate a graph they are given: they build a new one.
Per-node results of analyses (fusion group, buffer slot) go in the node's `meta` dict, like
torch.fx's `node.meta`.

The nodes live in plain dicts (a call that compiles never imports networkx: it costs ~80 ms);
`graph.nx` is a networkx MultiDiGraph view over the same per-node dicts, built on first use for
graph algorithms and inspection.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import DTypeError, ShapeError
from .ops import OPS, Constant, Op, Shape


class Attrs(Mapping):
    """A hashable, immutable mapping of an op's static attributes."""

    __slots__ = ("_items", "_dict")

    def __init__(self, items: Mapping[str, Any] | None = None):
        self._dict = dict(items or {})
        self._items = tuple(sorted(self._dict.items(), key=lambda kv: kv[0]))

    def __getitem__(self, key: str) -> Any:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Attrs) and self._items == other._items

    def __repr__(self) -> str:
        return f"Attrs({self._dict})"


@dataclass(frozen=True)
class Node:
    op: Op
    args: tuple[int, ...]
    shape: Shape
    dtype: np.dtype
    attrs: Attrs = field(default_factory=Attrs)
    source: str = ""

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        size = 1
        for d in self.shape:
            size *= d
        return size

    def key(self) -> tuple:
        """What makes two nodes compute the same value (for CSE)."""
        return (self.op, self.args, self.shape, self.dtype, self.attrs)


def infer_type(op: Op, arg_nodes: list[Node], attrs: Mapping[str, Any]) -> tuple[Shape, np.dtype]:
    spec = OPS[op]
    shape = tuple(int(d) for d in spec.shape_rule(*(n.shape for n in arg_nodes), **attrs))
    dtype = np.dtype(spec.dtype_rule(*(n.dtype for n in arg_nodes), **attrs))
    return shape, dtype


class Graph:
    """A traced program: params in call order, nodes, and outputs in return order."""

    def __init__(self, name: str = "fn"):
        self.name = name
        # id -> {"node": Node, "meta": dict}; id -> user ids (one entry per use, like the
        # multigraph's edges)
        self._data: dict[int, dict[str, Any]] = {}
        self._users: dict[int, list[int]] = {}
        self._nx: Any = None
        self.params: list[int] = []
        self.outputs: list[int] = []
        self._next_id = 0

    # ------------------------------------------------------------ building
    def add(self, op: Op, args: tuple[int, ...] | list[int] = (), attrs: Mapping | None = None,
            source: str = "", shape: Shape | None = None, dtype: Any = None) -> int:
        """Append a node, computing its type from the op table unless given; return its id."""
        args = tuple(int(a) for a in args)
        attrs = attrs if isinstance(attrs, Attrs) else Attrs(attrs)
        if shape is None or dtype is None:
            try:
                shape, dtype = infer_type(op, [self.node(a) for a in args], attrs)
            except (ValueError, TypeError) as exc:
                error = DTypeError if isinstance(exc, TypeError) else ShapeError
                raise error(f"{op.value}: {exc}", source) from None
        node = Node(op, args, tuple(shape), np.dtype(dtype), attrs, source)
        node_id = self._next_id
        self._next_id += 1
        self._data[node_id] = {"node": node, "meta": {}}
        self._users[node_id] = []
        for arg in args:
            self._users[arg].append(node_id)
        if self._nx is not None:
            self._add_to_view(self._nx, node_id)
        if op is Op.PARAM:
            self.params.append(node_id)
        return node_id

    def add_node(self, node: Node) -> int:
        """Append a copy of an existing record (args must already be ids of this graph)."""
        return self.add(node.op, node.args, node.attrs, node.source, node.shape, node.dtype)

    def const(self, value: Any, dtype: Any = None, source: str = "") -> int:
        array = np.asarray(value, dtype=dtype)
        return self.add(Op.CONST, (), {"value": Constant(array)}, source)

    # ------------------------------------------------------------ reading
    def node(self, node_id: int) -> Node:
        return self._data[node_id]["node"]

    def meta(self, node_id: int) -> dict:
        return self._data[node_id]["meta"]

    def __contains__(self, node_id: int) -> bool:
        return node_id in self._data

    def __len__(self) -> int:
        return len(self._data)

    def order(self) -> list[int]:
        """Node ids in a topological order (creation order)."""
        return sorted(self._data)

    def items(self) -> Iterator[tuple[int, Node]]:
        for node_id in self.order():
            yield node_id, self.node(node_id)

    def users(self, node_id: int) -> list[int]:
        return sorted(set(self._users[node_id]))

    def const_value(self, node_id: int) -> np.ndarray | None:
        node = self.node(node_id)
        return node.attrs["value"].value if node.op is Op.CONST else None

    def count(self, op: Op) -> int:
        return sum(1 for _, n in self.items() if n.op is op)

    # ------------------------------------------------------------ rebuilding
    @property
    def nx(self) -> Any:
        """A networkx MultiDiGraph of this graph (edge arg -> user, with the operand position);
        its node attribute dicts are this graph's own, so `graph.nx.nodes[i]["node"]` reads and
        writes the same record as `graph.node(i)`."""
        if self._nx is None:
            import networkx

            view = networkx.MultiDiGraph()
            for node_id in self.order():
                self._add_to_view(view, node_id)
            self._nx = view
        return self._nx

    def _add_to_view(self, view: Any, node_id: int) -> None:
        view.add_node(node_id)
        view._node[node_id] = self._data[node_id]   # share the attribute dict
        for position, arg in enumerate(self.node(node_id).args):
            view.add_edge(arg, node_id, position=position)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_nx"] = None
        return state

    def empty_like(self) -> Graph:
        return Graph(self.name)

    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)


def rebuild(graph: Graph, replace=None) -> Graph:
    """Copy `graph` node by node, renumbering ids densely.

    `replace(new_graph, node_id, node_with_new_args) -> new id or None` may emit replacement nodes;
    None keeps the node as is. Params keep their order; outputs are remapped.
    """
    new = graph.empty_like()
    mapping: dict[int, int] = {}
    for node_id, node in graph.items():
        remapped = Node(node.op, tuple(mapping[a] for a in node.args), node.shape, node.dtype,
                        node.attrs, node.source)
        result = replace(new, node_id, remapped) if replace else None
        mapping[node_id] = new.add_node(remapped) if result is None else result
    new.params = [mapping[p] for p in graph.params]
    new.outputs = [mapping[o] for o in graph.outputs]
    return new
