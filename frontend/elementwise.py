"""Ufuncs and elementwise functions: one primitive op per ufunc where the op table has one,
power's scalar fast paths, where, clip, ufunc.at and ufunc.outer."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, UnsupportedError
from graphjit.compiler.dtypes import is_supported
from graphjit.compiler.ops import Op, UFUNC_OPS, host_call_type

from .numpy_api import (
    METHODS, UFUNC_HANDLERS, UFUNC_METHODS, _result_type_operand,
    handle_ufunc, implements, lift, lift_all, write_out,
)
from .shapes import reshape
from .source import user_source
from .tracer import (
    Tracer, apply_elementwise, broadcast_node, cast_node, context_of, dtype_operand,
    is_python_scalar,
)


# ---------------------------------------------------------------- ufuncs

def _unary(op: Op) -> Callable:
    return lambda x: apply_elementwise(op, x)


def _binary(op: Op) -> Callable:
    return lambda a, b: apply_elementwise(op, a, b)


UFUNC_HANDLERS.update({uf: (_unary(op) if uf.nin == 1 else _binary(op))
                       for op, uf in UFUNC_OPS.items()})


def _in_loop_dtype(ufunc: np.ufunc, x: Any) -> Tracer:
    """x cast to `ufunc`'s loop dtype for it (NEP 50 weakness kept)."""
    x = lift_all([x])[0]
    try:
        loop = ufunc.resolve_dtypes((dtype_operand(x), None))
    except TypeError as exc:
        raise DTypeError(f"np.{ufunc.__name__} does not support {x.dtype} ({exc})",
                         user_source()) from None
    return Tracer(x._ctx, cast_node(x._ctx, x._id, loop[0]), weak=x._weak)


def square(x: Any) -> Tracer:
    x = _in_loop_dtype(np.square, x)   # square(bool) is int8, like NumPy's own loop table
    return apply_elementwise(Op.MUL, x, x)


def reciprocal(x: Any) -> Tracer:
    x = _in_loop_dtype(np.reciprocal, x)
    if x.dtype.kind == "f":
        return apply_elementwise(Op.DIV, np.ones((), x.dtype), x)
    return apply_elementwise(Op.RECIPROCAL, x)


def power(a: Any, b: Any) -> Tracer:
    """a ** b with NumPy's scalar fast paths: an array to the Python int 2 is np.square, a float
    array to the Python float 0.5 is np.sqrt (sqrt(-inf) is NaN where pow gives inf) and to the
    Python int -1 np.reciprocal."""
    if isinstance(a, Tracer) and not a._weak:
        if type(b) is int and b == 2:
            return square(a)
        if a.dtype.kind == "f" and type(b) is float and b == 0.5:
            return apply_elementwise(Op.SQRT, a)
        if a.dtype.kind == "f" and type(b) is int and b == -1:
            return reciprocal(a)
    if isinstance(a, Tracer) and a.dtype.kind in "biu" and type(b) is int and b < 0:
        raise ShapeError("Integers to negative integer powers are not allowed.", user_source())
    return apply_elementwise(Op.POW, a, b)


def _classify(ufunc: np.ufunc, float_rule: Callable[[Tracer], Tracer]) -> Callable:
    """isnan/isinf/isfinite...: a composition on floats, NumPy's constant answer otherwise."""

    def handler(x: Any) -> Tracer:
        x = _in_loop_dtype(ufunc, x)
        if x.dtype.kind == "f":
            return float_rule(x)
        constant = bool(ufunc(np.zeros((), x.dtype)))
        return _filled_like(x, constant, np.dtype(bool))

    return handler


def _filled_like(x: Tracer, value: Any, dtype: np.dtype) -> Tracer:
    ctx = x._ctx
    return Tracer(ctx, broadcast_node(ctx, ctx.node_of(np.asarray(value, dtype)), x.shape))


def _is_inf(x: Tracer) -> Tracer:
    return apply_elementwise(Op.EQ, apply_elementwise(Op.ABS, x), np.inf)


def _is_finite(x: Tracer) -> Tracer:
    return apply_elementwise(Op.LOGICAL_NOT, apply_elementwise(Op.NE, x - x, 0))


def _via(ufunc: np.ufunc, rule: Callable[..., Tracer]) -> Callable:
    """A ufunc computed by `rule` on operands already cast to the ufunc's own loop dtypes."""

    def handler(*operands: Any) -> Tracer:
        tracers = lift_all(list(operands))
        try:
            loop = ufunc.resolve_dtypes(tuple(dtype_operand(v) for v in operands) + (None,)
                                        * ufunc.nout)
        except TypeError as exc:
            raise DTypeError(f"np.{ufunc.__name__} does not support these operand types "
                             f"({exc})", user_source()) from None
        ctx = tracers[0]._ctx   # node_of: a Python int outside the loop dtype is refused
        cast = [Tracer(ctx, ctx.node_of(v if is_python_scalar(v) else t, d))
                for v, t, d in zip(operands, tracers, loop)]
        return rule(*cast)

    return handler


