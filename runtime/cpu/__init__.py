"""The CPU backend: a Program compiled to one native module (llvmlite), run by an Executable.

    backend.py     CPUBackend: plans a Program's steps, renders, links and loads them
    loops.py       LoopKernel -> LLVM IR (loop nests, positions, reduction passes)
    elementwise.py the elementwise lowering table (one entry per Op) and casts
    reducers.py    the reduction accumulators (one entry per reduction Op and dtype kind)
    emitter.py     the small LLVM IR text emitter every renderer writes with
    mathlib.py     vectorisable exp/log/tanh/... written in LLVM IR
    llvm.py        llvmlite: compile/link/load, native entry segments, symbols
    blas.py        GEMM calls into OpenBLAS
    executable.py  Executable: runs the planned steps over a workspace of buffers
    threads.py     the worker pool large kernels are split over
"""
from .backend import CPUBackend

__all__ = ["CPUBackend"]
