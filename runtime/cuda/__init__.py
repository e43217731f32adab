"""The CUDA backend: Programs compiled to Numba CUDA kernels (or run in Numba's CUDA simulator
when NUMBA_ENABLE_CUDASIM=1).

    CUDABackend().compile(program, stats) -> CUDAExecutable   (.run(leaves), .texts)

Files: lowering.py (the elementwise lowering table keyed by Op), render.py (kernel source per
step), launch.py (launch configurations), executable.py (device memory and the call path),
device.py (GPU / simulator detection and the "no GPU" error), backend.py (compile + cache).
"""
from .backend import KERNEL_CACHE, CUDABackend, KernelCache, program_ptx, render_program
from .device import CUDAUnavailableError
from .executable import CUDAExecutable

__all__ = [
    "CUDABackend", "CUDAExecutable", "CUDAUnavailableError", "KERNEL_CACHE", "KernelCache",
    "program_ptx", "render_program",
]
