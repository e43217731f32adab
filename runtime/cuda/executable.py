"""The compiled CUDA program: device buffers plus an ordered list of kernel launches.

Memory: CONST buffers are uploaded once, when the executable is built. TEMP buffers (buffers
sharing a planner slot share one allocation) and the backend's own scratch buffers (the partial
results of reductions split over many blocks) form a *workspace*; workspaces come from a pool, so
two host threads may call one executable at once, each with its own temporaries, and a workspace
is reused by later calls instead of reallocated. OUTPUT buffers are allocated fresh on every call
(the caller keeps them): from CuPy's memory pool when CuPy and a GPU are present (device.py
`output_allocator`), else from Numba's allocator. Every buffer lives on the device as a flat 1-D
array.

Host inputs (NumPy arrays, NumPy or Python scalars) are copied in once per call and outputs copied
out once, returned as NumPy arrays. When any input is already on the device (a Numba device array
or anything with `__cuda_array_interface__`: CuPy, torch.cuda), no host copy is made: contiguous
device inputs are used in place, strided ones are gathered by one device kernel, and the outputs
come back as device arrays of the caller's kind (CuPy in, CuPy out; torch in, torch out; Numba
otherwise). 0-d scalar inputs are still uploaded: they are a few bytes.

HostKernels (ops with no CUDA lowering, e.g. gathers and scatters) copy their inputs to the host,
run the op's NumPy implementation (compiler.interpret.eval_node), and copy the result back.
"""
from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphjit.compiler.errors import ArgumentError, GraphjitError, execution_error
from graphjit.compiler.interpret import eval_node
from graphjit.compiler.ir import Node
from graphjit.compiler.kernel import Buffer, BufferKind, Program

from .device import (
    SIMULATOR_LAUNCH_LOCK, CUDAUnavailableError, as_numba_device_array, contiguous_device_copy,
    is_device_array, numba_cuda, output_allocator, result_converter,
)


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
        # the simulator's threads. The simulator swaps the kernel module's `cuda` global for
        # each launch, so two host threads must not launch at once (a GPU has no such limit;
        # calls still interleave between launches).
        with SIMULATOR_LAUNCH_LOCK, warnings.catch_warnings():
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
        try:
            with np.errstate(all="ignore"):
                result = eval_node(self.node, values)
        except GraphjitError:
            raise
        except Exception as exc:
            raise execution_error(f"while executing {self.name}: {type(exc).__name__}: {exc}",
                                  exc, self.node.source) from exc
        if np.size(result):
            table[self.out].copy_to_device(np.ascontiguousarray(result).reshape(-1))


@dataclass
class ExternalStep:
    """A call into a library kernel (cuBLAS through CuPy) on the buffers of the table."""
    name: str
    call: Callable[[list], None]

    def run(self, table: list) -> None:
        self.call(table)


DeviceStep = KernelLaunch | HostStep | ExternalStep


