"""Differential tests of scheduling: `run_program(build_program(g), args)` must equal the reference
interpreter on `g`, for the benchmark workloads, views, reductions, dtypes and odd outputs, and
for random graphs; plus the buffer-planning invariants.

`run_program` backs TEMP buffers of one slot with one allocation filled with garbage, so a wrong
plan (or a read of memory no kernel wrote) shows up as a wrong value here."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit.compiler.interpret import interpret
from graphjit.compiler.ir import Graph
from graphjit.compiler.kernel import BufferKind, HostKernel, LoopKernel, MatmulKernel
from graphjit.compiler.ops import Op
from graphjit.compiler.program_interpreter import run_program
from graphjit.compiler.schedule import build_program
from graphjit.compiler.verify_program import verify_program
from workloads import chain, gelu, layernorm, mlp, scale_shift, softmax, sumsq, train_step

RNG = np.random.default_rng(1234)
TOLERANCE = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def f64(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def ints(*shape: int, dtype=np.int64) -> np.ndarray:
    return RNG.integers(-5, 6, shape).astype(dtype)


def assert_same(expected: np.ndarray, actual: np.ndarray) -> None:
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    tol = TOLERANCE.get(expected.dtype, 0.0)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, equal_nan=True)


def check_program(graph: Graph, args) -> None:
    """Program semantics == graph semantics, and the buffer invariants hold."""
    program = build_program(graph)
    leaves = [np.asarray(a) for a in args]
    expected = interpret(graph, leaves)
    actual = run_program(program, leaves)
    assert len(actual) == len(expected)
    for e, a in zip(expected, actual):
        assert_same(e, a)
    verify_program(program)   # the guarantees compiler/kernel.py promises backends


def check_fn(fn, *args) -> None:
    graph = gj.jit(fn, target="reference").lower(*args).graph
    check_program(graph, args)


# ---------------------------------------------------------------- the benchmark workloads

















WORKLOADS = [
    ("chain", chain, lambda: (f32(1000),)),
    ("gelu", gelu, lambda: (f32(1000),)),
    ("softmax", softmax, lambda: (f32(16, 32),)),
    ("layernorm", layernorm, lambda: (f32(16, 32), f32(32), f32(32))),
    ("mlp", mlp, lambda: (f32(8, 20), f32(20, 12), f32(12), f32(12, 5), f32(5))),
    ("sumsq", sumsq, lambda: (f32(1000),)),
    ("scale_shift", scale_shift, lambda: (f32(1000),)),
    ("train_step", train_step,
     lambda: (f32(8, 20), np.eye(5, dtype=np.float32)[RNG.integers(0, 5, 8)], f32(20, 12),
              f32(12), f32(12, 5), f32(5), 0.1)),
]


@pytest.mark.parametrize("name,fn,make_args", WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_workloads(name, fn, make_args):
    check_fn(fn, *make_args())


# ---------------------------------------------------------------- views, reductions, dtypes

FUNCTIONS = [
    ("broadcast_rows", lambda x, b: x * b + 1, lambda: (f32(4, 5), f32(5))),
    ("broadcast_cols", lambda x, b: x - b, lambda: (f32(4, 5), f32(4, 1))),
    ("broadcast_both", lambda a, b: a + b, lambda: (f32(4, 1), f32(1, 5))),
    ("scalar_param", lambda x, s: x * s, lambda: (f32(6), np.float32(3.0))),
    ("step_slices", lambda x: x[::2, 1::3] * 2 + x[1::2, ::3], lambda: (f32(6, 9),)),
    ("negative_step", lambda x: x[::-1] - x, lambda: (f32(7),)),
    ("transpose_add", lambda x: x.T + 1, lambda: (f32(3, 4),)),
    ("transpose_3d", lambda x: np.transpose(x, (2, 0, 1)) * x.sum(), lambda: (f32(2, 3, 4),)),
    ("reshape_chain", lambda x: (x.reshape(6, 4) + 1).reshape(2, 12), lambda: (f32(4, 6),)),
    ("reshape_of_transpose", lambda x: x.T.reshape(-1) * 2, lambda: (f32(3, 4),)),
    ("reshape_of_slice", lambda x: x[:, ::2].reshape(-1) + x[:, 1::2].reshape(-1),
     lambda: (f32(3, 4),)),
    ("sum_keepdims_axis0", lambda x: x - x.sum(axis=0, keepdims=True), lambda: (f32(5, 6),)),
    ("mean_no_keepdims", lambda x: x.mean(axis=1) * 2, lambda: (f32(5, 6),)),
    ("max_middle_axis", lambda x: x.max(axis=1) + x.min(axis=1), lambda: (f32(3, 4, 5),)),
    ("sum_two_axes", lambda x: x.sum(axis=(0, 2), keepdims=True) * x, lambda: (f32(3, 4, 5),)),
    ("sum_all", lambda x: np.sum(np.exp(x)), lambda: (f32(3, 4),)),
    ("prod", lambda x: np.prod(x, axis=-1), lambda: (f32(3, 4),)),
    ("argmax", lambda x: np.argmax(x * 2, axis=1), lambda: (f32(4, 6),)),
    ("argmin_keepdims", lambda x: np.argmin(x, axis=0, keepdims=True), lambda: (f32(4, 6),)),
    ("var_std", lambda x: np.var(x, axis=1) + np.std(x, axis=1), lambda: (f64(4, 9),)),
    ("column_softmax", lambda x: np.exp(x) / np.exp(x).sum(axis=0), lambda: (f64(4, 6),)),
    ("reduce_of_transposed_value", lambda x: np.exp(x).T.sum(axis=1), lambda: (f32(3, 5),)),
    ("reduction_of_reduction", lambda x: x.sum(axis=1).max(), lambda: (f32(4, 5),)),
    ("int_ops", lambda a, b: (a * b + a // (np.abs(b) + 1)) % 7, lambda: (ints(5, 4),
                                                                         ints(5, 4))),
    ("int32_sum", lambda a: a.sum(axis=0) + a[0], lambda: (ints(4, 3, dtype=np.int32),)),
    ("bool_logic", lambda a, b: np.logical_and(a > 0, b < 1) | (a == b),
     lambda: (ints(4, 5), ints(4, 5))),
    ("bool_reduce", lambda a: np.any(a > 2, axis=1), lambda: (ints(4, 5),)),
    ("where_mixed", lambda x, i: np.where(i > 0, x, -x) * 2, lambda: (f32(4, 5), ints(4, 5))),
    ("cast_chain", lambda x: (x * 10).astype(np.int32) + 1, lambda: (f64(5),)),
    ("zero_d", lambda x: x * 2 + 1, lambda: (np.float64(1.5),)),
    ("output_is_param", lambda x, y: (x, y + 1), lambda: (f32(3), f32(3))),
    ("output_repeated", lambda x: (np.exp(x),) * 2, lambda: (f32(3),)),
    ("output_is_view", lambda x: (x.T, x[1:]), lambda: (f32(3, 2),)),
    ("output_is_const", lambda x: (x + 1, np.float32(2.0), np.arange(3.0)), lambda: (f32(3),)),
    ("output_is_reduction_and_value", lambda x: (x.sum(axis=1), x * 2), lambda: (f32(3, 4),)),
    ("broadcast_reduction_output",
     lambda x: np.broadcast_to(x.sum(axis=1, keepdims=True), x.shape) + 0,
     lambda: (f32(3, 4),)),
    ("matmul_residual", lambda x, w: np.tanh(x @ w) + x, lambda: (f32(4, 4), f32(4, 4))),
    ("batched_matmul", lambda a, b: (a @ b) * 2, lambda: (f32(2, 3, 4), f32(2, 4, 5))),
    ("matmul_both_transposed", lambda a, b: a.T @ b.T, lambda: (f32(4, 3), f32(5, 4))),
    ("matmul_of_slice", lambda a, b: a[::2] @ b, lambda: (f32(6, 3), f32(3, 2))),
    ("matmul_vector", lambda a, v: a @ v + 1, lambda: (f32(4, 3), f32(3))),
    ("gather_then_reduce", lambda x, i: x[i].sum(axis=1) + x[i[0]].sum(),
     lambda: (f32(5, 3), np.array([4, 0, 2]))),
    ("setitem", lambda x: _setitem(x), lambda: (f32(4, 3),)),
    ("concat", lambda a, b: np.concatenate([a.T, b], axis=0) * 2, lambda: (f32(3, 2), f32(1, 3))),
    ("zero_size", lambda x: x.sum(axis=1) + 1, lambda: (f32(3, 0),)),
    ("nan_max", lambda x: x.max(axis=0), lambda: (np.array([[1.0, np.nan], [2.0, 3.0]]),)),
]


def _setitem(x):
    x = x * 1
    x[1:3, 0] = -1.0
    return x + 1


@pytest.mark.parametrize("name,fn,make_args", FUNCTIONS, ids=[f[0] for f in FUNCTIONS])
def test_functions(name, fn, make_args):
    check_fn(fn, *make_args())


def test_writeback_of_argument():
    def fn(w, g):
        w -= 0.5 * g
        return (w * w).sum()

    check_fn(fn, f32(4, 3), f32(4, 3))


def test_temps_share_slots_when_lifetimes_are_disjoint():
    def fn(x):
        for _ in range(4):
            x = np.exp(x.T).sum(axis=1, keepdims=True) * x.T
        return x

    graph = gj.jit(fn, target="reference").lower(f32(4, 4)).graph
    program = build_program(graph)
    temps = [b for b in program.buffers if b.kind is BufferKind.TEMP]
    assert len(temps) >= 3
    assert len({b.slot for b in temps}) < len(temps)
    check_program(graph, (f32(4, 4),))


def test_program_steps_are_kernels_of_the_three_kinds():
    def fn(x, w, i):
        return np.take(np.maximum(x @ w, 0), i, axis=0).sum(axis=1)

    graph = gj.jit(fn, target="reference").lower(f32(4, 3), f32(3, 5), np.array([1, 0])).graph
    program = build_program(graph)
    assert {type(s) for s in program.steps} == {MatmulKernel, HostKernel, LoopKernel}
    check_program(graph, (f32(4, 3), f32(3, 5), np.array([1, 0])))


def test_build_program_fuses_an_unfused_graph_itself():
    graph = Graph("raw")
    x = graph.add(Op.PARAM, (), {"index": 0, "shape": (3,), "dtype": np.dtype("f4")})
    y = graph.add(Op.EXP, (x,))
    graph.outputs = [graph.add(Op.NEG, (y,))]
    program = build_program(graph)
    assert len(program.steps) == 1
    check_program(graph, (f32(3),))


def test_any_op_in_the_table_runs_as_a_host_kernel(monkeypatch):
    """An op the scheduler has never heard of (e.g. one added later) becomes a HostKernel."""
    import enum

    from graphjit.compiler import ops as ops_module
    from graphjit.compiler.ops import OpDef, OpKind, same_dtype, same_shape

    fake = enum.Enum("FakeOp", {"CUMSUM": "cumsum"})
    spec = OpDef(fake.CUMSUM, OpKind.INDEX, 1, same_shape, same_dtype,
                 lambda x: np.cumsum(x, axis=-1))
    monkeypatch.setitem(ops_module.OPS, fake.CUMSUM, spec)
    graph = Graph("fake")
    x = graph.add(Op.PARAM, (), {"index": 0, "shape": (2, 3), "dtype": np.dtype("f8")})
    t = graph.add(Op.TRANSPOSE, (x,), {"perm": (1, 0)})
    c = graph.add(fake.CUMSUM, (t,))
    graph.outputs = [graph.add(Op.EXP, (c,))]
    program = build_program(graph)
    assert any(isinstance(s, HostKernel) and s.op is fake.CUMSUM for s in program.steps)
    check_program(graph, (f64(2, 3),))


# ---------------------------------------------------------------- random graphs

UNARY = [Op.EXP, Op.NEG, Op.ABS, Op.TANH, Op.SIN]
BINARY = [Op.ADD, Op.SUB, Op.MUL, Op.MAXIMUM]
REDUCE = [Op.SUM, Op.REDUCE_MAX, Op.REDUCE_MIN]


def _to_shape(graph: Graph, node: int, shape: tuple[int, ...]) -> int:
    if graph.node(node).shape == shape:
        return node
    return graph.add(Op.BROADCAST, (node,), {"shape_to": shape})


def _shape_keeping_view(graph: Graph, node: int, axis: int) -> int:
    """Reverse one axis (a slice with step -1), or flatten and reshape back."""
    shape = graph.node(node).shape
    if axis % 2 == 0:
        slices = tuple((None, None, -1) if d == axis else (None, None, 1)
                       for d in range(len(shape)))
        return graph.add(Op.SLICE, (node,), {"slices": slices})
    flat = graph.add(Op.RESHAPE, (node,), {"shape_to": (int(np.prod(shape)),)})
    return graph.add(Op.RESHAPE, (flat,), {"shape_to": shape})


@st.composite
def random_graphs(draw):
    """Random DAGs of elementwise ops, reductions (keepdims or not) and views over a base shape;
    every value keeps a shape broadcastable to the base one."""
    base = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    ndim = len(base)
    graph = Graph("random")
    dtype = np.dtype(draw(st.sampled_from(["f4", "f8"])))
    pool: list[int] = []
    # param 0 is the base shape; param 1 is read through a slice with step and a transpose
    pool.append(graph.add(Op.PARAM, (), {"index": 0, "shape": base, "dtype": dtype}))
    wide = tuple(reversed(base))[:-1] + (2 * base[0],) if ndim > 1 else (2 * base[0],)
    p1 = graph.add(Op.PARAM, (), {"index": 1, "shape": wide, "dtype": dtype})
    sliced = graph.add(Op.SLICE, (p1,), {"slices": tuple(
        (None, None, 2) if d == ndim - 1 else (None, None, 1) for d in range(ndim))})
    pool.append(graph.add(Op.TRANSPOSE, (sliced,), {"perm": tuple(reversed(range(ndim)))}))
    for _ in range(draw(st.integers(2, 10))):
        choice = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "reduce",
                                       "view"]))
        a = pool[draw(st.integers(0, len(pool) - 1))]
        if choice == "view":  # a view of a computed value that keeps its shape
            pool.append(_shape_keeping_view(graph, a, draw(st.integers(0, ndim - 1))))
        elif choice == "unary":
            pool.append(graph.add(draw(st.sampled_from(UNARY)), (a,)))
        elif choice == "binary":
            b = pool[draw(st.integers(0, len(pool) - 1))]
            shape = np.broadcast_shapes(graph.node(a).shape, graph.node(b).shape)
            op = draw(st.sampled_from(BINARY))
            pool.append(graph.add(op, (_to_shape(graph, a, shape), _to_shape(graph, b, shape))))
        else:
            axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 1), min_size=1))))
            keepdims = draw(st.booleans())
            op = draw(st.sampled_from(REDUCE))
            reduced = graph.add(op, (a,), {"axes": axes, "keepdims": keepdims})
            if not keepdims:  # back to a broadcastable shape through a reshape
                kept = tuple(1 if d in axes else e for d, e in enumerate(graph.node(a).shape))
                reduced = graph.add(Op.RESHAPE, (reduced,), {"shape_to": kept})
            pool.append(reduced)
    count = draw(st.integers(1, 3))
    graph.outputs = [pool[draw(st.integers(0, len(pool) - 1))] for _ in range(count)]
    args = (RNG.standard_normal(base).astype(dtype), RNG.standard_normal(wide).astype(dtype))
    return graph, args


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_random_graphs(case):
    graph, args = case
    check_program(graph, args)


def test_views_are_folded_over_the_final_roots():
    """A reshape that forces its operand into memory must not leave earlier readers of that
    operand folded over the old root (fusion and scheduling must agree on every layout)."""
    graph = Graph("views")
    graph.add(Op.PARAM, (), {"index": 0, "shape": (2, 4), "dtype": np.dtype("f4")})
    sliced = graph.add(Op.SLICE, (0,), {"slices": ((None, None, 1), (None, None, 2))})
    transposed = graph.add(Op.TRANSPOSE, (sliced,), {"perm": (1, 0)})
    reversed_rows = graph.add(Op.SLICE, (transposed,), {"slices": ((None, None, -1),
                                                                   (None, None, 1))})
    flat = graph.add(Op.RESHAPE, (transposed,), {"shape_to": (4,)})
    graph.outputs = [reversed_rows, graph.add(Op.EXP, (flat,))]
    check_program(graph, (np.arange(8, dtype=np.float32).reshape(2, 4),))


# ---------------------------------------------------------------- splitting full reductions

def _loop_kernels(program) -> list[LoopKernel]:
    return [s for s in program.steps if isinstance(s, LoopKernel)]


@pytest.mark.parametrize("name,fn,make_args", [
    ("sumsq", lambda x: np.sum(x * x), lambda: (f32(1 << 18),)),
    ("mean_and_max", lambda x: (x.mean(), x.max(), x.min()), lambda: (f32(3 << 16),)),
    ("scalar_param_after", lambda x, s: np.sum(x * s) / s + np.prod(x * 0 + 1.0),
     lambda: (f32(512, 512), np.float32(3.0))),
    ("full_sum_2d", lambda x: (x + 1).sum(), lambda: (f32(640, 320),)),
    ("int_sum", lambda x: (x * 2).sum(), lambda: (ints(1 << 17),)),
])
def test_big_full_reductions_split_into_partials_and_a_fold(name, fn, make_args):
    args = make_args()
    check_fn(fn, *args)
    graph = gj.jit(fn, target="reference").lower(*args).graph
    program = build_program(graph)
    partial, final = _loop_kernels(program)[:2]
    assert partial.loop_shape[0] == final.loop_shape[0] > 1
    assert partial.reduce_axes == (1,) and final.reduce_axes == (0,)
    assert not any(s.access.strides[1] for s in partial.stores)


def test_full_reductions_stay_whole_when_small_second_pass_or_argmax():
    small = gj.jit(lambda x: x.sum(), target="reference").lower(f32(1000)).graph
    assert len(build_program(small).steps) == 1
    x = f32(1 << 18)
    for fn in (lambda v: v.argmax(), lambda v: ((v - v.mean()) ** 2).sum()):
        graph = gj.jit(fn, target="reference").lower(x).graph
        program = build_program(graph)
        assert all(s.loop_shape == (1 << 18,) for s in _loop_kernels(program))
        check_program(graph, (x,))


def test_a_prime_length_full_reduction_is_not_split():
    x = f32(131101)   # prime: no divisor to split it into equal chunks
    graph = gj.jit(lambda v: v.sum(), target="reference").lower(x).graph
    assert len(build_program(graph).steps) == 1
