"""Tests of the CPU renderer (runtime/cpu/loops.py, elementwise.py, reducers.py): LoopKernels built by hand, rendered to LLVM IR, compiled with
llvmlite MCJIT (O3, host CPU) by a tiny helper here and called through ctypes, so they need nothing
of the CPU runtime. Results are compared with NumPy (dtype-aware tolerances, NaN/inf parity)."""
from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import llvmlite.binding as llvm
import numpy as np

import graphjit as gj
from graphjit.compiler.ir import Attrs
from graphjit.compiler.kernel import (
    Access, Buffer, BufferKind, Instr, Level, LoopKernel, Operand, Store,
)
from graphjit.compiler.ops import Op
from graphjit.runtime.cpu.loops import RenderedKernel, render_loop_kernel
from vector_width import is_vectorised

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()


def host_machine() -> llvm.TargetMachine:
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)


TARGET_MACHINE = host_machine()   # for optimising; every engine owns (and frees) its own machine
KERNEL_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


@dataclass
class Compiled:
    address: int
    optimized_ir: str
    engine: object   # keeps the machine code alive


def compile_module(text: str, symbol: str) -> Compiled:
    module = llvm.parse_assembly(text)
    module.triple = TARGET_MACHINE.triple
    module.data_layout = str(TARGET_MACHINE.target_data)
    module.verify()
    options = llvm.create_pipeline_tuning_options(speed_level=3)
    options.loop_vectorization = True
    options.slp_vectorization = True
    builder = llvm.create_pass_builder(TARGET_MACHINE, options)
    builder.getModulePassManager().run(module, builder)
    engine = llvm.create_mcjit_compiler(module, host_machine())
    engine.finalize_object()
    return Compiled(engine.get_function_address(symbol), str(module), engine)


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides, size = [], 1
    for extent in reversed(shape):
        strides.append(size if extent != 1 else 0)
        size *= extent
    return tuple(reversed(strides))


@dataclass
class KernelBuilder:
    """Writes a LoopKernel instruction by instruction (like compiler/schedule.py would)."""

    loop_shape: tuple[int, ...]
    reduce_axes: tuple[int, ...] = ()
    buffers: list[Buffer] = field(default_factory=list)
    instrs: list[Instr] = field(default_factory=list)
    stores: list[Store] = field(default_factory=list)

    def buffer(self, shape: Sequence[int], dtype, kind: BufferKind = BufferKind.PARAM,
               slot: int | None = None) -> int:
        index = len(self.buffers)
        self.buffers.append(Buffer(index, index, tuple(shape), np.dtype(dtype), kind, slot=slot))
        return index

    def level_of(self, strides: Sequence[int]) -> Level:
        varies = any(strides[a] != 0 for a in self.reduce_axes)
        return Level.FULL if varies or not self.reduce_axes else Level.OUTER

    def load(self, buffer: int, strides: Sequence[int] | None = None, offset: int = 0) -> int:
        """Load buffer; default strides: its shape right-aligned and broadcast to the loop."""
        if strides is None:
            strides = self.broadcast_strides(self.buffers[buffer].shape)
        access = Access(buffer, tuple(strides), offset)
        level = self.level_of(access.strides)
        return self.add(Instr(Operand.LOAD, (), self.buffers[buffer].dtype, level,
                              Attrs({"access": access})))

    def broadcast_strides(self, shape: Sequence[int]) -> tuple[int, ...]:
        own = contiguous_strides(shape)
        pad = len(self.loop_shape) - len(shape)
        return (0,) * pad + tuple(0 if n == 1 else s for n, s in zip(shape, own, strict=True))

    def const(self, value, dtype) -> int:
        level = Level.OUTER if self.reduce_axes else Level.FULL
        return self.add(Instr(Operand.CONST, (), np.dtype(dtype), level, Attrs({"value": value})))

    def op(self, op: Op, *args: int, dtype=None, **attrs) -> int:
        dtype = np.dtype(dtype if dtype is not None else self.instrs[args[0]].dtype)
        levels = {self.instrs[a].level for a in args}
        level = Level.FULL if Level.FULL in levels else Level.OUTER
        if op in (Op.SUM, Op.PROD, Op.REDUCE_MAX, Op.REDUCE_MIN, Op.ARGMAX, Op.ARGMIN):
            level = Level.OUTER
        return self.add(Instr(op, tuple(args), dtype, level, Attrs(attrs)))

    def add(self, instr: Instr) -> int:
        self.instrs.append(instr)
        return len(self.instrs) - 1

    def store(self, instr: int, buffer: int, strides: Sequence[int] | None = None,
              offset: int = 0) -> None:
        if strides is None:
            strides = self.output_strides(self.buffers[buffer].shape, instr)
        self.stores.append(Store(instr, Access(buffer, tuple(strides), offset)))

    def output_strides(self, shape: Sequence[int], instr: int) -> tuple[int, ...]:
        """C-contiguous strides of an output: a reduced value keeps the non-reduced loop dims."""
        if self.instrs[instr].level is Level.OUTER and self.reduce_axes:
            kept = [d for d in range(len(self.loop_shape)) if d not in self.reduce_axes]
            own = contiguous_strides([self.loop_shape[d] for d in kept])
            full = [0] * len(self.loop_shape)
            for d, s in zip(kept, own, strict=True):
                full[d] = s
            return tuple(full)
        return contiguous_strides(self.loop_shape)

    def kernel(self, name: str = "test_kernel") -> LoopKernel:
        return LoopKernel(name, tuple(self.loop_shape), tuple(self.reduce_axes),
                          tuple(self.instrs), tuple(self.stores))


