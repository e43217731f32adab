"""The CPU runtime: native compile and load, dispatch, buffers, BLAS matmul, host steps, safety.

Programs are built by hand and their loop kernels rendered by `standin_render` below, a minimal
renderer (elementwise add/sub/mul over any strided accesses) with loops.py's interface, so these
tests need neither the scheduler nor the real code generator. Once both exist, the last section
also runs real `gj.jit` functions through the whole CPU path.
"""
from __future__ import annotations

import ctypes
import math
import os
import threading
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir

from graphjit.compiler.errors import ArgumentError, CompileError
from graphjit.compiler.ir import Attrs, Graph
from graphjit.compiler.kernel import (Access, Buffer, BufferKind, HostKernel, Instr, LoopKernel,
                                      MatmulKernel, Program, Operand, Store)
from graphjit.compiler.ops import Op
from graphjit.runtime.cpu import CPUBackend, llvm
from graphjit.runtime.cpu.blas import blas_layout
from graphjit.runtime.cpu.threads import ThreadPool

# ---------------------------------------------------------------- a stand-in code generator


@dataclass(frozen=True)
class StandinKernel:
    name: str
    llvm_ir: str
    extent: int
    cost_per_item: int


_I64 = ir.IntType(64)
_LLVM_TYPES = {np.dtype(np.float32): ir.FloatType(), np.dtype(np.float64): ir.DoubleType(),
               np.dtype(np.int32): ir.IntType(32), np.dtype(np.int64): ir.IntType(64)}
_FLOAT_OPS = {Op.ADD: "fadd", Op.SUB: "fsub", Op.MUL: "fmul"}
_INT_OPS = {Op.ADD: "add", Op.SUB: "sub", Op.MUL: "mul"}


def standin_render(kernel: LoopKernel, buffers) -> StandinKernel:
    """`void name(char **buffers, i64 begin, i64 end)`: one work item per loop index (flat)."""
    assert not kernel.reduce_axes, "the stand-in renders elementwise kernels only"
    module = ir.Module(kernel.name)
    function = ir.Function(module, llvm.KERNEL_TYPE, kernel.name)
    table, begin, end = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    check = function.append_basic_block("check")
    body = function.append_basic_block("body")
    done = function.append_basic_block("done")
    builder.branch(check)
    builder.position_at_end(check)
    item = builder.phi(_I64, name="item")
    item.add_incoming(begin, function.entry_basic_block)
    builder.cbranch(builder.icmp_signed("<", item, end), body, done)
    builder.position_at_end(body)
    index = _unravel(builder, item, kernel.loop_shape)
    values = []
    for instr in kernel.instrs:
        values.append(_emit(builder, instr, values, index, table))
    for store in kernel.stores:
        dtype = kernel.instrs[store.instr].dtype
        builder.store(values[store.instr], _address(builder, table, store.access, index, dtype))
    following = builder.add(item, ir.Constant(_I64, 1), name="next")
    item.add_incoming(following, body)
    builder.branch(check)
    builder.position_at_end(done)
    builder.ret_void()
    return StandinKernel(kernel.name, str(module), math.prod(kernel.loop_shape), len(kernel.instrs))


def _unravel(builder, item, shape):
    index = []
    rest = item
    for extent in reversed(shape):
        index.append(builder.urem(rest, ir.Constant(_I64, extent)))
        rest = builder.udiv(rest, ir.Constant(_I64, extent))
    return index[::-1]


def _address(builder, table, access, index, dtype):
    slot = builder.gep(table, [ir.Constant(_I64, access.buffer)], source_etype=ir.PointerType())
    base = builder.load(slot, typ=ir.PointerType())
    offset = ir.Constant(_I64, access.offset)
    for stride, i in zip(access.strides, index):
        offset = builder.add(offset, builder.mul(i, ir.Constant(_I64, stride)))
    return builder.gep(base, [offset], source_etype=_LLVM_TYPES[np.dtype(dtype)])


