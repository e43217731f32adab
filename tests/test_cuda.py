"""The CUDA backend (runtime/cuda) in Numba's CUDA simulator, against NumPy.

Without a GPU these run in the simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1), where
every CUDA thread is a Python thread: shapes are tiny, and the launch sizes shrink with them (see
runtime/cuda/launch.py), so the tree reductions and matmul tiles are still exercised across
several threads, blocks and tiles. Programs are built by hand (the kernel.py dataclasses) so each
kernel kind is tested on its own; the jit-level tests run the shared differential cases of
tests/helpers.py with target="cuda". Tests marked `gpu` need a real device.
"""
from __future__ import annotations

import numpy as np
import pytest

from graphjit.compiler.errors import CompileError
from graphjit.compiler.ir import Attrs, Graph
from graphjit.compiler.kernel import (
    Access, Buffer, BufferKind, HostKernel, Instr, Level, LoopKernel, MatmulKernel, Program,
    Operand, Store,
)
from graphjit.compiler.ops import LOOP_ELEMENTWISE, OPS, Op
from workloads import gelu, layernorm, mlp, softmax

cuda_backend = pytest.importorskip("graphjit.runtime.cuda")
from graphjit.runtime.cuda import KERNEL_CACHE, CUDABackend  # noqa: E402
from graphjit.runtime.cuda.device import simulator_enabled  # noqa: E402
from graphjit.runtime.cuda.lowering import missing_lowerings  # noqa: E402

pytestmark = pytest.mark.cuda

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
I32, I64, BOOL = np.dtype(np.int32), np.dtype(np.int64), np.dtype(bool)


def _has_gpu() -> bool:
    if simulator_enabled():
        return False
    try:
        from numba import cuda
        return cuda.is_available()
    except Exception:
        return False


gpu = pytest.mark.skipif(not _has_gpu(), reason="needs a real CUDA GPU (none here, or the "
                                                 "simulator is on)")


# ---------------------------------------------------------------- building Programs by hand

def contiguous(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


class ProgramBuilder:
    """Buffers and one or more steps; `run(*inputs)` compiles with CUDABackend and runs."""

    def __init__(self) -> None:
        self.buffers: list[Buffer] = []
        self.steps: list = []
        self.outputs: list[int] = []
        self.graph = Graph()
        self.n_params = 0

    def buffer(self, shape, dtype, kind=BufferKind.TEMP, slot=None, value=None) -> int:
        index = len(self.buffers)
        param = None
        if kind is BufferKind.PARAM:
            param, self.n_params = self.n_params, self.n_params + 1
        self.buffers.append(Buffer(index, index, tuple(shape), np.dtype(dtype), kind, param,
                                   slot, value))
        if kind is BufferKind.OUTPUT:
            self.outputs.append(index)
        return index

    def program(self) -> Program:
        return Program(self.graph, self.buffers, self.steps, self.outputs)

    def run(self, *inputs):
        executable = CUDABackend().compile(self.program(), {})
        return executable.run(list(inputs)), executable


def load(buffer: int, strides, offset=0, dtype=F32, level=Level.FULL) -> Instr:
    return Instr(Operand.LOAD, (), np.dtype(dtype), level,
                 Attrs({"access": Access(buffer, tuple(strides), offset)}))


def const(value, dtype) -> Instr:
    return Instr(Operand.CONST, (), np.dtype(dtype), Level.FULL, Attrs({"value": value}))


def op(o: Op, args, result_dtype, level=Level.FULL, **attrs) -> Instr:
    return Instr(o, tuple(args), np.dtype(result_dtype), level, Attrs(attrs))


def assert_close(actual, expected, dtype=None):
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    if expected.dtype.kind == "f":
        tol = 2e-5 if expected.dtype == F32 else 1e-11
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol, equal_nan=True)
    else:
        np.testing.assert_array_equal(actual, expected)


# ---------------------------------------------------------------- elementwise ops