def _same(x: Tracer) -> Tracer:
    return Tracer(x._ctx, x._id)


def _deg_rad(factor: float) -> Callable[[Tracer], Tracer]:
    # NumPy: x * (pi / 180) (or its inverse) in the loop dtype
    return lambda x: apply_elementwise(Op.MUL, x, np.asarray(factor, x.dtype))


def _isposinf(x: Any) -> Tracer:
    x = lift_all([x])[0]
    return np.logical_and(np.isinf(x), ~np.signbit(x))


def _isneginf(x: Any) -> Tracer:
    x = lift_all([x])[0]
    return np.logical_and(np.isinf(x), np.signbit(x))


def _fix(x: Any, out: Any = None) -> Tracer:
    x = lift_all([x])[0]
    result = np.where(x >= 0, np.floor(x), np.ceil(x)) if x.dtype.kind == "f" else np.floor(x)
    result = Tracer(result._ctx, cast_node(result._ctx, result._id, np.floor(
        np.zeros((), x.dtype)).dtype))
    return result if out is None else write_out(out, result)


def _divmod(a: Tracer, b: Tracer) -> tuple[Tracer, Tracer]:
    return apply_elementwise(Op.FLOORDIV, a, b), apply_elementwise(Op.MOD, a, b)


def _modf(x: Tracer) -> tuple[Tracer, Tracer]:
    whole = apply_elementwise(Op.TRUNC, x)
    fraction = apply_elementwise(Op.COPYSIGN, x - whole, x)
    infinite = _is_inf(x)
    zero = apply_elementwise(Op.COPYSIGN, np.zeros((), x.dtype), x)
    return np.where(infinite, zero, fraction), whole


def _frexp(x: Tracer) -> tuple[Tracer, Tracer]:
    return tuple(host_call("frexp", [x], output=i) for i in range(2))


def _half_steps(ufunc: np.ufunc, op: Op) -> Callable:
    """nextafter/spacing: float16 steps are float16's own, so float16 operands run NumPy's
    loop as a host step (the loop kernels compute float16 in float32)."""

    def handler(*operands: Any) -> Tracer:
        tracers = lift_all(list(operands))
        try:
            loop = ufunc.resolve_dtypes(tuple(dtype_operand(v) for v in operands) + (None,))
        except TypeError as exc:
            raise DTypeError(f"np.{ufunc.__name__} does not support these operand types "
                             f"({exc})", user_source()) from None
        if loop[-1] != np.dtype(np.float16):
            return apply_elementwise(op, *operands)
        ctx = tracers[0]._ctx
        cast = [Tracer(ctx, ctx.node_of(v if is_python_scalar(v) else t, d))
                for v, t, d in zip(operands, tracers, loop)]
        return host_call(ufunc.__name__, cast)

    return handler


UFUNC_HANDLERS.update({
    np.nextafter: _half_steps(np.nextafter, Op.NEXTAFTER),
    np.spacing: _half_steps(np.spacing, Op.SPACING),
    np.square: square,
    np.reciprocal: reciprocal,
    np.positive: _via(np.positive, _same),
    np.conjugate: _via(np.conjugate, _same),
    np.fabs: _via(np.fabs, lambda x: apply_elementwise(Op.ABS, x)),
    np.power: power,
    np.float_power: _via(np.float_power, lambda a, b: apply_elementwise(Op.POW, a, b)),
    np.isnan: _classify(np.isnan, lambda x: apply_elementwise(Op.NE, x, x)),
    np.isinf: _classify(np.isinf, _is_inf),
    np.isfinite: _classify(np.isfinite, _is_finite),
    np.deg2rad: _via(np.deg2rad, _deg_rad(math.pi / 180.0)),
    np.radians: _via(np.radians, _deg_rad(math.pi / 180.0)),
    np.rad2deg: _via(np.rad2deg, _deg_rad(180.0 / math.pi)),
    np.degrees: _via(np.degrees, _deg_rad(180.0 / math.pi)),
    np.divmod: _via(np.divmod, _divmod),
    np.modf: _via(np.modf, _modf),
    np.frexp: _via(np.frexp, _frexp),
})
implements(np.isposinf)(lambda x, out=None: _isposinf(x))
implements(np.isneginf)(lambda x, out=None: _isneginf(x))
implements(np.fix)(_fix)
implements(np.real)(lambda val: _real_input(val, "real", _same))
implements(np.imag)(lambda val: _real_input(val, "imag", lambda x: _filled_like(x, 0, x.dtype)))
implements(np.conj)(lambda x, *a, **k: _real_input(x, "conj", _same))
implements(np.iscomplexobj)(lambda x: False)
implements(np.isrealobj)(lambda x: True)
METHODS["conj"] = METHODS["conjugate"] = lambda x: _same(x)
METHODS["real"] = _same


