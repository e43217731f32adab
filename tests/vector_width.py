"""What "vectorised" means on the CPU the tests compile for, derived from that CPU, never assumed.

SSE gives 16-byte vectors (4 floats), AVX2 32 (8 floats), AVX-512 64 (16 floats). LLVM may prefer
256-bit vectors on an AVX-512 CPU, so on any AVX-capable target a vectorised loop uses vectors of at
least 32 bytes and at most the target's widest register.
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


def is_vectorised(ir_text: str) -> bool:
    target = llvm.vector_bytes()
    return min(target, 32) <= widest_float_vector_bytes(ir_text) <= target