class KernelRunner:
    """A compiled kernel called through ctypes over NumPy arrays (one per buffer)."""

    def __init__(self, kernel: LoopKernel, buffers: Sequence[Buffer]):
        self.buffers = list(buffers)
        self.rendered: RenderedKernel = render_loop_kernel(kernel, self.buffers)
        self.compiled = compile_module(self.rendered.llvm_ir, self.rendered.name)
        self.function = KERNEL_SIGNATURE(self.compiled.address)

    def __call__(self, arrays: dict[int, np.ndarray], pieces: int = 1) -> dict[int, np.ndarray]:
        """Run over all work items, split into `pieces` calls (as threads would split them)."""
        table = (ctypes.c_void_p * len(self.buffers))()
        held = {}
        for buffer in self.buffers:
            if buffer.index in arrays:
                array = np.array(arrays[buffer.index], dtype=buffer.dtype, order="C")
            else:
                array = np.empty(buffer.shape, buffer.dtype)
                array.reshape(-1).view(np.uint8)[:] = 0x5A   # garbage: all must be written
            assert array.shape == buffer.shape
            held[buffer.index] = array
            table[buffer.index] = array.ctypes.data
        extent = self.rendered.extent
        bounds = [round(k * extent / pieces) for k in range(pieces + 1)]
        for begin, end in zip(bounds, bounds[1:]):
            if end > begin:
                self.function(ctypes.addressof(table), begin, end)
        return held

    def run_on(self, arrays: Sequence[np.ndarray]) -> None:
        """Run every work item over the given arrays (one per buffer, indexed like the table)."""
        table = (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))
        self.function(ctypes.addressof(table), 0, self.rendered.extent)

    @property
    def vectorised(self) -> bool:
        return is_vectorised(self.compiled.optimized_ir)


def run_kernel(builder: KernelBuilder, inputs: dict[int, np.ndarray],
               pieces: int = 1) -> dict[int, np.ndarray]:
    return KernelRunner(builder.kernel(), builder.buffers)(inputs, pieces)


