"""The small LLVM IR text emitter every CPU renderer writes with, and the type/constant helpers.

An `Emitter` writes the body of one function as text; a `ModuleParts` collects what the module
around it needs (intrinsic declarations, helper function definitions, globals).
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

FLOAT_FLAGS = "contract"  # FMA contraction only: never nnan/ninf/nsz (NaN/inf parity is tested)

LLVM_TYPES: dict[np.dtype, str] = {
    np.dtype(np.bool_): "i1",
    np.dtype(np.int32): "i32",
    np.dtype(np.int64): "i64",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
    # storage-only dtypes (compiler/passes/legalize.py): loops load, store and cast them
    np.dtype(np.int8): "i8",
    np.dtype(np.int16): "i16",
    np.dtype(np.uint8): "i8",
    np.dtype(np.uint16): "i16",
    np.dtype(np.uint32): "i32",
    np.dtype(np.uint64): "i64",
    np.dtype(np.float16): "half",
}
# How a value of each dtype sits in memory (NumPy bools are bytes holding 0 or 1).
MEMORY_TYPES: dict[np.dtype, str] = {**LLVM_TYPES, np.dtype(np.bool_): "i8"}
INT_BITS: dict[str, int] = {"i1": 1, "i8": 8, "i16": 16, "i32": 32, "i64": 64}
FLOAT_DTYPE_OF: dict[str, np.dtype] = {
    "float": np.dtype(np.float32), "double": np.dtype(np.float64),
    "half": np.dtype(np.float16),
}
FLOAT_BITS: dict[str, int] = {"half": 16, "float": 32, "double": 64}
# The range of each fixed-width integer type (NumPy's float->int casts and integer reductions).
INT_LIMITS: dict[str, tuple[int, int]] = {
    "i32": (-(1 << 31), (1 << 31) - 1),
    "i64": (-(1 << 63), (1 << 63) - 1),
}
SUFFIX: dict[str, str] = {"float": "f32", "double": "f64", "i32": "i32", "i64": "i64", "i1": "i1",
                          "half": "f16", "i8": "i8", "i16": "i16"}


def llvm_type(dtype: np.dtype) -> str:
    return LLVM_TYPES[np.dtype(dtype)]


def float_const(value: float, ty: str) -> str:
    """An LLVM float literal: hexadecimal double bits (exact; float literals must be f32-exact)."""
    if ty in ("float", "half"):
        value = float(FLOAT_DTYPE_OF[ty].type(value))
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", float(value)))[0]


def int_const(value: int, ty: str) -> str:
    bits = INT_BITS[ty]
    if ty == "i1":
        return "true" if value else "false"
    value = int(value) & ((1 << bits) - 1)   # wrap like NumPy's fixed-width integers
    return str(value - (1 << bits) if value >= 1 << (bits - 1) else value)


def const(value: float | int | bool, ty: str) -> str:
    return float_const(value, ty) if ty in FLOAT_DTYPE_OF else int_const(value, ty)


# ---------------------------------------------------------------- module parts and the emitter

@dataclass
class ModuleParts:
    """What one LLVM module collects while kernels and math functions are written into it."""

    declarations: dict[str, str] = field(default_factory=dict)   # intrinsic name -> declare line
    definitions: dict[str, str] = field(default_factory=dict)    # function name -> define text
    globals: dict[str, str] = field(default_factory=dict)        # global name -> definition

    def declare(self, name: str, ret: str, params: Sequence[str]) -> None:
        self.declarations.setdefault(name, f"declare {ret} @{name}({', '.join(params)})")

    def require(self, name: str, build: Callable[[ModuleParts], str]) -> None:
        """Define function `name` with `build(parts)` unless it is already defined."""
        if name not in self.definitions:
            self.definitions[name] = ""          # placeholder: recursion-safe
            self.definitions[name] = build(self)

    def text(self) -> str:
        return "\n".join([*self.globals.values(), *self.declarations.values(),
                          *self.definitions.values()])


class Emitter:
    """Writes the body of one LLVM function as text; every helper returns the new value's name."""

    def __init__(self, parts: ModuleParts):
        self.parts = parts
        self.lines: list[str] = []
        self.block = "entry"
        self._counter = 0

    # -- plumbing
    def fresh(self, hint: str = "v") -> str:
        self._counter += 1
        return f"%{hint}{self._counter}"

    def label(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}{self._counter}"

    def assign(self, rhs: str, hint: str = "v") -> str:
        name = self.fresh(hint)
        self.lines.append(f"  {name} = {rhs}")
        return name

    def emit(self, text: str) -> None:
        self.lines.append(f"  {text}")

    def start_block(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.block = label

    def br(self, label: str) -> None:
        self.emit(f"br label %{label}")

    def cond_br(self, cond: str, if_true: str, if_false: str) -> None:
        self.emit(f"br i1 {cond}, label %{if_true}, label %{if_false}")

    # -- floating point
    def fbin(self, opcode: str, ty: str, a: str, b: str, flags: str = FLOAT_FLAGS) -> str:
        return self.assign(f"{opcode} {flags} {ty} {a}, {b}".replace("  ", " "), "f")

    def fadd(self, ty: str, a: str, b: str) -> str:
        return self.fbin("fadd", ty, a, b)

    def fsub(self, ty: str, a: str, b: str) -> str:
        return self.fbin("fsub", ty, a, b)

    def fmul(self, ty: str, a: str, b: str) -> str:
        return self.fbin("fmul", ty, a, b)

    def fdiv(self, ty: str, a: str, b: str) -> str:
        return self.fbin("fdiv", ty, a, b)

    def fneg(self, ty: str, a: str) -> str:
        return self.assign(f"fneg {ty} {a}", "f")

    def fcmp(self, pred: str, ty: str, a: str, b: str) -> str:
        return self.assign(f"fcmp {pred} {ty} {a}, {b}", "c")

    def c(self, value: float | int | bool, ty: str) -> str:
        return const(value, ty)

    # -- integers and bits
    def ibin(self, opcode: str, ty: str, a: str, b: str) -> str:
        return self.assign(f"{opcode} {ty} {a}, {b}", "i")

    def icmp(self, pred: str, ty: str, a: str, b: str) -> str:
        return self.assign(f"icmp {pred} {ty} {a}, {b}", "c")

    def select(self, cond: str, ty: str, a: str, b: str) -> str:
        return self.assign(f"select i1 {cond}, {ty} {a}, {ty} {b}", "s")

    def cast(self, opcode: str, from_ty: str, value: str, to_ty: str) -> str:
        return self.assign(f"{opcode} {from_ty} {value} to {to_ty}", "x")

    # -- calls
    def intrinsic(self, name: str, ret: str, args: Sequence[tuple[str, str]]) -> str:
        """Call an LLVM intrinsic (declared on first use); args are (type, value) pairs."""
        self.parts.declare(name, ret, [t for t, _ in args])
        return self.call(ret, name, args)

    def call(self, ret: str, name: str, args: Sequence[tuple[str, str]]) -> str:
        joined = ", ".join(f"{t} {v}" for t, v in args)
        return self.assign(f"call {ret} @{name}({joined})", "r")

    def unary_intrinsic(self, base: str, ty: str, x: str) -> str:
        return self.intrinsic(f"llvm.{base}.{SUFFIX[ty]}", ty, [(ty, x)])

    def binary_intrinsic(self, base: str, ty: str, a: str, b: str) -> str:
        return self.intrinsic(f"llvm.{base}.{SUFFIX[ty]}", ty, [(ty, a), (ty, b)])

    # -- small compound helpers
    def poly(self, ty: str, x: str, coeffs: Sequence[float]) -> str:
        """Horner evaluation of coeffs[0]*x^n + ... + coeffs[n] (highest degree first)."""
        acc = self.c(coeffs[0], ty)
        for coeff in coeffs[1:]:
            acc = self.fadd(ty, self.fmul(ty, acc, x), self.c(coeff, ty))
        return acc

    def is_nan(self, ty: str, x: str) -> str:
        return self.fcmp("uno", ty, x, x)

    def fabs(self, ty: str, x: str) -> str:
        return self.unary_intrinsic("fabs", ty, x)

    def copysign(self, ty: str, magnitude: str, sign: str) -> str:
        return self.binary_intrinsic("copysign", ty, magnitude, sign)

    def clamp_finite(self, ty: str, x: str, lo: float, hi: float) -> str:
        """Clamp x into [lo, hi], mapping NaN to 0 (callers restore NaN at the end).

        Feeding NaN on into fptosi would create poison; a plain 0 keeps every lane defined."""
        x = self.select(self.fcmp("ogt", ty, x, self.c(hi, ty)), ty, self.c(hi, ty), x)
        x = self.select(self.fcmp("olt", ty, x, self.c(lo, ty)), ty, self.c(lo, ty), x)
        return self.select(self.is_nan(ty, x), ty, self.c(0.0, ty), x)
