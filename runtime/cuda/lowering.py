"""The CUDA lowering table: how each elementwise op of compiler/ops.py becomes Numba CUDA source.

`ELEMENTWISE_LOWERING[op](out, args, in_dtype, out_dtype, attrs)` returns the source lines that
assign the op's value to the variable `out`. Operands are variable names holding values of the op's
loop dtype (`in_dtype`, the dtype of the first operand; the tracer made all operands agree).

Every result is wrapped in its dtype's NumPy constructor (`np.float32(...)`): Numba promotes
int32 arithmetic to int64 and float32-with-int64 to float64, so the wrap keeps NumPy's types
(it costs nothing in the generated machine code).

Transcendental functions are named `exp_f32`, `log_f64`, ... (`math_name`); the module header
binds them to libdevice on a GPU and to NumPy's ufuncs in Numba's simulator, where Python's
`math` would raise on log(0) or exp(1000) instead of returning -inf / inf like NumPy.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from graphjit.compiler.ops import LOOP_ELEMENTWISE, Op

# name -> (libdevice float32 function, libdevice float64 function, NumPy function in simulator)
MATH_FUNCTIONS: dict[str, tuple[str, str, str]] = {
    "exp": ("expf", "exp", "np.exp"),
    "log": ("logf", "log", "np.log"),
    "log1p": ("log1pf", "log1p", "np.log1p"),
    "expm1": ("expm1f", "expm1", "np.expm1"),
    "sqrt": ("sqrtf", "sqrt", "np.sqrt"),
    "tanh": ("tanhf", "tanh", "np.tanh"),
    "sin": ("sinf", "sin", "np.sin"),
    "cos": ("cosf", "cos", "np.cos"),
    "floor": ("floorf", "floor", "np.floor"),
    "ceil": ("ceilf", "ceil", "np.ceil"),
    "fmod": ("fmodf", "fmod", "np.fmod"),
    "pow": ("powf", "pow", "np.power"),
    "copysign": ("copysignf", "copysign", "np.copysign"),
    "tan": ("tanf", "tan", "np.tan"),
    "asin": ("asinf", "asin", "np.arcsin"),
    "acos": ("acosf", "acos", "np.arccos"),
    "asinh": ("asinhf", "asinh", "np.arcsinh"),
    "acosh": ("acoshf", "acosh", "np.arccosh"),
    "atanh": ("atanhf", "atanh", "np.arctanh"),
    "exp2": ("exp2f", "exp2", "np.exp2"),
    "log2": ("log2f", "log2", "np.log2"),
    "log10": ("log10f", "log10", "np.log10"),
    "cbrt": ("cbrtf", "cbrt", "np.cbrt"),
    "trunc": ("truncf", "trunc", "np.trunc"),
    "atan2": ("atan2f", "atan2", "np.arctan2"),
    "hypot": ("hypotf", "hypot", "np.hypot"),
    "nextafter": ("nextafterf", "nextafter", "np.nextafter"),
    "ldexp": ("ldexpf", "ldexp", "np.ldexp"),
}

DTYPE_CONSTRUCTORS: dict[np.dtype, str] = {
    np.dtype("bool"): "np.bool_",
    np.dtype("int32"): "np.int32",
    np.dtype("int64"): "np.int64",
    np.dtype("float32"): "np.float32",
    np.dtype("float64"): "np.float64",
    # storage-only dtypes (compiler/passes/legalize.py): loaded, stored and cast only
    np.dtype("int8"): "np.int8",
    np.dtype("int16"): "np.int16",
    np.dtype("uint8"): "np.uint8",
    np.dtype("uint16"): "np.uint16",
    np.dtype("uint32"): "np.uint32",
    np.dtype("uint64"): "np.uint64",
    np.dtype("float16"): "np.float16",
}

SHORT = {np.dtype("float32"): "f32", np.dtype("float64"): "f64"}


def math_name(function: str, dtype: np.dtype) -> str:
    """The source name of a math function for a float dtype, e.g. ('exp', f32) -> 'exp_f32'."""
    return f"{function}_{SHORT[np.dtype(dtype)]}"


def math_bindings(simulator: bool) -> list[str]:
    """Module-level source lines binding every math name for the GPU or the simulator."""
    lines = []
    for function, (f32, f64, numpy_name) in MATH_FUNCTIONS.items():
        for dtype, device_name in ((np.dtype("float32"), f32), (np.dtype("float64"), f64)):
            target = numpy_name if simulator else f"libdevice.{device_name}"
            lines.append(f"{math_name(function, dtype)} = {target}")
    return lines


def ctor(dtype: np.dtype) -> str:
    return DTYPE_CONSTRUCTORS[np.dtype(dtype)]


def literal(value: Any, dtype: np.dtype) -> str:
    """A typed source literal: np.float32(0.5), np.int64(3), True, np.float64(math.inf)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "True" if bool(value) else "False"
    if dtype.kind == "f":
        value = float(value)
        if np.isnan(value):
            text = "math.nan"
        elif np.isinf(value):
            text = "math.inf" if value > 0 else "-math.inf"
        else:
            text = repr(value)
        return f"{ctor(dtype)}({text})"
    return f"{ctor(dtype)}({int(value)})"


