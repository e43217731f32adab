"""Arrays made from others and dtype conversion (astype, copy, zeros_like, ones_like, empty_like,
full_like), and arrays made inside the function (np.zeros & co. while a thread traces)."""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.dtypes import is_supported, supported_list
from graphjit.compiler.errors import DTypeError

from .numpy_api import METHODS, implements, lift_all
from .shapes import broadcast_to
from .source import _is_ours, user_source
from .tracer import Tracer, broadcast_node, cast_node


def astype(x: Tracer, dtype: Any, order="K", casting="unsafe", subok=True, copy=True) -> Tracer:
    dtype = np.dtype(dtype)
    if not is_supported(dtype):
        raise DTypeError(f"graphjit does not compile dtype {dtype}; use {supported_list('or')}",
                         user_source())
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


# ---------------------------------------------------------------- arrays made inside the function
#
# np.zeros(...) and friends, called with concrete arguments, never reach __array_function__, so
# while a thread traces, the public NumPy names are replaced by wrappers that make traced arrays
# (fresh storages: writable, mutable values). The wrappers are installed only while at least one
# thread traces and act only for the tracing thread and only for calls from user code (graphjit's
# and NumPy's own calls keep plain NumPy); everything else sees the original function.

_LOCAL = threading.local()
_INSTALL_LOCK = threading.Lock()
_ACTIVE_TRACES = 0
_ORIGINALS: dict[str, Callable] = {}


def _tracing_context() -> Any:
    """The innermost trace context of this thread, or None when it is not tracing."""
    stack = getattr(_LOCAL, "stack", None)
    return stack[-1] if stack else None


def _supported_result(value: np.ndarray) -> bool:
    return isinstance(value, np.ndarray) and is_supported(value.dtype)


def _filled(ctx, shape, fill, dtype) -> Any:
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if isinstance(fill, Tracer):
        target = np.dtype(dtype) if dtype is not None else fill.dtype
        return broadcast_to(astype(fill, target), shape) + _like_const(ctx, 0, target, shape)
    value = np.asarray(fill, dtype=dtype)
    if not _supported_result(value) or value.ndim:
        return None
    return _like_const(ctx, value, value.dtype, shape)


def _like_const(ctx, fill, dtype, shape) -> Tracer:
    scalar = ctx.node_of(np.asarray(fill, dtype=dtype))
    return Tracer(ctx, broadcast_node(ctx, scalar, tuple(shape)))


def _traced_const(ctx, value: Any) -> Any:
    """A concrete array made by NumPy, as a traced (writable) array; None if its dtype is not
    one graphjit compiles (it then stays a plain NumPy array)."""
    if not _supported_result(value):
        return None
    return Tracer(ctx, ctx.node_of(value))


def _has_tracer(value: Any) -> bool:
    if isinstance(value, Tracer):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_tracer(v) for v in value)
    return False


def _stack_nested(value: Any) -> Tracer:
    from .shapes import stack

    if isinstance(value, (list, tuple)):
        parts = [_stack_nested(v) if isinstance(v, (list, tuple)) else v for v in value]
        return stack(parts)
    return value


def _make_zeros(ctx, original, shape, dtype=float, order="C", **kw):
    return _filled(ctx, shape, 0, dtype)


def _make_ones(ctx, original, shape, dtype=None, order="C", **kw):
    return _filled(ctx, shape, 1, dtype if dtype is not None else float)


def _make_full(ctx, original, shape, fill_value, dtype=None, order="C", **kw):
    return _filled(ctx, shape, fill_value, dtype)


def _like_args(a, dtype, shape):
    a = np.asarray(a)
    return (a.shape if shape is None else shape), (a.dtype if dtype is None else dtype)


def _make_zeros_like(ctx, original, a, dtype=None, order="K", subok=True, shape=None, **kw):
    shape, dtype = _like_args(a, dtype, shape)
    return _filled(ctx, shape, 0, dtype)


def _make_ones_like(ctx, original, a, dtype=None, order="K", subok=True, shape=None, **kw):
    shape, dtype = _like_args(a, dtype, shape)
    return _filled(ctx, shape, 1, dtype)


def _make_full_like(ctx, original, a, fill_value, dtype=None, order="K", subok=True, shape=None,
                    **kw):
    shape, dtype = _like_args(a, dtype, shape)
    return _filled(ctx, shape, fill_value, dtype)


def _make_array(ctx, original, obj, dtype=None, *args, copy=True, ndmin=0, **kw):
    if isinstance(obj, Tracer) or (isinstance(obj, (list, tuple)) and _has_tracer(obj)):
        x = _stack_nested(obj) if not isinstance(obj, Tracer) else obj
        if dtype is not None:
            x = astype(x, dtype)
        if copy is not False or x is obj:
            x = Tracer(ctx, x._id)   # a fresh storage: NumPy's copy
        if ndmin > x.ndim:
            from .shapes import reshape

            x = reshape(x, (1,) * (ndmin - x.ndim) + x.shape)
        return x
    if copy is False or (isinstance(obj, np.ndarray) and copy is None):
        return None
    return _traced_const(ctx, original(obj, dtype, *args, copy=copy, ndmin=ndmin, **kw))


