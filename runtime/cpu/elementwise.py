"""The elementwise lowering table of the CPU renderer: one entry per Op.

`ELEMENTWISE_LOWERINGS[op](renderer, instr, args, scope) -> value` writes the LLVM IR of one
element of `op` (args are the operands' LLVM values) with the renderer's Emitter `renderer.e`.
Adding an op is one entry here; `by_kind(f=..., i=..., b=...)` dispatches on the operands'
dtype kind, and `OP_WEIGHTS` (optional) tells the thread-count heuristics an op is expensive.
Loads and constants lower through OPERAND_LOWERINGS.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from graphjit.compiler.errors import CompileError
from graphjit.compiler.kernel import Access, Instr, Operand
from graphjit.compiler.ops import Op

from .emitter import (FLOAT_BITS, FLOAT_DTYPE_OF, INT_BITS, INT_LIMITS, MEMORY_TYPES, SUFFIX,
                      Emitter, const, llvm_type)
from .mathlib import call_math

if TYPE_CHECKING:
    from .loops import KernelRenderer, Scope

# ---------------------------------------------------------------- sources

Lowering = Callable[["KernelRenderer", Instr, list[str], "Scope"], str]


def lower_load(r: KernelRenderer, instr: Instr, _: list[str], scope: Scope) -> str:
    access: Access = instr.attrs["access"]
    dtype = np.dtype(instr.dtype)
    ptr = r.address(access, scope, dtype)
    value = r.e.assign(f"load {MEMORY_TYPES[dtype]}, ptr {ptr}, align {dtype.itemsize}"
                       f"{r.alias_tags.get(access.buffer, '')}", "l")
    if dtype == np.bool_:
        value = r.e.icmp("ne", "i8", value, "0")
    return value


def lower_const(r: KernelRenderer, instr: Instr, _: list[str], __: Scope) -> str:
    value = instr.attrs["value"]
    value = value.item() if isinstance(value, np.generic | np.ndarray) else value
    return const(value, llvm_type(instr.dtype))


OPERAND_LOWERINGS: dict[Operand, Lowering] = {Operand.LOAD: lower_load, Operand.CONST: lower_const}


# ---------------------------------------------------------------- elementwise ops

KindImpl = Callable[[Emitter, str, list[str]], str]   # (emitter, operand type, args) -> value


def by_kind(f: KindImpl | None = None, i: KindImpl | None = None,
            b: KindImpl | None = None) -> Lowering:
    """A lowering that dispatches on the operands' dtype kind: float, (signed) integer, bool."""
    impls = {"f": f, "i": i, "b": b}

    def lower(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
        dtype = r.arg_dtype(instr)
        impl = impls.get(dtype.kind)
        if impl is None:
            raise CompileError(f"{instr.op.value} is not defined for {dtype} operands",
                               instr.source)
        return impl(r.e, llvm_type(dtype), args)

    return lower


def opcode(name: str) -> KindImpl:
    return lambda e, ty, a: e.ibin(name, ty, a[0], a[1])


def float_opcode(name: str) -> KindImpl:
    return lambda e, ty, a: e.fbin(name, ty, a[0], a[1])


def intrinsic(name: str) -> KindImpl:
    return lambda e, ty, a: e.intrinsic(f"llvm.{name}.{SUFFIX[ty]}", ty,
                                        [(ty, v) for v in a])


def math_fn(name: str) -> KindImpl:
    return lambda e, ty, a: call_math(e, name, ty, *a)


def identity(e: Emitter, ty: str, a: list[str]) -> str:
    return a[0]


def truth(e: Emitter, ty: str, value: str) -> str:
    """NumPy's bool(x): nonzero (NaN counts as true)."""
    if ty == "i1":
        return value
    if ty in FLOAT_DTYPE_OF:
        return e.fcmp("une", ty, value, e.c(0.0, ty))
    return e.icmp("ne", ty, value, "0")


def logical(name: str) -> KindImpl:
    return lambda e, ty, a: e.ibin(name, "i1", *(truth(e, ty, v) for v in a))


def compare(float_pred: str, int_pred: str, bool_pred: str) -> Lowering:
    return by_kind(f=lambda e, ty, a: e.fcmp(float_pred, ty, a[0], a[1]),
                   i=lambda e, ty, a: e.icmp(int_pred, ty, a[0], a[1]),
                   b=lambda e, ty, a: e.icmp(bool_pred, ty, a[0], a[1]))


def float_sign(e: Emitter, ty: str, a: list[str]) -> str:
    x = a[0]
    result = e.select(e.fcmp("oeq", ty, x, e.c(0.0, ty)), ty, e.c(0.0, ty), x)   # +-0 -> 0, NaN
    result = e.select(e.fcmp("olt", ty, x, e.c(0.0, ty)), ty, e.c(-1.0, ty), result)
    return e.select(e.fcmp("ogt", ty, x, e.c(0.0, ty)), ty, e.c(1.0, ty), result)


def int_sign(e: Emitter, ty: str, a: list[str]) -> str:
    positive = e.cast("zext", "i1", e.icmp("sgt", ty, a[0], "0"), ty)
    negative = e.cast("zext", "i1", e.icmp("slt", ty, a[0], "0"), ty)
    return e.ibin("sub", ty, positive, negative)


def float_maximum(pred: str) -> KindImpl:
    """NumPy: (a > b || isnan(a)) ? a : b  (NaN from either side wins; on ties b)."""

    def impl(e: Emitter, ty: str, a: list[str]) -> str:
        x, y = a
        pick_x = e.ibin("or", "i1", e.fcmp(pred, ty, x, y), e.is_nan(ty, x))
        return e.select(pick_x, ty, x, y)

    return impl


def float_floordiv(e: Emitter, ty: str, a: list[str]) -> str:
    """NumPy's npy_floor_divide (divmod based; b == 0 gives a/b)."""
    x, y = a
    zero = e.c(0.0, ty)
    quotient = e.fdiv(ty, x, y)
    mod = e.fbin("frem", ty, x, y)
    div = e.fdiv(ty, e.fsub(ty, x, mod), y)
    signs_differ = e.ibin("xor", "i1", e.fcmp("olt", ty, y, zero), e.fcmp("olt", ty, mod, zero))
    fix = e.ibin("and", "i1", e.fcmp("une", ty, mod, zero), signs_differ)
    div = e.select(fix, ty, e.fsub(ty, div, e.c(1.0, ty)), div)
    floor = e.unary_intrinsic("floor", ty, div)
    round_up = e.fcmp("ogt", ty, e.fsub(ty, div, floor), e.c(0.5, ty))
    floor = e.select(round_up, ty, e.fadd(ty, floor, e.c(1.0, ty)), floor)
    result = e.select(e.fcmp("une", ty, div, zero), ty, floor, e.copysign(ty, zero, quotient))
    return e.select(e.fcmp("oeq", ty, y, zero), ty, quotient, result)


def float_mod(e: Emitter, ty: str, a: list[str]) -> str:
    """NumPy's npy_remainder: the result takes the divisor's sign; b == 0 gives fmod (NaN)."""
    x, y = a
    zero = e.c(0.0, ty)
    mod = e.fbin("frem", ty, x, y)
    signs_differ = e.ibin("xor", "i1", e.fcmp("olt", ty, y, zero), e.fcmp("olt", ty, mod, zero))
    fix = e.ibin("and", "i1", e.fcmp("une", ty, mod, zero), signs_differ)
    result = e.select(fix, ty, e.fadd(ty, mod, y), mod)
    result = e.select(e.fcmp("oeq", ty, mod, zero), ty, e.copysign(ty, zero, y), result)
    return e.select(e.fcmp("oeq", ty, y, zero), ty, mod, result)


def safe_divisor(e: Emitter, ty: str, y: str) -> tuple[str, str, str]:
    """(divisor that cannot trap, y == 0, y == -1): sdiv by 0 or MIN/-1 is undefined in LLVM."""
    is_zero = e.icmp("eq", ty, y, "0")
    is_minus_one = e.icmp("eq", ty, y, "-1")
    safe = e.select(e.ibin("or", "i1", is_zero, is_minus_one), ty, "1", y)
    return safe, is_zero, is_minus_one


def python_sign_fix(e: Emitter, ty: str, remainder: str, y: str) -> str:
    """True where a C remainder is nonzero and its sign differs from the divisor's."""
    differs = e.icmp("slt", ty, e.ibin("xor", ty, remainder, y), "0")
    return e.ibin("and", "i1", e.icmp("ne", ty, remainder, "0"), differs)


def int_floordiv(e: Emitter, ty: str, a: list[str]) -> str:
    x, y = a
    safe, is_zero, is_minus_one = safe_divisor(e, ty, y)
    quotient = e.ibin("sdiv", ty, x, safe)
    remainder = e.ibin("srem", ty, x, safe)
    fix = e.cast("zext", "i1", python_sign_fix(e, ty, remainder, y), ty)
    quotient = e.ibin("sub", ty, quotient, fix)
    quotient = e.select(is_minus_one, ty, e.ibin("sub", ty, "0", x), quotient)   # MIN // -1 wraps
    return e.select(is_zero, ty, "0", quotient)                                  # x // 0 -> 0


def int_mod(e: Emitter, ty: str, a: list[str]) -> str:
    x, y = a
    safe, is_zero, _ = safe_divisor(e, ty, y)
    remainder = e.ibin("srem", ty, x, safe)
    fixed = e.ibin("add", ty, remainder, y)
    remainder = e.select(python_sign_fix(e, ty, remainder, y), ty, fixed, remainder)
    return e.select(is_zero, ty, "0", remainder)                                 # x % 0 -> 0


def power_by_squaring(e: Emitter, ty: str, x: str, n: int,
                      mul: Callable[[str, str], str], one: str) -> str:
    """x**n for a constant n >= 0 with multiplications only."""
    result, base = None, x
    while n:
        if n & 1:
            result = base if result is None else mul(result, base)
        n >>= 1
        if n:
            base = mul(base, base)
    return one if result is None else result


SMALL_FLOAT_POWERS = range(-1, 5)   # exact enough as products (<= 1.5 ulp); larger ones use pow
SMALL_INT_POWERS = range(0, 65)     # integer products are exact (mod 2^n) in any order


def lower_pow(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    dtype = r.arg_dtype(instr)
    ty, e = llvm_type(dtype), r.e
    exponent = r.constant_arg(instr, 1)
    integral = exponent is not None and float(exponent).is_integer()
    if dtype.kind == "f":
        if integral and int(exponent) in SMALL_FLOAT_POWERS:
            n = int(exponent)
            product = power_by_squaring(e, ty, args[0], abs(n), lambda a, b: e.fmul(ty, a, b),
                                        e.c(1.0, ty))
            return e.fdiv(ty, e.c(1.0, ty), product) if n < 0 else product
        if exponent is not None and float(exponent) == 0.5:
            return e.unary_intrinsic("sqrt", ty, args[0])   # NumPy: x ** 0.5 is sqrt(x) exactly
        return call_math(e, "pow", ty, *args)
    if dtype.kind == "i":
        if integral and int(exponent) in SMALL_INT_POWERS:
            return power_by_squaring(e, ty, args[0], int(exponent),
                                     lambda a, b: e.ibin("mul", ty, a, b), "1")
        return call_math(e, "ipow", ty, *args)
    raise CompileError(f"pow is not defined for {dtype} operands", instr.source)


def lower_where(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    condition = truth(r.e, llvm_type(r.arg_dtype(instr, 0)), args[0])
    return r.e.select(condition, llvm_type(instr.dtype), args[1], args[2])


# -- casts: keyed by (source kind, target kind)

CastImpl = Callable[[Emitter, str, str, str], str]   # (emitter, value, from type, to type)


def int_resize(e: Emitter, value: str, src: str, dst: str, extend: str = "sext") -> str:
    bits_from, bits_to = INT_BITS[src], INT_BITS[dst]
    if bits_from == bits_to:
        return value
    return e.cast(extend if bits_to > bits_from else "trunc", src, value, dst)


def unsigned_resize(e: Emitter, value: str, src: str, dst: str) -> str:
    return int_resize(e, value, src, dst, "zext")


def float_resize(e: Emitter, value: str, src: str, dst: str) -> str:
    if src == dst:
        return value
    wider = FLOAT_BITS[dst] > FLOAT_BITS[src]
    return e.cast("fpext" if wider else "fptrunc", src, value, dst)


def float_to_int(e: Emitter, value: str, src: str, dst: str) -> str:
    """Truncation like NumPy on x86: NaN and out-of-range values give the integer minimum."""
    lo, hi = INT_LIMITS[dst]
    converted = e.cast("fptosi", src, value, dst)       # poison out of range: masked below
    # [lo, hi + 1) are exact powers of two in both float types; values in (lo - 1, lo) truncate
    # to lo, which the fallback gives anyway
    in_range = e.ibin("and", "i1", e.fcmp("oge", src, value, e.c(float(lo), src)),
                      e.fcmp("olt", src, value, e.c(float(hi) + 1.0, src)))
    return e.select(in_range, dst, converted, str(lo))


CASTS: dict[tuple[str, str], CastImpl] = {
    ("b", "b"): lambda e, v, s, d: v,
    ("b", "i"): lambda e, v, s, d: e.cast("zext", s, v, d),
    ("b", "f"): lambda e, v, s, d: e.cast("uitofp", s, v, d),
    ("i", "b"): lambda e, v, s, d: truth(e, s, v),
    ("i", "i"): int_resize,
    # unsigned storage dtypes meet only their compute dtypes (compiler/passes/legalize.py)
    ("b", "u"): lambda e, v, s, d: e.cast("zext", s, v, d),
    ("u", "b"): lambda e, v, s, d: truth(e, s, v),
    ("u", "i"): unsigned_resize,
    ("u", "u"): unsigned_resize,
    ("i", "u"): int_resize,
    ("u", "f"): lambda e, v, s, d: e.cast("uitofp", s, v, d),
    ("i", "f"): lambda e, v, s, d: e.cast("sitofp", s, v, d),
    ("f", "b"): lambda e, v, s, d: truth(e, s, v),
    ("f", "i"): float_to_int,
    ("f", "f"): float_resize,
}


def lower_cast(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    src, dst = r.arg_dtype(instr), np.dtype(instr.dtype)
    impl = CASTS.get((src.kind, dst.kind))
    if impl is None:
        raise CompileError(f"cannot cast {src} to {dst} on the CPU backend", instr.source)
    return impl(r.e, args[0], llvm_type(src), llvm_type(dst))


# -- NumPy's other ufuncs

LIBM_NAMES: dict[str, str] = {"float": "f", "double": ""}


def libm(name: str) -> KindImpl:
    """A scalar call to the C math library (NumPy's own loops call the same functions)."""
    return lambda e, ty, a: e.intrinsic(f"{name}{LIBM_NAMES[ty]}", ty, [(ty, v) for v in a])


def float_signbit(e: Emitter, ty: str, a: list[str]) -> str:
    bits = INT_BITS_OF_FLOAT[ty]
    as_int = e.cast("bitcast", ty, a[0], bits)
    return e.icmp("slt", bits, as_int, "0")


INT_BITS_OF_FLOAT: dict[str, str] = {"float": "i32", "double": "i64"}


def float_spacing(e: Emitter, ty: str, a: list[str]) -> str:
    """NumPy: nextafter(x, copysign(inf, x)) - x, with +-0 stepping up (NaN for inf and NaN)."""
    inf = e.c(float("inf"), ty)
    toward = e.select(e.fcmp("oeq", ty, a[0], e.c(0.0, ty)), ty, inf, e.copysign(ty, inf, a[0]))
    return e.fsub(ty, libm("nextafter")(e, ty, [a[0], toward]), a[0])


def float_heaviside(e: Emitter, ty: str, a: list[str]) -> str:
    x, h0 = a
    zero = e.c(0.0, ty)
    result = e.select(e.fcmp("oeq", ty, x, zero), ty, h0, e.c(1.0, ty))
    result = e.select(e.fcmp("olt", ty, x, zero), ty, zero, result)
    return e.select(e.is_nan(ty, x), ty, x, result)


def float_logaddexp2(e: Emitter, ty: str, a: list[str]) -> str:
    """NumPy's npy_logaddexp2: equal inputs give x + 1, else max + log2(1 + 2**-|x - y|)."""
    x, y = a
    big = e.select(e.fcmp("ogt", ty, x, y), ty, x, y)
    gap = e.fabs(ty, e.fsub(ty, x, y))
    tail = e.fmul(ty, libm("log1p")(e, ty, [libm("exp2")(e, ty, [e.fneg(ty, gap)])]),
                  e.c(1.0 / np.log(2.0), ty))
    general = e.fadd(ty, big, tail)
    general = e.select(e.ibin("or", "i1", e.is_nan(ty, x), e.is_nan(ty, y)), ty,
                       e.fadd(ty, x, y), general)
    return e.select(e.fcmp("oeq", ty, x, y), ty, e.fadd(ty, x, e.c(1.0, ty)), general)


def int_fmod(e: Emitter, ty: str, a: list[str]) -> str:
    """C's %: the dividend's sign; NumPy gives 0 for x % 0 (and MIN % -1)."""
    x, y = a
    safe, is_zero, is_minus_one = safe_divisor(e, ty, y)
    remainder = e.ibin("srem", ty, x, safe)
    return e.select(e.ibin("or", "i1", is_zero, is_minus_one), ty, "0", remainder)


def int_shift(left: bool) -> KindImpl:
    """NumPy's npy_lshift/npy_rshift: counts outside [0, bits) give 0 (or -1 shifting a
    negative value right) instead of LLVM's poison."""

    def impl(e: Emitter, ty: str, a: list[str]) -> str:
        x, count = a
        bits = str(INT_BITS[ty])
        in_range = e.icmp("ult", ty, count, bits)
        safe = e.select(in_range, ty, count, "0")
        shifted = e.ibin("shl" if left else "ashr", ty, x, safe)
        if left:
            fallback = "0"
        else:
            fallback = e.select(e.icmp("slt", ty, x, "0"), ty, "-1", "0")
        return e.select(in_range, ty, shifted, fallback)

    return impl


def int_bitwise_count(e: Emitter, ty: str, a: list[str]) -> str:
    """NumPy counts the bits of |x| (as uint8 results)."""
    magnitude = e.intrinsic(f"llvm.abs.{ty}", ty, [(ty, a[0]), ("i1", "false")])
    count = e.intrinsic(f"llvm.ctpop.{ty}", ty, [(ty, magnitude)])
    return int_resize(e, count, ty, "i8")


def lower_ldexp(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    ty = llvm_type(r.arg_dtype(instr, 0))
    exponent_ty = llvm_type(r.arg_dtype(instr, 1))
    exponent = args[1]
    if exponent_ty == "i64":   # C's ldexp takes an int: beyond its range the result saturates
        clamped = r.e.intrinsic("llvm.smax.i64", "i64", [("i64", exponent), ("i64", "-100000")])
        clamped = r.e.intrinsic("llvm.smin.i64", "i64", [("i64", clamped), ("i64", "100000")])
        exponent = r.e.cast("trunc", "i64", clamped, "i32")
    return r.e.intrinsic(f"ldexp{LIBM_NAMES[ty]}", ty, [(ty, args[0]), ("i32", exponent)])


def lower_bitwise_count(r: KernelRenderer, instr: Instr, args: list[str], _: Scope) -> str:
    ty = llvm_type(r.arg_dtype(instr))
    return int_bitwise_count(r.e, ty, args)


def bool_not(e: Emitter, ty: str, a: list[str]) -> str:
    return e.ibin("xor", "i1", a[0], "true")


ELEMENTWISE_LOWERINGS: dict[Op, Lowering] = {
    Op.TAN: by_kind(f=libm("tan")),
    Op.ARCSIN: by_kind(f=libm("asin")),
    Op.ARCCOS: by_kind(f=libm("acos")),
    Op.ARCSINH: by_kind(f=libm("asinh")),
    Op.ARCCOSH: by_kind(f=libm("acosh")),
    Op.ARCTANH: by_kind(f=libm("atanh")),
    Op.EXP2: by_kind(f=libm("exp2")),
    Op.LOG2: by_kind(f=libm("log2")),
    Op.LOG10: by_kind(f=libm("log10")),
    Op.CBRT: by_kind(f=libm("cbrt")),
    Op.TRUNC: by_kind(f=intrinsic("trunc"), i=identity, b=identity),
    Op.SIGNBIT: by_kind(f=float_signbit),
    Op.SPACING: by_kind(f=float_spacing),
    Op.INVERT: by_kind(i=lambda e, ty, a: e.ibin("xor", ty, a[0], "-1"), b=bool_not),
    Op.BITWISE_COUNT: lower_bitwise_count,
    Op.ARCTAN2: by_kind(f=libm("atan2")),
    Op.HYPOT: by_kind(f=libm("hypot")),
    Op.COPYSIGN: by_kind(f=intrinsic("copysign")),
    Op.FMOD: by_kind(f=float_opcode("frem"), i=int_fmod),
    Op.NEXTAFTER: by_kind(f=libm("nextafter")),
    Op.LDEXP: lower_ldexp,
    Op.LOGADDEXP2: by_kind(f=float_logaddexp2),
    Op.HEAVISIDE: by_kind(f=float_heaviside),
    Op.BITWISE_AND: by_kind(i=opcode("and"), b=opcode("and")),
    Op.BITWISE_OR: by_kind(i=opcode("or"), b=opcode("or")),
    Op.BITWISE_XOR: by_kind(i=opcode("xor"), b=opcode("xor")),
    Op.LEFT_SHIFT: by_kind(i=int_shift(left=True)),
    Op.RIGHT_SHIFT: by_kind(i=int_shift(left=False)),
    Op.NEG: by_kind(f=lambda e, ty, a: e.fneg(ty, a[0]),
                    i=lambda e, ty, a: e.ibin("sub", ty, "0", a[0])),
    Op.ABS: by_kind(f=lambda e, ty, a: e.fabs(ty, a[0]),
                    i=lambda e, ty, a: e.intrinsic(f"llvm.abs.{ty}", ty,
                                                   [(ty, a[0]), ("i1", "false")]),
                    b=identity),
    Op.EXP: by_kind(f=math_fn("exp")),
    Op.LOG: by_kind(f=math_fn("log")),
    Op.LOG1P: by_kind(f=math_fn("log1p")),
    Op.EXPM1: by_kind(f=math_fn("expm1")),
    Op.SQRT: by_kind(f=intrinsic("sqrt")),
    Op.TANH: by_kind(f=math_fn("tanh")),
    Op.SIN: by_kind(f=math_fn("sin")),
    Op.COS: by_kind(f=math_fn("cos")),
    Op.SIGN: by_kind(f=float_sign, i=int_sign),
    Op.FLOOR: by_kind(f=intrinsic("floor"), i=identity, b=identity),
    Op.CEIL: by_kind(f=intrinsic("ceil"), i=identity, b=identity),
    Op.LOGICAL_NOT: by_kind(*(3 * [lambda e, ty, a: e.ibin("xor", "i1", truth(e, ty, a[0]),
                                                           "true")])),
    Op.CAST: lower_cast,
    Op.ADD: by_kind(f=float_opcode("fadd"), i=opcode("add"), b=opcode("or")),
    Op.SUB: by_kind(f=float_opcode("fsub"), i=opcode("sub")),
    Op.MUL: by_kind(f=float_opcode("fmul"), i=opcode("mul"), b=opcode("and")),
    Op.DIV: by_kind(f=float_opcode("fdiv")),
    Op.FLOORDIV: by_kind(f=float_floordiv, i=int_floordiv),
    Op.MOD: by_kind(f=float_mod, i=int_mod),
    Op.POW: lower_pow,
    Op.MAXIMUM: by_kind(f=float_maximum("ogt"), i=intrinsic("smax"), b=opcode("or")),
    Op.MINIMUM: by_kind(f=float_maximum("olt"), i=intrinsic("smin"), b=opcode("and")),
    Op.GT: compare("ogt", "sgt", "ugt"),
    Op.GE: compare("oge", "sge", "uge"),
    Op.LT: compare("olt", "slt", "ult"),
    Op.LE: compare("ole", "sle", "ule"),
    Op.EQ: compare("oeq", "eq", "eq"),
    Op.NE: compare("une", "ne", "ne"),
    Op.LOGICAL_AND: by_kind(*(3 * [logical("and")])),
    Op.LOGICAL_OR: by_kind(*(3 * [logical("or")])),
    Op.LOGICAL_XOR: by_kind(*(3 * [logical("xor")])),
    Op.WHERE: lower_where,
}

# rough cost of one element of each op, in "simple op" units (for thread-count heuristics)
OP_WEIGHTS: dict[Op | Operand, int] = {
    Op.EXP: 20, Op.LOG: 20, Op.LOG1P: 30, Op.EXPM1: 40, Op.TANH: 25, Op.SIN: 40, Op.COS: 40,
    Op.POW: 40, Op.DIV: 4, Op.SQRT: 4, Op.FLOORDIV: 20, Op.MOD: 20,
    Op.TAN: 40, Op.ARCSIN: 40, Op.ARCCOS: 40, Op.ARCSINH: 40, Op.ARCCOSH: 40, Op.ARCTANH: 40,
    Op.EXP2: 20, Op.LOG2: 20, Op.LOG10: 20, Op.CBRT: 30, Op.ARCTAN2: 40, Op.HYPOT: 20,
    Op.LOGADDEXP2: 50, Op.SPACING: 20, Op.NEXTAFTER: 20, Op.LDEXP: 20, Op.FMOD: 20,
}
