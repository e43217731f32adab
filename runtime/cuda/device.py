"""Where CUDA kernels run: a real GPU through Numba, or Numba's CUDA simulator.

`NUMBA_ENABLE_CUDASIM=1` (set before numba is imported) swaps `numba.cuda` for a Python simulator:
every kernel then runs as Python, thread by thread, on NumPy scalars. Without a GPU, a driver or
the simulator, compiling for target="cuda" raises `CUDAUnavailableError` saying how to get one.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
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
    try:
        return cuda.as_cuda_array(value)
    except Exception as exc:
        raise GraphjitError(f"the device argument of type {type(value).__name__} cannot be "
                            f"used by Numba ({type(exc).__name__}: {exc}); pass a Numba, CuPy "
                            "or torch.cuda array on the current device") from None


# ---------------------------------------------------------------- device inputs and results

SIMULATOR_LAUNCH_LOCK = threading.RLock()
_COPY_KERNELS: dict[tuple[int, bool], Any] = {}
_COPY_LOCK = threading.Lock()


def _copy_kernel(ndim: int, gather: bool = True) -> Any:
    """A grid-stride copy between an `ndim`-d strided device array and a flat contiguous one:
    `gather` reads the strided one (strided_copy(src, flat)), else writes it
    (strided_copy(flat, dst)). Compiled lazily, once per rank and direction, for whatever dtypes
    and layouts it is called with."""
    with _COPY_LOCK:
        kernel = _COPY_KERNELS.get((ndim, gather))
        if kernel is None:
            strided = "src" if gather else "dst"
            flat_size = "dst.size" if gather else "src.size"
            lines = ["def strided_copy(src, dst):",
                     f"    for flat in range(cuda.grid(1), {flat_size}, cuda.gridsize(1)):",
                     "        rest = flat"]
            for d in reversed(range(1, ndim)):
                lines += [f"        i{d} = rest % {strided}.shape[{d}]",
                          f"        rest //= {strided}.shape[{d}]"]
            lines.append("        i0 = rest")
            index = ", ".join(f"i{d}" for d in range(ndim))
            lines.append(f"        dst[flat] = src[{index}]" if gather
                         else f"        dst[{index}] = src[flat]")
            cuda = numba_cuda()
            namespace: dict[str, Any] = {"cuda": cuda}
            exec("\n".join(lines), namespace)
            kernel = _COPY_KERNELS[ndim, gather] = cuda.jit(namespace["strided_copy"])
    return kernel


def _launch_copy(size: int, ndim: int, gather: bool, src: Any, dst: Any) -> None:
    threads = 8 if simulator_enabled() else 256
    blocks = 2 if simulator_enabled() else min(-(-size // threads), 4096)
    kernel = _copy_kernel(ndim, gather)[blocks, threads]
    if simulator_enabled():
        with SIMULATOR_LAUNCH_LOCK:
            kernel(src, dst)
    else:
        kernel(src, dst)


def contiguous_device_copy(array: Any) -> Any:
    """A C-contiguous device copy of a strided device array, made on the device."""
    cuda = numba_cuda()
    shape = tuple(array.shape)
    size = 1
    for extent in shape:
        size *= extent
    out = cuda.device_array(max(size, 1), np.dtype(array.dtype))[:size]
    if size:
        _launch_copy(size, len(shape), True, array, out)
    return out.reshape(shape)


def copy_into(target: Any, value: Any) -> None:
    """Write `value` into the caller's array `target` (an argument the function updated in
    place), where either is a device array: device to device (a strided target by one scatter
    kernel), device to host, or host to device."""
    cuda = numba_cuda()
    if isinstance(target, np.ndarray):
        np.copyto(target, as_numba_device_array(value).copy_to_host().reshape(target.shape))
        return
    destination = as_numba_device_array(target)
    shape = tuple(destination.shape)
    source = (cuda.to_device(np.ascontiguousarray(value, dtype=destination.dtype))
              if isinstance(value, np.ndarray | np.generic) else as_numba_device_array(value))
    size = 1
    for extent in shape:
        size *= extent
    if not size:
        return
    flat = source.reshape(size) if source.is_c_contiguous() else \
        contiguous_device_copy(source).reshape(size)
    if destination.is_c_contiguous():
        destination.reshape(size).copy_to_device(flat)
    else:
        _launch_copy(size, len(shape), False, flat, destination)


def output_allocator() -> Callable[[int, np.dtype], Any]:
    """How a call allocates its outputs (flat device arrays the caller keeps). With CuPy on a
    GPU: from CuPy's memory pool, wrapped for Numba without a copy (the Numba array owns the CuPy
    one, so the block returns to the pool when the caller drops the result); a fresh
    cuMemAlloc per output, and Numba's deferred cuMemFree, which synchronises the device, would
    cost more than a large elementwise kernel. Otherwise (no CuPy, the simulator) Numba's own
    device_array."""
    cuda = numba_cuda()
    if not simulator_enabled():
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                def pooled(size: int, dtype: np.dtype) -> Any:
                    return cuda.as_cuda_array(cupy.empty(max(size, 1), dtype))[:size]
                return pooled
        except Exception:
            pass
    return lambda size, dtype: cuda.device_array(max(size, 1), dtype)[:size]


def _to_cupy(array: Any) -> Any:
    import cupy

    return cupy.asarray(array)          # zero-copy through __cuda_array_interface__


def _to_torch(array: Any) -> Any:
    import torch

    return torch.as_tensor(array, device="cuda")   # zero-copy through __cuda_array_interface__


# the library a device array comes from -> how to hand a Numba device array back in its kind
RESULT_KINDS: dict[str, Callable[[Any], Any]] = {"cupy": _to_cupy, "torch": _to_torch}


def result_converter(example: Any) -> Callable[[Any], Any]:
    """How results go back to a caller who passed `example`: device arrays of the same library
    (CuPy, torch); Numba device arrays for Numba's own and any other __cuda_array_interface__."""
    library = type(example).__module__.split(".")[0]
    return RESULT_KINDS.get(library, _identity)


def _identity(array: Any) -> Any:
    return array


def device_dtype(value: Any) -> np.dtype:
    """The NumPy dtype of a device array (torch dtypes are not NumPy dtypes: read the typestr)."""
    interface = getattr(value, "__cuda_array_interface__", None)
    if interface is not None:
        return np.dtype(interface["typestr"])
    return np.dtype(value.dtype)