def _emit(builder, instr, values, index, table):
    llvm_type = _LLVM_TYPES[np.dtype(instr.dtype)]
    if instr.op is Operand.LOAD:
        address = _address(builder, table, instr.attrs["access"], index, instr.dtype)
        return builder.load(address, typ=llvm_type)
    if instr.op is Operand.CONST:
        return ir.Constant(llvm_type, instr.attrs["value"])
    table_of_ops = _FLOAT_OPS if np.dtype(instr.dtype).kind == "f" else _INT_OPS
    return getattr(builder, table_of_ops[instr.op])(*(values[a] for a in instr.args))


# ---------------------------------------------------------------- building programs by hand

def contiguous(shape):
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def load(buffer, dtype, shape, strides=None, offset=0):
    access = Access(buffer, contiguous(shape) if strides is None else tuple(strides), offset)
    return Instr(Operand.LOAD, (), np.dtype(dtype), attrs=Attrs({"access": access}))


def const(value, dtype):
    return Instr(Operand.CONST, (), np.dtype(dtype), attrs=Attrs({"value": value}))


def binary(op, a, b, dtype):
    return Instr(op, (a, b), np.dtype(dtype))


def loop(name, shape, instrs, out_buffer, out_instr=None):
    store = Store(len(instrs) - 1 if out_instr is None else out_instr,
                  Access(out_buffer, contiguous(shape)))
    return LoopKernel(name, tuple(shape), (), tuple(instrs), (store,))


def buf(index, shape, dtype, kind, **extra):
    return Buffer(index, index, tuple(shape), np.dtype(dtype), kind, **extra)


def program(buffers, steps, outputs, graph=None):
    return Program(graph or Graph("test"), list(buffers), list(steps), list(outputs))


def compile_program(prog, pool=None, cache=None, stats=None):
    backend = CPUBackend(render=standin_render, pool=pool or ThreadPool(1), cache=cache)
    return backend.compile(prog, {} if stats is None else stats)


def add_one_program(shape=(8,), dtype=np.float64):
    buffers = [buf(0, shape, dtype, BufferKind.PARAM, param_index=0),
               buf(1, shape, dtype, BufferKind.OUTPUT)]
    kernel = loop("add_one", shape, [load(0, dtype, shape), const(1, dtype),
                                     binary(Op.ADD, 0, 1, dtype)], 1)
    return program(buffers, [kernel], [1])


def assert_same(actual, expected, rtol=1e-6):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------- LLVM layer

def test_compile_and_reload_object_code_runs_the_same_kernel():
    kernel = standin_render(add_one_program().steps[0], [])
    library = llvm.compile_ir([kernel.llvm_ir])
    reloaded = llvm.load_object(library.object_code)
    x, out = np.arange(5.0), np.zeros(5)
    table = (ctypes.c_void_p * 2)(x.ctypes.data, out.ctypes.data)
    from graphjit.runtime.cpu.backend import KERNEL_FUNCTION

    KERNEL_FUNCTION(reloaded.address("add_one"))(table, 1, 4)
    np.testing.assert_array_equal(out, [0, 2, 3, 4, 0])


def test_texts_hold_optimised_llvm_and_host_assembly():
    executable = compile_program(add_one_program())
    assert "define void @add_one" in executable.texts["llvm"]
    assert "add_one:" in executable.texts["asm"]


def test_bad_ir_is_a_compile_error_not_an_llvm_traceback():
    with pytest.raises(CompileError, match="LLVM rejected"):
        llvm.compile_ir(["define void @broken( {"])


def test_renderer_failure_is_a_compile_error():
    def failing(kernel, buffers):
        raise NotImplementedError("no lowering for this op")

    backend = CPUBackend(render=failing, pool=ThreadPool(1))
    with pytest.raises(CompileError, match="add_one"):
        backend.compile(add_one_program(), {})


class DictCache(dict):
    """An in-memory stand-in for the disk cache (same load/store interface)."""

    def load(self, key):
        return self.get(key)

    def store(self, key, payload):
        self[key] = payload


