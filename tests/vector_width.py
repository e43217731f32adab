"""What "vectorised" means on the CPU the tests compile for, derived from that CPU, never assumed.

SSE gives 16-byte vectors (4 floats), AVX2 32 (8 floats), AVX-512 64 (16 floats). LLVM may prefer
256-bit vectors on an AVX-512 CPU, so on any AVX-capable target a vectorised loop uses vectors of at
least 32 bytes. LLVM IR may hold vector types wider than any register (an interleaved loop, split
by the code generator), so the upper bound is read off the assembly's registers instead.
"""
from __future__ import annotations

import re

from graphjit.runtime.cpu import llvm

_FLOAT_VECTOR = re.compile(r"<(\d+) x (float|double)>")
_SIZES = {"float": 4, "double": 8}


def widest_float_vector_bytes(ir_text: str) -> int:
    """The widest float or double vector type in LLVM IR, in bytes (0 when there is none)."""
    return max((int(lanes) * _SIZES[kind] for lanes, kind in _FLOAT_VECTOR.findall(ir_text)),
               default=0)


_REGISTER = re.compile(r"%([xyz])mm\d+")
_REGISTER_BYTES = {"x": 16, "y": 32, "z": 64}


def widest_register_bytes(assembly: str) -> int:
    """The widest SIMD register x86-64 assembly uses, in bytes (0 when it uses none)."""
    return max((_REGISTER_BYTES[kind] for kind in _REGISTER.findall(assembly)), default=0)


def is_vectorised(ir_text: str) -> bool:
    return min(llvm.vector_bytes(), 32) <= widest_float_vector_bytes(ir_text)
