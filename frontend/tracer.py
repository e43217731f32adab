"""Tracer objects: stand-ins for NumPy arrays that record every operation as an IR node.

A `Tracer` is mutable only in which node it names: in-place idioms (`a += b`, `a[i] = v`,
`out=`) rebind the tracer to the node of the functional update, so later reads see NumPy's result.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.dtypes import is_supported, supported_list
from graphjit.compiler.errors import (
    DTypeError, ReadOnlyError, ShapeError, TracerBoolError, UnsupportedError,
)
from graphjit.compiler.ir import Graph
from graphjit.compiler.ops import COMPARISONS, Op, UFUNC_OPS

from .source import caller_opcode as _caller_opcode
from .source import user_source
from .storage import Layout, Storage, ViewStep, contiguous_layout

PYTHON_SCALARS = (bool, int, float)
# ops whose value is never known while tracing (inputs and random draws)
_NEVER_KNOWN = frozenset({Op.PARAM} | {op for op in Op if op.name.startswith("RANDOM")})


def is_python_scalar(value: Any) -> bool:
    """A Python bool/int/float (NEP 50 weak), not a NumPy scalar (np.float64 subclasses float)."""
    return type(value) in PYTHON_SCALARS


class TraceContext:
    """The graph under construction plus what the trace needs to know about its params."""

    def __init__(self, name: str = "fn"):
        self.graph = Graph(name)
        self.param_tracers: list[Tracer] = []
        self._known: dict[int, np.ndarray | None] = {}

    def param(self, shape: tuple[int, ...], dtype: np.dtype, *, weak: bool = False,
              name: str = "") -> Tracer:
        attrs = {"index": len(self.graph.params), "shape": tuple(shape), "dtype": np.dtype(dtype)}
        if name:
            attrs["name"] = name
        if weak:
            attrs["weak"] = True
        tracer = Tracer(self, self.graph.add(Op.PARAM, (), attrs, ""), weak=weak)
        self.param_tracers.append(tracer)
        return tracer

    def node_of(self, value: Any, dtype: np.dtype | None = None) -> int:
        """The node id for a tracer or a concrete value (a constant), cast to `dtype` if given."""
        if isinstance(value, Tracer):
            self.check_same_trace(value)
            return value._id if dtype is None else cast_node(self, value._id, dtype)
        array = np.asarray(value, dtype=dtype)
        if array.dtype == object:
            raise UnsupportedError(f"cannot use a value of type {type(value).__name__} in a traced "
                                   "computation; pass NumPy arrays or numbers", user_source())
        if not is_supported(array.dtype):
            array = array.astype(_nearest_supported(array.dtype))
        return self.graph.const(array, source=user_source())

    def check_same_trace(self, tracer: Tracer) -> None:
        if tracer._ctx is not self:
            raise UnsupportedError(
                "a traced value from another trace leaked into this one (a tracer stored in a "
                "global or closure?); pass it as an argument instead", user_source())

    def add(self, op: Op, args: tuple[int, ...], attrs: dict | None = None) -> int:
        return self.graph.add(op, args, attrs, user_source())

    def known_value(self, node_id: int) -> np.ndarray | None:
        """The value of `node_id` if it is computed from constants only (evaluated with the op
        table's NumPy implementations, without recursion), else None. Memoised per trace."""
        from graphjit.compiler.interpret import eval_node

        memo = self._known
        if node_id in memo:
            return memo[node_id]
        graph = self.graph
        stack = [node_id]
        while stack:
            top = stack[-1]
            if top in memo:
                stack.pop()
                continue
            node = graph.node(top)
            if node.op is Op.CONST:
                memo[top] = graph.const_value(top)
                stack.pop()
                continue
            if node.op in _NEVER_KNOWN:
                memo[top] = None
                stack.pop()
                continue
            missing = [a for a in node.args if a not in memo]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            values = [memo[a] for a in node.args]
            if any(v is None for v in values):
                memo[top] = None
                continue
            try:
                with np.errstate(all="ignore"):
                    memo[top] = eval_node(node, values)
            except Exception:   # an op the NumPy impl cannot run eagerly: treat as unknown
                memo[top] = None
        return memo[node_id]


def _nearest_supported(dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if is_supported(dtype):
        return dtype
    if dtype.kind == "f":
        return np.dtype(np.float64) if dtype.itemsize > 4 else np.dtype(np.float32)
    if dtype.kind in "iu":
        wide = dtype.itemsize > 4 or (dtype.kind == "u" and dtype.itemsize == 4)
        return np.dtype(np.int64) if wide else np.dtype(np.int32)
    if dtype.kind == "b":
        return np.dtype(bool)
    raise DTypeError(f"graphjit does not compile dtype {dtype}; convert it to "
                     f"{supported_list('or')} before calling", user_source())


def cast_node(ctx: TraceContext, node_id: int, dtype: np.dtype) -> int:
    if ctx.graph.node(node_id).dtype == np.dtype(dtype):
        return node_id
    return ctx.add(Op.CAST, (node_id,), {"dtype": np.dtype(dtype)})


def broadcast_node(ctx: TraceContext, node_id: int, shape: tuple[int, ...]) -> int:
    if ctx.graph.node(node_id).shape == tuple(shape):
        return node_id
    return ctx.add(Op.BROADCAST, (node_id,), {"shape_to": tuple(shape)})


def reshape_node(ctx: TraceContext, node_id: int, shape: tuple[int, ...]) -> int:
    if ctx.graph.node(node_id).shape == tuple(shape):
        return node_id
    return ctx.add(Op.RESHAPE, (node_id,), {"shape_to": tuple(shape)})


# Python bools promote like NumPy bools (they are the lowest kind either way); ints and floats are
# weak: they take the other operand's precision within their kind.
WEAK_TYPES: dict[str, Any] = {"b": np.dtype(bool), "i": int, "u": int, "f": float}


def dtype_operand(value: Any) -> Any:
    """What `resolve_dtypes` needs for one operand: a dtype, or a Python type when weak (NEP 50)."""
    if isinstance(value, Tracer):
        if value._weak:
            return WEAK_TYPES[value.dtype.kind]
        return value.dtype
    if is_python_scalar(value):
        return np.dtype(bool) if type(value) is bool else type(value)
    if isinstance(value, (np.ndarray, np.generic)):
        return value.dtype
    if isinstance(value, (list, tuple)):
        return np.asarray(value).dtype
    raise UnsupportedError(f"cannot use a value of type {type(value).__name__} in a traced "
                           "computation; pass NumPy arrays or numbers", user_source())


def _is_weak(value: Any) -> bool:
    return is_python_scalar(value) or (isinstance(value, Tracer) and value._weak)


# ops on Python numbers only that Python computes with bools as ints (True + True == 2)
PYTHON_NUMBER_OPS: frozenset[Op] = frozenset({
    Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.FLOORDIV, Op.MOD, Op.POW, Op.NEG, Op.ABS,
})
INT64 = np.dtype(np.int64)


def _exact_int_comparison(operands: tuple, loop: tuple) -> tuple:
    """NumPy compares an integer array with a Python int exactly, even where the int does not
    fit the array's dtype (uint8 > -3 is all True): compare in int64 (float64 past its range)."""
    if loop[0].kind not in "iu" or loop[0] == INT64 or not any(
            type(v) is int or (isinstance(v, Tracer) and v._weak and v.dtype.kind in "iu")
            for v in operands):
        return loop
    if any(not isinstance(v, Tracer) and np.dtype(loop[0]).itemsize == 8 for v in operands):
        return loop   # uint64 against a Python int: NumPy's own loop
    beyond = any(type(v) is int and not -2**63 <= v < 2**63 for v in operands)
    wide = np.dtype(np.float64) if beyond else INT64
    return (wide,) * (len(loop) - 1) + (loop[-1],)


def context_of(values: Any) -> TraceContext:
    for value in values:
        if isinstance(value, Tracer):
            return value._ctx
    raise AssertionError("no tracer among the operands")


def apply_elementwise(op: Op, *operands: Any, out_dtype: np.dtype | None = None) -> Tracer:
    """Record one elementwise op with NumPy's promotion and broadcasting made explicit."""
    ctx = context_of(operands)
    ufunc = UFUNC_OPS[op]
    all_weak = all(_is_weak(v) for v in operands)
    in_types = tuple(dtype_operand(v) for v in operands)
    if all_weak and op in PYTHON_NUMBER_OPS:   # Python arithmetic: True + True is 2
        in_types = tuple(int if t == np.dtype(bool) else t for t in in_types)
    try:
        loop = ufunc.resolve_dtypes(in_types + (None,))
    except TypeError as exc:
        raise DTypeError(f"np.{ufunc.__name__} does not support operands of types "
                         f"{[getattr(t, '__name__', str(t)) for t in in_types]} ({exc})",
                         user_source()) from None
    if op in COMPARISONS:
        loop = _exact_int_comparison(operands, loop)
    ids = [ctx.node_of(v, loop[i]) for i, v in enumerate(operands)]
    shapes = [ctx.graph.node(i).shape for i in ids]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ShapeError(f"operands could not be broadcast together with shapes "
                         f"{' '.join(str(s) for s in shapes)} in np.{ufunc.__name__}",
                         user_source()) from None
    ids = [broadcast_node(ctx, i, shape) for i in ids]
    result = ctx.add(op, tuple(ids))
    weak = all_weak
    scalar = shape == ()   # NumPy returns a scalar for a 0-d result
    tracer = Tracer(ctx, result, weak=weak, scalar=scalar)
    if out_dtype is not None:
        tracer = Tracer(ctx, cast_node(ctx, result, out_dtype), scalar=scalar)
    return tracer


class Tracer:
    """A traced array. Speaks NumPy's protocols and dunders; every operation becomes a node."""

    __array_priority__ = 1000
    __slots__ = ("_ctx", "_node_id", "_weak", "_storage", "_view", "_version", "_layout",
                 "_scalar", "__weakref__")

    def __init__(self, ctx: TraceContext, node_id: int, *, weak: bool = False,
                 scalar: bool = False):
        """A fresh array: the base of its own storage (views are made by `_make_view`)."""
        self._ctx = ctx
        self._node_id = node_id
        self._weak = weak
        node = ctx.graph.node(node_id)
        self._storage = Storage(node_id, node.shape, node.dtype)
        self._view: tuple[ViewStep, ...] = ()
        self._version = 0
        self._layout = None        # C-contiguous base; computed on demand
        # NumPy scalar semantics (immutable): what ufuncs, reductions and full integer indexing
        # return for 0-d results; `s += 1` rebinds the name instead of writing
        self._scalar = scalar or weak

    # ---------------------------------------------------------------- storage and views
    @property
    def _id(self) -> int:
        """The node of this array's current value (replaying the view chain after a write)."""
        if not self._view:
            return self._storage.node
        if self._version != self._storage.version:
            node = self._storage.node
            for step in self._view:
                node = step.forward(self._ctx, node)
            self._node_id = node
            self._version = self._storage.version
        return self._node_id

    def _strides_offset(self) -> Layout:
        if self._layout is None:
            return contiguous_layout(self._storage.shape)
        return self._layout

    def _make_view(self, step: ViewStep) -> Tracer:
        """A new array that is `step` applied to this one, sharing its storage."""
        view = Tracer.__new__(Tracer)
        view._ctx = self._ctx
        view._weak = self._weak
        view._storage = self._storage
        view._view = self._view + (step,)
        view._node_id = step.forward(self._ctx, self._id)
        view._version = self._storage.version
        view._layout = step.layout(self.shape, self._strides_offset())
        view._scalar = False
        return view

    @property
    def _readonly(self) -> bool:
        return any(step.readonly for step in self._view)

    def _write(self, node_id: int) -> None:
        """Store `node_id` (this view's shape and dtype) as this array's new value: written back
        through the view chain into the storage, so every alias reads it."""
        if self._readonly:
            raise ReadOnlyError("assignment destination is read-only (a view made by "
                                "np.broadcast_to or np.diagonal; NumPy refuses this write too); "
                                "write into a copy instead", user_source())
        ctx = self._ctx
        parents = [self._storage.node]
        for step in self._view[:-1]:
            parents.append(step.forward(ctx, parents[-1]))
        value = node_id
        for step, parent in zip(reversed(self._view), reversed(parents)):
            value = step.backward(ctx, parent, value)
        self._storage.write(value)
        self._node_id = node_id
        self._version = self._storage.version

    # ---------------------------------------------------------------- properties
    @property
    def _node(self):
        return self._ctx.graph.node(self._id)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._node.shape

    @property
    def dtype(self) -> np.dtype:
        return self._node.dtype

    @property
    def ndim(self) -> int:
        return len(self._node.shape)

    @property
    def size(self) -> int:
        return self._node.size

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def T(self) -> Tracer:
        return self.transpose()

    def __repr__(self) -> str:
        return f"Tracer(%{self._id}: {self.dtype}{list(self.shape)})"

    def _rebind(self, other: Tracer) -> Tracer:
        """In-place update (`out=`, `x[...] = v`, `x += v`): write `other` into this array,
        keeping its dtype (same_kind casting) and shape (`other` broadcasts), as NumPy does."""
        node_id = other._id
        if other.dtype != self.dtype:
            if not np.can_cast(other.dtype, self.dtype, casting="same_kind"):
                raise DTypeError(f"cannot cast the in-place result from {other.dtype} to "
                                 f"{self.dtype} with casting rule 'same_kind' (NumPy would raise "
                                 "too); use an explicit .astype()", user_source())
            node_id = cast_node(self._ctx, node_id, self.dtype)
        if other.shape != self.shape:
            try:
                fits = np.broadcast_shapes(other.shape, self.shape) == self.shape
            except ValueError:
                fits = False
            if not fits:
                raise ShapeError(f"non-broadcastable output operand with shape {self.shape} "
                                 f"doesn't match the broadcast shape {other.shape}", user_source())
            node_id = reshape_node(self._ctx, node_id,
                                   (1,) * (self.ndim - len(other.shape)) + other.shape)
            node_id = broadcast_node(self._ctx, node_id, self.shape)
        self._write(node_id)
        return self

    def _inplace(self, result: Tracer) -> Tracer:
        """`x op= y`: a write into an array; a NumPy scalar (immutable) rebinds the name."""
        if self._scalar:
            return result
        return self._rebind(result)

    # ---------------------------------------------------------------- concrete conversions
    def _concrete_error(self, what: str, advice: str | None = None) -> TracerBoolError:
        advice = advice or ("Use np.where(cond, a, b) instead of if/else on array values, or mark "
                            "the argument static with gj.jit(static_argnums=...) / "
                            "static_argnames=...")
        return TracerBoolError(
            f"{what} of a traced array (shape {self.shape}, dtype {self.dtype}): its value is not "
            f"known while graphjit traces the function. {advice}", user_source())

    def _known(self) -> np.ndarray | None:
        """This array's value if it depends on constants only (an array made inside the function
        with np.zeros/np.arange/... and written with constants), else None."""
        return self._ctx.known_value(self._id)

    def _concrete(self, what: str) -> np.ndarray:
        value = self._known()
        if value is None:
            raise self._concrete_error(what)
        return value

    def __bool__(self) -> bool:
        return bool(self._concrete("bool() (an if, while, and/or or assert)"))

    def __int__(self) -> int:
        return int(self._concrete("int()"))

    def __float__(self) -> float:
        return float(self._concrete("float()"))

    def __complex__(self) -> complex:
        return complex(self._concrete("complex()"))

    def __index__(self) -> int:
        value = self._known()
        if value is None or value.ndim or value.dtype.kind not in "iub":
            raise self._concrete_error(
                "use as a Python index (or as an index into a NumPy array that is not traced: "
                "a global or closed-over array. Index it with np.take(table, ids, axis=0), or "
                "pass it in as an argument)")
        return int(value)

    def __array__(self, dtype=None, copy=None):
        value = self._known()
        if value is not None:
            return value if dtype is None else value.astype(dtype)
        opcode = _caller_opcode()
        if opcode == "BINARY_SUBSCR":
            raise self._concrete_error(
                "indexing a NumPy array that is not traced (a global or closed-over array) with "
                "the value", "Index it with np.take(table, ids, axis=0), or pass the array in as "
                "an argument.")
        if opcode == "STORE_SUBSCR":
            raise self._concrete_error(
                "storing into a NumPy array that was not made inside the function (a global or "
                "closed-over array) the value", "Make a traced copy with np.array(table) inside "
                "the function and return it, or pass the array in as an argument and write it "
                "there (graphjit writes arguments back).")
        raise self._concrete_error(
            "conversion to a concrete NumPy array (np.asarray/np.array of a traced value, from "
            "a function graphjit does not trace or from your code)")

    def tolist(self):
        return self._concrete("tolist()").tolist()

    def item(self, *args):
        return self._concrete("item()").item(*args)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        for i in range(self.shape[0]):
            yield self[i]

    def __hash__(self) -> int:
        return id(self)

    # ---------------------------------------------------------------- NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from .numpy_api import handle_ufunc

        return handle_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from .numpy_api import handle_function

        return handle_function(func, args, kwargs)

    # ---------------------------------------------------------------- arithmetic dunders
    def __add__(self, o): return apply_elementwise(Op.ADD, self, o)
    def __radd__(self, o): return apply_elementwise(Op.ADD, o, self)
    def __sub__(self, o): return apply_elementwise(Op.SUB, self, o)
    def __rsub__(self, o): return apply_elementwise(Op.SUB, o, self)
    def __mul__(self, o): return apply_elementwise(Op.MUL, self, o)
    def __rmul__(self, o): return apply_elementwise(Op.MUL, o, self)
    def __truediv__(self, o): return apply_elementwise(Op.DIV, self, o)
    def __rtruediv__(self, o): return apply_elementwise(Op.DIV, o, self)
    def __floordiv__(self, o): return apply_elementwise(Op.FLOORDIV, self, o)
    def __rfloordiv__(self, o): return apply_elementwise(Op.FLOORDIV, o, self)
    def __mod__(self, o): return apply_elementwise(Op.MOD, self, o)
    def __rmod__(self, o): return apply_elementwise(Op.MOD, o, self)

    def __pow__(self, o):
        from .numpy_api import power

        return power(self, o)

    def __rpow__(self, o):
        from .numpy_api import power

        return power(o, self)

    def __matmul__(self, o):
        from .numpy_api import matmul

        return matmul(self, o)

    def __rmatmul__(self, o):
        from .numpy_api import matmul

        return matmul(o, self)

    def __neg__(self): return apply_elementwise(Op.NEG, self)
    def __pos__(self): return Tracer(self._ctx, self._id, weak=self._weak, scalar=self._scalar)
    def __abs__(self): return apply_elementwise(Op.ABS, self)

    # bitwise operators are NumPy's bitwise ufuncs, on booleans and integers alike (their
    # handlers and dtype rules come from the op table, as np.bitwise_and(a, b) does)
    def __invert__(self): return np.invert(self)
    def __and__(self, o): return np.bitwise_and(self, o)
    def __rand__(self, o): return np.bitwise_and(o, self)
    def __or__(self, o): return np.bitwise_or(self, o)
    def __ror__(self, o): return np.bitwise_or(o, self)
    def __xor__(self, o): return np.bitwise_xor(self, o)
    def __rxor__(self, o): return np.bitwise_xor(o, self)
    def __lshift__(self, o): return np.left_shift(self, o)
    def __rlshift__(self, o): return np.left_shift(o, self)
    def __rshift__(self, o): return np.right_shift(self, o)
    def __rrshift__(self, o): return np.right_shift(o, self)

    def __lt__(self, o): return apply_elementwise(Op.LT, self, o)
    def __le__(self, o): return apply_elementwise(Op.LE, self, o)
    def __gt__(self, o): return apply_elementwise(Op.GT, self, o)
    def __ge__(self, o): return apply_elementwise(Op.GE, self, o)
    def __eq__(self, o): return apply_elementwise(Op.EQ, self, o)  # type: ignore[override]
    def __ne__(self, o): return apply_elementwise(Op.NE, self, o)  # type: ignore[override]

    # in-place forms: functional update, then rebind (NumPy keeps the left operand's dtype)
    def __iadd__(self, o): return self._inplace(self + o)
    def __isub__(self, o): return self._inplace(self - o)
    def __imul__(self, o): return self._inplace(self * o)
    def __itruediv__(self, o): return self._inplace(self / o)
    def __ifloordiv__(self, o): return self._inplace(self // o)
    def __imod__(self, o): return self._inplace(self % o)
    def __ipow__(self, o): return self._inplace(self ** o)
    def __imatmul__(self, o): return self._inplace(self @ o)
    def __iand__(self, o): return self._inplace(self & o)
    def __ior__(self, o): return self._inplace(self | o)
    def __ixor__(self, o): return self._inplace(self ^ o)
    def __ilshift__(self, o): return self._inplace(self << o)
    def __irshift__(self, o): return self._inplace(self >> o)

    # ---------------------------------------------------------------- indexing
    def __getitem__(self, key):
        from .indexing import getitem

        return getitem(self, key)

    def __setitem__(self, key, value):
        from .indexing import setitem

        setitem(self, key, value)

    # ---------------------------------------------------------------- methods
    def __getattr__(self, name: str):
        from .numpy_api import METHODS

        if name in METHODS and not self._weak:   # a Python scalar has no array methods
            method = METHODS[name]
            return lambda *args, **kwargs: method(self, *args, **kwargs)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
