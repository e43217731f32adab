"""Vectorisable math functions as LLVM IR (written with runtime/cpu/emitter.py).

`llvm.exp.f32` and friends lower to scalar libm calls, which stop the loop vectoriser. Like XLA,
we emit our own branch-free (select-only) approximations as `alwaysinline` functions: once they
are inlined into a loop body the vectoriser turns them into SIMD code.

Functions (float32 and float64 unless noted), with the algorithm each uses:
- exp:   Cody-Waite reduction x = k*ln2 + r, polynomial on |r| <= ln2/2 (Cephes for f32, Taylor to
         r^13 for f64), scaling by 2^k as two exact power-of-two factors so that overflow to inf
         and gradual underflow to denormals round once, correctly.
- log:   x = m * 2^e with m in [sqrt(1/2), sqrt(2)); denormals are pre-scaled. Cephes logf
         polynomial for f32, fdlibm's __ieee754_log for f64.
- log1p: Goldberg's trick log(u) * (x / (u - 1)) with u = 1 + x (a few ulp, exact near 0).
- expm1: Kahan's trick (u - 1) * (x / log(u)) with u = exp(x).
- tanh:  odd polynomial/rational (Cephes) for |x| < 0.625, 1 - 2/(exp(2|x|) + 1) above.
- sin/cos (f32): evaluated in double. |x| < 2^16: Cody-Waite reduction by pi/2 in double;
         larger: glibc's branch-free Payne-Hanek `reduce_large` (a 24-word table of 4/pi).
         float64 sin/cos call libm (llvm.sin/llvm.cos): exact parity with NumPy, not vectorised.
- pow (f32): exp(y * log|x|) in double with IEEE pow's sign and special cases; float64 pow calls
         libm (llvm.pow.f64), which a double-precision exp/log cannot match to 1e-15.
- ipow:  integer power by squaring (wrap-around like NumPy).
Accuracy is measured in tests/test_mathlib.py.

Special values: every function maps NaN to NaN, and handles +-inf, +-0 and denormal inputs and
overflow/underflow of results like libm. Fast-math flags: only `contract` (FMA); `nnan`/`ninf`
would let LLVM fold away the very checks that give NaN/inf parity.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .emitter import SUFFIX, Emitter, ModuleParts, int_const, llvm_type

# ---------------------------------------------------------------- defining functions

MathBody = Callable[[Emitter, str, Sequence[str]], str]   # (emitter, type, params) -> result


@dataclass(frozen=True)
class FloatFormat:
    """The IEEE parameters the bit-level code needs."""

    int_ty: str
    mantissa_bits: int
    bias: int


FORMATS: dict[str, FloatFormat] = {
    "float": FloatFormat("i32", 23, 127),
    "double": FloatFormat("i64", 52, 1023),
}


def define(parts: ModuleParts, name: str, ret: str, params: Sequence[str], body: MathBody,
           ty: str) -> None:
    """Define `ret @name(params...)` as an internal, always-inlined function built by `body`."""

    def build(module: ModuleParts) -> str:
        emitter = Emitter(module)
        emitter.start_block("entry")
        names = [f"%a{i}" for i in range(len(params))]
        result = body(emitter, ty, names)
        emitter.emit(f"ret {ret} {result}")
        signature = ", ".join(f"{t} {n}" for t, n in zip(params, names, strict=True))
        return "\n".join([f"define internal {ret} @{name}({signature}) alwaysinline nounwind {{",
                          *emitter.lines, "}", ""])

    parts.require(name, build)


def pow2(e: Emitter, ty: str, k_int: str) -> str:
    """2**k as a float, for k within the normal exponent range (a bit pattern, no libm)."""
    fmt = FORMATS[ty]
    biased = e.ibin("add", fmt.int_ty, k_int, e.c(fmt.bias, fmt.int_ty))
    bits = e.ibin("shl", fmt.int_ty, biased, e.c(fmt.mantissa_bits, fmt.int_ty))
    return e.cast("bitcast", fmt.int_ty, bits, ty)


def scale_by_pow2(e: Emitter, ty: str, value: str, k_int: str) -> str:
    """value * 2**k for k up to about twice the exponent range: two exact factors, one rounding."""
    fmt = FORMATS[ty]
    half = e.ibin("ashr", fmt.int_ty, k_int, e.c(1, fmt.int_ty))
    rest = e.ibin("sub", fmt.int_ty, k_int, half)
    return e.fmul(ty, e.fmul(ty, value, pow2(e, ty, half)), pow2(e, ty, rest))


# ---------------------------------------------------------------- exp

EXP_F32_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                1.6666665459e-1, 5.0000001201e-1)
EXP_F64_POLY = tuple(1.0 / math.factorial(n) for n in range(13, 1, -1))   # r^13/13! ... r^2/2
# ln2 split so that k * LN2_HI is exact for every k the clamped range produces.
EXP_SPLIT: dict[str, tuple[float, float, float, float]] = {   # lo, hi, ln2_hi, ln2_lo
    "float": (-104.0, 89.0, 0.693359375, -2.12194440e-4),
    "double": (-746.0, 710.0, 6.93147180369123816490e-01, 1.90821492927058770002e-10),
}


def exp_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    (x,) = params
    lo, hi, ln2_hi, ln2_lo = EXP_SPLIT[ty]
    xc = e.clamp_finite(ty, x, lo, hi)
    k = e.unary_intrinsic("rint", ty, e.fmul(ty, xc, e.c(1.0 / math.log(2.0), ty)))
    r = e.fsub(ty, xc, e.fmul(ty, k, e.c(ln2_hi, ty)))
    r = e.fsub(ty, r, e.fmul(ty, k, e.c(ln2_lo, ty)))
    coeffs = EXP_F32_POLY if ty == "float" else EXP_F64_POLY
    r2 = e.fmul(ty, r, r)
    p = e.fadd(ty, e.fmul(ty, e.poly(ty, r, coeffs), r2), r)
    p = e.fadd(ty, p, e.c(1.0, ty))
    k_int = e.cast("fptosi", ty, k, FORMATS[ty].int_ty)
    result = scale_by_pow2(e, ty, p, k_int)
    return e.select(e.is_nan(ty, x), ty, x, result)


# ---------------------------------------------------------------- log

LOG_F32_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                3.3333331174e-1)
LG = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
      2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
      1.479819860511658591e-01)
LN2_HI_F64, LN2_LO_F64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10


def split_mantissa(e: Emitter, ty: str, x: str) -> tuple[str, str]:
    """x > 0 finite -> (f, k) with x = (1 + f) * 2^k, 1 + f in [sqrt(1/2), sqrt(2))."""
    fmt = FORMATS[ty]
    it = fmt.int_ty
    smallest_normal = 2.0 ** (1 - fmt.bias)
    prescale = fmt.mantissa_bits + 1
    is_denormal = e.fcmp("olt", ty, x, e.c(smallest_normal, ty))
    scaled = e.select(is_denormal, ty, e.fmul(ty, x, e.c(2.0 ** prescale, ty)), x)
    adjust = e.select(is_denormal, it, e.c(-prescale, it), e.c(0, it))
    bits = e.cast("bitcast", ty, scaled, it)
    exponent = e.ibin("sub", it, e.ibin("lshr", it, bits, e.c(fmt.mantissa_bits, it)),
                      e.c(fmt.bias, it))
    mantissa_mask = (1 << fmt.mantissa_bits) - 1
    one_bits = fmt.bias << fmt.mantissa_bits
    m_bits = e.ibin("or", it, e.ibin("and", it, bits, e.c(mantissa_mask, it)), e.c(one_bits, it))
    m = e.cast("bitcast", it, m_bits, ty)                      # in [1, 2)
    above = e.fcmp("ogt", ty, m, e.c(math.sqrt(2.0), ty))
    m = e.select(above, ty, e.fmul(ty, m, e.c(0.5, ty)), m)
    exponent = e.ibin("add", it, exponent, e.select(above, it, e.c(1, it), e.c(0, it)))
    exponent = e.ibin("add", it, exponent, adjust)
    return e.fsub(ty, m, e.c(1.0, ty)), e.cast("sitofp", it, exponent, ty)


def log_core_f32(e: Emitter, f: str, k: str) -> str:
    ty = "float"
    z = e.fmul(ty, f, f)
    y = e.fmul(ty, e.fmul(ty, e.poly(ty, f, LOG_F32_POLY), f), z)
    y = e.fadd(ty, y, e.fmul(ty, k, e.c(-2.12194440e-4, ty)))
    y = e.fsub(ty, y, e.fmul(ty, z, e.c(0.5, ty)))
    return e.fadd(ty, e.fadd(ty, f, y), e.fmul(ty, k, e.c(0.693359375, ty)))


def log_core_f64(e: Emitter, f: str, k: str) -> str:
    ty = "double"
    hfsq = e.fmul(ty, e.fmul(ty, f, f), e.c(0.5, ty))
    s = e.fdiv(ty, f, e.fadd(ty, f, e.c(2.0, ty)))
    z = e.fmul(ty, s, s)
    w = e.fmul(ty, z, z)
    t1 = e.fmul(ty, w, e.poly(ty, w, (LG[5], LG[3], LG[1])))
    t2 = e.fmul(ty, z, e.poly(ty, w, (LG[6], LG[4], LG[2], LG[0])))
    big_r = e.fadd(ty, t2, t1)
    inner = e.fadd(ty, e.fmul(ty, s, e.fadd(ty, hfsq, big_r)), e.fmul(ty, k, e.c(LN2_LO_F64, ty)))
    inner = e.fsub(ty, e.fsub(ty, hfsq, inner), f)
    return e.fsub(ty, e.fmul(ty, k, e.c(LN2_HI_F64, ty)), inner)


LOG_CORES = {"float": log_core_f32, "double": log_core_f64}


def log_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    (x,) = params
    positive = e.fcmp("ogt", ty, x, e.c(0.0, ty))
    safe = e.select(positive, ty, x, e.c(1.0, ty))       # keep every lane's bit tricks defined
    f, k = split_mantissa(e, ty, safe)
    result = LOG_CORES[ty](e, f, k)
    result = e.select(e.fcmp("oeq", ty, x, e.c(math.inf, ty)), ty, x, result)
    result = e.select(e.fcmp("oeq", ty, x, e.c(0.0, ty)), ty, e.c(-math.inf, ty), result)
    # negative (and NaN) inputs: NaN, like libm
    return e.select(e.fcmp("ult", ty, x, e.c(0.0, ty)), ty, e.c(math.nan, ty), result)


# ---------------------------------------------------------------- log1p, expm1, tanh

def log1p_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    (x,) = params
    u = e.fadd(ty, x, e.c(1.0, ty))
    log_u = call_math(e, "log", ty, u)
    # log(u) * (x / (u - 1)) cancels the rounding error of 1 + x (Goldberg); divide first so that
    # huge x cannot overflow the product.
    corrected = e.fmul(ty, log_u, e.fdiv(ty, x, e.fsub(ty, u, e.c(1.0, ty))))
    result = e.select(e.fcmp("oeq", ty, u, e.c(1.0, ty)), ty, x, corrected)   # tiny x (and -0)
    return e.select(e.fcmp("oeq", ty, u, e.c(math.inf, ty)), ty, u, result)


def expm1_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    (x,) = params
    u = call_math(e, "exp", ty, x)
    um1 = e.fsub(ty, u, e.c(1.0, ty))
    # (u - 1) * x / log(u) cancels the rounding error of exp(x) (Kahan)
    corrected = e.fmul(ty, um1, e.fdiv(ty, x, call_math(e, "log", ty, u)))
    result = e.select(e.fcmp("oeq", ty, u, e.c(1.0, ty)), ty, x, corrected)   # tiny x (and -0)
    result = e.select(e.fcmp("oeq", ty, um1, e.c(-1.0, ty)), ty, um1, result)  # x -> -inf
    return e.select(e.fcmp("oeq", ty, u, e.c(math.inf, ty)), ty, u, result)


TANH_F32_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                 -3.33332819422e-1)
TANH_F64_P = (-9.64399179425052238628e-1, -9.92877231001918586564e1,
              -1.61468768441708447952e3)
TANH_F64_Q = (1.0, 1.12811678491632931402e2, 2.23548839060100448583e3,
              4.84406305325125486048e3)


def tanh_small(e: Emitter, ty: str, x: str) -> str:
    """tanh on |x| < 0.625: x + x^3 * R(x^2)."""
    z = e.fmul(ty, x, x)
    if ty == "float":
        ratio = e.poly(ty, z, TANH_F32_POLY)
    else:
        ratio = e.fdiv(ty, e.poly(ty, z, TANH_F64_P), e.poly(ty, z, TANH_F64_Q))
    return e.fadd(ty, e.fmul(ty, e.fmul(ty, ratio, z), x), x)


def tanh_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    (x,) = params
    ax = e.fabs(ty, x)
    exp2x = call_math(e, "exp", ty, e.fmul(ty, ax, e.c(2.0, ty)))
    large = e.fsub(ty, e.c(1.0, ty), e.fdiv(ty, e.c(2.0, ty), e.fadd(ty, exp2x, e.c(1.0, ty))))
    large = e.copysign(ty, large, x)      # NaN stays NaN (exp(NaN) is NaN)
    small = tanh_small(e, ty, x)
    return e.select(e.fcmp("olt", ty, ax, e.c(0.625, ty)), ty, small, large)


# ---------------------------------------------------------------- sin, cos (float32, in double)

INV_PIO4 = (0xa2, 0xa2f9, 0xa2f983, 0xa2f9836e, 0xf9836e4e, 0x836e4e44, 0x6e4e4415, 0x4e441529,
            0x441529fc, 0x1529fc27, 0x29fc2757, 0xfc2757d1, 0x2757d1f5, 0x57d1f534, 0xd1f534dd,
            0xf534ddc0, 0x34ddc0db, 0xddc0db62, 0xc0db6295, 0xdb629599, 0x6295993c, 0x95993c43,
            0x993c4390, 0x3c439041)   # 4/pi to 192 bits, 8 new bits per word (glibc)
PIO2_1, PIO2_1T = 1.57079632673412561417e+00, 6.07710050650619224932e-11   # fdlibm
PI63 = float.fromhex("0x1.921FB54442D18p-62")
SIN_POLY = tuple((-1) ** n / math.factorial(2 * n + 1) for n in range(5, 0, -1))   # r^11 .. r^3
COS_POLY = tuple((-1) ** n / math.factorial(2 * n) for n in range(6, 0, -1))       # r^12 .. r^2
LARGE_ARGUMENT = 65536.0


def declare_inv_pio4(parts: ModuleParts) -> str:
    name = "gj_inv_pio4"
    words = ", ".join(f"i32 {int_const(w, 'i32')}" for w in INV_PIO4)
    parts.globals.setdefault(name, f"@{name} = internal unnamed_addr constant "
                                   f"[{len(INV_PIO4)} x i32] [{words}]")
    return f"@{name}"


def reduce_large_f32(e: Emitter, ax: str) -> tuple[str, str]:
    """|x| >= 120 (f32 bits) -> (r, q) with |x| = q*pi/2 + r (mod 2pi), |r| <= pi/4 (glibc)."""
    table = declare_inv_pio4(e.parts)
    xi = e.cast("bitcast", "float", ax, "i32")
    index = e.cast("zext", "i32", e.ibin("and", "i32", e.ibin("lshr", "i32", xi, "26"), "15"),
                   "i64")

    def word(offset: int) -> str:
        slot = e.ibin("add", "i64", index, str(offset))
        ptr = e.assign(f"getelementptr inbounds [24 x i32], ptr {table}, i64 0, i64 {slot}", "p")
        return e.assign(f"load i32, ptr {ptr}, align 4", "w")

    shift = e.ibin("and", "i32", e.ibin("lshr", "i32", xi, "23"), "7")
    m = e.ibin("or", "i32", e.ibin("and", "i32", xi, "16777215"), "8388608")
    m = e.ibin("shl", "i32", m, shift)
    m64 = e.cast("zext", "i32", m, "i64")
    res0 = e.cast("zext", "i32", e.ibin("mul", "i32", m, word(0)), "i64")
    res1 = e.ibin("mul", "i64", m64, e.cast("zext", "i32", word(4), "i64"))
    res2 = e.ibin("mul", "i64", m64, e.cast("zext", "i32", word(8), "i64"))
    res0 = e.ibin("or", "i64", e.ibin("lshr", "i64", res2, "32"), e.ibin("shl", "i64", res0, "32"))
    res0 = e.ibin("add", "i64", res0, res1)
    n = e.ibin("lshr", "i64", e.ibin("add", "i64", res0, str(1 << 61)), "62")
    res0 = e.ibin("sub", "i64", res0, e.ibin("shl", "i64", n, "62"))
    r = e.fmul("double", e.cast("sitofp", "i64", res0, "double"), e.c(PI63, "double"))
    return r, e.cast("trunc", "i64", n, "i32")


def reduce_pio2_f32(e: Emitter, x: str) -> tuple[str, str]:
    """finite f32 x -> (r, q): double r in [-pi/4, pi/4], x = q*pi/2 + r (mod 2pi)."""
    d = "double"
    xd = e.cast("fpext", "float", x, d)
    ax = e.fabs("float", x)
    k = e.unary_intrinsic("rint", d, e.fmul(d, xd, e.c(2.0 / math.pi, d)))
    r_fast = e.fsub(d, e.fsub(d, xd, e.fmul(d, k, e.c(PIO2_1, d))), e.fmul(d, k, e.c(PIO2_1T, d)))
    q_fast = e.cast("fptosi", d, k, "i32")
    is_large = e.fcmp("oge", "float", ax, e.c(LARGE_ARGUMENT, "float"))
    r_large, q_large = reduce_large_f32(e, ax)
    negative = e.fcmp("olt", "float", x, e.c(0.0, "float"))
    r_large = e.select(negative, d, e.fneg(d, r_large), r_large)
    q_large = e.select(negative, "i32", e.ibin("sub", "i32", "0", q_large), q_large)
    r = e.select(is_large, d, r_large, r_fast)
    q = e.select(is_large, "i32", q_large, q_fast)
    tiny = e.fcmp("olt", "float", ax, e.c(math.pi / 4, "float"))   # keeps -0 and tiny x exact
    return e.select(tiny, d, xd, r), e.select(tiny, "i32", "0", q)


def sincos_f32(e: Emitter, x: str, quadrant_shift: int) -> str:
    d = "double"
    finite = e.fcmp("olt", "float", e.fabs("float", x), e.c(math.inf, "float"))
    safe = e.select(finite, "float", x, e.c(0.0, "float"))
    r, q = reduce_pio2_f32(e, safe)
    q = e.ibin("add", "i32", q, str(quadrant_shift))
    r2 = e.fmul(d, r, r)
    sin_r = e.fadd(d, e.fmul(d, e.fmul(d, e.poly(d, r2, SIN_POLY), r2), r), r)
    cos_r = e.fadd(d, e.fmul(d, e.poly(d, r2, COS_POLY), r2), e.c(1.0, d))
    odd = e.icmp("ne", "i32", e.ibin("and", "i32", q, "1"), "0")
    negate = e.icmp("ne", "i32", e.ibin("and", "i32", q, "2"), "0")
    value = e.select(odd, d, cos_r, sin_r)
    value = e.select(negate, d, e.fneg(d, value), value)
    result = e.cast("fptrunc", d, value, "float")
    return e.select(finite, "float", result, e.c(math.nan, "float"))


def sin_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    if ty == "double":
        return e.unary_intrinsic("sin", ty, params[0])
    return sincos_f32(e, params[0], 0)


def cos_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    if ty == "double":
        return e.unary_intrinsic("cos", ty, params[0])
    return sincos_f32(e, params[0], 1)


# ---------------------------------------------------------------- pow

def is_integral(e: Emitter, ty: str, y: str) -> str:
    return e.fcmp("oeq", ty, e.unary_intrinsic("floor", ty, y), y)


def is_odd_integer(e: Emitter, ty: str, y: str) -> str:
    half = e.fmul(ty, y, e.c(0.5, ty))
    return e.assign(f"and i1 {is_integral(e, ty, y)}, "
                    f"{e.fcmp('une', ty, e.unary_intrinsic('floor', ty, half), half)}", "c")


def pow_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    x, y = params
    if ty == "double":
        return e.binary_intrinsic("pow", ty, x, y)
    d = "double"
    xd, yd = e.cast("fpext", ty, x, d), e.cast("fpext", ty, y, d)
    ax = e.fabs(d, xd)
    magnitude = call_math(e, "exp", d, e.fmul(d, yd, call_math(e, "log", d, ax)))
    sign_bit = e.icmp("slt", "i32", e.cast("bitcast", ty, x, "i32"), "0")
    flip = e.assign(f"and i1 {sign_bit}, {is_odd_integer(e, d, yd)}", "c")
    result = e.select(flip, d, e.fneg(d, magnitude), magnitude)
    # negative finite base, finite non-integer exponent: NaN
    negative_finite = e.assign(
        f"and i1 {e.fcmp('olt', d, xd, e.c(0.0, d))}, "
        f"{e.fcmp('ogt', d, xd, e.c(-math.inf, d))}", "c")
    not_integral = e.assign(f"xor i1 {is_integral(e, d, yd)}, true", "c")
    invalid = e.assign(f"and i1 {negative_finite}, {not_integral}", "c")
    result = e.select(invalid, d, e.c(math.nan, d), result)
    # pow(+-1, +-inf) = 1, pow(1, y) = 1, pow(x, +-0) = 1 (even for NaN)
    unit_inf = e.assign(f"and i1 {e.fcmp('oeq', d, ax, e.c(1.0, d))}, "
                        f"{e.fcmp('oeq', d, e.fabs(d, yd), e.c(math.inf, d))}", "c")
    result = e.select(unit_inf, d, e.c(1.0, d), result)
    result = e.select(e.fcmp("oeq", d, xd, e.c(1.0, d)), d, e.c(1.0, d), result)
    result = e.select(e.fcmp("oeq", d, yd, e.c(0.0, d)), d, e.c(1.0, d), result)
    return e.cast("fptrunc", d, result, ty)


def ipow_body(e: Emitter, ty: str, params: Sequence[str]) -> str:
    """Integer power by squaring; negative exponents give 1/b**n truncated (NumPy raises)."""
    base, exponent = params
    head, body, done = e.label("head"), e.label("body"), e.label("done")
    e.br(head)
    e.start_block(head)
    acc, b, n = e.fresh("acc"), e.fresh("b"), e.fresh("n")
    phi_at = len(e.lines)
    more = e.icmp("sgt", ty, n, "0")
    e.cond_br(more, body, done)
    e.start_block(body)
    odd = e.icmp("ne", ty, e.ibin("and", ty, n, "1"), "0")
    acc_next = e.select(odd, ty, e.ibin("mul", ty, acc, b), acc)
    b_next = e.ibin("mul", ty, b, b)
    n_next = e.ibin("ashr", ty, n, "1")
    e.br(head)
    e.lines[phi_at:phi_at] = [
        f"  {acc} = phi {ty} [1, %entry], [{acc_next}, %{body}]",
        f"  {b} = phi {ty} [{base}, %entry], [{b_next}, %{body}]",
        f"  {n} = phi {ty} [{exponent}, %entry], [{n_next}, %{body}]",
    ]
    e.start_block(done)
    negative = e.icmp("slt", ty, exponent, "0")
    odd_exponent = e.icmp("ne", ty, e.ibin("and", ty, exponent, "1"), "0")
    minus_one_power = e.select(odd_exponent, ty, "-1", "1")
    reciprocal = e.select(e.icmp("eq", ty, base, "1"), ty, "1",
                          e.select(e.icmp("eq", ty, base, "-1"), ty, minus_one_power, "0"))
    return e.select(negative, ty, reciprocal, acc)


# ---------------------------------------------------------------- the table and its entry point

MATH_BODIES: dict[str, tuple[int, MathBody]] = {   # name -> (arity, body)
    "exp": (1, exp_body),
    "log": (1, log_body),
    "log1p": (1, log1p_body),
    "expm1": (1, expm1_body),
    "tanh": (1, tanh_body),
    "sin": (1, sin_body),
    "cos": (1, cos_body),
    "pow": (2, pow_body),
    "ipow": (2, ipow_body),
}


def call_math(e: Emitter, name: str, ty: str, *args: str) -> str:
    """Call math function `name` on values of type `ty`, defining it in the module if needed."""
    arity, body = MATH_BODIES[name]
    if len(args) != arity:
        raise TypeError(f"{name} takes {arity} arguments, got {len(args)}")
    symbol = f"gj_{name}_{SUFFIX[ty]}"
    define(e.parts, symbol, ty, [ty] * arity, body, ty)
    return e.call(ty, symbol, [(ty, a) for a in args])


def math_module(name: str, dtype: np.dtype) -> tuple[str, str]:
    """A complete module exporting `void <symbol>(T* x, T* y, i64 n)`: y[i] = name(x[i]).

    Lets tests (and anyone curious) measure one function in isolation."""
    ty = llvm_type(dtype)
    arity = MATH_BODIES[name][0]
    parts = ModuleParts()
    e = Emitter(parts)
    symbol = f"gj_map_{name}_{SUFFIX[ty]}"
    head, body, done = "head", "body", "done"
    e.start_block("entry")
    e.br(head)
    e.start_block(head)
    e.emit(f"%i = phi i64 [0, %entry], [%next, %{body}]")
    e.emit("%more = icmp slt i64 %i, %n")
    e.cond_br("%more", body, done)
    e.start_block(body)
    values = []
    for operand in range(arity):
        ptr = e.assign(f"getelementptr inbounds {ty}, ptr %in{operand}, i64 %i", "p")
        values.append(e.assign(f"load {ty}, ptr {ptr}", "l"))
    result = call_math(e, name, ty, *values)
    out = e.assign(f"getelementptr inbounds {ty}, ptr %out, i64 %i", "p")
    e.emit(f"store {ty} {result}, ptr {out}")
    e.emit("%next = add nsw i64 %i, 1")
    e.br(head)
    e.start_block(done)
    e.emit("ret void")
    inputs = ", ".join(f"ptr noalias %in{k}" for k in range(arity))
    text = "\n".join([f"define void @{symbol}({inputs}, ptr noalias %out, i64 %n) nounwind {{",
                      *e.lines, "}", parts.text()])
    return symbol, text