def ulp_distance(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Distance in units in the last place, on the ordered integer line of the float type."""
    itype = {4: np.int32, 8: np.int64}[actual.dtype.itemsize]

    def ordered(a: np.ndarray) -> np.ndarray:
        bits = a.view(itype).astype(np.int64)
        return np.where(bits < 0, np.int64(np.iinfo(itype).min) - bits, bits)

    a, b = ordered(actual), ordered(expected)
    # the difference in uint64 wraps correctly (the true distance is below 2**64)
    distance = np.where(a >= b, a.view(np.uint64) - b.view(np.uint64),
                        b.view(np.uint64) - a.view(np.uint64)).astype(np.float64)
    return np.where(np.isnan(actual) & np.isnan(expected), 0.0, distance)


def elements(shape: Sequence[int]) -> int:
    return math.prod(shape)


# ================================================================ tests

import functools  # noqa: E402
import warnings  # noqa: E402

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from graphjit.compiler.errors import CompileError  # noqa: E402
from graphjit.compiler.ops import LOOP_ELEMENTWISE, OPS, UFUNC_OPS  # noqa: E402
from graphjit.runtime.cpu.elementwise import ELEMENTWISE_LOWERINGS  # noqa: E402
from workloads import gelu, layernorm, softmax  # noqa: E402

DTYPES = [np.dtype(t) for t in (np.bool_, np.int32, np.int64, np.float32, np.float64)]
TRANSCENDENTAL = {Op.EXP, Op.LOG, Op.LOG1P, Op.EXPM1, Op.TANH, Op.SIN, Op.COS, Op.POW, Op.TAN, Op.ARCSIN,
                  Op.ARCCOS, Op.ARCSINH, Op.ARCCOSH, Op.ARCTANH, Op.EXP2, Op.LOG2, Op.LOG10,
                  Op.CBRT, Op.ARCTAN2, Op.HYPOT, Op.LOGADDEXP2}
ULP_BOUND = {np.dtype(np.float32): 4, np.dtype(np.float64): 8}
SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0, np.inf, -np.inf, np.nan, 1e-40, -1e-310,
            3e38, -3e38, 89.0, -104.0, 710.0, 1e10, -1e10, 7.0, 3.0]
SIZE = 67     # odd, more than a few vectors: vector body and scalar tail both run


def loop_dtypes(op: Op) -> list[tuple[tuple[np.dtype, ...], np.dtype]]:
    """The (operand dtypes, result dtype) pairs NumPy loops over directly for this op."""
    ufunc = UFUNC_OPS[op]
    pairs = []
    for dtype in DTYPES:
        try:
            resolved = ufunc.resolve_dtypes((dtype,) * ufunc.nin + (None,))
        except TypeError:
            continue
        if all(d == dtype for d in resolved[:-1]):
            pairs.append(((dtype,) * ufunc.nin, np.dtype(resolved[-1])))
    return pairs


ELEMENTWISE_CASES = [(op, ins, out) for op in sorted(UFUNC_OPS, key=lambda o: o.value)
                     if op in LOOP_ELEMENTWISE
                     for ins, out in loop_dtypes(op)]


@functools.lru_cache(maxsize=None)
def elementwise_runner(op: Op, in_dtypes: tuple, out_dtype: np.dtype, size: int = SIZE,
                       strides: tuple | None = None) -> tuple[KernelRunner, list[int], int]:
    builder = KernelBuilder((size,))
    buffers = [builder.buffer((size if strides is None else size * max(1, strides[k]),), dt)
               for k, dt in enumerate(in_dtypes)]
    loads = [builder.load(b, None if strides is None else (strides[k],))
             for k, b in enumerate(buffers)]
    out = builder.buffer((size,), out_dtype, BufferKind.OUTPUT)
    builder.store(builder.op(op, *loads, dtype=out_dtype), out)
    return KernelRunner(builder.kernel(f"ew_{op.value}"), builder.buffers), buffers, out


def values_for(dtype: np.dtype, size: int):
    if dtype.kind == "f":
        elements = st.one_of(st.sampled_from(SPECIALS),
                             st.floats(width=8 * dtype.itemsize, allow_nan=True))
    elif dtype.kind == "i":
        info = np.iinfo(dtype)
        elements = st.one_of(st.integers(-9, 9), st.integers(int(info.min), int(info.max)))
    else:
        elements = st.booleans()
    return hnp.arrays(dtype, size, elements=elements)


def numpy_result(op: Op, arrays: Sequence[np.ndarray], out_dtype: np.dtype) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(UFUNC_OPS[op](*arrays)).astype(out_dtype)


def assert_matches(actual: np.ndarray, expected: np.ndarray, op: Op | None = None,
                   ulps: float | None = None) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if expected.dtype.kind != "f" or (op not in TRANSCENDENTAL and ulps is None):
        np.testing.assert_array_equal(actual, expected)
        return
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), (actual, expected)
    bound = ULP_BOUND[expected.dtype] if ulps is None else ulps
    distance = ulp_distance(actual, expected)
    worst = int(np.argmax(distance))
    assert distance[worst] <= bound, (
        f"{distance[worst]} ulp at {worst}: got {actual.flat[worst]!r}, "
        f"NumPy {expected.flat[worst]!r}")


def test_every_elementwise_op_has_a_lowering():
    assert set(LOOP_ELEMENTWISE) <= set(ELEMENTWISE_LOWERINGS)


@pytest.mark.parametrize(("op", "in_dtypes", "out_dtype"), ELEMENTWISE_CASES,
                         ids=[f"{op.value}-{ins[0]}" for op, ins, _ in ELEMENTWISE_CASES])
def test_elementwise_op_on_special_values(op, in_dtypes, out_dtype):
    """Every combination of special operands (NaN, +-inf, +-0, denormals, extremes, MIN // -1)."""
    arrays = special_operands(in_dtypes, op)
    runner, inputs, out = elementwise_runner(op, in_dtypes, out_dtype, size=arrays[0].size)
    result = runner(dict(zip(inputs, arrays, strict=True)), pieces=3)[out]
    assert_matches(result, numpy_result(op, arrays, out_dtype), op)


def special_operands(in_dtypes: tuple, op: Op) -> list[np.ndarray]:
    dtype = in_dtypes[0]
    if dtype.kind == "f":
        values = np.array(SPECIALS, dtype=dtype)
    elif dtype.kind == "i":
        info = np.iinfo(dtype)
        values = np.array([0, 1, -1, 2, -2, 3, -7, 7, 100, info.min, info.max, info.min + 1],
                          dtype=dtype)
    else:
        values = np.array([False, True])
    grids = np.meshgrid(*([values] * len(in_dtypes)), indexing="ij")
    arrays = [grid.ravel() for grid in grids]
    if op is Op.POW and dtype.kind == "i":
        arrays[1] = np.abs(arrays[1] % 70).astype(dtype)   # NumPy rejects negative int powers
    return arrays


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(ELEMENTWISE_CASES), data=st.data())
def test_elementwise_op_matches_numpy(case, data):
    op, in_dtypes, out_dtype = case
    if op is Op.POW and in_dtypes[0].kind == "i":
        exponents = hnp.arrays(in_dtypes[0], SIZE, elements=st.integers(0, 70))
        arrays = [data.draw(values_for(in_dtypes[0], SIZE)), data.draw(exponents)]
    else:
        arrays = [data.draw(values_for(dt, SIZE)) for dt in in_dtypes]
    runner, inputs, out = elementwise_runner(op, in_dtypes, out_dtype)
    result = runner(dict(zip(inputs, arrays, strict=True)), pieces=2)[out]
    assert_matches(result, numpy_result(op, arrays, out_dtype), op)


# ---------------------------------------------------------------- layouts: broadcast, strided

def test_broadcast_and_transposed_accesses():
    """out[i, j] = x[j, i] * row[j] + col[i] over a 2-d loop that cannot collapse."""
    rng = np.random.default_rng(0)
    b = KernelBuilder((5, 37))
    x = b.buffer((37, 5), np.float64)
    row = b.buffer((37,), np.float64)
    col = b.buffer((5, 1), np.float64)
    out = b.buffer((5, 37), np.float64, BufferKind.OUTPUT)
    value = b.op(Op.ADD, b.op(Op.MUL, b.load(x, (1, 5)), b.load(row)), b.load(col))
    b.store(value, out)
    arrays = {x: rng.standard_normal((37, 5)), row: rng.standard_normal(37),
              col: rng.standard_normal((5, 1))}
    for pieces in (1, 2, 5):
        result = run_kernel(b, arrays, pieces)[out]
        np.testing.assert_allclose(result, arrays[x].T * arrays[row] + arrays[col],
                                   rtol=1e-15, atol=1e-15)   # FMA contraction


@settings(max_examples=15, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
       data=st.data())
def test_strided_slices_of_random_shapes(shape, data):
    """out = x[::step, reversed...] + 1 through affine accesses with negative strides/offsets."""
    steps = tuple(data.draw(st.sampled_from([1, 2, -1])) for _ in shape)
    source_shape = tuple(n * abs(s) for n, s in zip(shape, steps, strict=True))
    source = np.arange(math.prod(source_shape), dtype=np.int64).reshape(source_shape)
    view = source[tuple(slice(None, None, s) for s in steps)]
    strides = tuple(st_ // 8 for st_ in view.strides)
    offset = (view.ctypes.data - source.ctypes.data) // 8 if view.size else 0
    b = KernelBuilder(shape)
    src = b.buffer(source_shape, np.int64)
    out = b.buffer(shape, np.int64, BufferKind.OUTPUT)
    b.store(b.op(Op.ADD, b.load(src, strides, offset), b.const(1, np.int64)), out)
    result = run_kernel(b, {src: source}, pieces=3)[out]
    np.testing.assert_array_equal(result, view + 1)


def test_contiguous_dims_collapse_into_one_flat_loop():
    b = KernelBuilder((4, 8, 16))
    x = b.buffer((4, 8, 16), np.float32)
    out = b.buffer((4, 8, 16), np.float32, BufferKind.OUTPUT)
    b.store(b.op(Op.NEG, b.load(x)), out)
    runner = KernelRunner(b.kernel(), b.buffers)
    assert runner.rendered.extent == 1           # one flat chunk of 512 elements
    values = np.random.default_rng(1).standard_normal((4, 8, 16)).astype(np.float32)
    np.testing.assert_array_equal(runner({x: values})[out], -values)
    assert runner.vectorised


def test_scalar_and_empty_loops():
    b = KernelBuilder(())
    x = b.buffer((), np.float32)
    out = b.buffer((), np.float32, BufferKind.OUTPUT)
    b.store(b.op(Op.EXP, b.load(x)), out)
    assert run_kernel(b, {x: np.array(1.0, np.float32)})[out] == np.float32(np.e)
    empty = KernelBuilder((3, 0))
    y = empty.buffer((3, 0), np.float32)
    empty_out = empty.buffer((3, 0), np.float32, BufferKind.OUTPUT)
    empty.store(empty.op(Op.EXP, empty.load(y)), empty_out)
    runner = KernelRunner(empty.kernel(), empty.buffers)
    assert runner.rendered.extent == 0


# ---------------------------------------------------------------- casts, where, constant powers

CAST_VALUES = np.array([0.0, -0.0, 0.7, -0.7, 1.5, -2.5, 3e9, -3e9, 2147483647.0, -2147483648.0,
                        9.3e18, -9.3e18, 1e30, np.inf, -np.inf, np.nan, 255.0, 1e-42])


@pytest.mark.parametrize("src", DTYPES, ids=str)
@pytest.mark.parametrize("dst", DTYPES, ids=str)
def test_cast_matches_numpy(src, dst):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = CAST_VALUES.astype(src)
        expected = values.astype(dst)
    b = KernelBuilder((values.size,))
    x = b.buffer(values.shape, src)
    out = b.buffer(values.shape, dst, BufferKind.OUTPUT)
    b.store(b.op(Op.CAST, b.load(x), dtype=dst), out)
    np.testing.assert_array_equal(run_kernel(b, {x: values})[out], expected)


@pytest.mark.parametrize("cond_dtype", DTYPES, ids=str)
def test_where_takes_truth_of_any_condition(cond_dtype):
    cond = np.array([0, 1, 2, -1, 0, np.nan if cond_dtype.kind == "f" else 3] * 5).astype(
        cond_dtype)
    a, c = np.arange(30, dtype=np.float32), -np.arange(30, dtype=np.float32)
    b = KernelBuilder((30,))
    bufs = [b.buffer((30,), cond_dtype), b.buffer((30,), np.float32), b.buffer((30,), np.float32)]
    out = b.buffer((30,), np.float32, BufferKind.OUTPUT)
    b.store(b.op(Op.WHERE, *(b.load(k) for k in bufs), dtype=np.float32), out)
    result = run_kernel(b, dict(zip(bufs, (cond, a, c), strict=True)))[out]
    np.testing.assert_array_equal(result, np.where(cond, a, c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("exponent", [-1, 0, 1, 2, 3, 4, 0.5, 2.5, -3, 17])
def test_power_by_constant_exponent(dtype, exponent):
    values = np.concatenate([np.array(SPECIALS), np.linspace(-30, 30, 45)]).astype(dtype)
    b = KernelBuilder((values.size,))
    x = b.buffer(values.shape, dtype)
    out = b.buffer(values.shape, dtype, BufferKind.OUTPUT)
    b.store(b.op(Op.POW, b.load(x), b.const(exponent, dtype)), out)
    runner = KernelRunner(b.kernel(), b.buffers)
    with np.errstate(all="ignore"):
        expected = np.power(values, np.asarray(exponent, dtype))
    assert_matches(runner({x: values})[out], expected, ulps=2 if exponent != 17 else 4)
    if exponent in (2, 3):   # a product, not a pow call: the loop vectorises
        assert "pow" not in runner.compiled.optimized_ir and runner.vectorised


@pytest.mark.parametrize("dtype", [np.int32, np.int64], ids=["i32", "i64"])
def test_integer_power_by_constant_and_by_squaring(dtype):
    values = np.array([0, 1, -1, 2, -2, 3, 7, -9, 1000, np.iinfo(dtype).max], dtype=dtype)
    for exponent in (0, 1, 3, 13, 64, 65):
        b = KernelBuilder((values.size,))
        x = b.buffer(values.shape, dtype)
        out = b.buffer(values.shape, dtype, BufferKind.OUTPUT)
        b.store(b.op(Op.POW, b.load(x), b.const(exponent, dtype)), out)
        np.testing.assert_array_equal(run_kernel(b, {x: values})[out],
                                      np.power(values, dtype(exponent)))


def test_unsupported_dtype_raises_a_graphjit_error():
    b = KernelBuilder((4,))
    x = b.buffer((4,), np.int32)
    out = b.buffer((4,), np.int32, BufferKind.OUTPUT)
    b.store(b.op(Op.EXP, b.load(x)), out)
    with pytest.raises(CompileError, match="exp"):
        render_loop_kernel(b.kernel(), b.buffers)


# ---------------------------------------------------------------- reductions

REDUCE_CASES = [
    ((6, 7, 5), (2,)), ((6, 7, 5), (0,)), ((6, 7, 5), (1,)), ((6, 7, 5), (0, 2)),
    ((6, 7, 5), (0, 1, 2)), ((6, 7, 5), (1, 2)), ((3, 2500), (1,)), ((2500, 3), (0,)),
    ((4, 1, 9), (1,)), ((5, 0), (1,)),
]
REDUCE_OPS = {Op.SUM: np.sum, Op.PROD: np.prod, Op.REDUCE_MAX: np.max, Op.REDUCE_MIN: np.min}


def reduction_kernel(op: Op, shape, axes, dtype, out_dtype=None):
    b = KernelBuilder(shape, axes)
    x = b.buffer(shape, dtype)
    kept = tuple(n for d, n in enumerate(shape) if d not in axes)
    out = b.buffer(kept, out_dtype or dtype, BufferKind.OUTPUT)
    b.store(b.op(op, b.load(x), dtype=out_dtype or dtype), out)
    return b, x, out


def reduce_inputs(shape, dtype, rng):
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 0.9 + 0.1).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.7
    return rng.integers(-3, 4, shape).astype(dtype)


@pytest.mark.parametrize(("shape", "axes"), REDUCE_CASES, ids=str)
@pytest.mark.parametrize("op", list(REDUCE_OPS), ids=lambda o: o.value)
def test_reductions_over_axes(op, shape, axes):
    rng = np.random.default_rng(abs(hash((op.value, shape, axes))) % 2**32)
    for dtype in DTYPES:
        if 0 in shape and op in (Op.REDUCE_MAX, Op.REDUCE_MIN):
            continue                   # NumPy refuses: no identity
        b, x, out = reduction_kernel(op, shape, axes, dtype)
        values = reduce_inputs(shape, dtype, rng)
        result = run_kernel(b, {x: values}, pieces=3)[out]
        expected = REDUCE_OPS[op](values, axis=axes).astype(dtype)
        if dtype.kind == "f":
            np.testing.assert_allclose(result, expected, rtol=3e-6 if dtype == np.float32
                                       else 1e-13, atol=1e-6)
        else:
            np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(("shape", "axis"), [((5, 300), 1), ((300, 5), 0), ((4, 6, 3), 1)])
@pytest.mark.parametrize("op", [Op.ARGMAX, Op.ARGMIN], ids=lambda o: o.value)
def test_arg_reductions_first_index_and_nan(op, shape, axis):
    rng = np.random.default_rng(3)
    reference = np.argmax if op is Op.ARGMAX else np.argmin
    for dtype in DTYPES:
        b, x, out = reduction_kernel(op, shape, (axis,), dtype, np.int64)
        values = rng.integers(-2, 3, shape).astype(dtype)     # many ties: first index wins
        if dtype.kind == "f":
            values.flat[rng.integers(0, values.size, 6)] = np.nan
            values.flat[rng.integers(0, values.size, 6)] = -np.inf
        result = run_kernel(b, {x: values}, pieces=2)[out]
        np.testing.assert_array_equal(result, reference(values, axis=axis))


def test_max_min_propagate_nan_and_handle_infinities():
    values = np.array([[1.0, np.nan, 3.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, -1.0],
                       [2.0, 5.0, np.nan]], np.float32)
    for op, reference in ((Op.REDUCE_MAX, np.max), (Op.REDUCE_MIN, np.min),
                          (Op.SUM, np.sum), (Op.PROD, np.prod)):
        b, x, out = reduction_kernel(op, values.shape, (1,), np.dtype(np.float32))
        with np.errstate(all="ignore"):
            expected = reference(values, axis=1)
        np.testing.assert_array_equal(run_kernel(b, {x: values})[out], expected)


def test_float32_sum_of_16_million_is_accurate():
    values = np.random.default_rng(5).standard_normal(16_000_000, dtype=np.float32)
    b = KernelBuilder(values.shape, (0,))
    x = b.buffer(values.shape, np.float32)
    out = b.buffer((), np.float32, BufferKind.OUTPUT)
    loaded = b.load(x)
    b.store(b.op(Op.SUM, b.op(Op.MUL, loaded, loaded)), out)
    runner = KernelRunner(b.kernel(), b.buffers)
    result = runner({x: values})[out]
    exact = np.sum(values.astype(np.float64) ** 2)
    assert abs(float(result) - exact) / exact < 2e-7
    assert runner.vectorised


# ---------------------------------------------------------------- multi-output and row kernels

def test_multi_output_elementwise_kernel():
    rng = np.random.default_rng(6)
    b = KernelBuilder((33, 40))
    x = b.buffer((33, 40), np.float32)
    y = b.buffer((40,), np.float32)
    outs = [b.buffer((33, 40), dt, BufferKind.OUTPUT) for dt in (np.float32, np.bool_, np.int32)]
    s = b.op(Op.ADD, b.load(x), b.load(y))
    b.store(s, outs[0])
    b.store(b.op(Op.GT, s, b.const(0.0, np.float32), dtype=np.bool_), outs[1])
    b.store(b.op(Op.CAST, s, dtype=np.int32), outs[2])
    xv, yv = rng.standard_normal((33, 40), np.float32) * 3, rng.standard_normal(40, np.float32)
    result = run_kernel(b, {x: xv, y: yv}, pieces=4)
    np.testing.assert_array_equal(result[outs[0]], xv + yv)
    np.testing.assert_array_equal(result[outs[1]], xv + yv > 0)
    np.testing.assert_array_equal(result[outs[2]], (xv + yv).astype(np.int32))


def softmax_kernel(rows: int, cols: int, dtype=np.float32):
    b = KernelBuilder((rows, cols), (1,))
    x = b.buffer((rows, cols), dtype)
    out = b.buffer((rows, cols), dtype, BufferKind.OUTPUT)
    row_max = b.buffer((rows, 1), dtype, BufferKind.OUTPUT)
    xs = b.load(x)
    m = b.op(Op.REDUCE_MAX, xs)
    e = b.op(Op.EXP, b.op(Op.SUB, xs, m))
    total = b.op(Op.SUM, e)
    b.store(b.op(Op.DIV, e, total), out)
    b.store(m, row_max)
    return b, x, out, row_max


@pytest.mark.parametrize(("rows", "cols"), [(7, 129), (3, 3000), (1, 1)])
def test_softmax_row_kernel(rows, cols):
    b, x, out, row_max = softmax_kernel(rows, cols)
    values = np.random.default_rng(7).standard_normal((rows, cols), np.float32) * 10
    values[0, 0] = np.inf if cols > 1 else values[0, 0]
    runner = KernelRunner(b.kernel(), b.buffers)
    result = runner({x: values}, pieces=3)
    with np.errstate(all="ignore"):
        e = np.exp(values - values.max(axis=1, keepdims=True))
        expected = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result[out], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(result[row_max], values.max(axis=1, keepdims=True))
    assert runner.rendered.extent == rows
    assert runner.vectorised or cols == 1


def test_layernorm_row_kernel():
    rows, cols = 9, 200
    rng = np.random.default_rng(8)
    b = KernelBuilder((rows, cols), (1,))
    x, gamma, beta = (b.buffer((rows, cols), np.float32), b.buffer((cols,), np.float32),
                      b.buffer((cols,), np.float32))
    out = b.buffer((rows, cols), np.float32, BufferKind.OUTPUT)
    xs = b.load(x)
    inv_n = b.const(1.0 / cols, np.float32)
    mu = b.op(Op.MUL, b.op(Op.SUM, xs), inv_n)
    centred = b.op(Op.SUB, xs, mu)
    var = b.op(Op.MUL, b.op(Op.SUM, b.op(Op.MUL, centred, centred)), inv_n)
    scale = b.op(Op.SQRT, b.op(Op.ADD, var, b.const(1e-5, np.float32)))
    normed = b.op(Op.DIV, centred, scale)
    b.store(b.op(Op.ADD, b.op(Op.MUL, normed, b.load(gamma)), b.load(beta)), out)
    xv = rng.standard_normal((rows, cols), np.float32) + 3
    gv, bv = rng.standard_normal(cols, np.float32), rng.standard_normal(cols, np.float32)
    result = run_kernel(b, {x: xv, gamma: gv, beta: bv}, pieces=2)[out]
    mu_ref = xv.mean(axis=-1, keepdims=True)
    var_ref = ((xv - mu_ref) ** 2).mean(axis=-1, keepdims=True)
    expected = (xv - mu_ref) / np.sqrt(var_ref + 1e-5) * gv + bv
    np.testing.assert_allclose(result, expected, rtol=2e-5, atol=2e-5)


def test_independent_reductions_share_one_pass():
    """sum(x) and sum(x*x) need no result of each other: one loop computes both."""
    b = KernelBuilder((4, 64), (1,))
    x = b.buffer((4, 64), np.float64)
    outs = [b.buffer((4,), np.float64, BufferKind.OUTPUT) for _ in range(2)]
    xs = b.load(x)
    b.store(b.op(Op.SUM, xs), outs[0])
    b.store(b.op(Op.SUM, b.op(Op.MUL, xs, xs)), outs[1])
    runner = KernelRunner(b.kernel(), b.buffers)
    values = np.random.default_rng(9).standard_normal((4, 64))
    result = runner({x: values})
    np.testing.assert_allclose(result[outs[0]], values.sum(1), rtol=1e-13)
    np.testing.assert_allclose(result[outs[1]], (values ** 2).sum(1), rtol=1e-13)
    assert runner.rendered.llvm_ir.count("phi i64") == 3   # rows, blocks, block elements


# ---------------------------------------------------------------- real traced functions







def mixed(x, i):
    return (np.argmax(x, axis=0), (i // 3) % 5, np.sum(x, axis=0), x.astype(np.int32),
            np.log1p(np.abs(x)), np.where(x > 0, np.sin(x), np.cos(x)), np.max(x[:, ::-2], axis=1))


def mlp(x, w, b):
    return np.maximum(x @ w + b, 0).sum(axis=0)


RNG = np.random.default_rng(11)
TRACED_CASES = [
    (softmax, (RNG.standard_normal((33, 70), np.float32),)),
    (layernorm, (RNG.standard_normal((20, 64), np.float32), RNG.standard_normal(64, np.float32),
                 RNG.standard_normal(64, np.float32))),
    (gelu, (RNG.standard_normal((3, 500), np.float32),)),
    (mixed, (RNG.standard_normal((16, 30)), RNG.integers(-40, 40, (16, 30)))),
    (mlp, (RNG.standard_normal((8, 12), np.float32), RNG.standard_normal((12, 6), np.float32),
           RNG.standard_normal(6, np.float32))),
]


@pytest.mark.parametrize(("fn", "args"), TRACED_CASES, ids=[f.__name__ for f, _ in TRACED_CASES])
def test_traced_functions_through_build_program(fn, args):
    """Trace with gj.jit, take its Program (compiler/schedule.py), run every LoopKernel with this
    file's compile helper and every other step with the NumPy program interpreter."""
    import graphjit as gj
    from graphjit.compiler.program_interpreter import allocate, run_step

    program = gj.jit(fn).lower(*args).program
    arrays = allocate(program, [np.asarray(a) for a in args])
    native = 0
    with np.errstate(all="ignore"):
        for step in program.steps:
            if isinstance(step, LoopKernel):
                KernelRunner(step, program.buffers).run_on(arrays)
                native += 1
            else:
                run_step(step, program, arrays)
    assert native > 0
    expected = fn(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for buffer, want in zip(program.outputs, expected, strict=True):
        got = arrays[buffer]
        assert got.dtype == np.asarray(want).dtype
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


# ---------------------------------------------------------------- split full reductions (CPU)

def test_split_full_reductions_on_the_cpu_are_accurate_and_propagate_nan():
    import graphjit as gj

    rng = np.random.default_rng(7)
    x = rng.standard_normal(1 << 20).astype(np.float32)
    fn = gj.jit(lambda v: (np.sum(v * v), v.max(), v.min(), v.mean()))
    total, high, low, mean = fn(x)
    assert any(step.name.endswith("_partial") for step in fn.lower(x).program.steps)
    exact = np.sum(x.astype(np.float64) ** 2)
    assert abs(float(total) - exact) <= 2e-6 * exact
    assert (high, low) == (x.max(), x.min())
    assert abs(float(mean) - x.astype(np.float64).mean()) <= 1e-6
    y = x.copy()
    y[777_777] = np.nan
    total, high, low, _ = fn(y)
    assert np.isnan(total) and np.isnan(high) and np.isnan(low)


def test_kernels_that_differ_only_in_their_buffers_share_one_compiled_body():
    """Unrolled loops make many equal kernels: each keeps its own trampoline (its buffers out of
    the program's table) and all call one body, compiled once, with the right buffers."""
    def twin_reductions(x, y, z):
        return np.exp(x).sum(axis=1), np.exp(y).sum(axis=1), np.exp(z * 2.0).sum(axis=1)

    args = [np.random.default_rng(n).standard_normal((8, 128)) for n in range(3)]
    lowered = gj.jit(twin_reductions).lower(*args)
    llvm_text = lowered.as_text("llvm")
    assert lowered.as_text("program").count("\nk") == 3
    defined = [line.split("@")[1].split("(")[0] for line in llvm_text.splitlines()
               if line.startswith("define")]
    assert sum(name.endswith("_shared") for name in defined) == 1   # x and y; z * 2.0 differs
    assert {"k0", "k1", "k2"} <= set(defined)
    for expected, actual in zip(twin_reductions(*args), gj.jit(twin_reductions)(*args)):
        np.testing.assert_allclose(actual, expected, rtol=1e-12)