def is_float(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def is_bool(dtype: np.dtype) -> bool:
    return np.dtype(dtype).kind == "b"


# ---------------------------------------------------------------- rule builders

Lowering = Callable[[str, list[str], np.dtype, np.dtype, Mapping[str, Any]], list[str]]


def expression(template: str) -> Lowering:
    """An op whose value is one expression over its operands `{a}`, `{b}`, `{c}`."""

    def lower(out, args, in_dtype, out_dtype, attrs):
        names = dict(zip("abc", args))
        return [f"{out} = {ctor(out_dtype)}({template.format(**names)})"]

    return lower


def by_kind(float_rule: Lowering, int_rule: Lowering, bool_rule: Lowering | None = None
            ) -> Lowering:
    """Pick a rule from the loop dtype's kind (float / integer / bool)."""

    def lower(out, args, in_dtype, out_dtype, attrs):
        if is_float(in_dtype):
            rule = float_rule
        elif is_bool(in_dtype) and bool_rule is not None:
            rule = bool_rule
        else:
            rule = int_rule
        return rule(out, args, in_dtype, out_dtype, attrs)

    return lower


def math_call(function: str) -> Lowering:
    """A float function from the math table (libdevice on a GPU)."""

    def lower(out, args, in_dtype, out_dtype, attrs):
        call = f"{math_name(function, in_dtype)}({', '.join(args)})"
        return [f"{out} = {ctor(out_dtype)}({call})"]

    return lower


# ---------------------------------------------------------------- rules that need statements

def _float_floordiv(out, args, in_dtype, out_dtype, attrs):
    # NumPy's npy_floor_divide: divmod through fmod, rounding the quotient like Python
    a, b = args
    t = ctor(in_dtype)
    fmod, floor, copysign = (math_name(f, in_dtype) for f in ("fmod", "floor", "copysign"))
    return [
        f"if {b} == 0:",
        f"    {out} = {t}({a} / {b})",
        "else:",
        f"    {out}_m = {t}({fmod}({a}, {b}))",
        f"    {out}_d = {t}(({a} - {out}_m) / {b})",
        f"    if {out}_m != 0 and (({b} < 0) != ({out}_m < 0)):",
        f"        {out}_d = {t}({out}_d - {t}(1))",
        f"    if {out}_d != 0:",
        f"        {out} = {t}({floor}({out}_d))",
        f"        if {out}_d - {out} > {t}(0.5):",
        f"            {out} = {t}({out} + {t}(1))",
        "    else:",
        f"        {out} = {t}({copysign}({t}(0), {t}({a} / {b})))",
    ]


def _float_mod(out, args, in_dtype, out_dtype, attrs):
    # NumPy's npy_remainder: the result takes the divisor's sign; x % 0 is NaN
    a, b = args
    t = ctor(in_dtype)
    fmod, copysign = math_name("fmod", in_dtype), math_name("copysign", in_dtype)
    return [
        f"{out} = {t}({fmod}({a}, {b}))",
        f"if {b} != 0:",
        f"    if {out} != 0:",
        f"        if ({b} < 0) != ({out} < 0):",
        f"            {out} = {t}({out} + {b})",
        "    else:",
        f"        {out} = {t}({copysign}({t}(0), {b}))",
    ]


def _int_floordiv(out, args, in_dtype, out_dtype, attrs):
    # Python's floor division; x // 0 is 0 for integers, like NumPy
    a, b = args
    t = ctor(out_dtype)
    return [f"{out} = {t}({a} // {b}) if {b} != 0 else {t}(0)"]


def _int_mod(out, args, in_dtype, out_dtype, attrs):
    a, b = args
    t = ctor(out_dtype)
    return [f"{out} = {t}({a} % {b}) if {b} != 0 else {t}(0)"]


def _int_pow(out, args, in_dtype, out_dtype, attrs):
    # exponentiation by squaring with wrap-around; NumPy rejects negative exponents, we give 0
    a, b = args
    t = ctor(out_dtype)
    if is_bool(out_dtype):
        return [f"{out} = {a} or not {b}"]
    return [
        f"{out} = {t}(1)",
        f"{out}_base = {t}({a})",
        f"{out}_exp = {b}",
        f"if {out}_exp < 0:",
        f"    {out} = {t}(0)",
        f"while {out}_exp > 0:",
        f"    if {out}_exp & 1:",
        f"        {out} = {t}({out} * {out}_base)",
        f"    {out}_base = {t}({out}_base * {out}_base)",
        f"    {out}_exp = {out}_exp >> 1",
    ]


def _float_extremum(compare: str) -> Lowering:
    # NaN propagates like np.maximum / np.minimum: a NaN in either operand wins
    def lower(out, args, in_dtype, out_dtype, attrs):
        a, b = args
        t = ctor(out_dtype)
        return [f"{out} = {t}({a} if ({a} {compare} {b} or {a} != {a}) else {b})"]

    return lower


def _sign(out, args, in_dtype, out_dtype, attrs):
    (a,) = args
    t = ctor(out_dtype)
    if is_float(in_dtype):   # NaN stays NaN
        value = f"{t}(1) if {a} > 0 else ({t}(-1) if {a} < 0 else {a})"
    else:
        value = f"{t}(1) if {a} > 0 else ({t}(-1) if {a} < 0 else {t}(0))"
    return [f"{out} = {t}({value})"]


def _cast(out, args, in_dtype, out_dtype, attrs):
    (a,) = args
    if is_bool(out_dtype):
        return [f"{out} = {a} != 0"]
    if is_bool(in_dtype):
        return [f"{out} = {ctor(out_dtype)}(1) if {a} else {ctor(out_dtype)}(0)"]
    return [f"{out} = {ctor(out_dtype)}({a})"]


def _logical(template: str) -> Lowering:
    def lower(out, args, in_dtype, out_dtype, attrs):
        names = dict(zip("abc", args))
        return [f"{out} = {template.format(**names)}"]

    return lower


def _where(out, args, in_dtype, out_dtype, attrs):
    cond, a, b = args
    return [f"{out} = {ctor(out_dtype)}({a} if {cond} else {b})"]


def _float_spacing(out, args, in_dtype, out_dtype, attrs):
    # NumPy: nextafter(x, copysign(inf, x)) - x, +-0 stepping up
    (a,) = args
    t = ctor(in_dtype)
    nextafter, copysign = math_name("nextafter", in_dtype), math_name("copysign", in_dtype)
    return [f"{out}_to = {t}(math.inf) if {a} == 0 else {t}({copysign}({t}(math.inf), {a}))",
            f"{out} = {t}({t}({nextafter}({a}, {out}_to)) - {a})"]


def _float_heaviside(out, args, in_dtype, out_dtype, attrs):
    a, h0 = args
    t = ctor(out_dtype)
    return [f"{out} = {a} if {a} != {a} else ({t}(0) if {a} < 0 else "
            f"({t}(1) if {a} > 0 else {h0}))"]


def _float_logaddexp2(out, args, in_dtype, out_dtype, attrs):
    a, b = args
    t = ctor(out_dtype)
    log1p, exp2 = math_name("log1p", in_dtype), math_name("exp2", in_dtype)
    return [
        f"if {a} == {b}:",
        f"    {out} = {t}({a} + {t}(1))",
        f"elif {a} != {a} or {b} != {b}:",
        f"    {out} = {t}({a} + {b})",
        "else:",
        f"    {out}_big = {a} if {a} > {b} else {b}",
        f"    {out}_gap = {t}(abs({a} - {b}))",
        f"    {out} = {t}({out}_big + {t}({log1p}({t}({exp2}(-{out}_gap)))) * "
        f"{t}({1.0 / math.log(2.0)!r}))",
    ]


def _int_fmod(out, args, in_dtype, out_dtype, attrs):
    # C's %: the dividend's sign; NumPy gives 0 for x % 0
    a, b = args
    t = ctor(out_dtype)
    return [f"{out} = {t}(0) if {b} == 0 or {b} == -1 else "
            f"{t}(-(abs({a}) % abs({b})) if {a} < 0 else abs({a}) % abs({b}))"]


def _shift(left: bool) -> Lowering:
    # NumPy's npy_lshift / npy_rshift: counts outside [0, bits) give 0 (or -1 for x < 0 >> n)
    def lower(out, args, in_dtype, out_dtype, attrs):
        a, b = args
        t = ctor(out_dtype)
        bits = np.dtype(out_dtype).itemsize * 8
        shifted = f"{t}({a} << {b})" if left else f"{t}({a} >> {b})"
        fallback = f"{t}(0)" if left else f"({t}(-1) if {a} < 0 else {t}(0))"
        return [f"{out} = {shifted} if 0 <= {b} < {bits} else {fallback}"]

    return lower


ELEMENTWISE_LOWERING: dict[Op, Lowering] = {
    Op.TAN: math_call("tan"),
    Op.ARCSIN: math_call("asin"),
    Op.ARCCOS: math_call("acos"),
    Op.ARCSINH: math_call("asinh"),
    Op.ARCCOSH: math_call("acosh"),
    Op.ARCTANH: math_call("atanh"),
    Op.EXP2: math_call("exp2"),
    Op.LOG2: math_call("log2"),
    Op.LOG10: math_call("log10"),
    Op.CBRT: math_call("cbrt"),
    Op.TRUNC: by_kind(math_call("trunc"), expression("{a}")),
    Op.SIGNBIT: _logical("{a} < 0 or ({a} == 0 and math.copysign(1.0, {a}) < 0)"),
    Op.SPACING: _float_spacing,
    Op.INVERT: by_kind(expression("~{a}"), expression("~{a}"), _logical("not {a}")),
    Op.ARCTAN2: math_call("atan2"),
    Op.HYPOT: math_call("hypot"),
    Op.COPYSIGN: math_call("copysign"),
    Op.FMOD: by_kind(math_call("fmod"), _int_fmod),
    Op.NEXTAFTER: math_call("nextafter"),
    Op.LDEXP: math_call("ldexp"),
    Op.LOGADDEXP2: _float_logaddexp2,
    Op.HEAVISIDE: _float_heaviside,
    Op.BITWISE_AND: by_kind(expression("{a} & {b}"), expression("{a} & {b}"),
                            _logical("{a} and {b}")),
    Op.BITWISE_OR: by_kind(expression("{a} | {b}"), expression("{a} | {b}"),
                           _logical("{a} or {b}")),
    Op.BITWISE_XOR: by_kind(expression("{a} ^ {b}"), expression("{a} ^ {b}"),
                            _logical("{a} != {b}")),
    Op.LEFT_SHIFT: _shift(left=True),
    Op.RIGHT_SHIFT: _shift(left=False),
    Op.NEG: expression("-{a}"),
    Op.ABS: expression("abs({a})"),
    Op.EXP: math_call("exp"),
    Op.LOG: math_call("log"),
    Op.LOG1P: math_call("log1p"),
    Op.EXPM1: math_call("expm1"),
    Op.SQRT: math_call("sqrt"),
    Op.TANH: math_call("tanh"),
    Op.SIN: math_call("sin"),
    Op.COS: math_call("cos"),
    Op.SIGN: _sign,
    Op.FLOOR: by_kind(math_call("floor"), expression("{a}")),
    Op.CEIL: by_kind(math_call("ceil"), expression("{a}")),
    Op.LOGICAL_NOT: _logical("{a} == 0"),
    Op.CAST: _cast,
    Op.ADD: by_kind(expression("{a} + {b}"), expression("{a} + {b}"),
                    _logical("{a} or {b}")),
    Op.SUB: by_kind(expression("{a} - {b}"), expression("{a} - {b}"),
                    _logical("{a} != {b}")),
    Op.MUL: by_kind(expression("{a} * {b}"), expression("{a} * {b}"),
                    _logical("{a} and {b}")),
    Op.DIV: expression("{a} / {b}"),
    Op.FLOORDIV: by_kind(_float_floordiv, _int_floordiv),
    Op.MOD: by_kind(_float_mod, _int_mod),
    Op.POW: by_kind(math_call("pow"), _int_pow),
    Op.MAXIMUM: by_kind(_float_extremum(">="), expression("{a} if {a} >= {b} else {b}"),
                        _logical("{a} or {b}")),
    Op.MINIMUM: by_kind(_float_extremum("<="), expression("{a} if {a} <= {b} else {b}"),
                        _logical("{a} and {b}")),
    Op.GT: _logical("{a} > {b}"),
    Op.GE: _logical("{a} >= {b}"),
    Op.LT: _logical("{a} < {b}"),
    Op.LE: _logical("{a} <= {b}"),
    Op.EQ: _logical("{a} == {b}"),
    Op.NE: _logical("{a} != {b}"),
    Op.LOGICAL_AND: _logical("({a} != 0) and ({b} != 0)"),
    Op.LOGICAL_OR: _logical("({a} != 0) or ({b} != 0)"),
    Op.LOGICAL_XOR: _logical("({a} != 0) != ({b} != 0)"),
    Op.WHERE: _where,
}



def missing_lowerings() -> frozenset[Op]:
    """Elementwise ops of the op table without a CUDA rule (a test keeps this empty)."""
    return LOOP_ELEMENTWISE - frozenset(ELEMENTWISE_LOWERING)


def lower_elementwise(op: Op, out: str, args: list[str], in_dtype: np.dtype,
                      out_dtype: np.dtype, attrs: Mapping[str, Any]) -> list[str]:
    try:
        rule = ELEMENTWISE_LOWERING[op]
    except KeyError:
        raise NotImplementedError(f"no CUDA lowering for {op.value}") from None
    return rule(out, args, np.dtype(in_dtype), np.dtype(out_dtype), attrs)
