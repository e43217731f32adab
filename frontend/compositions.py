"""NumPy ufuncs that graphjit traces as compositions of primitive ops (no op of their own).

Each composition follows the formula NumPy's own C loop uses where one exists (logaddexp, round),
or a classic accurate approximation (Cephes' arctan), so results agree with NumPy to a few ulp,
including NaN, +-inf and signed zeros. They register in numpy_api's `UFUNC_HANDLERS` and
`HANDLED_FUNCTIONS`, which stay the single place every traced NumPy name is looked up.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, UnsupportedError
from graphjit.compiler.ops import Op

from .numpy_api import METHODS, UFUNC_HANDLERS, implements, lift_all, write_out
from .source import user_source
from .tracer import (
    Tracer, apply_elementwise, broadcast_node, cast_node, dtype_operand, is_python_scalar,
)

LN2 = math.log(2.0)


def promote(ufunc: np.ufunc, *operands: Any) -> list[Tracer]:
    """Operands cast to the ufunc's loop dtype and broadcast to one shape (strong tracers)."""
    in_types = tuple(dtype_operand(v) for v in operands)
    try:
        loop_dtype = np.dtype(ufunc.resolve_dtypes(in_types + (None,))[-1])
    except TypeError as exc:
        raise DTypeError(f"np.{ufunc.__name__} does not support these operand types "
                               f"({exc})", user_source()) from None
    tracers = lift_all(list(operands))
    try:
        shape = np.broadcast_shapes(*(t.shape for t in tracers))
    except ValueError:
        raise ShapeError(f"operands could not be broadcast together with shapes "
                         f"{' '.join(str(t.shape) for t in tracers)} in np.{ufunc.__name__}",
                         user_source()) from None
    ctx = tracers[0]._ctx   # node_of: a Python int outside the loop dtype is refused
    return [Tracer(ctx, broadcast_node(
        ctx, ctx.node_of(v if is_python_scalar(v) else t, loop_dtype), shape))
        for v, t in zip(operands, tracers)]


def _select(condition: Tracer, if_true: Any, if_false: Any) -> Tracer:
    return np.where(condition, if_true, if_false)


# ---------------------------------------------------------------- hyperbolic and inverse trig

def sinh(x: Any) -> Tracer:
    (x,) = promote(np.sinh, x)
    magnitude = abs(x)
    # small |x|: expm1 keeps full relative precision where exp(x) - exp(-x) would cancel
    small = 0.5 * (np.expm1(x) - np.expm1(-x))
    # large |x|: exp(|x|/2) twice, so sinh stays finite up to NumPy's own overflow point
    half = np.exp(magnitude * 0.5)
    large = (0.5 * half) * half - 0.5 / (half * half)
    large = _select(x < 0, -large, large)
    return _select(magnitude < 1, small, large)


def cosh(x: Any) -> Tracer:
    (x,) = promote(np.cosh, x)
    half = np.exp(abs(x) * 0.5)
    return (0.5 * half) * half + 0.5 / (half * half)


# Cephes atan: range reduction to |r| <= 0.66, then x + x^3 P(x^2)/Q(x^2)
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
_TAN_3PI_8 = 2.41421356237309504880
_ATAN_MOREBITS = 6.123233995736765886130e-17


def _polynomial(z: Tracer, coefficients: tuple[float, ...], leading_one: bool) -> Tracer:
    result = z + coefficients[0] if leading_one else z * 0 + coefficients[0]
    for coefficient in coefficients[1:]:
        result = result * z + coefficient
    return result


def arctan(x: Any) -> Tracer:
    (x,) = promote(np.arctan, x)
    magnitude = abs(x)
    big = magnitude > _TAN_3PI_8
    middle = magnitude > 0.66
    reduced = _select(big, -1.0 / magnitude,
                      _select(middle, (magnitude - 1.0) / (magnitude + 1.0), magnitude))
    scalar = x.dtype.type  # np.where of two Python floats would be float64
    offset = _select(big, scalar(math.pi / 2), _select(middle, scalar(math.pi / 4), scalar(0)))
    extra = _select(big, scalar(_ATAN_MOREBITS),
                    _select(middle, scalar(0.5 * _ATAN_MOREBITS), scalar(0)))
    z = reduced * reduced
    series = z * _polynomial(z, _ATAN_P, False) / _polynomial(z, _ATAN_Q, True)
    result = offset + ((reduced * series + reduced) + extra)
    result = _select(x < 0, -result, result)
    return _select(magnitude == 0, x, result)  # keeps the sign of zero


