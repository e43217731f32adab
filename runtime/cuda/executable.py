"""The compiled CUDA program: device buffers plus an ordered list of kernel launches.

Memory: CONST buffers are uploaded once, when the executable is built; TEMP buffers are allocated
once (buffers sharing a planner slot share one allocation) and reused by every call, so an
executable must not run two calls at once; OUTPUT buffers are allocated fresh on every call
(the caller keeps them). Every buffer lives on the device as a flat 1-D array.

Host inputs (NumPy arrays, NumPy or Python scalars) are copied in once per call and outputs copied
out once, returned as NumPy arrays. When any input is already on the device (a Numba device array
or anything with `__cuda_array_interface__`: CuPy, torch.cuda), no array is copied: inputs are
used in place and the outputs are returned as Numba device arrays (0-d scalar inputs are still
uploaded: they are a few bytes).

HostKernels (ops with no CUDA lowering, e.g. gathers and scatters) copy their inputs to the host,
run the op's NumPy implementation (compiler.interpret.eval_node), and copy the result back.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphjit.compiler.errors import ArgumentError, GraphjitError
from graphjit.compiler.interpret import eval_node
from graphjit.compiler.ir import Node
from graphjit.compiler.kernel import Buffer, BufferKind, Program

from .device import as_numba_device_array, is_device_array, numba_cuda


@dataclass
class KernelLaunch:
    name: str
    configured: Any                 # the compiled kernel with its [grid, block] applied
    buffers: tuple[int, ...]
    simulator: bool = False

    def run(self, table: list) -> None:
        if not self.simulator:
            self.configured(*[table[b] for b in self.buffers])
            return
        # Simulated threads compute on NumPy scalars, which warn on inf/NaN/division by zero
        # where a GPU silently gives NumPy's values; the filter is process-wide, so it reaches
        # the simulator's threads.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.configured(*[table[b] for b in self.buffers])


@dataclass
class HostStep:
    name: str
    node: Node
    inputs: tuple[int, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    out: int

    def run(self, table: list) -> None:
        values = [table[b].copy_to_host().reshape(shape)
                  for b, shape in zip(self.inputs, self.input_shapes)]
        with np.errstate(all="ignore"):
            result = eval_node(self.node, values)
        table[self.out].copy_to_device(np.ascontiguousarray(result).reshape(-1))


DeviceStep = KernelLaunch | HostStep


class CUDAExecutable:
    def __init__(self, program: Program, steps: Sequence[DeviceStep], texts: dict[str, str]):
        self.cuda = numba_cuda()
        self.buffers: list[Buffer] = list(program.buffers)
        self.steps = list(steps)
        self.outputs = list(program.outputs)
        self.texts = texts
        self.params = sorted((b for b in self.buffers if b.kind is BufferKind.PARAM),
                             key=lambda b: b.param_index)
        self._persistent = self._allocate_persistent()

    # ------------------------------------------------------------ memory
    def _allocate_persistent(self) -> list:
        """CONST buffers uploaded, TEMP buffers allocated (slots shared); others None."""
        cuda = self.cuda
        table: list = [None] * len(self.buffers)
        slot_bytes: dict[int, int] = {}
        for buffer in self.buffers:
            if buffer.kind is BufferKind.TEMP and buffer.slot is not None:
                slot_bytes[buffer.slot] = max(slot_bytes.get(buffer.slot, 0), buffer.nbytes)
        slots = {slot: cuda.device_array(max(nbytes, 8), np.uint8)
                 for slot, nbytes in slot_bytes.items()}
        for buffer in self.buffers:
            size = _size(buffer)
            if buffer.kind is BufferKind.CONST:
                host = np.ascontiguousarray(np.asarray(buffer.value, dtype=buffer.dtype))
                table[buffer.index] = cuda.to_device(host.reshape(-1))
            elif buffer.kind is BufferKind.TEMP:
                if buffer.slot is not None and size:
                    table[buffer.index] = slots[buffer.slot].view(buffer.dtype)[:size]
                else:
                    table[buffer.index] = cuda.device_array(size, buffer.dtype)
        return table

    def _load_param(self, buffer: Buffer, leaf: Any) -> Any:
        if is_device_array(leaf):
            array = as_numba_device_array(leaf)
            if tuple(array.shape) != buffer.shape or np.dtype(array.dtype) != buffer.dtype:
                raise ArgumentError(
                    f"device argument {buffer.param_index} has shape {tuple(array.shape)} and "
                    f"dtype {array.dtype}; this compiled function expects {buffer.shape} "
                    f"{buffer.dtype}")
            if not array.is_c_contiguous():
                raise ArgumentError(
                    f"device argument {buffer.param_index} is not C-contiguous; graphjit does "
                    "not copy device inputs: pass a contiguous copy (e.g. cupy.ascontiguousarray)")
            return array.reshape(_size(buffer))
        host = np.ascontiguousarray(np.asarray(leaf, dtype=buffer.dtype)).reshape(-1)
        return self.cuda.to_device(host)

    # ------------------------------------------------------------ running
    def run(self, leaves: Sequence[Any]) -> list:
        if len(leaves) != len(self.params):
            raise ArgumentError(f"expected {len(self.params)} argument leaves, got {len(leaves)}")
        on_device = any(is_device_array(leaf) for leaf in leaves)
        table = list(self._persistent)
        for buffer, leaf in zip(self.params, leaves):
            table[buffer.index] = self._load_param(buffer, leaf)
        for buffer in self.buffers:
            if buffer.kind is BufferKind.OUTPUT:
                table[buffer.index] = self.cuda.device_array(_size(buffer), buffer.dtype)
        for step in self.steps:
            try:
                step.run(table)
            except GraphjitError:
                raise
            except Exception as exc:
                raise GraphjitError(f"CUDA step {step.name} failed: {type(exc).__name__}: "
                                    f"{_first_line(exc)}") from None
        return [self._result(table, index, on_device) for index in self.outputs]

    def _result(self, table: list, index: int, on_device: bool) -> Any:
        buffer = self.buffers[index]
        array = table[index]
        if on_device:
            if buffer.kind is not BufferKind.OUTPUT:   # never hand out our own storage
                copy = self.cuda.device_array(_size(buffer), buffer.dtype)
                copy.copy_to_device(array)
                array = copy
            return array.reshape(buffer.shape)
        return array.copy_to_host().reshape(buffer.shape)


def _size(buffer: Buffer) -> int:
    return math.prod(buffer.shape)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