def values_for(dtype: np.dtype, rng: np.random.Generator, n: int) -> np.ndarray:
    if dtype.kind == "f":
        base = rng.uniform(-4, 4, n).astype(dtype)
        base[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 2.5][: min(6, n)]
        return base
    if dtype.kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    return rng.integers(-7, 8, n).astype(dtype)


UNARY_OPS = sorted((o for o in LOOP_ELEMENTWISE if OPS[o].arity == 1 and o is not Op.CAST),
                   key=lambda o: o.value)
BINARY_OPS = sorted((o for o in LOOP_ELEMENTWISE if OPS[o].arity == 2), key=lambda o: o.value)


def loop_dtype_ok(o: Op, dtype: np.dtype) -> bool:
    """The (op, dtype) pairs NumPy has a loop for, without casting."""
    try:
        types = OPS[o].ufunc.resolve_dtypes((dtype,) * OPS[o].arity + (None,))
    except Exception:
        return False
    return all(np.dtype(t) == dtype for t in types[:-1])


def run_elementwise(o: Op, arrays: list[np.ndarray], attrs=None) -> tuple[np.ndarray, np.ndarray]:
    shape = arrays[0].shape
    b = ProgramBuilder()
    params = [b.buffer(a.shape, a.dtype, BufferKind.PARAM) for a in arrays]
    expected = np.asarray(OPS[o].impl(*arrays, **(attrs or {})))
    out = b.buffer(shape, expected.dtype, BufferKind.OUTPUT)
    instrs = [load(p, contiguous(shape), dtype=a.dtype) for p, a in zip(params, arrays)]
    instrs.append(op(o, range(len(arrays)), expected.dtype, **(attrs or {})))
    b.steps.append(LoopKernel("k0", shape, (), tuple(instrs),
                              (Store(len(arrays), Access(out, contiguous(shape))),)))
    (actual,), _ = b.run(*arrays)
    return actual, expected


def test_every_elementwise_op_has_a_cuda_lowering():
    assert missing_lowerings() == frozenset()


def op_dtype_params(ops):
    return [pytest.param(o, dtype, id=f"{o.value}-{dtype}") for o in ops
            for dtype in (F32, F64, I32, I64, BOOL) if loop_dtype_ok(o, dtype)]


@pytest.mark.parametrize("o,dtype", op_dtype_params(UNARY_OPS))
def test_unary_op_matches_numpy(o, dtype):
    x = values_for(dtype, np.random.default_rng(1), 9)
    with np.errstate(all="ignore"):
        actual, expected = run_elementwise(o, [x])
    assert_close(actual, expected)


@pytest.mark.parametrize("o,dtype", op_dtype_params(BINARY_OPS))
def test_binary_op_matches_numpy(o, dtype):
    rng = np.random.default_rng(2)
    x, y = values_for(dtype, rng, 12), values_for(dtype, rng, 12)[::-1].copy()
    if dtype.kind in "iu":
        y[:3] = [0, -3, 2]          # division by zero and negative divisors
        if o is Op.POW:
            y = np.abs(y) % 5       # NumPy rejects negative integer exponents
    with np.errstate(all="ignore"):
        actual, expected = run_elementwise(o, [x, y])
    assert_close(actual, expected)


@pytest.mark.parametrize("source", [F32, F64, I32, I64, BOOL], ids=str)
@pytest.mark.parametrize("target", [F32, F64, I32, I64, BOOL], ids=str)
def test_cast_matches_numpy(source, target):
    x = values_for(source, np.random.default_rng(3), 10)
    if source.kind == "f" and target.kind in "iu":
        x = x[np.isfinite(x)]      # NumPy leaves NaN/inf -> int undefined
    with np.errstate(all="ignore"):
        actual, expected = run_elementwise(Op.CAST, [x], {"dtype": target})
    assert_close(actual, expected)


def test_where_selects_like_numpy():
    rng = np.random.default_rng(4)
    c = rng.integers(0, 2, 7).astype(bool)
    a, b = values_for(F64, rng, 7), values_for(F64, rng, 7)
    actual, expected = run_elementwise(Op.WHERE, [c, a, b])
    assert_close(actual, expected)