def _make_asarray(ctx, original, obj, dtype=None, *args, **kw):
    """np.asarray: the same array where NumPy returns it (a tracer, or an existing NumPy array,
    so that writes into a closed-over array are refused rather than lost); a traced array for a
    new one (a list, a scalar)."""
    if isinstance(obj, Tracer):
        return obj if dtype is None or np.dtype(dtype) == obj.dtype else astype(obj, dtype)
    if isinstance(obj, (list, tuple)) and _has_tracer(obj):
        x = _stack_nested(obj)
        return x if dtype is None else astype(x, dtype)
    if isinstance(obj, np.ndarray):
        return None
    return _traced_const(ctx, original(obj, dtype, *args, **kw))


def _make_copy(ctx, original, a, *args, **kw):
    if isinstance(a, Tracer):
        return Tracer(ctx, a._id)
    return _traced_const(ctx, original(a, *args, **kw))


def _make_computed(ctx, original, *args, **kw):
    """arange, eye, identity, linspace, tri...: NumPy computes the values, the trace holds them."""
    if any(isinstance(v, Tracer) for v in (*args, *kw.values())):
        return None   # traced arguments dispatch to the __array_function__ handler
    return _traced_const(ctx, original(*args, **kw))


def _make_take(ctx, original, a, indices, *args, **kw):
    """np.take(table, ids) of a NumPy table with traced ids: NumPy's dispatcher does not look at
    `indices`, so the call would never reach the traced handler."""
    if isinstance(indices, Tracer) and not isinstance(a, Tracer):
        from .indexing import take

        return take(Tracer(ctx, ctx.node_of(a)), indices, *args, **kw)
    return None


CREATION_FUNCTIONS: dict[str, Callable] = {
    "take": _make_take,
    "zeros": _make_zeros, "empty": _make_zeros, "ones": _make_ones, "full": _make_full,
    "zeros_like": _make_zeros_like, "empty_like": _make_zeros_like,
    "ones_like": _make_ones_like, "full_like": _make_full_like,
    "array": _make_array, "asarray": _make_asarray, "asanyarray": _make_asarray,
    "ascontiguousarray": _make_asarray, "copy": _make_copy,
    "arange": _make_computed, "eye": _make_computed, "identity": _make_computed,
    "linspace": _make_computed, "tri": _make_computed,
}


def _wrapper(name: str, original: Callable, make: Callable) -> Callable:
    def creation(*args, **kwargs):
        stack = getattr(_LOCAL, "stack", None)
        if not stack:
            return original(*args, **kwargs)
        frame = sys._getframe(1)
        caller = frame.f_code
        # Compiled extensions (numpy.random, SciPy) call np.empty & co. with no Python frame of
        # their own: they must get real arrays. A Python caller that names the function is user code.
        if _is_ours(frame.f_globals.get("__name__"), caller.co_filename) or \
                name not in caller.co_names:
            return original(*args, **kwargs)
        if any(isinstance(v, Tracer) and (v._ctx is not stack[-1] or name not in TRACER_AWARE)
               for v in (*args, *kwargs.values())):
            # traced arguments reach the __array_function__ handlers (or their clear error)
            return original(*args, **kwargs)
        kwargs.pop("like", None)
        result = make(stack[-1], original, *args, **kwargs)
        return original(*args, **kwargs) if result is None else result

    creation.__name__ = name
    creation.__qualname__ = name
    creation.__doc__ = original.__doc__
    creation.__wrapped__ = original
    creation.__graphjit_original__ = original
    return creation


# creation functions whose traced arguments are handled here (the others dispatch themselves)
TRACER_AWARE = frozenset({"array", "asarray", "asanyarray", "ascontiguousarray", "full", "copy",
                          "take"})
_WRAPPERS: dict[str, Callable] = {}


def _install() -> None:
    for name, make in CREATION_FUNCTIONS.items():
        original = _ORIGINALS.setdefault(name, getattr(np, name))
        wrapper = _WRAPPERS.get(name)
        if wrapper is None:
            wrapper = _WRAPPERS[name] = _wrapper(name, original, make)
        setattr(np, name, wrapper)


def _uninstall() -> None:
    for name, original in _ORIGINALS.items():
        setattr(np, name, original)


class creating_traced_arrays:
    """Context manager around one trace: while it is open, this thread's calls of np.zeros and
    friends (from user code) make traced arrays of `ctx`."""

    def __init__(self, ctx: Any):
        self.ctx = ctx

    def __enter__(self):
        global _ACTIVE_TRACES
        stack = getattr(_LOCAL, "stack", None)
        if stack is None:
            stack = _LOCAL.stack = []
        with _INSTALL_LOCK:
            if _ACTIVE_TRACES == 0:
                _install()
            _ACTIVE_TRACES += 1
        stack.append(self.ctx)
        return self

    def __exit__(self, *exc):
        global _ACTIVE_TRACES
        _LOCAL.stack.pop()
        with _INSTALL_LOCK:
            _ACTIVE_TRACES -= 1
            if _ACTIVE_TRACES == 0:
                _uninstall()
        return False