def test_stats_record_llvm_time_and_cache_hit_loads_without_llvm():
    cache = DictCache()
    first_stats, second_stats = {}, {}
    compile_program(add_one_program(), cache=cache, stats=first_stats)
    executable = compile_program(add_one_program(), cache=cache, stats=second_stats)
    assert first_stats["llvm"] > 0 and "load" not in first_stats
    assert "load" in second_stats and "llvm" not in second_stats
    assert_same(executable.run([np.arange(8.0)])[0], np.arange(8.0) + 1)
    assert "define void @add_one" in executable.texts["llvm"]


def test_cached_object_code_calling_blas_relocates_and_runs():
    cache = DictCache()
    prog = matmul_program((20, 30), (30, 10), np.float64, epilogue_bias=True)
    compile_program(prog, cache=cache)
    stats = {}
    executable = compile_program(prog, cache=cache, stats=stats)
    assert "load" in stats
    rng = np.random.default_rng(7)
    a, b, bias = rng.standard_normal((20, 30)), rng.standard_normal((30, 10)), np.arange(10.)
    assert_same(executable.run([a, b, bias])[0], a @ b + bias, rtol=1e-10)


def test_compiling_from_several_threads_at_once():
    results, errors = {}, []

    def compile_and_run(n):
        try:
            executable = compile_program(chain_program((n + 3,)))
            x = np.linspace(0, 1, n + 3)
            results[n] = np.allclose(executable.run([x])[0], (x * 2 + 1) ** 2 - x)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=compile_and_run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and all(results.values()) and len(results) == 4


def test_object_layout_check_holds_on_this_python():
    assert llvm.object_layout_ok()


# ---------------------------------------------------------------- running programs

@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=3), st.sampled_from(
    [np.float32, np.float64, np.int32, np.int64]))
def test_add_one_matches_numpy(shape, dtype):
    executable = compile_program(add_one_program(tuple(shape), dtype))
    x = (np.arange(math.prod(shape)) - 3).astype(dtype).reshape(shape)
    (out,) = executable.run([x])
    assert_same(out, x + np.asarray(1, dtype))
    assert out is not x and not np.shares_memory(out, x)


def test_strided_and_broadcast_reads():
    # out[i, j] = x.T[i, j] * y[j]   with x stored (4, 3) and y broadcast along rows
    m, n = 3, 4
    buffers = [buf(0, (n, m), np.float64, BufferKind.PARAM, param_index=0),
               buf(1, (n,), np.float64, BufferKind.PARAM, param_index=1),
               buf(2, (m, n), np.float64, BufferKind.OUTPUT)]
    kernel = loop("mul_t", (m, n), [load(0, np.float64, (m, n), strides=(1, m)),
                                    load(1, np.float64, (m, n), strides=(0, 1)),
                                    binary(Op.MUL, 0, 1, np.float64)], 2)
    executable = compile_program(program(buffers, [kernel], [2]))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, m)), rng.standard_normal(n)
    assert_same(executable.run([x, y])[0], x.T * y)


def chain_program(shape=(6,)):
    """t0 = x*2 (slot 0); t1 = t0+1 (slot 1); t2 = t1*t1 (slot 0 again, t0 is dead); out = t2-x"""
    f64 = np.float64
    buffers = [buf(0, shape, f64, BufferKind.PARAM, param_index=0),
               buf(1, shape, f64, BufferKind.TEMP, slot=0),
               buf(2, shape, f64, BufferKind.TEMP, slot=1),
               buf(3, shape, f64, BufferKind.TEMP, slot=0),
               buf(4, shape, f64, BufferKind.OUTPUT)]
    steps = [
        loop("k0", shape, [load(0, f64, shape), const(2.0, f64), binary(Op.MUL, 0, 1, f64)], 1),
        loop("k1", shape, [load(1, f64, shape), const(1.0, f64), binary(Op.ADD, 0, 1, f64)], 2),
        loop("k2", shape, [load(2, f64, shape), binary(Op.MUL, 0, 0, f64)], 3),
        loop("k3", shape, [load(3, f64, shape), load(0, f64, shape),
                           binary(Op.SUB, 0, 1, f64)], 4),
    ]
    return program(buffers, steps, [4])


