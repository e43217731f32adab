"""Ufuncs and elementwise functions: one primitive op per ufunc where the op table has one,
power's scalar fast paths, where, clip, ufunc.at and ufunc.outer."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError
from graphjit.compiler.ops import Op, UFUNC_OPS

from .numpy_api import (
    UFUNC_HANDLERS, UFUNC_METHODS, _as_dtype, _result_type_operand,
    handle_ufunc, implements, lift, lift_all, write_out,
)
from .shapes import reshape
from .source import user_source
from .tracer import Tracer, apply_elementwise, broadcast_node, cast_node, context_of, dtype_operand


# ---------------------------------------------------------------- ufuncs

def _unary(op: Op) -> Callable:
    return lambda x: apply_elementwise(op, x)


def _binary(op: Op) -> Callable:
    return lambda a, b: apply_elementwise(op, a, b)


UFUNC_HANDLERS.update({uf: (_unary(op) if uf.nin == 1 else _binary(op))
                       for op, uf in UFUNC_OPS.items()})


def _square(x: Tracer) -> Tracer:
    return apply_elementwise(Op.MUL, x, x)


# NumPy computes an array to these concrete scalar powers with the ufunc named here (it matters:
# sqrt(-inf) is NaN where C's pow(-inf, 0.5) is inf); their loop dtype is resolved first.
SCALAR_POWER_FAST_PATHS: dict[float, Callable[[Tracer], Tracer]] = {
    0.5: lambda x: apply_elementwise(Op.SQRT, x),
    2.0: _square,
    1.0: lambda x: x,
}


def power(a: Any, b: Any) -> Tracer:
    fast = None
    if isinstance(a, Tracer) and isinstance(b, (int, float, np.integer, np.floating)) \
            and not isinstance(b, (bool, np.bool_)):
        fast = SCALAR_POWER_FAST_PATHS.get(float(b))
    if fast is None:
        return apply_elementwise(Op.POW, a, b)
    loop = np.power.resolve_dtypes((dtype_operand(a), dtype_operand(b), None))
    return fast(Tracer(a._ctx, cast_node(a._ctx, a._id, loop[0]), weak=a._weak))


def _reciprocal(x: Any) -> Tracer:
    if dtype_operand(x) in (int, bool) or np.dtype(dtype_operand(x)).kind in "biu":
        raise UnsupportedError("np.reciprocal of integers is not supported", user_source())
    return apply_elementwise(Op.DIV, np.ones((), x.dtype), x)


def _log_base(base: float) -> Callable:
    def log_base(x: Any) -> Tracer:
        natural = apply_elementwise(Op.LOG, x)
        return apply_elementwise(Op.MUL, natural, 1.0 / math.log(base))

    return log_base


def _isnan(x: Any) -> Tracer:
    return apply_elementwise(Op.NE, x, x)


def _isinf(x: Any) -> Tracer:
    return apply_elementwise(Op.EQ, apply_elementwise(Op.ABS, x), np.inf)


def _isfinite(x: Any) -> Tracer:
    return apply_elementwise(Op.LOGICAL_NOT, apply_elementwise(Op.NE, x - x, 0))


UFUNC_HANDLERS.update({
    np.square: lambda x: apply_elementwise(Op.MUL, x, x),
    np.reciprocal: _reciprocal,
    np.positive: lambda x: x,
    np.fabs: _unary(Op.ABS),
    np.power: power,
    np.float_power: lambda a, b: power(_as_dtype(lift_all([a])[0], np.float64), b),
    np.log2: _log_base(2.0),
    np.log10: _log_base(10.0),
    np.exp2: lambda x: power(2.0, x),
    np.isnan: _isnan,
    np.isinf: _isinf,
    np.isfinite: _isfinite,
})

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