# ---------------------------------------------------------------- logaddexp, fmax, fmin

def logaddexp(a: Any, b: Any) -> Tracer:
    a, b = promote(np.logaddexp, a, b)
    # NumPy: x == y -> x + log 2 (also right for equal infinities); else max + log1p(exp(-|d|))
    general = np.maximum(a, b) + np.log1p(np.exp(-abs(a - b)))
    return _select(a == b, a + LN2, general)


def _nan_ignoring(ufunc: np.ufunc, pick: Op):
    def handler(a: Any, b: Any) -> Tracer:
        a, b = promote(ufunc, a, b)
        picked = apply_elementwise(pick, a, b)
        if a.dtype.kind != "f":
            return picked
        # fmax/fmin return the other operand where one is NaN
        return _select(b != b, a, _select(a != a, b, picked))

    return handler


# ---------------------------------------------------------------- rounding

def _round_half_even(x: Tracer) -> Tracer:
    """np.rint for floats: round half to even, keeping NaN, infinities and the sign of zero."""
    low = np.floor(x)
    fraction = x - low  # exact for floats
    low_is_even = (low * 0.5) == np.floor(low * 0.5)
    up = (fraction > 0.5) | ((fraction == 0.5) & ~low_is_even)
    rounded = _select(up, low + 1.0, low)
    rounded = _select(fraction != fraction, x, rounded)  # inf - inf: keep the infinity / NaN
    return _select(rounded == 0, x * 0.0, rounded)  # -0.3 rounds to -0.0 like NumPy


def rint(x: Any) -> Tracer:
    (x,) = promote(np.rint, x)
    return _round_half_even(x)


def round_(a: Any, decimals: int = 0, out: Any = None) -> Tracer:
    (a,) = lift_all([a])
    if isinstance(decimals, Tracer):
        raise UnsupportedError("np.round: decimals must be a Python int; mark it static",
                               user_source())
    decimals = operator.index(decimals)
    if a.dtype.kind == "b":   # NumPy rounds booleans with rint (float16); decimals are refused
        if decimals:
            raise DTypeError("np.round of booleans with decimals != 0: NumPy cannot cast the "
                             "scaled float64 result back to bool", user_source())
        result = rint(a)
    elif a.dtype.kind in "iu":
        result = Tracer(a._ctx, a._id)
        if decimals < 0:   # to tens, hundreds...: half to even, back in the integer dtype
            factor = 10.0 ** -decimals
            scaled = Tracer(a._ctx, cast_node(a._ctx, a._id, np.dtype(np.float64))) / factor
            result = _round_half_even(scaled) * factor
            result = Tracer(a._ctx, cast_node(a._ctx, result._id, a.dtype))
    elif decimals == 0:
        result = _round_half_even(a)
    elif decimals > 0:
        # NumPy: rint(x * 10**d) / 10**d with the factor in x's dtype
        factor = 10.0 ** decimals
        result = _round_half_even(a * factor) / factor
    else:
        factor = 10.0 ** -decimals
        result = _round_half_even(a / factor) * factor
    return result if out is None else write_out(out, result)


UFUNC_HANDLERS.update({
    np.sinh: sinh,
    np.cosh: cosh,
    np.arctan: arctan,
    np.logaddexp: logaddexp,
    np.fmax: _nan_ignoring(np.fmax, Op.MAXIMUM),
    np.fmin: _nan_ignoring(np.fmin, Op.MINIMUM),
    np.rint: rint,
})
implements(np.round, np.around)(round_)
METHODS["round"] = round_