def test_temp_buffers_sharing_a_slot_share_memory_and_give_right_results():
    executable = compile_program(chain_program())
    x = np.linspace(-1, 1, 6)
    assert_same(executable.run([x])[0], (x * 2 + 1) ** 2 - x)
    table = executable.workspaces.acquire().table  # noqa
    assert table[1] == table[3] and table[1] != table[2]
    assert table[1] % 64 == 0


def test_small_kernels_run_as_one_native_entry_call():
    executable = compile_program(chain_program())
    assert executable._steps == []          # all four kernels run inside the entry function
    assert "gj_test_entry0" in executable.texts["llvm"]


def test_scalar_params_accept_python_and_numpy_scalars():
    f32 = np.float32
    buffers = [buf(0, (), f32, BufferKind.PARAM, param_index=0),
               buf(1, (3,), f32, BufferKind.PARAM, param_index=1),
               buf(2, (3,), f32, BufferKind.OUTPUT)]
    kernel = loop("scale", (3,), [load(0, f32, (3,), strides=(0,)), load(1, f32, (3,)),
                                  binary(Op.MUL, 0, 1, f32)], 2)
    executable = compile_program(program(buffers, [kernel], [2]))
    y = np.array([1, 2, 3], f32)
    for scalar in (2.5, np.float64(2.5), np.float32(2.5), np.array(2.5, f32)):
        assert_same(executable.run([scalar, y])[0], np.float32(2.5) * y)


def test_zero_dim_output():
    executable = compile_program(add_one_program(shape=()))
    (out,) = executable.run([np.array(41.0)])
    assert out.shape == () and out == 42.0


def test_outputs_never_alias_inputs_constants_or_each_other():
    shape = (4,)
    value = np.array([1.0, 2.0, 3.0, 4.0])
    buffers = [buf(0, shape, np.float64, BufferKind.PARAM, param_index=0),
               buf(1, shape, np.float64, BufferKind.CONST, value=value),
               buf(2, shape, np.float64, BufferKind.OUTPUT)]
    kernel = loop("add_c", shape, [load(0, np.float64, shape), load(1, np.float64, shape),
                                   binary(Op.ADD, 0, 1, np.float64)], 2)
    executable = compile_program(program(buffers, [kernel], [2, 0, 2, 1]))
    x = np.ones(4)
    outs = executable.run([x])
    for out, expected in zip(outs, [x + value, x, x + value, value]):
        assert_same(out, expected)
    for i, a in enumerate(outs):
        assert not np.shares_memory(a, x) and not np.shares_memory(a, value)
        assert all(not np.shares_memory(a, b) for b in outs[i + 1:])


def test_wrong_arguments_are_errors_and_non_contiguous_ones_are_copied():
    executable = compile_program(add_one_program(shape=(4,)))
    with pytest.raises(ArgumentError, match="expected float64"):
        executable.run([np.zeros(5)])
    with pytest.raises(ArgumentError, match="expected float64"):
        executable.run([np.zeros(4, np.float32)])
    with pytest.raises(ArgumentError):
        executable.run([])
    strided = np.arange(8.0)[::2]
    assert_same(executable.run([strided])[0], strided + 1)
    assert_same(executable.run([[1.0, 2.0, 3.0, 4.0]])[0], np.array([2.0, 3.0, 4.0, 5.0]))


