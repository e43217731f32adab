"""The IR as JSON, and back: how a saved model stores a traced function (a `Lambda` layer) so it
loads without its Python source and without unpickling anything.

A graph is its nodes in creation order, each `{op, args, shape, dtype, attrs}` with the op by its
name in the op table (`Op.value`). Attribute values are the op table's static kinds only: ints,
floats, bools, strings, None, tuples of those, dtypes and constant arrays (as base64 bytes).
Anything else refuses to serialise. Reading rebuilds every node through `Graph.add`, so the op
table re-derives each shape and dtype, and a node whose recorded type disagrees (a damaged or
hand-edited file) is an error rather than a silently different program.

`with_batch_size` is the pass that makes a saved trace usable for any batch size: a function
traced with a probe batch size is re-specialised by replacing that size in every shape and
attribute (see `graphjit.saving`, which checks that this is sound for the function at hand).
"""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

from .errors import GraphjitError
from .ir import Attrs, Graph
from .ops import Constant, Op

FORMAT = "graphjit-ir"
VERSION = 1


class SerializeError(GraphjitError):
    """A graph that cannot be written as JSON, or JSON that is not a valid graph."""


# ---------------------------------------------------------------- attribute values


def encode_value(value: Any) -> Any:
    """One attribute value as JSON data (tagged where JSON has no type of its own)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return {"float": repr(float(value))}  # repr round-trips exactly, inf and nan included
    if isinstance(value, tuple):
        return {"tuple": [encode_value(v) for v in value]}
    if isinstance(value, np.dtype):
        return {"dtype": value.str}
    if isinstance(value, Constant):
        array = np.array(value.value, order="C")  # (ascontiguousarray would make 0-d 1-d)
        return {"const": {"dtype": array.dtype.str, "shape": list(array.shape),
                          "data": base64.b64encode(array.tobytes()).decode("ascii")}}
    raise SerializeError(f"cannot serialise an attribute of type {type(value).__name__} "
                         f"({value!r})")


def decode_value(data: Any) -> Any:
    if data is None or isinstance(data, (bool, int, str)):
        return data
    if isinstance(data, dict) and len(data) == 1:
        (tag, payload), = data.items()
        if tag == "float":
            return float(payload)
        if tag == "tuple":
            return tuple(decode_value(v) for v in payload)
        if tag == "dtype":
            return np.dtype(payload)
        if tag == "const":
            dtype = np.dtype(payload["dtype"])
            if dtype.hasobject:
                raise SerializeError("a constant of object dtype: refusing to load it")
            raw = base64.b64decode(payload["data"].encode("ascii"), validate=True)
            array = np.frombuffer(raw, dtype=dtype).reshape(tuple(payload["shape"]))
            return Constant(array.copy())
    raise SerializeError(f"not a serialised attribute value: {data!r}")


# ---------------------------------------------------------------- graphs


def graph_to_json(graph: Graph) -> dict[str, Any]:
    """The graph as JSON-able data (node ids renumbered densely in creation order)."""
    index = {node_id: i for i, node_id in enumerate(graph.order())}
    nodes = []
    for node_id, node in graph.items():
        nodes.append({
            "op": node.op.value,
            "args": [index[a] for a in node.args],
            "shape": list(node.shape),
            "dtype": node.dtype.str,
            "attrs": {name: encode_value(value) for name, value in node.attrs.items()},
        })
    return {"format": FORMAT, "version": VERSION, "name": graph.name, "nodes": nodes,
            "params": [index[p] for p in graph.params],
            "outputs": [index[o] for o in graph.outputs]}


def graph_from_json(data: Any) -> Graph:
    """Rebuild a graph written by `graph_to_json`, checking every node against the op table."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SerializeError("not a serialised graphjit graph (no 'format': 'graphjit-ir')")
    if data.get("version") != VERSION:
        raise SerializeError(f"graph format version {data.get('version')!r}; this graphjit "
                             f"reads version {VERSION}")
    ops = {op.value: op for op in Op}
    graph = Graph(str(data.get("name", "fn")))
    try:
        for position, record in enumerate(data["nodes"]):
            if record["op"] not in ops:
                raise SerializeError(f"node {position}: unknown op {record['op']!r} (saved by "
                                     "another graphjit version?)")
            args = [int(a) for a in record["args"]]
            if any(not 0 <= a < position for a in args):
                raise SerializeError(f"node {position}: operands {args} must name earlier "
                                     "nodes")
            attrs = Attrs({k: decode_value(v) for k, v in record["attrs"].items()})
            node_id = graph.add(ops[record["op"]], args, attrs)
            node = graph.node(node_id)
            if list(node.shape) != list(record["shape"]) or node.dtype.str != record["dtype"]:
                raise SerializeError(
                    f"node {position} ({record['op']}): recorded {record['dtype']}"
                    f"{record['shape']}, the op table gives {node.dtype.str}{list(node.shape)}")
        outputs = [int(o) for o in data["outputs"]]
        params = [int(p) for p in data["params"]]
    except SerializeError:
        raise
    except GraphjitError as exc:
        raise SerializeError(f"the serialised graph is not valid: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SerializeError(f"the serialised graph is damaged: {type(exc).__name__}: "
                             f"{exc}") from None
    if params != graph.params or any(not 0 <= o < len(graph) for o in outputs):
        raise SerializeError("the serialised graph's params or outputs do not match its nodes")
    graph.outputs = outputs
    return graph


# ---------------------------------------------------------------- re-specialising a trace


def _replace_size(value: Any, old: int, new: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)):
        return new if value == old else value
    if isinstance(value, tuple):
        return tuple(_replace_size(v, old, new) for v in value)
    return value


def with_batch_size(graph: Graph, old: int, new: int) -> Graph:
    """A copy of `graph` with the size `old` replaced by `new` in every param shape and every
    integer attribute (shapes, slice bounds); types are re-derived by the op table."""
    result = graph.empty_like()
    mapping: dict[int, int] = {}
    for node_id, node in graph.items():
        attrs = Attrs({name: _replace_size(value, old, new) if name != "index" else value
                       for name, value in node.attrs.items()})
        mapping[node_id] = result.add(node.op, [mapping[a] for a in node.args], attrs,
                                      node.source)
    result.outputs = [mapping[o] for o in graph.outputs]
    return result


def same_program(a: Graph, b: Graph) -> bool:
    """Whether two graphs are node for node the same computation."""
    if len(a) != len(b) or len(a.outputs) != len(b.outputs):
        return False
    ids_a, ids_b = a.order(), b.order()
    position_a = {n: i for i, n in enumerate(ids_a)}
    position_b = {n: i for i, n in enumerate(ids_b)}
    for node_a, node_b in zip((a.node(n) for n in ids_a), (b.node(n) for n in ids_b)):
        if (node_a.op, node_a.shape, node_a.dtype, node_a.attrs) != \
                (node_b.op, node_b.shape, node_b.dtype, node_b.attrs):
            return False
        if [position_a[x] for x in node_a.args] != [position_b[x] for x in node_b.args]:
            return False
    return [position_a[o] for o in a.outputs] == [position_b[o] for o in b.outputs]