def _real_input(x: Any, name: str, rule: Callable[[Tracer], Tracer]) -> Tracer:
    x = lift_all([x])[0]
    return rule(x)


def host_call(function: str, operands: list[Any], output: int = -1, **kwargs: Any) -> Tracer:
    """A NumPy function run as a host step (its result type found by calling it on stand-ins)."""
    tracers = lift_all(list(operands))
    ctx = tracers[0]._ctx
    static = tuple(sorted(kwargs.items()))
    try:
        shape, dtype = host_call_type([t.shape for t in tracers], [t.dtype for t in tracers],
                                      function, output, static)
    except TypeError as exc:
        raise DTypeError(f"np.{function}: {exc}", user_source()) from None
    except (ValueError, IndexError, np.linalg.LinAlgError) as exc:
        raise ShapeError(f"np.{function}: {exc}", user_source()) from None
    if not is_supported(dtype):
        raise DTypeError(f"np.{function} returns {dtype} here; graphjit compiles bool, integer "
                         "and float arrays only", user_source())
    attrs = {"function": function, "output": output, "kwargs": static, "shape": shape,
             "dtype": dtype}
    return Tracer(ctx, ctx.add(Op.HOST_CALL, tuple(t._id for t in tracers), attrs))


def ufunc_at(ufunc: np.ufunc, target: Any, indices: Any, values: Any = None) -> None:
    """np.add.at / np.subtract.at: unbuffered scatter, repeated indices accumulate."""
    from .indexing import index_template

    if not isinstance(target, Tracer):
        raise UnsupportedError(f"np.{ufunc.__name__}.at needs a traced target array",
                               user_source())
    ctx = target._ctx
    template, index_ids = index_template(target, indices)
    value = lift(ctx, values)
    if ufunc is np.subtract:
        value = -value
    value_id = cast_node(ctx, value._id, target.dtype)
    result = ctx.add(Op.SCATTER_ADD, (target._id, value_id, *index_ids), {"template": template})
    target._rebind(Tracer(ctx, result))


def _ufunc_at_method(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> None:
    if ufunc not in (np.add, np.subtract):
        raise UnsupportedError(f"np.{ufunc.__name__}.at is not supported; graphjit traces "
                               "np.add.at and np.subtract.at", user_source())
    ufunc_at(ufunc, *inputs)


def _ufunc_outer_method(ufunc: np.ufunc, inputs: tuple, kwargs: dict) -> Tracer:
    a, b = (lift(context_of(inputs), v) for v in inputs)
    a = reshape(a, a.shape + (1,) * b.ndim)
    return handle_ufunc(ufunc, "__call__", (a, b), dict(kwargs))


UFUNC_METHODS["at"] = _ufunc_at_method
UFUNC_METHODS["outer"] = _ufunc_outer_method


# ---------------------------------------------------------------- elementwise functions

@implements(np.where)
def where(condition, x=None, y=None):
    if x is None or y is None:
        raise UnsupportedError("np.where(condition) with one argument returns indices whose "
                               "number depends on the data; use np.where(condition, x, y)",
                               user_source())
    ctx = context_of([condition, x, y])
    result_dtype = np.result_type(*(_result_type_operand(v) for v in (x, y)))
    cond_id = ctx.node_of(condition, None)
    cond_id = cast_node(ctx, cond_id, np.dtype(bool))
    ids = [cond_id, ctx.node_of(x, result_dtype), ctx.node_of(y, result_dtype)]
    shapes = [ctx.graph.node(i).shape for i in ids]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ShapeError(f"operands could not be broadcast together with shapes "
                         f"{' '.join(str(s) for s in shapes)} in np.where", user_source()) from None
    ids = [broadcast_node(ctx, i, shape) for i in ids]
    return Tracer(ctx, ctx.add(Op.WHERE, tuple(ids)))


@implements(np.clip, method="clip")
def clip(x, a_min=None, a_max=None, out=None, *, min=None, max=None, **kwargs):
    lower = a_min if a_min is not None else min
    upper = a_max if a_max is not None else max
    result = x
    if lower is not None:
        result = np.maximum(result, lower)
    if upper is not None:
        result = np.minimum(result, upper)
    if out is not None:
        return write_out(out, result)
    return result


@implements(np.abs, np.absolute)
def abs_(x):
    return apply_elementwise(Op.ABS, x)
