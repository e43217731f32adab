"""Run a `Program` with NumPy, exactly as compiler/kernel.py defines it.

This is the executable definition of the Program semantics and the oracle for both backends:
every LOAD is an `as_strided` view of its buffer over the loop space, every op applies the op
table's NumPy implementation, reductions fold the reduce axes with keepdims, and every store
writes through an `as_strided` view. TEMP buffers really share their slot's memory (filled with
garbage first), so a wrong buffer plan gives wrong answers here too.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import GraphjitError, execution_error
from .interpret import eval_node
from .kernel import (
    Access, Buffer, BufferKind, HostKernel, Instr, Level, LoopKernel, MatmulKernel, Program,
    Operand, Kernel,
)
from .ops import OPS, REDUCTIONS

GARBAGE_BYTE = 0xA5  # fresh memory is not zero on a real machine either


# ---------------------------------------------------------------- memory

def allocate(program: Program, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One C-contiguous array per buffer; TEMP buffers of a slot are views of one allocation."""
    slot_bytes: dict[int, int] = {}
    for buffer in program.buffers:
        if buffer.kind is BufferKind.TEMP and buffer.slot is not None:
            slot_bytes[buffer.slot] = max(slot_bytes.get(buffer.slot, 0), buffer.nbytes)
    slots = {slot: np.full(size, GARBAGE_BYTE, np.uint8) for slot, size in slot_bytes.items()}
    arrays = []
    for buffer in program.buffers:
        arrays.append(_buffer_array(buffer, inputs, slots))
    return arrays


def _buffer_array(buffer: Buffer, inputs: Sequence[np.ndarray],
                  slots: dict[int, np.ndarray]) -> np.ndarray:
    if buffer.kind is BufferKind.PARAM:
        value = np.array(inputs[buffer.param_index], dtype=buffer.dtype, order="C", copy=None)
        if value.shape != buffer.shape:
            raise GraphjitError(f"input {buffer.param_index} has shape {value.shape}, the "
                                f"program was built for {buffer.shape}")
        return value
    if buffer.kind is BufferKind.CONST:
        return np.array(buffer.value, dtype=buffer.dtype, order="C").reshape(buffer.shape)
    if buffer.kind is BufferKind.TEMP and buffer.slot is not None:
        raw = slots[buffer.slot][:buffer.nbytes]
        return raw.view(buffer.dtype).reshape(buffer.shape)
    raw = np.full(buffer.nbytes, GARBAGE_BYTE, np.uint8)
    return raw.view(buffer.dtype).reshape(buffer.shape)


def strided(array: np.ndarray, access: Access, shape: tuple[int, ...]) -> np.ndarray:
    """The view of `array` (C-contiguous) that `access` describes over `shape`."""
    if 0 in shape:
        return np.empty(shape, array.dtype)
    flat = array.reshape(-1)
    itemsize = array.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        flat[access.offset:], shape, tuple(s * itemsize for s in access.strides))


# ---------------------------------------------------------------- loop kernels

def level_shape(kernel: LoopKernel, level: Level) -> tuple[int, ...]:
    """FULL values span the loop space; OUTER values have extent 1 on the reduce axes."""
    if level is Level.FULL:
        return kernel.loop_shape
    return tuple(1 if d in kernel.reduce_axes else e for d, e in enumerate(kernel.loop_shape))


def _load(kernel: LoopKernel, instr: Instr, values: list, arrays: list) -> np.ndarray:
    access = instr.attrs["access"]
    view = strided(arrays[access.buffer], access, level_shape(kernel, instr.level))
    return np.array(view, copy=True)  # later stores of this kernel must not change it


def _const(kernel: LoopKernel, instr: Instr, values: list, arrays: list) -> np.ndarray:
    return np.full(level_shape(kernel, instr.level), instr.attrs["value"], dtype=instr.dtype)


