"""Unit tests of the fusion pass: which nodes share a kernel, and why fusion stops.

Graphs are traced through the whole pipeline (`target="reference"`, so no backend is involved)
and the grouping is checked through the Program that `build_program` makes of it."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from graphjit.compiler.ir import Graph
from graphjit.compiler.kernel import HostKernel, LoopKernel, MatmulKernel, Operand
from graphjit.compiler.ops import ELEMENTWISE, REDUCTIONS, VIEWS, Op
from graphjit.compiler.passes.fuse import (
    Layout, LoopSpace, apply_view, fuse, identity_layout, plan_fusion,
)
from graphjit.compiler.schedule import build_program
from workloads import chain, gelu, layernorm, mlp, softmax

RNG = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def optimized(fn, *args) -> Graph:
    return gj.jit(fn, target="reference").lower(*args).graph


def program_of(fn, *args):
    return build_program(optimized(fn, *args))


def kinds(program) -> list[str]:
    return [type(step).__name__ for step in program.steps]


def loads(kernel: LoopKernel) -> list:
    return [i.attrs["access"] for i in kernel.instrs if i.op is Operand.LOAD]


# ---------------------------------------------------------------- workloads



def log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))










@pytest.mark.parametrize("fn", [softmax, log_softmax])
def test_softmax_family_is_one_row_kernel_reading_input_once(fn):
    program = program_of(fn, f32(8, 16))
    assert kinds(program) == ["LoopKernel"]
    (kernel,) = program.steps
    assert kernel.loop_shape == (8, 16) and kernel.reduce_axes == (1,)
    input_loads = [a for a in loads(kernel) if a.buffer == program.buffer_of_param(0).index]
    assert len(input_loads) == 1  # deduplicated: one read of x per element


def test_layernorm_is_one_kernel_with_two_reductions():
    program = program_of(layernorm, f32(8, 16), f32(16), f32(16))
    assert len(program.steps) <= 2
    (kernel,) = program.steps
    reductions = [i for i in kernel.instrs if i.op in REDUCTIONS]
    assert len(reductions) == 2


@pytest.mark.parametrize("fn", [gelu, chain])
def test_elementwise_chain_is_one_kernel(fn):
    program = program_of(fn, f32(64))
    assert kinds(program) == ["LoopKernel"]
    (kernel,) = program.steps
    assert kernel.reduce_axes == ()
    assert len(loads(kernel)) == 1


def test_mlp_is_two_matmuls_with_fused_epilogues():
    program = program_of(mlp, f32(8, 16), f32(16, 6), f32(6), f32(6, 3), f32(3))
    assert kinds(program) == ["MatmulKernel", "MatmulKernel"]
    first, second = program.steps
    assert {i.op for i in first.epilogue.instrs} >= {Op.ADD, Op.MAXIMUM}
    assert Op.ADD in {i.op for i in second.epilogue.instrs}
    # the raw products are never stored apart: the epilogue updates C in place
    assert second.out == program.outputs[0]
    assert first.out == second.a.buffer


def test_transposed_matmul_operand_is_folded_into_strides():
    def fn(a, b):
        return a.T @ b

    program = program_of(fn, f32(5, 3), f32(5, 4))
    assert kinds(program) == ["MatmulKernel"]
    (kernel,) = program.steps
    assert kernel.a.strides == (1, 3)  # A is (5,3) C-contiguous, read as its transpose
    assert (kernel.m, kernel.n, kernel.k) == (3, 4, 5)


def test_multi_output_kernel_shares_producers():
    def fn(x):
        h = np.exp(x) * 2
        return h + 1, h - 1

    program = program_of(fn, f32(32))
    assert kinds(program) == ["LoopKernel"]
    assert len(program.steps[0].stores) == 2


def test_siblings_reading_the_same_input_share_a_kernel():
    def fn(x):
        return np.exp(x), np.sin(x)

    program = program_of(fn, f32(32))
    assert kinds(program) == ["LoopKernel"]


def test_reductions_over_different_axes_stop_fusion_with_a_reason():
    def fn(x):
        rows = x.sum(axis=1, keepdims=True)
        return (x - rows).sum(axis=0)

    graph = optimized(fn, f32(4, 6))
    program = build_program(graph)
    assert len(program.steps) == 2
    reasons = [r for rs in program.notes.values() for r in rs]
    assert any("reductions over different loops" in r for r in reasons)


def test_host_ops_get_host_kernels_and_their_view_inputs_are_copied():
    def fn(x, i):
        return np.take(x.T, i, axis=0) * 2

    program = program_of(fn, f32(4, 6), np.array([0, 2, 5]))
    (host,) = [s for s in program.steps if isinstance(s, HostKernel)]
    assert host.op is Op.TAKE
    (copy,) = [s for s in program.steps if isinstance(s, LoopKernel)
               and any(st.access.buffer == host.inputs[0] for st in s.stores)]
    assert [i.op for i in copy.instrs] == [Operand.LOAD]   # x.T materialised by a strided copy
    assert loads(copy)[0].strides == (1, 6)


def test_view_of_in_kernel_value_that_reindexes_it_is_a_boundary():
    def fn(x):
        y = np.exp(x)
        return y.T + y

    program = program_of(fn, f32(5, 5))
    assert len(program.steps) == 2
    assert all(isinstance(s, LoopKernel) for s in program.steps)


def test_fuse_pass_annotates_groups_and_never_creates_cycles():
    graph = optimized(layernorm, f32(8, 16), f32(16), f32(16))
    fused = fuse(graph)
    for node_id, node in fused.items():
        group = fused.meta(node_id).get("group")
        computed = node.op in ELEMENTWISE or node.op in REDUCTIONS
        if computed:
            assert isinstance(group, int)
        if node.op is Op.PARAM:
            assert group is None
    # every group reads only groups that run before it
    for node_id, node in fused.items():
        group = fused.meta(node_id).get("group")
        for arg in node.args:
            producer = fused.meta(arg).get("group")
            if group is not None and producer is not None:
                assert producer <= group


def test_plan_reports_every_group_kind():
    def fn(x, w, i):
        h = np.maximum(x @ w, 0)
        return np.take(h, i, axis=0).sum(axis=1)

    plan = plan_fusion(optimized(fn, f32(4, 3), f32(3, 5), np.array([1, 0])))
    group_kinds = [g.kind for g in plan.groups]
    assert set(group_kinds) == {"matmul", "host", "loop"}
    assert group_kinds.index("matmul") < group_kinds.index("host") < len(group_kinds) - 1
    assert group_kinds[-1] == "loop"   # the row sum after the gather


# ---------------------------------------------------------------- layouts and loop spaces

@pytest.mark.parametrize("make_view", [
    lambda a: a.T,
    lambda a: a[::2, 1:],
    lambda a: a[::-1],
    lambda a: a.reshape(3, 2, 4),
    lambda a: np.broadcast_to(a[:, :1], (6, 4)),
])
def test_layouts_agree_with_numpy_views(make_view):
    base = np.arange(24.0).reshape(6, 4)
    view = make_view(base)
    current = identity_layout(0, (6, 4))
    # apply the same view through the IR's view ops, as the tracer records them
    traced = optimized(lambda a: make_view(a) + 0, base)
    for _, n in traced.items():
        if n.op in VIEWS:
            current = apply_view(n, current)
    got = np.lib.stride_tricks.as_strided(base.reshape(-1)[current.offset:], current.shape,
                                          tuple(s * 8 for s in current.strides))
    np.testing.assert_array_equal(got, view)


def test_reshape_of_non_contiguous_view_is_not_expressible():
    graph = optimized(lambda a: a.T.reshape(-1) * 2, f32(3, 4))
    reshape = next(n for _, n in graph.items() if n.op is Op.RESHAPE)
    transposed = Layout(0, (4, 3), (1, 4), 0)
    assert apply_view(reshape, transposed) is None


def test_loop_space_node_dims():
    space = LoopSpace((8, 16), (1,))
    assert space.node_dims((8, 16)) == (0, 1)
    assert space.node_dims((8, 1)) == (0, None)
    assert space.node_dims((8,)) == (0,)
    assert space.node_dims((16,)) is None
    assert LoopSpace((8, 16)).node_dims((8, 1)) is None


def test_program_listing_and_fusion_report_name_kernels_and_sources():
    from graphjit.compiler.report import format_program, fusion_report

    graph = optimized(softmax, f32(4, 8))
    program = build_program(graph)
    listing = format_program(program)
    assert "k0: loop (4,8) reduce=(1)" in listing
    assert "= load b0[s=(8,1) o=0]" in listing
    assert "reduce_max v0" in listing and "store b1[s=(8,1) o=0] <- v" in listing
    report = fusion_report(graph, program)
    assert "k0 (loop (4,8), reduce axes (1))" in report
    assert "workloads.py:" in report   # the source lines of the traced function
    assert "boundaries: none" in report


def test_every_step_type_is_produced_for_a_mixed_graph():
    def fn(x, w, i):
        return np.take(x @ w, i, axis=0) + 1

    program = program_of(fn, f32(4, 3), f32(3, 5), np.array([1, 0]))
    assert {type(s) for s in program.steps} == {MatmulKernel, HostKernel, LoopKernel}


def test_a_long_chain_of_dependent_reductions_is_cut_into_bounded_kernels():
    """LLVM's time on one function grows much faster than its number of loops: a chain of 40
    dependent reductions becomes kernels of at most MAX_KERNEL_REDUCTIONS reductions each."""
    from graphjit.compiler.passes.fuse import MAX_KERNEL_REDUCTIONS

    def drift(x):
        for _ in range(40):
            x = x * 1.0001 + x.mean() * 1e-4
        return x

    x = np.random.default_rng(0).standard_normal((8, 64))
    program = gj.jit(drift).lower(x).as_text("program")
    kernels = program.split("\nk")[1:]
    assert len(kernels) >= -(-40 // MAX_KERNEL_REDUCTIONS)
    assert all(k.count(" sum ") <= MAX_KERNEL_REDUCTIONS for k in kernels)
    np.testing.assert_allclose(gj.jit(drift)(x), drift(x), rtol=1e-12)