def test_broadcast_transposed_and_offset_accesses():
    # out[i, j] = x.T[i, j] (transposed read) * row[j] (zero stride) + y[1::2][i, j] (offset/step)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3)).astype(F32)
    row = rng.standard_normal(4).astype(F32)
    y = rng.standard_normal((7, 4)).astype(F32)
    b = ProgramBuilder()
    px, pr, py = (b.buffer(a.shape, F32, BufferKind.PARAM) for a in (x, row, y))
    out = b.buffer((3, 4), F32, BufferKind.OUTPUT)
    instrs = (load(px, (1, 3)), load(pr, (0, 1)), op(Op.MUL, (0, 1), F32),
              load(py, (8, 1), offset=4), op(Op.ADD, (2, 3), F32))
    b.steps.append(LoopKernel("k0", (3, 4), (), instrs, (Store(4, Access(out, (4, 1))),)))
    (actual,), executable = b.run(x, row, y)
    assert_close(actual, x.T * row + y[1::2])
    assert "kernel_k0" in executable.texts["cuda"]


def test_multi_output_kernel_and_collapsed_loop():
    x = np.arange(24, dtype=F64).reshape(2, 3, 4)
    b = ProgramBuilder()
    px = b.buffer(x.shape, F64, BufferKind.PARAM)
    o1 = b.buffer(x.shape, F64, BufferKind.OUTPUT)
    o2 = b.buffer(x.shape, BOOL, BufferKind.OUTPUT)
    s = contiguous(x.shape)
    instrs = (load(px, s, dtype=F64), const(2.0, F64), op(Op.MUL, (0, 1), F64),
              const(10.0, F64), op(Op.GT, (2, 3), BOOL))
    b.steps.append(LoopKernel("k0", x.shape, (), instrs,
                              (Store(2, Access(o1, s)), Store(4, Access(o2, s)))))
    (a1, a2), executable = b.run(x)
    assert_close(a1, x * 2)
    assert_close(a2, x * 2 > 10)
    # every access walks the three dims contiguously: one flat index, no divisions
    assert "rest" not in executable.texts["cuda"]


# ---------------------------------------------------------------- reductions

REDUCE_OPS = [Op.SUM, Op.PROD, Op.REDUCE_MAX, Op.REDUCE_MIN]


def run_reduction(o: Op, x: np.ndarray, axes: tuple[int, ...], keepdims: bool):
    b = ProgramBuilder()
    px = b.buffer(x.shape, x.dtype, BufferKind.PARAM)
    if o in (Op.ARGMAX, Op.ARGMIN):
        expected = OPS[o].impl(x, axis=axes[0], keepdims=keepdims)
        attrs = {"axis": axes[0], "keepdims": keepdims}
    else:
        expected = OPS[o].impl(x, axes=axes, keepdims=keepdims)
        attrs = {"axes": axes, "keepdims": keepdims}
    out = b.buffer(expected.shape, expected.dtype, BufferKind.OUTPUT)
    kept = tuple(1 if d in axes else n for d, n in enumerate(x.shape))
    store_strides = tuple(0 if d in axes else s for d, s in enumerate(contiguous(kept)))
    instrs = (load(px, contiguous(x.shape), dtype=x.dtype),
              op(o, (0,), expected.dtype, Level.OUTER, **attrs))
    b.steps.append(LoopKernel("k0", x.shape, axes, instrs, (Store(1, Access(out, store_strides)),)))
    (actual,), executable = b.run(x)
    return actual, expected


@pytest.mark.parametrize("axes", [(0,), (1,), (2,), (0, 2), (0, 1, 2)], ids=str)
@pytest.mark.parametrize("o", REDUCE_OPS, ids=lambda o: o.value)
def test_reduction_over_axes(o, axes):
    rng = np.random.default_rng(6)
    x = rng.uniform(0.5, 1.5, (3, 4, 5)).astype(F32)
    actual, expected = run_reduction(o, x, axes, keepdims=False)
    assert_close(actual, expected)


@pytest.mark.parametrize("dtype", [F64, I32, I64, BOOL], ids=str)
@pytest.mark.parametrize("o", [Op.REDUCE_MAX, Op.REDUCE_MIN, Op.ARGMAX, Op.ARGMIN],
                         ids=lambda o: o.value)
