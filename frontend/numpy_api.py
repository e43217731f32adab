"""How each NumPy function, ufunc and array method is traced.

`__array_function__` looks functions up in `HANDLED_FUNCTIONS`, `__array_ufunc__` looks ufuncs up in
`UFUNC_HANDLERS`; array methods come from `METHODS`. Anything missing is a clear error that names
the function and the user's line.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, TracerBoolError, UnsupportedError
from graphjit.compiler.ops import Op, UFUNC_OPS, normalize_axes, reduce_shape

from .source import user_source
from .tracer import (
    Tracer, TraceContext, _nearest_supported, apply_elementwise, broadcast_node,
    cast_node, context_of, dtype_operand, is_python_scalar, reshape_node,
)

HANDLED_FUNCTIONS: dict[Callable, Callable] = {}
UFUNC_HANDLERS: dict[np.ufunc, Callable] = {op_ufunc: None for op_ufunc in ()}
METHODS: dict[str, Callable] = {}


def implements(*functions: Callable, method: str | tuple[str, ...] | None = None):
    """Register a handler for NumPy functions (and optionally as array methods)."""

    def register(handler: Callable) -> Callable:
        for function in functions:
            HANDLED_FUNCTIONS[function] = handler
        for name in (method,) if isinstance(method, str) else (method or ()):
            METHODS[name] = handler
        return handler

    return register


def function_name(func: Callable) -> str:
    module = getattr(func, "__module__", "numpy") or "numpy"
    module = module.replace("numpy", "np", 1).replace("np._core.", "np.").replace(
        "np.core.", "np.")
    if module.startswith("np.") and module.count(".") == 1 and module != "np.linalg":
        module = "np"
    return f"{module}.{getattr(func, '__name__', repr(func))}"


def handle_function(func: Callable, args: tuple, kwargs: dict) -> Any:
    handler = HANDLED_FUNCTIONS.get(func)
    if handler is None:
        raise UnsupportedError(
            f"{function_name(func)} is not supported by graphjit's tracer. Rewrite it with "
            "supported NumPy operations, or compute it outside the jitted function and pass "
            "the result in as an argument", user_source())
    return handler(*args, **kwargs)


def handle_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    out = kwargs.pop("out", None)
    where = kwargs.pop("where", True)
    if where is not True:
        raise UnsupportedError(f"np.{ufunc.__name__}(..., where=...) is not supported; use "
                               "np.where(mask, np.{ufunc.__name__}(...), other)", user_source())
    kwargs.pop("casting", None)
    kwargs.pop("order", None)
    kwargs.pop("subok", None)
    if method == "__call__":
        handler = UFUNC_HANDLERS.get(ufunc)
        if handler is None:
            raise UnsupportedError(
                f"np.{ufunc.__name__} is not supported by graphjit's tracer; rewrite it with "
                "supported NumPy operations", user_source())
        dtype = kwargs.pop("dtype", None)
        signature = kwargs.pop("signature", None)
        if kwargs or signature is not None:
            raise UnsupportedError(f"np.{ufunc.__name__} keyword arguments {sorted(kwargs)} are "
                                   "not supported", user_source())
        if dtype is not None:
            inputs = tuple(_as_dtype(v, dtype) for v in inputs)
        result = handler(*inputs)
    elif method == "reduce" and ufunc in REDUCE_UFUNCS:
        result = reduce_with(REDUCE_UFUNCS[ufunc], inputs[0], kwargs.get("axis", 0),
                             kwargs.get("keepdims", False), kwargs.get("dtype"), ufunc.__name__)
    elif method == "at" and ufunc in (np.add, np.subtract):
        return ufunc_at(ufunc, *inputs)
    elif method == "outer":
        a, b = (lift(context_of(inputs), v) for v in inputs)
        a = reshape(a, a.shape + (1,) * b.ndim)
        result = handle_ufunc(ufunc, "__call__", (a, b), {})
    else:
        raise UnsupportedError(f"np.{ufunc.__name__}.{method} is not supported by graphjit",
                               user_source())
    if out is not None:
        return write_out(out, result)
    return result


def write_out(out: Any, result: Tracer) -> Tracer:
    """`out=` argument: rebind the output tracer to the result, as NumPy would have filled it."""
    target = out[0] if isinstance(out, tuple) else out
    if not isinstance(target, Tracer):
        raise UnsupportedError("out= must be a traced array (an argument or a value computed in "
                               "the function); writing into a closed-over array is not supported",
                               user_source())
    return target._rebind(result)


def _as_dtype(value: Any, dtype: Any) -> Any:
    if isinstance(value, Tracer):
        return astype(value, dtype)
    return np.asarray(value, dtype=dtype)


def lift(ctx: TraceContext, value: Any) -> Tracer:
    """A tracer for any array-like operand (constants become const nodes)."""
    if isinstance(value, Tracer):
        return value
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tracer) for v in value):
        return stack(value)
    return Tracer(ctx, ctx.node_of(value), weak=is_python_scalar(value))


def lift_all(values: Sequence[Any]) -> list[Tracer]:
    ctx = context_of(values) if any(isinstance(v, Tracer) for v in values) else None
    if ctx is None:
        for v in values:
            if isinstance(v, (list, tuple)):
                for inner in v:
                    if isinstance(inner, Tracer):
                        ctx = inner._ctx
    return [lift(ctx, v) for v in values]


# ---------------------------------------------------------------- ufuncs

def _unary(op: Op) -> Callable:
    return lambda x: apply_elementwise(op, x)


def _binary(op: Op) -> Callable:
    return lambda a, b: apply_elementwise(op, a, b)


UFUNC_HANDLERS = {uf: (_unary(op) if uf.nin == 1 else _binary(op)) for op, uf in UFUNC_OPS.items()}


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
    np.fmax: _binary(Op.MAXIMUM),
    np.fmin: _binary(Op.MINIMUM),
})

REDUCE_UFUNCS: dict[np.ufunc, Op] = {
    np.add: Op.SUM, np.multiply: Op.PROD, np.maximum: Op.REDUCE_MAX, np.minimum: Op.REDUCE_MIN,
    np.logical_and: Op.REDUCE_MIN, np.logical_or: Op.REDUCE_MAX,
}


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


# ---------------------------------------------------------------- reductions

def _axes(x: Tracer, axis: Any) -> tuple[int, ...]:
    try:
        return normalize_axes(axis, x.ndim)
    except (ValueError, TypeError) as exc:
        raise ShapeError(str(exc), user_source()) from None


# logical reductions over an empty axis give their identity (NumPy's max/min would raise)
EMPTY_REDUCTION_RESULT: dict[str, bool] = {
    "any": False, "logical_or": False, "all": True, "logical_and": True,
}


def reduce_with(op: Op, x: Any, axis: Any, keepdims: bool, dtype: Any, name: str) -> Tracer:
    x = lift_all([x])[0]
    ctx = x._ctx
    axes = _axes(x, axis)
    if name in EMPTY_REDUCTION_RESULT and any(x.shape[a] == 0 for a in axes):
        shape = reduce_shape(x.shape, axes=axes, keepdims=bool(keepdims))
        filled = ctx.node_of(np.asarray(EMPTY_REDUCTION_RESULT[name]))
        return Tracer(ctx, broadcast_node(ctx, filled, shape))
    if op in (Op.SUM, Op.PROD):
        probe = np.sum if op is Op.SUM else np.prod
        result_dtype = probe(np.zeros(1, x.dtype), dtype=dtype).dtype
    elif name in ("logical_and", "logical_or", "all", "any"):
        result_dtype = np.dtype(bool)
    else:
        result_dtype = x.dtype if dtype is None else np.dtype(dtype)
        if any(x.shape[a] == 0 for a in axes):
            raise ShapeError(f"zero-size array to reduction operation {name} which has no "
                             "identity", user_source())
    source = cast_node(ctx, x._id, _nearest_supported(np.dtype(result_dtype)))
    if not axes:
        return Tracer(ctx, source)
    return Tracer(ctx, ctx.add(op, (source,), {"axes": axes, "keepdims": bool(keepdims)}))


def _no_where(kwargs: dict, name: str) -> None:
    if kwargs.get("where", True) is not True or kwargs.get("out") is not None:
        raise UnsupportedError(f"np.{name}(..., where=/out=) is not supported", user_source())


@implements(np.sum, method="sum")
def sum_(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "sum")
    result = reduce_with(Op.SUM, x, axis, keepdims, dtype, "sum")
    return result if initial is None else result + initial


@implements(np.prod, method="prod")
def prod(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "prod")
    result = reduce_with(Op.PROD, x, axis, keepdims, dtype, "prod")
    return result if initial is None else result * initial


@implements(np.max, np.amax, method="max")
def max_(x, axis=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "max")
    result = reduce_with(Op.REDUCE_MAX, x, axis, keepdims, None, "maximum")
    return result if initial is None else np.maximum(result, initial)


@implements(np.min, np.amin, method="min")
def min_(x, axis=None, out=None, keepdims=False, initial=None, where=True):
    _no_where({"where": where, "out": out}, "min")
    result = reduce_with(Op.REDUCE_MIN, x, axis, keepdims, None, "minimum")
    return result if initial is None else np.minimum(result, initial)


@implements(np.any, method="any")
def any_(x, axis=None, out=None, keepdims=False, where=True):
    _no_where({"where": where, "out": out}, "any")
    return reduce_with(Op.REDUCE_MAX, astype(lift_all([x])[0], bool), axis, keepdims, None, "any")


@implements(np.all, method="all")
def all_(x, axis=None, out=None, keepdims=False, where=True):
    _no_where({"where": where, "out": out}, "all")
    return reduce_with(Op.REDUCE_MIN, astype(lift_all([x])[0], bool), axis, keepdims, None, "all")


def _count(x: Tracer, axes: tuple[int, ...]) -> int:
    return math.prod(x.shape[a] for a in axes)


def _mean_dtype(x: Tracer, dtype: Any) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    return np.dtype(np.float64) if x.dtype.kind in "biu" else x.dtype


@implements(np.mean, method="mean")
def mean(x, axis=None, dtype=None, out=None, keepdims=False, where=True):
    _no_where({"where": where, "out": out}, "mean")
    x = lift_all([x])[0]
    total = reduce_with(Op.SUM, x, axis, keepdims, _mean_dtype(x, dtype), "mean")
    return total / _count(x, _axes(x, axis))


@implements(np.var, method="var")
def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=True, mean=None,
        correction=None):
    _no_where({"where": where, "out": out}, "var")
    x = lift_all([x])[0]
    if correction is not None:
        ddof = correction
    count = _count(x, _axes(x, axis))
    dtype = _mean_dtype(x, dtype)
    mu = reduce_with(Op.SUM, x, axis, True, dtype, "var") / count
    centered = x - mu
    squared = centered * centered
    return reduce_with(Op.SUM, squared, axis, keepdims, dtype, "var") / max(count - ddof, 0)


@implements(np.std, method="std")
def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=True, mean=None,
        correction=None):
    return np.sqrt(var(x, axis, dtype, out, ddof, keepdims, where, mean, correction))


def _arg_reduce(op: Op, x: Any, axis: Any, keepdims: bool, name: str) -> Tracer:
    x = lift_all([x])[0]
    ctx = x._ctx
    if axis is None:
        flat = reshape(x, (x.size,))
        result = _arg_reduce(op, flat, 0, False, name)
        return reshape(result, (1,) * x.ndim) if keepdims else result
    (axis,) = _axes(x, axis)
    if x.shape[axis] == 0:
        raise ShapeError(f"attempt to get {name} of an empty sequence", user_source())
    return Tracer(ctx, ctx.add(op, (x._id,), {"axis": axis, "keepdims": bool(keepdims)}))


@implements(np.argmax, method="argmax")
def argmax(x, axis=None, out=None, keepdims=False):
    return _arg_reduce(Op.ARGMAX, x, axis, keepdims, "argmax")


@implements(np.argmin, method="argmin")
def argmin(x, axis=None, out=None, keepdims=False):
    return _arg_reduce(Op.ARGMIN, x, axis, keepdims, "argmin")


# ---------------------------------------------------------------- shapes

def _shape_arg(args: tuple) -> tuple:
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    if len(args) == 1 and args[0] is None:
        return ()
    return tuple(args)


def _resolve_shape(size: int, shape: tuple) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if shape.count(-1) > 1:
        raise ShapeError("can only specify one unknown dimension", user_source())
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape array of size {size} into shape {shape}",
                             user_source())
        shape = tuple(size // known if d == -1 else d for d in shape)
    if math.prod(shape) != size:
        raise ShapeError(f"cannot reshape array of size {size} into shape {shape}", user_source())
    return shape


@implements(np.reshape)
def reshape(x, shape=None, order="C", *, newshape=None, copy=None):
    x = lift_all([x])[0]
    if order != "C":
        raise UnsupportedError("reshape with order other than 'C' is not supported", user_source())
    shape = newshape if shape is None else shape
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    shape = _resolve_shape(x.size, shape)
    return Tracer(x._ctx, reshape_node(x._ctx, x._id, shape), weak=x._weak)


def reshape_method(x, *shape, order="C"):
    return reshape(x, _shape_arg(shape), order=order)


METHODS["reshape"] = reshape_method


@implements(np.ravel, method=("ravel", "flatten"))
def ravel(x, order="C"):
    x = lift_all([x])[0]
    return reshape(x, (x.size,), order=order)


@implements(np.transpose)
def transpose(x, axes=None):
    x = lift_all([x])[0]
    ctx = x._ctx
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(
        a % x.ndim if x.ndim else a for a in axes)
    if perm == tuple(range(x.ndim)):
        return x
    try:
        return Tracer(ctx, ctx.add(Op.TRANSPOSE, (x._id,), {"perm": perm}))
    except ShapeError:
        raise ShapeError(f"axes {axes} don't match array of dimension {x.ndim}",
                         user_source()) from None


METHODS["transpose"] = lambda x, *axes: transpose(x, _shape_arg(axes) or None)


@implements(np.swapaxes, method="swapaxes")
def swapaxes(x, axis1, axis2):
    x = lift_all([x])[0]
    perm = list(range(x.ndim))
    a, b = axis1 % x.ndim, axis2 % x.ndim
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


@implements(np.moveaxis)
def moveaxis(x, source, destination):
    x = lift_all([x])[0]
    source = normalize_axes(source, x.ndim) if not isinstance(source, int) else (source % x.ndim,)
    destination = [d % x.ndim for d in ((destination,) if isinstance(destination, int)
                                        else destination)]
    order = [n for n in range(x.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(x, order)


@implements(np.expand_dims)
def expand_dims(x, axis):
    x = lift_all([x])[0]
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = x.ndim + len(axes)
    axes = normalize_axes(axes, ndim)
    dims = iter(x.shape)
    shape = tuple(1 if i in axes else next(dims) for i in range(ndim))
    return reshape(x, shape)


@implements(np.squeeze, method="squeeze")
def squeeze(x, axis=None):
    x = lift_all([x])[0]
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = _axes(x, axis)
        if any(x.shape[a] != 1 for a in axes):
            raise ShapeError("cannot select an axis to squeeze out which has size not equal to "
                             "one", user_source())
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


@implements(np.broadcast_to)
def broadcast_to(x, shape, subok=False):
    x = lift_all([x])[0]
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    try:
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ShapeError(f"cannot broadcast shape {x.shape} to {shape}", user_source()) from None
    ctx = x._ctx
    target = reshape_node(ctx, x._id, (1,) * (len(shape) - x.ndim) + x.shape)
    return Tracer(ctx, broadcast_node(ctx, target, shape))


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    tracers = lift_all(list(arrays))
    if axis is None:
        tracers = [ravel(t) for t in tracers]
        axis = 0
    ctx = tracers[0]._ctx
    result_dtype = np.result_type(*(dtype_operand(t) for t in tracers)) if dtype is None else \
        np.dtype(dtype)
    ndim = tracers[0].ndim
    if ndim == 0:
        raise ShapeError("zero-dimensional arrays cannot be concatenated", user_source())
    (axis,) = _axes(tracers[0], axis)
    ids = tuple(cast_node(ctx, t._id, result_dtype) for t in tracers)
    return Tracer(ctx, ctx.add(Op.CONCAT, ids, {"axis": axis}))


@implements(np.stack)
def stack(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    tracers = lift_all(list(arrays))
    shapes = {t.shape for t in tracers}
    if len(shapes) != 1:
        raise ShapeError("all input arrays must have the same shape", user_source())
    ndim = tracers[0].ndim + 1
    (axis,) = normalize_axes(axis, ndim)
    return concatenate([expand_dims(t, axis) for t in tracers], axis=axis, dtype=dtype)


@implements(np.hstack)
def hstack(arrays, dtype=None, casting="same_kind"):
    tracers = lift_all(list(arrays))
    axis = 0 if tracers[0].ndim == 1 else 1
    return concatenate(tracers, axis=axis, dtype=dtype)


@implements(np.vstack)
def vstack(arrays, dtype=None, casting="same_kind"):
    tracers = [t if t.ndim >= 2 else reshape(t, (1, -1)) for t in lift_all(list(arrays))]
    return concatenate(tracers, axis=0, dtype=dtype)


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


WEAK_EXAMPLES: dict[str, Any] = {"b": False, "i": 0, "u": 0, "f": 0.0}


def _result_type_operand(value: Any) -> Any:
    """np.result_type takes Python scalars as weak values and dtypes as strong types."""
    if isinstance(value, Tracer):
        return WEAK_EXAMPLES[value.dtype.kind] if value._weak else value.dtype
    if is_python_scalar(value):
        return value
    return np.asarray(value).dtype


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


def astype(x: Tracer, dtype: Any, order="K", casting="unsafe", subok=True, copy=True) -> Tracer:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise DTypeError(f"graphjit does not compile dtype {dtype}; use float32, float64, "
                         "int32, int64 or bool", user_source())
    target = _nearest_supported(dtype)
    if target != dtype:
        raise DTypeError(f"graphjit does not compile dtype {dtype}; use float32, float64, int32, "
                         "int64 or bool", user_source())
    return Tracer(x._ctx, cast_node(x._ctx, x._id, dtype))


METHODS["astype"] = astype


@implements(np.copy, method="copy")
def copy(x, order="K", subok=False):
    x = lift_all([x])[0]
    return Tracer(x._ctx, x._id, weak=x._weak)


def _like(x, fill, dtype=None, shape=None):
    x = lift_all([x])[0]
    ctx = x._ctx
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    shape = x.shape if shape is None else ((shape,) if isinstance(shape, int) else tuple(shape))
    scalar = ctx.node_of(np.asarray(fill, dtype=dtype))
    return Tracer(ctx, broadcast_node(ctx, scalar, shape))


@implements(np.zeros_like)
def zeros_like(x, dtype=None, order="K", subok=True, shape=None, **kwargs):
    return _like(x, 0, dtype, shape)


@implements(np.empty_like)
def empty_like(x, dtype=None, order="K", subok=True, shape=None, **kwargs):
    return _like(x, 0, dtype, shape)


@implements(np.ones_like)
def ones_like(x, dtype=None, order="K", subok=True, shape=None, **kwargs):
    return _like(x, 1, dtype, shape)


@implements(np.full_like)
def full_like(x, fill_value, dtype=None, order="K", subok=True, shape=None, **kwargs):
    if isinstance(fill_value, Tracer):
        return broadcast_to(astype(fill_value, dtype or x.dtype), x.shape if shape is None
                            else shape) + zeros_like(x, dtype, shape=shape)
    return _like(x, fill_value, dtype, shape)


# ---------------------------------------------------------------- contractions

def matmul(a: Any, b: Any) -> Tracer:
    a, b = lift_all([a, b])
    ctx = a._ctx
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError("matmul: input operand does not have enough dimensions (use * for "
                         "scalars)", user_source())
    dtype = np.dtype(np.matmul.resolve_dtypes((dtype_operand(a), dtype_operand(b), None))[-1])
    a_id, b_id = cast_node(ctx, a._id, dtype), cast_node(ctx, b._id, dtype)
    a_shape, b_shape = a.shape, b.shape
    if a.ndim == 1:
        a_id, a_shape = reshape_node(ctx, a_id, (1, a.shape[0])), (1, a.shape[0])
    if b.ndim == 1:
        b_id, b_shape = reshape_node(ctx, b_id, (b.shape[0], 1)), (b.shape[0], 1)
    if a_shape[-1] != b_shape[-2]:
        raise ShapeError(
            f"matmul: Input operand 1 has a mismatch in its core dimension 0 (size {b_shape[-2]} "
            f"is different from {a_shape[-1]}): shapes {a.shape} @ {b.shape}", user_source())
    try:
        batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    except ValueError:
        raise ShapeError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast",
                         user_source()) from None
    a_id = _broadcast_batch(ctx, a_id, a_shape, batch)
    b_id = _broadcast_batch(ctx, b_id, b_shape, batch)
    result = ctx.add(Op.MATMUL, (a_id, b_id))
    out_shape = (*batch, a_shape[-2], b_shape[-1])
    if a.ndim == 1:
        out_shape = out_shape[:-2] + out_shape[-1:]
    if b.ndim == 1:
        out_shape = out_shape[:-1]
    return Tracer(ctx, reshape_node(ctx, result, out_shape))


def _broadcast_batch(ctx: TraceContext, node_id: int, shape: tuple, batch: tuple) -> int:
    target = (*batch, *shape[-2:])
    if shape == target:
        return node_id
    node_id = reshape_node(ctx, node_id, (1,) * (len(target) - len(shape)) + tuple(shape))
    return broadcast_node(ctx, node_id, target)


implements(np.matmul)(lambda a, b, out=None, **kw: matmul(a, b) if out is None
                      else write_out(out, matmul(a, b)))


@implements(np.dot, method="dot")
def dot(a, b, out=None):
    a, b = lift_all([a, b])
    if a.ndim == 0 or b.ndim == 0:
        result = a * b
    elif b.ndim <= 2:
        result = matmul(a, b)
    else:
        # dot(a, b)[i,j,k,m] = sum(a[i,j,:] * b[k,:,m]): move b's contracted axis first
        b_moved = moveaxis(b, -2, 0)
        flat_b = reshape(b_moved, (b.shape[-2], -1))
        result = reshape(matmul(a, flat_b), a.shape[:-1] + b_moved.shape[1:])
    return result if out is None else write_out(out, result)


@implements(np.outer)
def outer(a, b, out=None):
    a, b = lift_all([a, b])
    return reshape(ravel(a), (-1, 1)) * reshape(ravel(b), (1, -1))


@implements(np.inner)
def inner(a, b):
    a, b = lift_all([a, b])
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    return dot(a, moveaxis(b, -1, 0)) if b.ndim > 1 else matmul(a, b)


@implements(np.vdot)
def vdot(a, b):
    return sum_(ravel(a) * ravel(b))


@implements(np.shape)
def shape_(x):
    return lift_all([x])[0].shape


@implements(np.ndim)
def ndim_(x):
    return lift_all([x])[0].ndim


@implements(np.size)
def size_(x, axis=None):
    x = lift_all([x])[0]
    return x.size if axis is None else x.shape[axis]


@implements(np.result_type)
def result_type(*values):
    return np.result_type(*(_result_type_operand(v) for v in values))


@implements(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    if ord not in (None, 2, "fro") or (ord == 2 and (axis is None and lift_all([x])[0].ndim > 1)):
        raise UnsupportedError("np.linalg.norm supports only the 2-norm of vectors and the "
                               "Frobenius norm", user_source())
    x = lift_all([x])[0]
    return np.sqrt(sum_(x * x, axis=axis, keepdims=keepdims))


def _bool_error(name: str) -> Callable:
    def fail(*args, **kwargs):
        raise TracerBoolError(f"np.{name} returns a Python bool that depends on traced values; "
                              "use np.where or comparisons inside the computation instead",
                              user_source())

    return fail


for _name in ("allclose", "array_equal", "array_equiv"):
    HANDLED_FUNCTIONS[getattr(np, _name)] = _bool_error(_name)


# ---------------------------------------------------------------- registered elsewhere

UFUNC_HANDLERS[np.matmul] = matmul  # a ufunc in NumPy 2: arrives through __array_ufunc__


def _register_indexing() -> None:
    from .indexing import take, take_along_axis

    implements(np.take, method="take")(take)
    implements(np.take_along_axis)(take_along_axis)


_register_indexing()

# these modules register their handlers in the tables above when imported
from . import compositions, einsum, shape_functions  # noqa: E402,F401
