"""Unit tests of each graph pass, and a differential test of the pipeline on random graphs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphjit as gj
from graphjit import backends
from graphjit.compiler.interpret import interpret
from graphjit.compiler.ops import Op
from graphjit.compiler.passes import (
    eliminate_common_subexpressions, eliminate_dead_code, fold_constants, simplify,
)
from graphjit.compiler.pipeline import GRAPH_PASSES, PROGRAM_PASSES, lower_to_program, optimize
from graphjit.compiler.verify import verify
from graphjit.frontend.trace import leaf_spec, trace


def traced_graph(fn, *args):
    specs = [leaf_spec(a, "arg") for a in args]
    return trace(fn, specs, lambda values: (tuple(values), {})).graph


def ops_of(graph):
    return [node.op for _, node in graph.items() if node.op is not Op.PARAM]


def test_dce_removes_unused_nodes():
    def f(x):
        unused = np.exp(x) * 3
        return x + 1

    graph = traced_graph(f, np.ones(4))
    after = verify(eliminate_dead_code(graph))
    assert Op.EXP not in ops_of(after)
    assert len(after) < len(graph)
    np.testing.assert_array_equal(interpret(after, [np.arange(4.0)])[0], np.arange(4.0) + 1)


def test_dce_keeps_params_that_are_unused():
    graph = traced_graph(lambda x, y: x * 2, np.ones(3), np.ones(3))
    after = eliminate_dead_code(graph)
    assert len(after.params) == 2


def test_fold_constants_evaluates_constant_subgraphs():
    table = np.arange(6.0).reshape(2, 3)

    def f(x):
        return x + (table.T * 2).sum(axis=1)

    graph = fold_constants(traced_graph(f, np.ones(3)))
    verify(graph)
    assert Op.TRANSPOSE not in ops_of(graph) and Op.SUM not in ops_of(graph)
    np.testing.assert_allclose(interpret(graph, [np.ones(3)])[0], f(np.ones(3)))


def test_fold_does_not_materialise_broadcasts():
    graph = fold_constants(traced_graph(lambda x: x * 2.0, np.ones((64, 64), np.float32)))
    consts = [n for _, n in graph.items() if n.op is Op.CONST]
    assert consts and all(n.size == 1 for n in consts)


def test_cse_merges_identical_nodes():
    def f(x):
        return np.exp(x) + np.exp(x)

    graph = eliminate_dead_code(eliminate_common_subexpressions(traced_graph(f, np.ones(3))))
    assert ops_of(graph).count(Op.EXP) == 1
    np.testing.assert_allclose(interpret(graph, [np.arange(3.0)])[0], f(np.arange(3.0)))


def test_cse_merges_equal_constants_but_not_params():
    graph = traced_graph(lambda x, y: (x * 2.0) + (y * 2.0), np.ones(3), np.ones(3))
    after = eliminate_dead_code(eliminate_common_subexpressions(graph))
    assert sum(1 for _, n in after.items() if n.op is Op.CONST) == 1
    assert len(after.params) == 2 and ops_of(after).count(Op.MUL) == 2


@pytest.mark.parametrize("fn, gone", [
    (lambda x: x * 1.0, Op.MUL),
    (lambda x: x / 1.0, Op.DIV),
    (lambda x: x - 0.0, Op.SUB),
    (lambda x: x + -0.0, Op.ADD),
    (lambda x: -(-x), Op.NEG),
    (lambda x: x.T.T, Op.TRANSPOSE),
    (lambda x: x.reshape(6).reshape(2, 3), Op.RESHAPE),
    (lambda x: x ** 2, Op.POW),
    (lambda x: x / 4.0, Op.DIV),
    (lambda x: x.astype(np.float64).astype(np.float32), Op.CAST),
    (lambda x: np.where(x > 0, x, x), Op.WHERE),
])
def test_simplify_rules_fire_and_keep_results(fn, gone):
    x = np.array([[-0.0, 0.0, 1.5], [np.nan, np.inf, -np.inf]], np.float32)
    graph = eliminate_dead_code(simplify(traced_graph(fn, x)))
    verify(graph)
    assert gone not in ops_of(graph)
    got = interpret(graph, [x])[0]
    want = fn(x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_simplify_keeps_x_plus_positive_zero():
    # -0.0 + 0.0 is +0.0: dropping the add would change the sign of zero
    graph = simplify(traced_graph(lambda x: x + 0.0, np.ones(2, np.float32)))
    assert Op.ADD in ops_of(eliminate_dead_code(graph))


def test_simplify_keeps_inexact_division():
    # x/3 and x*(1/3) differ in the last bit for some x
    graph = eliminate_dead_code(simplify(traced_graph(lambda x: x / 3.0, np.ones(2))))
    assert Op.DIV in ops_of(graph)


def test_simplify_integer_add_zero():
    graph = eliminate_dead_code(simplify(traced_graph(lambda x: x + 0, np.ones(3, np.int64))))
    assert Op.ADD not in ops_of(graph)


# ------------------------------------------------------------ random graphs vs NumPy

BASE = (3, 4)
INPUT_SHAPES = [(3, 4), (4,), (3, 1), ()]
UNARY = [np.tanh, np.negative, np.abs, lambda v: np.exp(np.clip(v, -5, 5)),
         lambda v: np.sqrt(np.abs(v)), lambda v: v * 1.0, lambda v: v ** 2, lambda v: -(-v)]
BINARY = [np.add, np.subtract, np.multiply, np.maximum, np.minimum,
          lambda a, b: np.where(a > b, a, b * 0.5), lambda a, b: a / 2.0 + b]
REDUCE = [lambda v: np.sum(np.broadcast_to(v, BASE), axis=1, keepdims=True),
          lambda v: np.max(np.broadcast_to(v, BASE), axis=0, keepdims=True),
          lambda v: np.mean(np.broadcast_to(v, BASE), axis=-1, keepdims=True)]

step = st.one_of(
    st.tuples(st.just("unary"), st.integers(0, len(UNARY) - 1), st.integers(0, 99)),
    st.tuples(st.just("binary"), st.integers(0, len(BINARY) - 1), st.integers(0, 99),
              st.integers(0, 99)),
    st.tuples(st.just("reduce"), st.integers(0, len(REDUCE) - 1), st.integers(0, 99)),
)


def make_program(steps, n_inputs):
    def fn(*inputs):
        values = list(inputs)
        for kind, which, *operands in steps:
            picked = [values[o % len(values)] for o in operands]
            table = {"unary": UNARY, "binary": BINARY, "reduce": REDUCE}[kind]
            values.append(table[which](*picked))
        return values[-1], values[len(values) // 2]

    return fn


PASS_SUBSETS = [None] + [[p for p in GRAPH_PASSES if p[0] != skipped]
                         for skipped, _ in GRAPH_PASSES]


@settings(max_examples=20, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=8),
       shapes=st.lists(st.sampled_from(INPUT_SHAPES), min_size=1, max_size=3),
       dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2**16))
def test_random_graphs_match_numpy_with_and_without_each_pass(steps, shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(s).astype(dtype) for s in shapes]
    fn = make_program(steps, len(args))
    with np.errstate(all="ignore"):
        want = fn(*args)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for passes in PASS_SUBSETS:
        graph = optimize(traced_graph(fn, *args), passes=passes, check=True)
        executable = backends.compile(lower_to_program(graph, check=True), "cpu", {})
        got = executable.run(list(args))
        for g, w in zip(got, want):
            assert g.shape == np.shape(w) and g.dtype == np.asarray(w).dtype
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_pipeline_records_every_stage():
    f = gj.jit(lambda x: np.exp(x) * 1.0 + np.exp(x))
    lowered = f.lower(np.ones(3))
    for name, _ in GRAPH_PASSES:
        assert name in lowered.stages()
        assert lowered.as_text(name).startswith("graph ")
    for name, _ in PROGRAM_PASSES:
        assert name in lowered.stages()
    assert lowered.as_text("fuse").startswith("fusion plan ")
    assert lowered.as_text("plan_buffers").startswith("program ")
    assert "traced" in lowered.stages()