def test_extrema_and_arg_reductions_by_dtype(o, dtype):
    x = values_for(dtype, np.random.default_rng(7), 30).reshape(3, 10)
    if dtype.kind == "f":
        x[1] = np.abs(x[1])
        x[1, 4] = x[1, 7] = np.nan      # NaN wins, the first one for arg reductions
        x[2] = 1.5                       # ties: the first index
        x[0] = np.where(np.isnan(x[0]), 0.0, x[0])
    actual, expected = run_reduction(o, x, (1,), keepdims=True)
    assert_close(actual, expected)


def test_float32_sum_of_many_values_is_accurate():
    x = np.random.default_rng(8).uniform(0, 1, (2, 3000)).astype(F32)
    actual, expected = run_reduction(Op.SUM, x, (1,), keepdims=False)
    exact = x.astype(np.float64).sum(axis=1)
    assert np.all(np.abs(actual - exact) <= 1e-6 * exact)


def softmax_program(shape, dtype=F32) -> ProgramBuilder:
    b = ProgramBuilder()
    px = b.buffer(shape, dtype, BufferKind.PARAM)
    out = b.buffer(shape, dtype, BufferKind.OUTPUT)
    last = (len(shape) - 1,)
    s = contiguous(shape)
    instrs = (load(px, s, dtype=dtype),
              op(Op.REDUCE_MAX, (0,), dtype, Level.OUTER, axes=last, keepdims=True),
              op(Op.SUB, (0, 1), dtype), op(Op.EXP, (2,), dtype),
              op(Op.SUM, (3,), dtype, Level.OUTER, axes=last, keepdims=True),
              op(Op.DIV, (3, 4), dtype))
    b.steps.append(LoopKernel("softmax", shape, last, instrs, (Store(5, Access(out, s)),)))
    return b