class CUDAExecutable:
    def __init__(self, program: Program, steps: Sequence[DeviceStep], texts: Mapping[str, str],
                 scratch: Sequence[Buffer] = ()):
        self.cuda = numba_cuda()
        self.buffers: list[Buffer] = list(program.buffers) + list(scratch)
        self.steps = list(steps)
        self.outputs = list(program.outputs)
        self.texts = texts
        self._allocate = output_allocator()
        self.params = sorted((b for b in self.buffers if b.kind is BufferKind.PARAM),
                             key=lambda b: b.param_index)
        self._consts = self._upload_consts()
        self._free_workspaces: list[list] = []
        self._lock = threading.Lock()
        self.workspaces_made = 0
        self._free_workspaces.append(self._new_workspace())   # the first call's, made now

    # ------------------------------------------------------------ memory
    def _upload_consts(self) -> list:
        table: list = [None] * len(self.buffers)
        for buffer in self.buffers:
            if buffer.kind is BufferKind.CONST:
                host = np.ascontiguousarray(np.asarray(buffer.value, dtype=buffer.dtype))
                table[buffer.index] = self.cuda.to_device(host.reshape(-1))
        return table

    def _new_workspace(self) -> list:
        """The consts plus freshly allocated TEMP buffers (slots shared) and scratch."""
        cuda = self.cuda
        table = list(self._consts)
        slot_bytes: dict[int, int] = {}
        for buffer in self.buffers:
            if buffer.kind is BufferKind.TEMP and buffer.slot is not None:
                slot_bytes[buffer.slot] = max(slot_bytes.get(buffer.slot, 0), buffer.nbytes)
        slots = {slot: cuda.device_array(max(nbytes, 8), np.uint8)
                 for slot, nbytes in slot_bytes.items()}
        for buffer in self.buffers:
            if buffer.kind is not BufferKind.TEMP:
                continue
            size = _size(buffer)
            if buffer.slot is not None and size:
                table[buffer.index] = slots[buffer.slot].view(buffer.dtype)[:size]
            else:
                table[buffer.index] = cuda.device_array(max(size, 1), buffer.dtype)[:size]
        self.workspaces_made += 1
        return table

    def _take_workspace(self) -> list:
        with self._lock:
            if self._free_workspaces:
                return self._free_workspaces.pop()
        return self._new_workspace()

    def _return_workspace(self, table: list) -> None:
        # Kernels of later calls are queued on the same stream, after this call's: a workspace
        # can be handed to the next call as soon as this call's work is queued.
        with self._lock:
            self._free_workspaces.append(table)

    def _load_param(self, buffer: Buffer, leaf: Any) -> Any:
        if is_device_array(leaf):
            array = as_numba_device_array(leaf)
            if tuple(array.shape) != buffer.shape or np.dtype(array.dtype) != buffer.dtype:
                raise ArgumentError(
                    f"device argument {buffer.param_index} has shape {tuple(array.shape)} and "
                    f"dtype {array.dtype}; this compiled function expects {buffer.shape} "
                    f"{buffer.dtype}")
            if not array.is_c_contiguous():
                array = contiguous_device_copy(array)      # one gather kernel on the device
            return array.reshape(_size(buffer))
        host = np.ascontiguousarray(np.asarray(leaf, dtype=buffer.dtype)).reshape(-1)
        return self.cuda.to_device(host)

    # ------------------------------------------------------------ running
    def run(self, leaves: Sequence[Any]) -> list:
        if len(leaves) != len(self.params):
            raise ArgumentError(f"expected {len(self.params)} argument leaves, got {len(leaves)}")
        device_leaf = next((leaf for leaf in leaves if is_device_array(leaf)), None)
        table = self._take_workspace()
        try:
            for buffer, leaf in zip(self.params, leaves):
                table[buffer.index] = self._load_param(buffer, leaf)
            for buffer in self.buffers:
                if buffer.kind is BufferKind.OUTPUT:
                    table[buffer.index] = self._allocate(_size(buffer), buffer.dtype)
            for step in self.steps:
                try:
                    step.run(table)
                except GraphjitError:
                    raise
                except Exception as exc:
                    raise GraphjitError(f"CUDA step {step.name} failed: {type(exc).__name__}: "
                                        f"{_first_line(exc)}") from None
            if device_leaf is None:
                return [self._host_result(table, index) for index in self.outputs]
            convert = result_converter(device_leaf)
            return [convert(self._device_result(table, index)) for index in self.outputs]
        finally:
            for buffer in self.buffers:     # drop the call's arrays, keep the temporaries
                if buffer.kind in (BufferKind.PARAM, BufferKind.OUTPUT):
                    table[buffer.index] = None
            self._return_workspace(table)

    def _device_result(self, table: list, index: int) -> Any:
        buffer = self.buffers[index]
        array = table[index]
        if buffer.kind is not BufferKind.OUTPUT:   # never hand out our own storage
            copy = self._allocate(_size(buffer), buffer.dtype)
            if _size(buffer):
                copy.copy_to_device(array)
            array = copy
        return array.reshape(buffer.shape)

    def _host_result(self, table: list, index: int) -> np.ndarray:
        buffer = self.buffers[index]
        return table[index].copy_to_host().reshape(buffer.shape)


class DevicelessExecutable:
    """What target='cuda' compiles to on a machine without a GPU (and without the simulator):
    the kernels are rendered and their PTX can be read (`lower().as_text('ptx')`), but calling
    raises CUDAUnavailableError."""

    def __init__(self, texts: Mapping[str, str], error: CUDAUnavailableError):
        self.texts = texts
        self.error = error

    def run(self, leaves: Sequence[Any]) -> list:
        raise CUDAUnavailableError(str(self.error))


def _size(buffer: Buffer) -> int:
    return math.prod(buffer.shape)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