def test_host_kernel_runs_the_numpy_reference():
    graph = Graph("host")
    x = graph.add(Op.PARAM, (), {"index": 0}, shape=(5, 3), dtype=np.float64)
    i = graph.add(Op.PARAM, (), {"index": 1}, shape=(4,), dtype=np.int64)
    take = graph.add(Op.TAKE, (x, i), {"axis": 0})
    graph.outputs = [take]
    buffers = [Buffer(0, x, (5, 3), np.dtype(np.float64), BufferKind.PARAM, param_index=0),
               Buffer(1, i, (4,), np.dtype(np.int64), BufferKind.PARAM, param_index=1),
               Buffer(2, take, (4, 3), np.dtype(np.float64), BufferKind.TEMP),
               Buffer(3, take + 1, (4, 3), np.dtype(np.float64), BufferKind.OUTPUT)]
    steps = [HostKernel("take", take, Op.TAKE, Attrs({"axis": 0}), (0, 1), 2),
             loop("plus", (4, 3), [load(2, np.float64, (4, 3)), const(1.0, np.float64),
                                   binary(Op.ADD, 0, 1, np.float64)], 3)]
    executable = compile_program(program(buffers, steps, [3], graph))
    xs, idx = np.arange(15.0).reshape(5, 3), np.array([4, 0, 0, 2])
    assert_same(executable.run([xs, idx])[0], xs[idx] + 1)


# ---------------------------------------------------------------- matmul

def matmul_program(a_shape, b_shape, dtype, transpose_a=False, transpose_b=False,
                   epilogue_bias=False):
    """C = op(A) @ op(B); A and B stored as given, op = transpose of the last two axes."""
    dtype = np.dtype(dtype)

    def operand_access(index, shape, transpose):
        strides = contiguous(shape)
        if transpose:
            strides = strides[:-2] + (strides[-1], strides[-2])
        return Access(index, strides)

    a_read = a_shape[:-2] + ((a_shape[-1], a_shape[-2]) if transpose_a else a_shape[-2:])
    b_read = b_shape[:-2] + ((b_shape[-1], b_shape[-2]) if transpose_b else b_shape[-2:])
    m, k, n = a_read[-2], a_read[-1], b_read[-1]
    batch = a_read[:-2]
    c_shape = (*batch, m, n)
    buffers = [buf(0, a_shape, dtype, BufferKind.PARAM, param_index=0),
               buf(1, b_shape, dtype, BufferKind.PARAM, param_index=1),
               buf(2, c_shape, dtype, BufferKind.OUTPUT)]
    epilogue = None
    if epilogue_bias:
        buffers.append(buf(3, (n,), dtype, BufferKind.PARAM, param_index=2))
        bias_strides = (0,) * (len(c_shape) - 1) + (1,)
        epilogue = loop("bias", c_shape, [load(2, dtype, c_shape),
                                          load(3, dtype, c_shape, strides=bias_strides),
                                          binary(Op.ADD, 0, 1, dtype)], 2)
    kernel = MatmulKernel("mm", operand_access(0, a_shape, transpose_a),
                          operand_access(1, b_shape, transpose_b), 2, batch, m, n, k, dtype,
                          epilogue)
    return program(buffers, [kernel], [2])