def test_softmax_is_one_row_kernel():
    x = np.random.default_rng(9).standard_normal((5, 13)).astype(F32)
    x[2, 3] = 80.0       # exp would overflow without the max subtracted
    (actual,), executable = softmax_program(x.shape).run(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    assert_close(actual, e / e.sum(axis=-1, keepdims=True))
    assert executable.texts["cuda"].count("def kernel_") == 1


def test_layernorm_row_kernel_with_gamma_beta_and_outer_values():
    rng = np.random.default_rng(10)
    shape = (4, 11)
    x = rng.standard_normal(shape).astype(F32)
    gamma, beta = rng.standard_normal(11).astype(F32), rng.standard_normal(11).astype(F32)
    b = ProgramBuilder()
    px, pg, pb = (b.buffer(a.shape, F32, BufferKind.PARAM) for a in (x, gamma, beta))
    out = b.buffer(shape, F32, BufferKind.OUTPUT)
    mean_out = b.buffer((4, 1), F32, BufferKind.OUTPUT)
    s = contiguous(shape)
    axes = {"axes": (1,), "keepdims": True}
    instrs = (
        load(px, s),                                            # 0
        op(Op.SUM, (0,), F32, Level.OUTER, **axes),             # 1
        const(1.0 / 11, F32),                                   # 2
        op(Op.MUL, (1, 2), F32, Level.OUTER),                   # 3 mean
        op(Op.SUB, (0, 3), F32),                                # 4
        op(Op.MUL, (4, 4), F32),                                # 5
        op(Op.SUM, (5,), F32, Level.OUTER, **axes),             # 6
        op(Op.MUL, (6, 2), F32, Level.OUTER),                   # 7 var
        const(1e-5, F32),                                       # 8
        op(Op.ADD, (7, 8), F32, Level.OUTER),                   # 9
        op(Op.SQRT, (9,), F32, Level.OUTER),                    # 10
        op(Op.DIV, (4, 10), F32),                               # 11
        load(pg, (0, 1)), op(Op.MUL, (11, 12), F32),            # 12, 13
        load(pb, (0, 1)), op(Op.ADD, (13, 14), F32),            # 14, 15
    )
    stores = (Store(15, Access(out, s)), Store(3, Access(mean_out, (1, 0))))
    b.steps.append(LoopKernel("layernorm", shape, (1,), instrs, stores))
    (actual, mean), _ = b.run(x, gamma, beta)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    assert_close(actual, (x - mu) / np.sqrt(var + np.float32(1e-5)) * gamma + beta)
    assert_close(mean, mu)


# ---------------------------------------------------------------- matmul

def matmul_program(a_shape, b_shape, dtype, transpose_a=False, transpose_b=False,
                   epilogue=None, batch=()):
    """C = A @ B with A/B stored transposed when asked; `epilogue(builder, out) -> LoopKernel`."""
    b = ProgramBuilder()
    m, k = a_shape[-2:]
    n = b_shape[-1]
    stored_a = (*batch, k, m) if transpose_a else (*batch, m, k)
    stored_b = (*batch, n, k) if transpose_b else (*batch, k, n)
    pa = b.buffer(stored_a, dtype, BufferKind.PARAM)
    pb = b.buffer(stored_b, dtype, BufferKind.PARAM)
    sa, sb = contiguous(stored_a), contiguous(stored_b)
    nb = len(batch)
    a_strides = (*sa[:nb], sa[nb + 1], sa[nb]) if transpose_a else sa
    b_strides = (*sb[:nb], sb[nb + 1], sb[nb]) if transpose_b else sb
    kind = BufferKind.OUTPUT if epilogue is None else BufferKind.TEMP
    out = b.buffer((*batch, m, n), dtype, kind)
    kernel_epilogue = epilogue(b, out) if epilogue else None
    b.steps.append(MatmulKernel("mm", Access(pa, a_strides), Access(pb, b_strides), out, batch,
                                m, n, k, np.dtype(dtype), kernel_epilogue))
    return b


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("transpose_a,transpose_b", [(False, False), (True, False),
                                                     (False, True), (True, True)])
def test_matmul_with_transposed_operands(dtype, transpose_a, transpose_b):
    rng = np.random.default_rng(11)
    m, k, n = 5, 7, 6
    a = rng.standard_normal((m, k)).astype(dtype)
    bm = rng.standard_normal((k, n)).astype(dtype)
    builder = matmul_program((m, k), (k, n), dtype, transpose_a, transpose_b)
    args = [np.ascontiguousarray(a.T) if transpose_a else a,
            np.ascontiguousarray(bm.T) if transpose_b else bm]
    (actual,), executable = builder.run(*args)
    assert_close(actual, a @ bm)
    assert "tile_a" in executable.texts["cuda"]


def test_batched_matmul():
    rng = np.random.default_rng(12)
    a = rng.standard_normal((2, 3, 5, 4)).astype(F32)
    bm = rng.standard_normal((2, 3, 4, 3)).astype(F32)
    builder = matmul_program((5, 4), (4, 3), F32, batch=(2, 3))
    (actual,), _ = builder.run(a, bm)
    assert_close(actual, a @ bm)


def bias_relu_epilogue(bias_shape, m, n, dtype=F32):
    def build(b: ProgramBuilder, out: int) -> LoopKernel:
        bias = b.buffer(bias_shape, dtype, BufferKind.PARAM)
        result = b.buffer((m, n), dtype, BufferKind.OUTPUT)
        instrs = (load(out, (n, 1), dtype=dtype), load(bias, (0, 1), dtype=dtype),
                  op(Op.ADD, (0, 1), dtype), const(0.0, dtype), op(Op.MAXIMUM, (2, 3), dtype))
        return LoopKernel("epilogue", (m, n), (), instrs, (Store(4, Access(result, (n, 1))),))
    return build


def test_matmul_bias_relu_epilogue_is_fused():
    rng = np.random.default_rng(13)
    m, k, n = 6, 9, 5
    x, w = rng.standard_normal((m, k)).astype(F32), rng.standard_normal((k, n)).astype(F32)
    bias = rng.standard_normal(n).astype(F32)
    builder = matmul_program((m, k), (k, n), F32, epilogue=bias_relu_epilogue((n,), m, n))
    (actual,), executable = builder.run(x, w, bias)
    assert_close(actual, np.maximum(x @ w + bias, 0))
    text = executable.texts["cuda"]
    assert text.count("def kernel_") == 1          # the epilogue runs in the output pass
    assert "b2[" not in text.split("product = ")[1].split("\n")[1]   # product not stored


def test_matmul_epilogue_reading_the_product_transposed_runs_separately():
    rng = np.random.default_rng(14)
    m = k = n = 4
    x, w = rng.standard_normal((m, k)).astype(F64), rng.standard_normal((k, n)).astype(F64)

    def build(b: ProgramBuilder, out: int) -> LoopKernel:
        result = b.buffer((m, n), F64, BufferKind.OUTPUT)
        instrs = (load(out, (n, 1), dtype=F64), load(out, (1, n), dtype=F64),
                  op(Op.ADD, (0, 1), F64))
        return LoopKernel("epilogue", (m, n), (), instrs, (Store(2, Access(result, (n, 1))),))

    (actual,), executable = matmul_program((m, k), (k, n), F64, epilogue=build).run(x, w)
    product = x @ w
    assert_close(actual, product + product.T)
    assert executable.texts["cuda"].count("def kernel_") == 2


# ---------------------------------------------------------------- memory, host steps, calls

def test_temp_buffers_share_a_slot_and_are_reused_across_calls():
    # t1 = x * 2 (slot 0); t2 = t1 + 1 (slot 1); t3 = t2 * t2 (slot 0 again); out = t3 - x
    shape = (3, 4)
    s = contiguous(shape)
    b = ProgramBuilder()
    px = b.buffer(shape, F32, BufferKind.PARAM)
    t1 = b.buffer(shape, F32, slot=0)
    t2 = b.buffer(shape, F64, slot=1)
    t3 = b.buffer(shape, F32, slot=0)
    out = b.buffer(shape, F32, BufferKind.OUTPUT)
    b.steps += [
        LoopKernel("k0", shape, (), (load(px, s), const(2.0, F32), op(Op.MUL, (0, 1), F32)),
                   (Store(2, Access(t1, s)),)),
        LoopKernel("k1", shape, (), (load(t1, s), op(Op.CAST, (0,), F64, dtype=F64),
                                     const(1.0, F64), op(Op.ADD, (1, 2), F64)),
                   (Store(3, Access(t2, s)),)),
        LoopKernel("k2", shape, (), (load(t2, s, dtype=F64), op(Op.MUL, (0, 0), F64),
                                     op(Op.CAST, (1,), F32, dtype=F32)),
                   (Store(2, Access(t3, s)),)),
        LoopKernel("k3", shape, (), (load(t3, s), load(px, s), op(Op.SUB, (0, 1), F32)),
                   (Store(2, Access(out, s)),)),
    ]
    executable = CUDABackend().compile(b.program(), {})
    for call in range(2):
        x = np.random.default_rng(call).standard_normal(shape).astype(F32)
        (actual,) = executable.run([x])
        expected = ((x.astype(F64) * 2 + 1) ** 2).astype(F32) - x
        assert_close(actual, expected)
        assert executable.workspaces_made == 1      # nothing reallocated per call


def test_host_step_runs_numpy_between_kernels():
    # out = take(x * 2, idx, axis=0) + 1: the gather is a HostKernel between two kernels
    x = np.arange(12, dtype=F32).reshape(4, 3)
    idx = np.array([3, 0, 0, 2], dtype=np.int64)
    b = ProgramBuilder()
    gx = b.graph.add(Op.PARAM, (), {"shape": x.shape, "dtype": F32})
    gi = b.graph.add(Op.PARAM, (), {"shape": idx.shape, "dtype": np.dtype(np.int64)})
    gt = b.graph.add(Op.TAKE, (gx, gi), {"axis": 0})
    px = b.buffer(x.shape, F32, BufferKind.PARAM)
    pi = b.buffer(idx.shape, np.int64, BufferKind.PARAM)
    doubled = b.buffer(x.shape, F32)
    taken = b.buffer((4, 3), F32)
    out = b.buffer((4, 3), F32, BufferKind.OUTPUT)
    s = contiguous((4, 3))
    b.steps += [
        LoopKernel("k0", x.shape, (), (load(px, s), op(Op.ADD, (0, 0), F32)),
                   (Store(1, Access(doubled, s)),)),
        HostKernel("h1", gt, Op.TAKE, Attrs({"axis": 0}), (doubled, pi), taken),
        LoopKernel("k2", (4, 3), (), (load(taken, s), const(1.0, F32), op(Op.ADD, (0, 1), F32)),
                   (Store(2, Access(out, s)),)),
    ]
    (actual,), executable = b.run(x, idx)
    assert_close(actual, np.take(x * 2, idx, axis=0) + 1)
    assert "host step h1" in executable.texts["cuda"]


def test_const_buffers_and_scalar_params():
    rng = np.random.default_rng(15)
    table = rng.standard_normal((2, 3))
    b = ProgramBuilder()
    scale = b.buffer((), F64, BufferKind.PARAM)
    pc = b.buffer((2, 3), F64, BufferKind.CONST, value=table)
    out = b.buffer((2, 3), F64, BufferKind.OUTPUT)
    instrs = (load(pc, (3, 1), dtype=F64), load(scale, (0, 0), dtype=F64),
              op(Op.MUL, (0, 1), F64))
    b.steps.append(LoopKernel("k0", (2, 3), (), instrs, (Store(2, Access(out, (3, 1))),)))
    (actual,), _ = b.run(2.5)
    assert_close(actual, table * 2.5)


def test_device_arrays_in_give_device_arrays_out():
    from numba import cuda

    x = np.random.default_rng(16).standard_normal((3, 7)).astype(F32)
    builder = softmax_program(x.shape)
    executable = CUDABackend().compile(builder.program(), {})
    (on_device,) = executable.run([cuda.to_device(x)])
    assert not isinstance(on_device, np.ndarray)
    assert on_device.shape == x.shape
    (on_host,) = executable.run([x])
    assert isinstance(on_host, np.ndarray)
    assert_close(on_device.copy_to_host(), on_host)


def test_empty_loop_space_launches_nothing():
    b = ProgramBuilder()
    px = b.buffer((0, 3), F32, BufferKind.PARAM)
    out = b.buffer((0, 3), F32, BufferKind.OUTPUT)
    b.steps.append(LoopKernel("k0", (0, 3), (), (load(px, (3, 1)), op(Op.NEG, (0,), F32)),
                              (Store(1, Access(out, (3, 1))),)))
    (actual,), _ = b.run(np.zeros((0, 3), F32))
    assert actual.shape == (0, 3)


def test_kernels_are_cached_by_source_and_shape():
    x = np.ones((2, 5), F32)
    softmax_program(x.shape).run(x)
    misses = KERNEL_CACHE.misses
    softmax_program(x.shape).run(x)            # same kernel, new Program: no compile
    assert KERNEL_CACHE.misses == misses
    softmax_program((3, 5)).run(np.ones((3, 5), F32))   # new shape: compiled
    assert KERNEL_CACHE.misses == misses + 1


def test_compile_failures_are_graphjit_errors():
    b = ProgramBuilder()
    px = b.buffer((3,), F32, BufferKind.PARAM)
    out = b.buffer((3,), F32, BufferKind.OUTPUT)
    bad = Instr(Op.MATMUL, (0,), F32)       # not an elementwise op: no CUDA lowering
    b.steps.append(LoopKernel("k0", (3,), (), (load(px, (1,)), bad),
                              (Store(1, Access(out, (1,))),)))
    with pytest.raises(CompileError, match="k0"):
        b.run(np.ones(3, F32))


def test_texts_show_the_source_and_explain_missing_ptx():
    x = np.ones((2, 4), F32)
    _, executable = softmax_program(x.shape).run(x)
    assert "shfl_down_sync" in executable.texts["cuda"]
    if simulator_enabled():
        assert "simulator" in executable.texts["ptx"]
    else:
        assert ".target sm_" in executable.texts["ptx"]


# ---------------------------------------------------------------- through gj.jit

def _jit_ready() -> bool:
    try:
        import graphjit.compiler.schedule  # noqa: F401
        import graphjit.frontend.numpy_api  # noqa: F401
    except ImportError:
        return False
    return True


jit_ready = pytest.mark.skipif(not _jit_ready(), reason="the scheduler or frontend is not "
                                                        "importable yet")


def workload_args():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((4, 9)).astype(F32)
    v = rng.standard_normal(9).astype(F32)
    w1, b1 = rng.standard_normal((9, 6)).astype(F32), rng.standard_normal(6).astype(F32)
    w2, b2 = rng.standard_normal((6, 3)).astype(F32), rng.standard_normal(3).astype(F32)
    return {"softmax": (softmax, (x,)), "layernorm": (layernorm, (x, v, v[::-1].copy())),
            "mlp": (mlp, (x, w1, b1, w2, b2)), "gelu": (gelu, (x,))}


@jit_ready
@pytest.mark.parametrize("name", ["softmax", "layernorm", "mlp", "gelu"])
def test_workloads_through_jit(name):
    from helpers import check_against_numpy

    fn, args = workload_args()[name]
    check_against_numpy(fn, *args, target="cuda")


@jit_ready
def test_jit_with_device_arrays_returns_device_arrays():
    import graphjit as gj
    from numba import cuda

    fn, args = workload_args()["mlp"]
    jitted = gj.jit(fn, target="cuda")
    on_device = jitted(*[cuda.to_device(a) for a in args])
    assert not isinstance(on_device, np.ndarray)
    assert_close(on_device.copy_to_host(), fn(*args))


@jit_ready
def test_jit_lower_shows_cuda_and_ptx_stages():
    import graphjit as gj

    x = np.ones((2, 3), F32)
    lowered = gj.jit(softmax, target="cuda").lower(x)
    assert "def kernel_" in lowered.as_text("cuda")
    assert lowered.as_text("ptx")


def _shared_cases():
    try:
        import helpers
    except ImportError:
        return []
    cases = []
    for case in helpers.ALL_CASES:
        dtypes = helpers.CASE_DTYPES.get(case.name, helpers.NUMERIC_DTYPES)
        for dtype in dtypes[:1] if dtypes else ():
            cases.append(pytest.param(case, dtype, id=f"{case.name}-{dtype}"))
    return cases


@jit_ready
@pytest.mark.parametrize("case,dtype", _shared_cases())
def test_shared_differential_cases_on_cuda(case, dtype):
    """The CPU differential cases (tests/helpers.py), one dtype each, tiny shapes."""
    import helpers

    rng = np.random.default_rng(18)
    n_arrays = 2 if case in helpers.BINARY_CASES else 1
    shapes = [(2, 3)] * n_arrays
    args = case.make_args(rng, shapes, dtype)
    helpers.check_against_numpy(case.fn, *args, target="cuda")


# ---------------------------------------------------------------- on a real GPU

@gpu
@pytest.mark.gpu
def test_gpu_softmax_large_rows_and_ptx():
    x = np.random.default_rng(19).standard_normal((256, 1024)).astype(F32)
    (actual,), executable = softmax_program(x.shape).run(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    assert_close(actual, e / e.sum(axis=-1, keepdims=True))
    assert ".target sm_" in executable.texts["ptx"]


@gpu
@pytest.mark.gpu
def test_gpu_matmul_epilogue_large():
    rng = np.random.default_rng(20)
    m, k, n = 300, 257, 129
    x, w = rng.standard_normal((m, k)).astype(F32), rng.standard_normal((k, n)).astype(F32)
    bias = rng.standard_normal(n).astype(F32)
    builder = matmul_program((m, k), (k, n), F32, epilogue=bias_relu_epilogue((n,), m, n))
    (actual,), _ = builder.run(x, w, bias)
    np.testing.assert_allclose(actual, np.maximum(x @ w + bias, 0), rtol=1e-4, atol=1e-4)

