"""Where CUDA kernels run: a real GPU through Numba, or Numba's CUDA simulator.

`NUMBA_ENABLE_CUDASIM=1` (set before numba is imported) swaps `numba.cuda` for a Python simulator:
every kernel then runs as Python, thread by thread, on NumPy scalars. Without a GPU, a driver or
the simulator, compiling for target="cuda" raises `CUDAUnavailableError` saying how to get one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

HOW_TO_ENABLE = (
    "To run target='cuda': install the CUDA extra (pip install 'graphjit[cuda]') and run on a "
    "machine with an NVIDIA GPU and driver, or set NUMBA_ENABLE_CUDASIM=1 in the environment "
    "before Python starts to run the kernels in Numba's CUDA simulator (slow, for testing)."
)


class CUDAUnavailableError(GraphjitError, RuntimeError):
    """target='cuda' was asked for on a machine with no usable GPU (and no simulator)."""


@dataclass(frozen=True)
class DeviceInfo:
    simulator: bool
    name: str
    compute_capability: tuple[int, int]
    sm_count: int


def numba_cuda() -> Any:
    """The `numba.cuda` module, or a CUDAUnavailableError when it cannot be imported."""
    try:
        from numba import cuda
    except Exception as exc:  # numba-cuda missing or broken
        raise CUDAUnavailableError(f"numba.cuda cannot be imported ({exc}). {HOW_TO_ENABLE}") \
            from None
    return cuda


def simulator_enabled() -> bool:
    try:
        from numba import config
    except Exception:
        return False
    return bool(getattr(config, "ENABLE_CUDASIM", False))


def device_info() -> DeviceInfo:
    """The device kernels will run on; raises CUDAUnavailableError when there is none."""
    cuda = numba_cuda()
    if simulator_enabled():
        return DeviceInfo(True, "Numba CUDA simulator", (9, 0), 1)
    try:
        available = cuda.is_available()
    except Exception:
        available = False
    if not available:
        raise CUDAUnavailableError(f"no CUDA GPU or driver was found on this machine. "
                                   f"{HOW_TO_ENABLE}")
    try:
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        return DeviceInfo(False, name, tuple(device.compute_capability),
                          int(device.MULTIPROCESSOR_COUNT))
    except Exception as exc:
        raise CUDAUnavailableError(f"the CUDA device could not be opened ({exc}). "
                                   f"{HOW_TO_ENABLE}") from None


def is_device_array(value: Any) -> bool:
    """Numba device arrays, the simulator's, and anything with __cuda_array_interface__
    (CuPy, torch.cuda tensors)."""
    if isinstance(value, np.ndarray | np.generic | int | float | bool):
        return False
    return hasattr(value, "__cuda_array_interface__") or type(value).__name__ == "FakeCUDAArray"


def as_numba_device_array(value: Any) -> Any:
    """A Numba view of a device array (no copy)."""
    cuda = numba_cuda()
    if hasattr(value, "copy_to_host"):    # already a Numba (or simulator) device array
        return value
    return cuda.as_cuda_array(value)
