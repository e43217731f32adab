"""The dispatcher: how each NumPy function, ufunc and array method reaches its traced handler.

`__array_function__` looks functions up in `HANDLED_FUNCTIONS`, `__array_ufunc__` looks ufuncs up in
`UFUNC_HANDLERS` (and `ufunc.reduce`/`.at`/`.outer`/... in `UFUNC_METHODS`); array methods come
from `METHODS`. Anything missing is a clear error that names the function and the user's line.

The handlers live by family, each module registering itself here when imported:
elementwise.py (ufuncs, where, clip), compositions.py (ufuncs built from other ops),
reductions.py, shapes.py (views, joins, shape queries), creation.py (astype, *_like),
linalg.py (matmul, dot, inner, outer), linalg_functions.py (np.linalg), einsum.py,
shape_functions.py (pad, tile, repeat, split, cumsum), indexing.py (take, getitem, setitem).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import UnsupportedError

from .source import user_source
from .tracer import Tracer, TraceContext, context_of, is_python_scalar

HANDLED_FUNCTIONS: dict[Callable, Callable] = {}
UFUNC_HANDLERS: dict[np.ufunc, Callable] = {}
# ufunc methods other than __call__: handler(ufunc, inputs, kwargs) -> result (None: in place)
UFUNC_METHODS: dict[str, Callable[[np.ufunc, tuple, dict], Any]] = {}
METHODS: dict[str, Callable] = {}


def implements(*functions: Callable, method: str | tuple[str, ...] | None = None):
    """Register a handler for NumPy functions (and optionally as array methods)."""

    def register(handler: Callable) -> Callable:
        for function in functions:
            # a NumPy name seen while a trace has it wrapped (frontend/creation.py): the original
            HANDLED_FUNCTIONS[getattr(function, "__graphjit_original__", function)] = handler
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
        done, result = _eager_on_known(func, args, kwargs)
        if done:
            return result
        raise UnsupportedError(
            f"{function_name(func)} is not supported by graphjit's tracer. Rewrite it with "
            "supported NumPy operations, or compute it outside the jitted function and pass "
            "the result in as an argument", user_source())
    return handler(*args, **kwargs)


def _known_or_missing(value: Any, missing: list) -> Any:
    if isinstance(value, Tracer):
        known = value._known()
        if known is None:
            missing.append(value)
        return known
    if isinstance(value, (list, tuple)):
        return type(value)(_known_or_missing(v, missing) for v in value)
    return value


def _eager_on_known(func: Callable, args: tuple, kwargs: dict) -> tuple[bool, Any]:
    """A function with no traced handler whose traced operands are all known constants (arrays
    made inside the function from constants): NumPy computes it now; the result is a traced
    constant. (False, None) where some operand is not known."""
    missing: list = []
    concrete_args = _known_or_missing(tuple(args), missing)
    concrete_kwargs = {k: _known_or_missing(v, missing) for k, v in kwargs.items()}
    if missing:
        return False, None
    ctx = context_of([v for v in (*args, *kwargs.values()) if isinstance(v, Tracer)] or
                     [_first_tracer((args, kwargs))])
    result = func(*concrete_args, **concrete_kwargs)
    return True, _as_traced(ctx, result)


def _first_tracer(value: Any) -> Any:
    if isinstance(value, Tracer):
        return value
    if isinstance(value, (list, tuple, dict)):
        for v in (value.values() if isinstance(value, dict) else value):
            found = _first_tracer(v)
            if found is not None:
                return found
    return None


def _as_traced(ctx: TraceContext, result: Any) -> Any:
    from graphjit.compiler.dtypes import is_supported

    if isinstance(result, np.ndarray) and is_supported(result.dtype):
        return Tracer(ctx, ctx.node_of(result))
    if isinstance(result, (list, tuple)):
        return type(result)(_as_traced(ctx, r) for r in result)
    return result


def handle_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    out = kwargs.pop("out", None)
    where = kwargs.pop("where", True)
    if where is not True:
        raise UnsupportedError(f"np.{ufunc.__name__}(..., where=...) is not supported; use "
                               f"np.where(mask, np.{ufunc.__name__}(...), other)", user_source())
    kwargs.pop("casting", None)
    kwargs.pop("order", None)
    kwargs.pop("subok", None)
    inputs = _all_weak_made_strong(inputs)
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
            _check_dtype_loop(ufunc, inputs, dtype)
            inputs = tuple(_as_dtype(v, dtype) for v in inputs)
        result = handler(*inputs)
    else:
        method_handler = UFUNC_METHODS.get(method)
        if method_handler is None:
            raise UnsupportedError(f"np.{ufunc.__name__}.{method} is not supported by graphjit",
                                   user_source())
        result = method_handler(ufunc, inputs, kwargs)
        if result is None:   # an in-place method (ufunc.at)
            return None
    if out is not None:
        return write_out(out, result)
    return result


def _is_weak(value: Any) -> bool:
    return is_python_scalar(value) or (isinstance(value, Tracer) and value._weak)


def _all_weak_made_strong(inputs: tuple) -> tuple:
    """NEP 50: a ufunc whose operands are all Python scalars converts each to its default
    NumPy dtype (np.add(2, 3) is int64, np.sin(True) float16), and returns a NumPy scalar, never
    a Python one: traced Python-scalar arguments become strong there."""
    if not inputs or not all(_is_weak(v) for v in inputs):
        return inputs
    return tuple(Tracer(v._ctx, v._id, scalar=True) if isinstance(v, Tracer) else v
                 for v in inputs)


def _check_dtype_loop(ufunc: np.ufunc, inputs: tuple, dtype: Any) -> None:
    """`dtype=` names the output's dtype: NumPy refuses it where the ufunc has no such loop
    (np.less(a, b, dtype=np.float64))."""
    from .tracer import dtype_operand

    try:
        ufunc.resolve_dtypes(tuple(dtype_operand(v) for v in inputs) + (None,) * ufunc.nout,
                             signature=(None,) * ufunc.nin + (np.dtype(dtype),) * ufunc.nout)
    except TypeError as exc:
        from graphjit.compiler.errors import DTypeError

        raise DTypeError(f"np.{ufunc.__name__}(..., dtype={np.dtype(dtype)}): {exc}",
                         user_source()) from None


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
        from .creation import astype

        return astype(value, dtype)
    return np.asarray(value, dtype=dtype)


def lift(ctx: TraceContext, value: Any) -> Tracer:
    """A tracer for any array-like operand (constants become const nodes)."""
    if isinstance(value, Tracer):
        return value
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tracer) for v in value):
        from .shapes import stack

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


WEAK_EXAMPLES: dict[str, Any] = {"b": False, "i": 0, "u": 0, "f": 0.0}


def _result_type_operand(value: Any) -> Any:
    """np.result_type takes Python scalars as weak values and dtypes as strong types."""
    if isinstance(value, Tracer):
        return WEAK_EXAMPLES[value.dtype.kind] if value._weak else value.dtype
    if is_python_scalar(value):
        return value
    return np.asarray(value).dtype


def result_type(*values: Any) -> np.dtype:
    return np.result_type(*(_result_type_operand(v) for v in values))


HANDLED_FUNCTIONS[np.result_type] = result_type


# ---------------------------------------------------------------- the families register here

FAMILIES: tuple[str, ...] = (
    "views", "shapes", "creation", "elementwise", "reductions", "linalg", "linalg_functions",
    "compositions", "einsum", "shape_functions", "indexing_functions", "mutation",
    "sorting", "numerical", "array_functions",
)
for _family in FAMILIES:
    importlib.import_module(f"{__package__}.{_family}")


def supported_names() -> dict[str, list[str]]:
    """What the tracer handles, by kind, read off the registries (the README's list is this)."""
    from .creation import CREATION_FUNCTIONS

    def refuses(handler: Callable) -> bool:
        return getattr(handler, "refuses", False)

    functions = {function_name(f) for f, h in HANDLED_FUNCTIONS.items() if not refuses(h)} | {
        f"np.{name}" for name in CREATION_FUNCTIONS}
    return {
        "functions": sorted(functions),
        "ufuncs": sorted(f"np.{u.__name__}" for u in UFUNC_HANDLERS),
        "ufunc methods": sorted(f"ufunc.{name}" for name in UFUNC_METHODS),
        "array methods": sorted(f".{name}" for name in METHODS if not refuses(METHODS[name])),
        "refused with an explanation (data-dependent shapes)": sorted(
            {function_name(f) for f, h in HANDLED_FUNCTIONS.items() if refuses(h)}
            | {f".{name}" for name, h in METHODS.items() if refuses(h)}),
    }


def __getattr__(name: str) -> Any:
    """Handlers by name (`numpy_api.reshape`, `numpy_api.power`...), wherever their family is."""
    for family in FAMILIES:
        module = importlib.import_module(f"{__package__}.{family}")
        if name in vars(module):
            return vars(module)[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