def _reduce(kernel: LoopKernel, instr: Instr, values: list, arrays: list) -> np.ndarray:
    (operand,) = (values[a] for a in instr.args)
    operand = np.broadcast_to(operand, kernel.loop_shape)
    attrs = dict(instr.attrs)
    attrs["keepdims"] = True
    if "axes" in attrs:
        attrs["axes"] = kernel.reduce_axes
    else:
        (attrs["axis"],) = kernel.reduce_axes
    return OPS[instr.op].impl(operand, **attrs)


def _apply(kernel: LoopKernel, instr: Instr, values: list, arrays: list) -> np.ndarray:
    return OPS[instr.op].impl(*(values[a] for a in instr.args), **instr.attrs)


EVALUATE: dict[object, Callable] = {Operand.LOAD: _load, Operand.CONST: _const}
EVALUATE.update({op: _reduce for op in REDUCTIONS})


def run_loop_kernel(kernel: LoopKernel, arrays: list[np.ndarray]) -> None:
    values: list[np.ndarray] = []
    for index, instr in enumerate(kernel.instrs):
        try:
            if instr.level is Level.OUTER and instr.op not in REDUCTIONS:
                if any(kernel.instrs[a].level is Level.FULL for a in instr.args):
                    raise AssertionError("an OUTER instruction reads a FULL one")
            result = EVALUATE.get(instr.op, _apply)(kernel, instr, values, arrays)
            result = np.asarray(result)
            if result.dtype != instr.dtype:
                result = result.astype(instr.dtype)
            values.append(np.broadcast_to(result, level_shape(kernel, instr.level)))
        except Exception as exc:
            raise GraphjitError(f"while executing {kernel.name} v{index} = "
                                f"{_op_name(instr)}: {type(exc).__name__}: {exc}",
                                instr.source) from exc
    for store in kernel.stores:
        level = kernel.instrs[store.instr].level
        if level is Level.OUTER and any(store.access.strides[d] for d in kernel.reduce_axes):
            raise GraphjitError(f"{kernel.name}: an OUTER value stored with a FULL access")
        shape = level_shape(kernel, level)
        target = strided(arrays[store.access.buffer], store.access, shape)
        target[...] = values[store.instr]


def _op_name(instr: Instr) -> str:
    return instr.op.value


# ---------------------------------------------------------------- other steps

def run_matmul_kernel(kernel: MatmulKernel, arrays: list[np.ndarray]) -> None:
    shape_a = (*kernel.batch, kernel.m, kernel.k)
    shape_b = (*kernel.batch, kernel.k, kernel.n)
    a = strided(arrays[kernel.a.buffer], kernel.a, shape_a)
    b = strided(arrays[kernel.b.buffer], kernel.b, shape_b)
    product = np.matmul(a, b)
    arrays[kernel.out][...] = product.astype(kernel.dtype, copy=False)
    if kernel.epilogue is not None:
        run_loop_kernel(kernel.epilogue, arrays)


def run_host_kernel(kernel: HostKernel, program: Program, arrays: list[np.ndarray]) -> None:
    node = program.graph.node(kernel.node)
    try:
        result = eval_node(node, [arrays[i] for i in kernel.inputs])
    except Exception as exc:
        raise execution_error(f"while executing {kernel.name} = {kernel.op.value}: "
                              f"{type(exc).__name__}: {exc}", exc, node.source) from exc
    arrays[kernel.out][...] = result


def run_step(step: Kernel, program: Program, arrays: list[np.ndarray]) -> None:
    if isinstance(step, LoopKernel):
        run_loop_kernel(step, arrays)
    elif isinstance(step, MatmulKernel):
        run_matmul_kernel(step, arrays)
    else:
        run_host_kernel(step, program, arrays)


def run_program(program: Program, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Execute `program` on the graph's params (in order); return the outputs in order."""
    arrays = allocate(program, [np.asarray(x) for x in inputs])
    with np.errstate(all="ignore"):
        for step in program.steps:
            run_step(step, program, arrays)
    return [arrays[b] for b in program.outputs]