def _operands(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    return rng.integers(-5, 5, shape).astype(dtype)


MATMUL_CASES = [
    ((3, 4), (4, 5), False, False),
    ((4, 3), (4, 5), True, False),
    ((3, 4), (5, 4), False, True),
    ((4, 3), (5, 4), True, True),
    ((2, 3, 4), (2, 4, 5), False, False),
    ((2, 3, 40, 30), (2, 3, 40, 20), True, False),
    ((1, 7), (7, 1), False, False),
    ((7, 1), (7, 1), True, False),
    ((3, 0), (0, 4), False, False),
    ((0, 4), (4, 3), False, False),
    ((64, 33), (33, 65), False, False),
    ((17, 20, 20), (17, 20, 20), False, True),     # too many batches to unroll: BLAS from Python
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
@pytest.mark.parametrize("a_shape,b_shape,ta,tb", MATMUL_CASES)
def test_matmul_matches_numpy(a_shape, b_shape, ta, tb, dtype):
    executable = compile_program(matmul_program(a_shape, b_shape, dtype, ta, tb))
    rng = np.random.default_rng(1)
    a, b = _operands(rng, a_shape, dtype), _operands(rng, b_shape, dtype)
    a_op = np.swapaxes(a, -1, -2) if ta else a
    b_op = np.swapaxes(b, -1, -2) if tb else b
    expected = np.matmul(a_op, b_op)
    rtol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    assert_same(executable.run([a, b])[0], expected, rtol=rtol)


def test_float_matmul_uses_blas_and_transposes_without_copies():
    from graphjit.runtime.cpu.blas import MatmulRunner

    prog = matmul_program((40, 30), (20, 40), np.float32, True, True)
    runner = MatmulRunner(prog.steps[0], np.float32, np.float32)
    assert runner.uses_blas
    int_prog = matmul_program((4, 3), (3, 2), np.int64)
    assert not MatmulRunner(int_prog.steps[0], np.int64, np.int64).uses_blas


def test_blas_products_and_serial_epilogues_run_inside_the_native_entry():
    executable = compile_program(matmul_program((2, 20, 30), (2, 30, 10), np.float32,
                                                epilogue_bias=True))
    assert executable._steps == []
    assert "gj_blas_sgemm" in executable.texts["llvm"]


@pytest.mark.parametrize("a_shape,b_shape", [((2, 5, 3), (2, 3, 4)), ((2, 20, 30), (2, 30, 10))])
@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_epilogue_runs_after_the_product(a_shape, b_shape, threads):
    pool = ThreadPool(threads)
    executable = compile_program(matmul_program(a_shape, b_shape, np.float64,
                                                epilogue_bias=True), pool=pool)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    bias = np.arange(float(b_shape[-1]))
    assert_same(executable.run([a, b, bias])[0], a @ b + bias, rtol=1e-10)
    pool.close()


def test_broadcast_batch_operand_with_zero_stride():
    dtype = np.float64
    buffers = [buf(0, (3, 4), dtype, BufferKind.PARAM, param_index=0),
               buf(1, (2, 4, 5), dtype, BufferKind.PARAM, param_index=1),
               buf(2, (2, 3, 5), dtype, BufferKind.OUTPUT)]
    kernel = MatmulKernel("mm", Access(0, (0, 4, 1)), Access(1, (20, 5, 1)), 2, (2,), 3, 5, 4,
                          np.dtype(dtype))
    executable = compile_program(program(buffers, [kernel], [2]))
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4, 5))
    assert_same(executable.run([a, b])[0], a @ b, rtol=1e-10)


@pytest.mark.parametrize("strides,rows,cols,expected", [
    ((5, 1), 3, 5, (True, 5)),     # row-major
    ((1, 3), 3, 5, (False, 3)),    # transposed view
    ((7, 1), 3, 5, (True, 7)),     # row-major with padding (a slice of a wider matrix)
    ((2, 2), 3, 5, None),          # doubly strided: BLAS cannot read it
    ((0, 1), 1, 5, (True, 5)),     # one row: its stride does not matter
])
def test_blas_layout(strides, rows, cols, expected):
    assert blas_layout(*strides, rows, cols) == expected


# ---------------------------------------------------------------- threads and concurrency

class CountingPool(ThreadPool):
    def __init__(self, size):
        super().__init__(size)
        self.parallel_calls = 0

    def parallel_for(self, task, ranges):
        self.parallel_calls += 1
        super().parallel_for(task, ranges)


def test_big_kernels_are_split_over_the_pool_and_small_ones_are_not():
    pool = CountingPool(2)
    from graphjit.runtime.cpu.threads import MIN_WORK_PER_CHUNK

    size = 2 * MIN_WORK_PER_CHUNK + 1000     # worth two chunks whatever the threshold is
    big = compile_program(add_one_program(shape=(size,), dtype=np.float32), pool=pool)
    small = compile_program(add_one_program(shape=(1000,), dtype=np.float32), pool=pool)
    x = np.random.default_rng(4).standard_normal(size).astype(np.float32)
    assert_same(big.run([x])[0], x + 1)
    assert pool.parallel_calls == 1
    small.run([x[:1000]])
    assert pool.parallel_calls == 1
    pool.close()


def test_concurrent_calls_from_python_threads_each_get_their_own_result():
    pool = ThreadPool(2)
    executables = [compile_program(chain_program((50_000,)), pool=pool),
                   compile_program(chain_program((64,)), pool=pool)]
    errors = []

    def worker(seed):
        rng = np.random.default_rng(seed)
        for _ in range(30):
            for executable, size in zip(executables, (50_000, 64)):
                x = rng.standard_normal(size)
                out = executable.run([x])[0]
                if not np.allclose(out, (x * 2 + 1) ** 2 - x):
                    errors.append(seed)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pool.close()
    assert not errors
    assert len(executables[0].workspaces) >= 1


