"""The IR: printer (golden strings), verifier, reference interpreter errors."""
from __future__ import annotations

import numpy as np
import pytest

from graphjit.compiler.errors import GraphjitError, ShapeError, VerifyError
from graphjit.compiler.interpret import interpret
from graphjit.compiler.ir import Graph, Node
from graphjit.compiler.ops import OPS, Op, OpKind
from graphjit.compiler.printer import format_graph
from graphjit.compiler.verify import verify


def small_graph() -> Graph:
    graph = Graph("model")
    x = graph.add(Op.PARAM, (), {"index": 0, "shape": (256, 512), "dtype": np.dtype("f4")})
    b = graph.add(Op.PARAM, (), {"index": 1, "shape": (512,), "dtype": np.dtype("f4")})
    bb = graph.add(Op.BROADCAST, (b,), {"shape_to": (256, 512)}, "model.py:11")
    y = graph.add(Op.ADD, (x, bb), source="model.py:12")
    s = graph.add(Op.SUM, (y,), {"axes": (1,), "keepdims": False}, "model.py:13")
    graph.outputs = [s]
    return graph


def test_printer_golden():
    assert format_graph(small_graph()) == "\n".join([
        "graph model(%0, %1) {",
        "  %0:f32[256,512] = param index=0",
        "  %1:f32[512] = param index=1",
        "  %2:f32[256,512] = broadcast %1 shape_to=(256, 512)  # model.py:11",
        "  %3:f32[256,512] = add %0 %2                       # model.py:12",
        "  %4:f32[256] = sum %3 axes=(1,) keepdims=False     # model.py:13",
        "  return %4",
        "}",
    ])


def test_traced_nodes_remember_the_users_line():
    import graphjit as gj

    def f(x):
        return np.exp(x) + 1  # the line under test

    text = str(gj.jit(f).lower(np.ones(3, np.float32)))
    line = f.__code__.co_firstlineno + 1
    assert f"test_ir.py:{line}" in text
    assert "exp %0" in text


def test_verifier_accepts_traced_graphs():
    verify(small_graph())


def test_verifier_rejects_wrong_recorded_type():
    graph = small_graph()
    node = graph.node(3)
    graph.nx.nodes[3]["node"] = Node(node.op, node.args, (256, 511), node.dtype, node.attrs)
    with pytest.raises(VerifyError, match="rules give"):
        verify(graph)


def test_verifier_rejects_wrong_arity():
    graph = small_graph()
    node = graph.node(3)
    graph.nx.nodes[3]["node"] = Node(Op.ADD, (0,), node.shape, node.dtype)
    with pytest.raises(VerifyError, match="expected 2 operands"):
        verify(graph)


def test_adding_mismatched_shapes_is_a_shape_error_with_source():
    graph = small_graph()
    with pytest.raises(ShapeError, match="model.py:99"):
        graph.add(Op.ADD, (0, 1), source="model.py:99")


def test_interpreter_names_the_failing_node():
    graph = Graph("g")
    x = graph.add(Op.PARAM, (), {"index": 0, "shape": (3,), "dtype": np.dtype("i8")})
    idx = graph.const(np.array([5]))
    graph.outputs = [graph.add(Op.TAKE, (x, idx), {"axis": 0}, "m.py:3")]
    with pytest.raises(GraphjitError, match=r"m.py:3.*while executing %2"):
        interpret(graph, [np.arange(3)])


def test_op_table_is_complete():
    for op in Op:
        spec = OPS[op]
        assert spec.op is op and callable(spec.impl) and callable(spec.shape_rule)
        if spec.kind is OpKind.ELEMENTWISE:
            assert spec.arity in (1, 2, 3)