def _rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_100k_calls_leave_memory_flat():
    executable = compile_program(chain_program((64,)))
    x = np.ones(64)
    for _ in range(2000):
        executable.run([x])
    before = _rss_bytes()
    for _ in range(100_000):
        executable.run([x])
    grown = _rss_bytes() - before
    assert grown < 2 * 1024 * 1024, f"RSS grew by {grown} bytes over 100k calls"
    assert len(executable.workspaces) == 1


# ---------------------------------------------------------------- through gj.jit

def test_jit_elementwise_matmul_and_host_steps_against_numpy():
    import graphjit as gj

    def block(x, w, b, idx):
        h = np.maximum(x @ w + b, 0.0)
        return h[idx] * 2.0, h.sum(axis=-1)

    rng = np.random.default_rng(5)
    args = (rng.standard_normal((8, 6)).astype(np.float32),
            rng.standard_normal((6, 5)).astype(np.float32),
            rng.standard_normal(5).astype(np.float32), np.array([3, 1, 1]))
    compiled = gj.jit(block)
    for got, expected in zip(compiled(*args), block(*args)):
        assert_same(np.asarray(got), expected, rtol=1e-5)


def test_jit_concurrent_calls_share_one_compile():
    import graphjit as gj

    @gj.jit
    def scale(x, y):
        return x * 2.0 + y

    results = {}

    def call(seed):
        x = np.full(1000, float(seed))
        results[seed] = scale(x, x)

    threads = [threading.Thread(target=call, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert scale.cache_info()["misses"] == 1
    for seed, out in results.items():
        np.testing.assert_array_equal(out, np.full(1000, 3.0 * seed))


def test_big_outputs_come_from_a_pool_and_are_reused_only_once_the_user_drops_them():
    executable = compile_program(add_one_program(shape=(100_000,), dtype=np.float32))
    x = np.arange(100_000, dtype=np.float32)
    first = executable.run([x])[0]
    second = executable.run([x])[0]
    assert not np.shares_memory(first, second)
    assert_same(first, x + 1)
    assert_same(second, x + 1)
    address = first.ctypes.data
    view = first[10:]
    del first
    third = executable.run([x])[0]
    assert not np.shares_memory(third, view)            # a live view keeps its block out
    del view
    fourth = executable.run([x])[0]
    assert fourth.ctypes.data == address                 # the block came back, pages stay warm
    assert_same(fourth, x + 1)
    assert_same(third, x + 1)
    assert fourth.flags.c_contiguous and fourth.flags.writeable


@pytest.mark.parametrize("work_factor, parallel_calls", [(1, 1), (10**9, 0)])
def test_epilogue_after_a_native_product_is_split_only_past_its_threshold(
        monkeypatch, work_factor, parallel_calls):
    """OpenBLAS's workers still spin right after a product, so an epilogue is split only past
    EPILOGUE_WORK_FACTOR times the loops' threshold (here lowered so that a loop would split)."""
    import graphjit.runtime.cpu.backend as cpu_module
    import graphjit.runtime.cpu.threads as threads_module

    monkeypatch.setattr(threads_module, "MIN_WORK_PER_CHUNK", 100)
    monkeypatch.setattr(cpu_module, "EPILOGUE_WORK_FACTOR", work_factor)
    pool = CountingPool(2)
    executable = compile_program(matmul_program((64, 32), (32, 48), np.float32,
                                                epilogue_bias=True), pool=pool)
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((64, 32), np.float32), rng.standard_normal((32, 48), np.float32)
    bias = rng.standard_normal(48, np.float32)
    assert_same(executable.run([a, b, bias])[0], a @ b + bias, rtol=1e-4)
    assert pool.parallel_calls == parallel_calls
    pool.close()
