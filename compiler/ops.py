"""The op table: one entry per primitive, read by the tracer, verifier, printer, folding, fusion,
the reference interpreter, autodiff and every backend.

Operands of an elementwise op always have the op's loop dtype and the same shape: the tracer inserts
explicit `cast` and `broadcast` nodes (NEP 50 promotion is resolved once, at trace time, by NumPy's
own `ufunc.resolve_dtypes`), so no later stage re-derives promotion or broadcasting.
"""
from __future__ import annotations

import enum
import math
import operator
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Shape = tuple[int, ...]


class Op(enum.Enum):
    # sources
    PARAM = "param"
    CONST = "const"
    # elementwise unary
    NEG = "neg"
    ABS = "abs"
    EXP = "exp"
    LOG = "log"
    LOG1P = "log1p"
    EXPM1 = "expm1"
    SQRT = "sqrt"
    TANH = "tanh"
    SIN = "sin"
    COS = "cos"
    SIGN = "sign"
    FLOOR = "floor"
    CEIL = "ceil"
    LOGICAL_NOT = "logical_not"
    CAST = "cast"
    TAN = "tan"
    ARCSIN = "arcsin"
    ARCCOS = "arccos"
    ARCSINH = "arcsinh"
    ARCCOSH = "arccosh"
    ARCTANH = "arctanh"
    EXP2 = "exp2"
    LOG2 = "log2"
    LOG10 = "log10"
    CBRT = "cbrt"
    TRUNC = "trunc"
    SIGNBIT = "signbit"
    SPACING = "spacing"
    INVERT = "invert"
    BITWISE_COUNT = "bitwise_count"
    RECIPROCAL = "reciprocal"
    # elementwise binary
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    FLOORDIV = "floordiv"
    MOD = "mod"
    POW = "pow"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"
    GT = "gt"
    GE = "ge"
    LT = "lt"
    LE = "le"
    EQ = "eq"
    NE = "ne"
    LOGICAL_AND = "logical_and"
    LOGICAL_OR = "logical_or"
    LOGICAL_XOR = "logical_xor"
    ARCTAN2 = "arctan2"
    HYPOT = "hypot"
    COPYSIGN = "copysign"
    FMOD = "fmod"
    NEXTAFTER = "nextafter"
    LDEXP = "ldexp"
    LOGADDEXP2 = "logaddexp2"
    HEAVISIDE = "heaviside"
    GCD = "gcd"
    LCM = "lcm"
    BITWISE_AND = "bitwise_and"
    BITWISE_OR = "bitwise_or"
    BITWISE_XOR = "bitwise_xor"
    LEFT_SHIFT = "left_shift"
    RIGHT_SHIFT = "right_shift"
    # elementwise ternary
    WHERE = "where"
    # shape (views of one operand)
    BROADCAST = "broadcast"
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    SLICE = "slice"
    CONCAT = "concat"
    # reductions
    SUM = "sum"
    PROD = "prod"
    REDUCE_MAX = "reduce_max"
    REDUCE_MIN = "reduce_min"
    ARGMAX = "argmax"
    ARGMIN = "argmin"
    # contraction
    MATMUL = "matmul"
    # indexing
    TAKE = "take"
    TAKE_ALONG_AXIS = "take_along_axis"
    GETITEM = "getitem"
    SETITEM = "setitem"
    SCATTER_ADD = "scatter_add"
    SCATTER_UFUNC = "scatter_ufunc"
    # counter-based randomness: pure functions of (key, shape)
    RANDOM_UNIFORM = "random_uniform"
    RANDOM_NORMAL = "random_normal"
    RANDOM_SPLIT = "random_split"
    # a NumPy function with a static result shape, run as a host step (sort, linalg, ...)
    HOST_CALL = "host_call"

    def __repr__(self) -> str:
        return f"Op.{self.name}"


class OpKind(enum.Enum):
    SOURCE = "source"
    ELEMENTWISE = "elementwise"
    SHAPE = "shape"
    REDUCTION = "reduction"
    MATMUL = "matmul"
    INDEX = "index"
    RANDOM = "random"
    CALL = "call"


class Constant:
    """A NumPy array held by a `const` node: hashable by content so CSE can merge equal constants."""

    __slots__ = ("value", "_key")

    def __init__(self, value: Any):
        self.value = np.array(value)
        self.value.flags.writeable = False
        self._key = (self.value.dtype.str, self.value.shape, self.value.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Constant) and self._key == other._key

    def __repr__(self) -> str:
        if self.value.size <= 4:
            return np.array2string(self.value, separator=",").replace("\n", "")
        return f"<{self.value.dtype}{list(self.value.shape)}>"


class Execution(enum.Enum):
    """Which kind of kernel computes a node of an op."""

    LOOP = "loop"        # fused elementwise/view/reduction loop nests (native on every backend)
    MATMUL = "matmul"    # BLAS-style contraction (with a fused epilogue)
    HOST = "host"        # the op's NumPy implementation, run as a host step


def _extreme(dtype: np.dtype, largest: bool) -> Any:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.type(np.inf if largest else -np.inf)
    if dtype.kind == "b":
        return np.bool_(largest)
    info = np.iinfo(dtype)
    return dtype.type(info.max if largest else info.min)


@dataclass(frozen=True)
class Reduction:
    """The algebra of a reduction: what backends and passes derive their reducers from.

    `combine` folds two partial results (an elementwise binary op); `identity(dtype)` starts the
    fold; `splittable` says a fold of partial folds gives the same result (so a large reduction
    may run as parallel partial passes plus a final one); `arg` marks arg-reductions, which return
    the position of the extreme value along one axis (first on ties, NaN wins).
    """

    combine: Op
    identity: Callable[[np.dtype], Any]
    splittable: bool = True
    arg: bool = False


@dataclass(frozen=True)
class OpDef:
    """Everything every stage needs to know about one op."""

    op: Op
    kind: OpKind
    arity: int | None  # None: any number of operands
    shape_rule: Callable[..., Shape]
    dtype_rule: Callable[..., np.dtype]
    impl: Callable[..., np.ndarray]  # the NumPy reference: impl(*arrays, **attrs)
    ufunc: np.ufunc | None = None
    reduction: Reduction | None = field(default=None, compare=False)
    # views only: the view applied to a NumPy array without copying (raises ValueError where
    # strides cannot express it); fusion folds views into strided accesses with it
    view: Callable[..., np.ndarray] | None = field(default=None, compare=False)
    # elementwise only: every backend lowers it inside loop kernels (otherwise a host step)
    loop_lowered: bool = True

    @property
    def name(self) -> str:
        return self.op.value

    @property
    def execution(self) -> Execution | None:
        """The kernel kind that computes this op (None for params and constants)."""
        if self.kind is OpKind.SOURCE:
            return None
        if self.kind is OpKind.ELEMENTWISE and not self.loop_lowered:
            return Execution.HOST
        if self.kind in (OpKind.ELEMENTWISE, OpKind.REDUCTION) or self.view is not None:
            return Execution.LOOP
        if self.kind is OpKind.MATMUL:
            return Execution.MATMUL
        return Execution.HOST


# ---------------------------------------------------------------- shape rules

def same_shape(*shapes: Shape, **_: Any) -> Shape:
    first = shapes[0]
    for shape in shapes[1:]:
        if shape != first:
            raise ValueError(f"elementwise operands must share one shape, got {shapes}")
    return first


def normalize_axes(axes: Any, ndim: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if np.ndim(axes) == 0:   # an int, a NumPy integer or a 0-d integer array
        axes = (axes,)
    out = []
    for axis in axes:
        axis = operator.index(axis)   # NumPy refuses float axes too
        if not -max(ndim, 1) <= axis < max(ndim, 1):   # a 0-d array reduces over axis 0/-1
            raise ValueError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
        if ndim:
            out.append(axis % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {tuple(axes)}")
    return tuple(sorted(out))


def reduce_shape(shape: Shape, *, axes: tuple[int, ...], keepdims: bool, **_: Any) -> Shape:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def arg_reduce_shape(shape: Shape, *, axis: int, keepdims: bool) -> Shape:
    return reduce_shape(shape, axes=(axis,), keepdims=keepdims)


def broadcast_rule(shape: Shape, *, shape_to: Shape) -> Shape:
    np.broadcast_shapes(shape, shape_to)
    if np.broadcast_shapes(shape, shape_to) != tuple(shape_to):
        raise ValueError(f"cannot broadcast {shape} to {shape_to}")
    return tuple(shape_to)


def reshape_rule(shape: Shape, *, shape_to: Shape) -> Shape:
    if math.prod(shape) != math.prod(shape_to):
        raise ValueError(f"cannot reshape an array of shape {shape} into shape {shape_to}")
    return tuple(shape_to)


def transpose_rule(shape: Shape, *, perm: tuple[int, ...]) -> Shape:
    if sorted(perm) != list(range(len(shape))):
        raise ValueError(f"axes {perm} do not permute an array of dimension {len(shape)}")
    return tuple(shape[p] for p in perm)


def slice_rule(shape: Shape, *, slices: tuple[tuple[int | None, int | None, int], ...]) -> Shape:
    return tuple(len(range(*slice(*s).indices(d))) for s, d in zip(slices, shape, strict=True))


def concat_rule(*shapes: Shape, axis: int) -> Shape:
    first = shapes[0]
    for shape in shapes[1:]:
        if len(shape) != len(first) or any(
            a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis
        ):
            raise ValueError(f"cannot concatenate shapes {shapes} along axis {axis}")
    return tuple(sum(s[axis] for s in shapes) if i == axis else d for i, d in enumerate(first))


def matmul_rule(a: Shape, b: Shape) -> Shape:
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the IR's matmul takes operands of rank >= 2")
    if a[-1] != b[-2]:
        raise ValueError(f"matmul: inner dimensions differ ({a} @ {b}: {a[-1]} != {b[-2]})")
    if a[:-2] != b[:-2]:
        raise ValueError(f"matmul: batch dimensions differ ({a[:-2]} vs {b[:-2]})")
    return (*a[:-2], a[-2], b[-1])


def _key_result_shape(template: tuple, shape: Shape, index_shapes: list[Shape]) -> Shape:
    dummy = np.lib.stride_tricks.as_strided(np.zeros(1, np.int8), shape, (0,) * len(shape))
    key = build_index_key(template, [np.zeros(s, np.intp) for s in index_shapes])
    return dummy[key].shape


def getitem_rule(shape: Shape, *index_shapes: Shape, template: tuple) -> Shape:
    return _key_result_shape(template, shape, list(index_shapes))


def setitem_rule(shape: Shape, value: Shape, *index_shapes: Shape, template: tuple) -> Shape:
    target = _key_result_shape(template, shape, list(index_shapes))
    np.broadcast_shapes(value, target)
    return shape


def take_rule(shape: Shape, index: Shape, *, axis: int) -> Shape:
    return (*shape[:axis], *index, *shape[axis + 1:])


def take_along_axis_rule(shape: Shape, index: Shape, *, axis: int) -> Shape:
    if len(shape) != len(index):
        raise ValueError("take_along_axis: indices and array must have the same rank")
    outside = np.broadcast_shapes(  # the indexed axis takes the index's length, others broadcast
        tuple(1 if i == axis else d for i, d in enumerate(shape)),
        tuple(1 if i == axis else d for i, d in enumerate(index)),
    )
    return outside[:axis] + (index[axis],) + outside[axis + 1:]


# ---------------------------------------------------------------- index-key templates

def build_index_key(template: tuple, arrays: list) -> tuple:
    """Turn a static key template (with ('array',) placeholders) and index arrays into a key."""
    pending = iter(arrays)
    key: list[Any] = []
    for item in template:
        tag = item[0]
        if tag == "slice":
            key.append(slice(*item[1:]))
        elif tag == "int":
            key.append(item[1])
        elif tag == "none":
            key.append(None)
        elif tag == "ellipsis":
            key.append(Ellipsis)
        elif tag == "array":
            key.append(next(pending))
        else:
            raise ValueError(f"bad index template item {item}")
    return tuple(key)


# ---------------------------------------------------------------- dtype rules

def same_dtype(*dtypes: np.dtype, **_: Any) -> np.dtype:
    return np.dtype(dtypes[0])


def ufunc_dtype(ufunc: np.ufunc) -> Callable[..., np.dtype]:
    def rule(*dtypes: np.dtype, **_: Any) -> np.dtype:
        return np.dtype(ufunc.resolve_dtypes(tuple(dtypes) + (None,))[-1])

    return rule


def where_dtype(cond: np.dtype, a: np.dtype, b: np.dtype) -> np.dtype:
    return np.result_type(a, b)


def cast_dtype(_: np.dtype, *, dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype)


def index_dtype(*_: np.dtype, **__: Any) -> np.dtype:
    return np.dtype(np.int64)


def first_dtype(first: np.dtype, *_: np.dtype, **__: Any) -> np.dtype:
    return np.dtype(first)


# ---------------------------------------------------------------- NumPy references

def _param_impl(*_: Any, **__: Any) -> np.ndarray:
    raise RuntimeError("a param node has no value of its own; bind it when interpreting")


def _const_impl(*, value: Constant) -> np.ndarray:
    return value.value


def _setitem_impl(target, value, *indices, template):
    out = np.array(target, copy=True)
    out[build_index_key(template, list(indices))] = value
    return out


def _scatter_add_impl(target, value, *indices, template):
    out = np.array(target, copy=True)
    np.add.at(out, build_index_key(template, list(indices)), value)
    return out


def _scatter_ufunc_impl(target, *operands, template, ufunc, with_value):
    """ufunc.at by NumPy itself: unbuffered, so repeated indices apply the ufunc repeatedly."""
    out = np.array(target, copy=True)
    values, indices = (operands[:1], operands[1:]) if with_value else ((), operands)
    getattr(np, ufunc).at(out, build_index_key(template, list(indices)), *values)
    return out


def scatter_ufunc_rule(shape: Shape, *operands: Shape, template: tuple, ufunc: str,
                       with_value: bool) -> Shape:
    values, indices = (operands[:1], operands[1:]) if with_value else ((), operands)
    target = _key_result_shape(template, shape, list(indices))
    for value in values:
        np.broadcast_shapes(value, target)
    return shape


def _ufunc_entry(op: Op, ufunc: np.ufunc) -> OpDef:
    return OpDef(
        op, OpKind.ELEMENTWISE, ufunc.nin, same_shape, ufunc_dtype(ufunc),
        lambda *xs, _u=ufunc: _u(*xs), ufunc=ufunc, loop_lowered=op not in HOST_ELEMENTWISE,
    )


def _reduction_entry(op: Op, reducer: Callable, algebra: Reduction) -> OpDef:
    return OpDef(
        op, OpKind.REDUCTION, 1, reduce_shape, same_dtype,
        lambda x, *, axes, keepdims: np.asarray(reducer(x, axis=axes, keepdims=keepdims)),
        reduction=algebra,
    )


def _arg_reduction_entry(op: Op, reducer: Callable, largest: bool) -> OpDef:
    return OpDef(
        op, OpKind.REDUCTION, 1, arg_reduce_shape, index_dtype,
        lambda x, *, axis, keepdims: reducer(x, axis=axis, keepdims=keepdims),
        reduction=Reduction(Op.MAXIMUM if largest else Op.MINIMUM,
                            lambda dtype: _extreme(dtype, not largest), splittable=False,
                            arg=True),
    )


def _zero(dtype: np.dtype) -> Any:
    return np.dtype(dtype).type(0)


def _one(dtype: np.dtype) -> Any:
    return np.dtype(dtype).type(1)


SUM_ALGEBRA = Reduction(Op.ADD, _zero)
PROD_ALGEBRA = Reduction(Op.MUL, _one)
MAX_ALGEBRA = Reduction(Op.MAXIMUM, lambda dtype: _extreme(dtype, False))
MIN_ALGEBRA = Reduction(Op.MINIMUM, lambda dtype: _extreme(dtype, True))


UFUNC_OPS: dict[Op, np.ufunc] = {
    Op.NEG: np.negative, Op.ABS: np.absolute, Op.EXP: np.exp, Op.LOG: np.log,
    Op.LOG1P: np.log1p, Op.EXPM1: np.expm1, Op.SQRT: np.sqrt, Op.TANH: np.tanh,
    Op.SIN: np.sin, Op.COS: np.cos, Op.SIGN: np.sign, Op.FLOOR: np.floor, Op.CEIL: np.ceil,
    Op.LOGICAL_NOT: np.logical_not,
    Op.ADD: np.add, Op.SUB: np.subtract, Op.MUL: np.multiply, Op.DIV: np.true_divide,
    Op.FLOORDIV: np.floor_divide, Op.MOD: np.remainder, Op.POW: np.power,
    Op.MAXIMUM: np.maximum, Op.MINIMUM: np.minimum,
    Op.GT: np.greater, Op.GE: np.greater_equal, Op.LT: np.less, Op.LE: np.less_equal,
    Op.EQ: np.equal, Op.NE: np.not_equal,
    Op.LOGICAL_AND: np.logical_and, Op.LOGICAL_OR: np.logical_or,
    Op.LOGICAL_XOR: np.logical_xor,
    Op.TAN: np.tan, Op.ARCSIN: np.arcsin, Op.ARCCOS: np.arccos, Op.ARCSINH: np.arcsinh,
    Op.ARCCOSH: np.arccosh, Op.ARCTANH: np.arctanh, Op.EXP2: np.exp2, Op.LOG2: np.log2,
    Op.LOG10: np.log10, Op.CBRT: np.cbrt, Op.TRUNC: np.trunc, Op.SIGNBIT: np.signbit,
    Op.SPACING: np.spacing, Op.INVERT: np.invert, Op.BITWISE_COUNT: np.bitwise_count,
    Op.RECIPROCAL: np.reciprocal,
    Op.ARCTAN2: np.arctan2, Op.HYPOT: np.hypot, Op.COPYSIGN: np.copysign, Op.FMOD: np.fmod,
    Op.NEXTAFTER: np.nextafter, Op.LDEXP: np.ldexp, Op.LOGADDEXP2: np.logaddexp2,
    Op.HEAVISIDE: np.heaviside, Op.GCD: np.gcd, Op.LCM: np.lcm,
    Op.BITWISE_AND: np.bitwise_and, Op.BITWISE_OR: np.bitwise_or, Op.BITWISE_XOR: np.bitwise_xor,
    Op.LEFT_SHIFT: np.left_shift, Op.RIGHT_SHIFT: np.right_shift,
}
# Elementwise ops that run as host steps (NumPy's own loop) until the loop backends lower them.
HOST_ELEMENTWISE: frozenset[Op] = frozenset({Op.GCD, Op.LCM, Op.RECIPROCAL, Op.BITWISE_COUNT})

OPS: dict[Op, OpDef] = {op: _ufunc_entry(op, uf) for op, uf in UFUNC_OPS.items()}
OPS.update({
    Op.PARAM: OpDef(Op.PARAM, OpKind.SOURCE, 0, lambda **a: a["shape"],
                    lambda **a: np.dtype(a["dtype"]), _param_impl),
    Op.CONST: OpDef(Op.CONST, OpKind.SOURCE, 0, lambda *, value: value.value.shape,
                    lambda *, value: value.value.dtype, _const_impl),
    Op.CAST: OpDef(Op.CAST, OpKind.ELEMENTWISE, 1, same_shape, cast_dtype,
                   lambda x, *, dtype: np.asarray(x).astype(dtype)),
    Op.WHERE: OpDef(Op.WHERE, OpKind.ELEMENTWISE, 3, same_shape, where_dtype, np.where),
    Op.BROADCAST: OpDef(Op.BROADCAST, OpKind.SHAPE, 1, broadcast_rule, same_dtype,
                        lambda x, *, shape_to: np.broadcast_to(x, shape_to),
                        view=lambda a, *, shape_to: np.broadcast_to(a, shape_to)),
    Op.RESHAPE: OpDef(Op.RESHAPE, OpKind.SHAPE, 1, reshape_rule, same_dtype,
                      lambda x, *, shape_to: np.reshape(x, shape_to),
                      view=lambda a, *, shape_to: np.reshape(a, shape_to, copy=False)),
    Op.TRANSPOSE: OpDef(Op.TRANSPOSE, OpKind.SHAPE, 1, transpose_rule, same_dtype,
                        lambda x, *, perm: np.transpose(x, perm),
                        view=lambda a, *, perm: np.transpose(a, perm)),
    Op.SLICE: OpDef(Op.SLICE, OpKind.SHAPE, 1, slice_rule, same_dtype,
                    lambda x, *, slices: x[tuple(slice(*s) for s in slices)],
                    view=lambda a, *, slices: a[tuple(slice(*s) for s in slices)]),
    Op.CONCAT: OpDef(Op.CONCAT, OpKind.SHAPE, None, concat_rule, same_dtype,
                     lambda *xs, axis: np.concatenate(xs, axis=axis)),
    Op.SUM: _reduction_entry(Op.SUM, np.sum, SUM_ALGEBRA),
    Op.PROD: _reduction_entry(Op.PROD, np.prod, PROD_ALGEBRA),
    Op.REDUCE_MAX: _reduction_entry(Op.REDUCE_MAX, np.max, MAX_ALGEBRA),
    Op.REDUCE_MIN: _reduction_entry(Op.REDUCE_MIN, np.min, MIN_ALGEBRA),
    Op.ARGMAX: _arg_reduction_entry(Op.ARGMAX, np.argmax, largest=True),
    Op.ARGMIN: _arg_reduction_entry(Op.ARGMIN, np.argmin, largest=False),
    Op.MATMUL: OpDef(Op.MATMUL, OpKind.MATMUL, 2, matmul_rule, same_dtype, np.matmul),
    Op.TAKE: OpDef(Op.TAKE, OpKind.INDEX, 2, take_rule, first_dtype,
                   lambda x, i, *, axis: np.take(x, i, axis=axis)),
    Op.TAKE_ALONG_AXIS: OpDef(Op.TAKE_ALONG_AXIS, OpKind.INDEX, 2, take_along_axis_rule,
                              first_dtype,
                              lambda x, i, *, axis: np.take_along_axis(x, i, axis=axis)),
    Op.GETITEM: OpDef(Op.GETITEM, OpKind.INDEX, None, getitem_rule, first_dtype,
                      lambda x, *idx, template: x[build_index_key(template, list(idx))]),
    Op.SETITEM: OpDef(Op.SETITEM, OpKind.INDEX, None, setitem_rule, first_dtype, _setitem_impl),
    Op.SCATTER_ADD: OpDef(Op.SCATTER_ADD, OpKind.INDEX, None, setitem_rule, first_dtype,
                          _scatter_add_impl),
    Op.SCATTER_UFUNC: OpDef(Op.SCATTER_UFUNC, OpKind.INDEX, None, scatter_ufunc_rule,
                            first_dtype, _scatter_ufunc_impl),
})

# ---------------------------------------------------------------- counter-based randomness
# A key is int64[2] (the 128-bit Philox key). Each op reads Philox's stream at its own counter
# domain, so a result is a pure function of (key, shape, dtype): the same key gives the same
# numbers eagerly, interpreted or compiled, and CSE may merge equal random nodes.

RANDOM_KEY_SHAPE: Shape = (2,)
_RANDOM_DOMAINS: dict[str, int] = {"uniform": 0, "normal": 1, "split": 2}


def _philox(key: np.ndarray, domain: str) -> np.random.Generator:
    words = np.ascontiguousarray(np.asarray(key).reshape(2), dtype=np.int64).view(np.uint64)
    counter = np.array([0, 0, 0, _RANDOM_DOMAINS[domain]], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(counter=counter, key=words))


def random_shape(key: Shape, *, shape: Shape, dtype: np.dtype) -> Shape:
    if tuple(key) != RANDOM_KEY_SHAPE:
        raise ValueError(f"a random key has shape {RANDOM_KEY_SHAPE}, got {key}")
    return tuple(shape)


def random_dtype(key: np.dtype, *, shape: Shape, dtype: np.dtype) -> np.dtype:
    if np.dtype(key).kind not in "iu":
        raise TypeError(f"a random key is an integer array, got dtype {key}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"random floats are float32 or float64, not {dtype}")
    return np.dtype(dtype)


def split_shape(key: Shape, *, num: int) -> Shape:
    random_shape(key, shape=(), dtype=np.dtype(np.float64))
    return (num, *RANDOM_KEY_SHAPE)


def _uniform_impl(key: np.ndarray, *, shape: Shape, dtype: np.dtype) -> np.ndarray:
    return _philox(key, "uniform").random(shape, dtype=dtype)


def _normal_impl(key: np.ndarray, *, shape: Shape, dtype: np.dtype) -> np.ndarray:
    return _philox(key, "normal").standard_normal(shape, dtype=dtype)


def _split_impl(key: np.ndarray, *, num: int) -> np.ndarray:
    bounds = np.iinfo(np.int64)
    return _philox(key, "split").integers(bounds.min, bounds.max, size=(num, 2), dtype=np.int64,
                                          endpoint=True)


OPS.update({
    Op.RANDOM_UNIFORM: OpDef(Op.RANDOM_UNIFORM, OpKind.RANDOM, 1, random_shape, random_dtype,
                             _uniform_impl),
    Op.RANDOM_NORMAL: OpDef(Op.RANDOM_NORMAL, OpKind.RANDOM, 1, random_shape, random_dtype,
                            _normal_impl),
    Op.RANDOM_SPLIT: OpDef(Op.RANDOM_SPLIT, OpKind.RANDOM, 1, split_shape, index_dtype,
                           _split_impl),
})

# ---------------------------------------------------------------- host calls
# A NumPy function whose result shape depends only on its operands' shapes, run by NumPy itself
# as a host step: results are NumPy's by construction. attrs: `function` (a key of
# HOST_FUNCTIONS), `output` (which element of a tuple result, or -1 for a single array) and
# `kwargs` (static keyword arguments as sorted (name, value) pairs).

# NumPy functions given an operands-first signature (every array argument an operand, the
# static ones keyword arguments)
def _lexsort_keys(*keys: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.lexsort(keys, axis=axis)


def _histogram(a: np.ndarray, *arrays: np.ndarray, bins: int = 10, range: Any = None,
               density: Any = None, weighted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """np.histogram with its array arguments as operands: (a, [bin edges], [weights])."""
    arrays_left = list(arrays)
    weights = arrays_left.pop() if weighted else None
    edges = arrays_left[0] if arrays_left else bins
    return np.histogram(a, bins=edges, range=range, density=density, weights=weights)


def _bincount_of_length(x: np.ndarray, *weights: np.ndarray, length: int) -> np.ndarray:
    """np.bincount with a static result length (its minlength): a larger value is an error,
    since the compiled function promised `length` elements."""
    counts = np.bincount(x, weights[0] if weights else None, minlength=length)
    if counts.shape[0] != length:
        raise ValueError(f"np.bincount: the value {int(np.max(x))} is >= minlength={length}, "
                         f"the static length of the compiled result (NumPy would return "
                         f"{counts.shape[0]} elements); raise minlength")
    return counts


def _lstsq_residuals(a: np.ndarray, b: np.ndarray, **kwargs: Any) -> np.ndarray:
    """np.linalg.lstsq's residuals, whose length NumPy decides from the rank it finds: a compiled
    program has a static shape, so a rank-deficient matrix (no residuals) is an error here."""
    _, residuals, rank, _ = np.linalg.lstsq(a, b, **kwargs)
    if a.shape[-2] > a.shape[-1] and rank < a.shape[-1]:
        raise np.linalg.LinAlgError(
            f"lstsq: the matrix has rank {rank} < {a.shape[-1]}, so NumPy returns no residuals "
            "(an empty array); a compiled program cannot change its result's shape at run time. "
            "Compute them as np.sum((b - a @ x) ** 2, axis=0) instead")
    return residuals


HOST_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sort": np.sort, "argsort": np.argsort, "searchsorted": np.searchsorted,
    "median": np.median, "percentile": np.percentile, "quantile": np.quantile,
    "nanmedian": np.nanmedian, "nanpercentile": np.nanpercentile,
    "nanquantile": np.nanquantile, "interp": np.interp, "unwrap": np.unwrap, "i0": np.i0,
    "frexp": np.frexp, "partition": np.partition,
    "argpartition": np.argpartition, "lexsort": _lexsort_keys, "digitize": np.digitize,
    "histogram": _histogram, "bincount": _bincount_of_length, "isin": np.isin,
    "convolve": np.convolve, "correlate": np.correlate,
    # float16's own steps (computed in float32 they would be float32's steps)
    "nextafter": np.nextafter, "spacing": np.spacing,
    "linalg.det": np.linalg.det, "linalg.inv": np.linalg.inv, "linalg.solve": np.linalg.solve,
    "linalg.cholesky": np.linalg.cholesky, "linalg.qr": np.linalg.qr, "linalg.svd": np.linalg.svd,
    "linalg.eigh": np.linalg.eigh, "linalg.eigvalsh": np.linalg.eigvalsh,
    "linalg.slogdet": np.linalg.slogdet, "linalg.pinv": np.linalg.pinv,
    "linalg.norm": np.linalg.norm, "linalg.matrix_rank": np.linalg.matrix_rank,
    "linalg.lstsq": np.linalg.lstsq, "linalg.svdvals": np.linalg.svd,
    "linalg.lstsq_residuals": _lstsq_residuals,
    "linalg.cond": np.linalg.cond,
}


class _TupleResults(threading.local):
    """The last tuple result of a host call on this thread. Each element of a tuple (svd's U, S
    and Vh) is a node of its own, so the steps of one tuple call NumPy on the same operands one
    after another: the later ones reuse the first one's result (one LAPACK call, not three).
    Operands are compared by their bytes (a buffer can hold new values at the same address);
    an element asked for twice is computed afresh (no two outputs share an array), and the
    entry is dropped once every element has been taken."""

    entry: tuple | None = None

    def result(self, function: str, operands: Sequence[np.ndarray],
               kwargs: tuple[tuple[str, Any], ...], output: int) -> Any:
        key = (function, kwargs, tuple((o.shape, o.dtype.str) for o in operands))
        data = [np.ascontiguousarray(o).tobytes() for o in operands]
        entry = self.entry
        if entry is not None and entry[0] == key and output not in entry[3] and entry[1] == data:
            result, taken = entry[2], entry[3]
        else:
            result, taken = HOST_FUNCTIONS[function](*operands, **dict(kwargs)), set()
        taken.add(output)
        self.entry = None if len(taken) == len(result) else (key, data, result, taken)
        return result


_TUPLE_RESULTS = _TupleResults()


def _host_call_impl(*operands: np.ndarray, function: str, output: int,
                    kwargs: tuple[tuple[str, Any], ...], shape: Shape,
                    dtype: np.dtype) -> np.ndarray:
    if output < 0:
        result = np.asarray(HOST_FUNCTIONS[function](*operands, **dict(kwargs)))
    else:
        result = np.asarray(_TUPLE_RESULTS.result(function, operands, kwargs, output)[output])
    if result.shape != tuple(shape) or result.dtype != np.dtype(dtype):
        raise ValueError(f"{function} gave {result.dtype}{list(result.shape)} where its node "
                         f"promised {np.dtype(dtype)}{list(shape)}")
    return result


# host functions whose stand-in operands are zeros (bincount's length grows with its values)
PROBE_WITH_ZEROS: frozenset[str] = frozenset({"bincount"})


def _probe_operand(shape: Shape, dtype: np.dtype, function: str) -> np.ndarray:
    """A stand-in argument for type inference: identity matrices where linalg needs them."""
    if function.startswith("linalg.") and len(shape) >= 2:
        return np.broadcast_to(np.eye(shape[-2], shape[-1], dtype=dtype), shape).copy()
    if function in PROBE_WITH_ZEROS:
        return np.zeros(shape, dtype)
    return np.ones(shape, dtype)


def _empty_stack_type(shapes: Sequence[Shape], dtypes: Sequence[np.dtype], function: str,
                      output: int, kwargs: tuple) -> tuple[Shape, np.dtype] | None:
    """A linalg result type from a stack of no matrices: every matrix operand gets an extra
    leading batch axis of length 0 (batch ranks padded to match), so NumPy's gufunc loops
    decide shapes and dtypes without factorising anything (an SVD of a 1000x1000 stand-in
    takes seconds). None where NumPy does not take such a stack (2-d-only functions): the
    caller then probes with full-size stand-ins."""
    batch_rank = max((len(s) - 2 for s in shapes if len(s) >= 2), default=-1)
    if batch_rank < 0:
        return None
    operands = [np.zeros((0,) + (1,) * (batch_rank - len(s) + 2) + tuple(s), d)
                if len(s) >= 2 else _probe_operand(tuple(s), np.dtype(d), function)
                for s, d in zip(shapes, dtypes)]
    try:
        with np.errstate(all="ignore"):
            result = HOST_FUNCTIONS[function](*operands, **dict(kwargs))
        result = np.asarray(result if output < 0 else result[output])
    except Exception:   # noqa: BLE001  (any refusal: the full-size probe gives the real error)
        return None
    if result.ndim == 0 or result.shape[0] != 0:
        return None
    return tuple(result.shape[1:]), result.dtype


def host_call_type(shapes: Sequence[Shape], dtypes: Sequence[np.dtype], function: str,
                   output: int, kwargs: tuple) -> tuple[Shape, np.dtype]:
    """The result type of a host call, found by calling NumPy on stand-in operands (the
    frontend stores it in the node's attrs: the rules below only read it back)."""
    if function.startswith("linalg."):
        found = _empty_stack_type(shapes, dtypes, function, output, kwargs)
        if found is not None:
            return found
    operands = [_probe_operand(tuple(s), np.dtype(d), function) for s, d in zip(shapes, dtypes)]
    with np.errstate(all="ignore"):
        result = HOST_FUNCTIONS[function](*operands, **dict(kwargs))
    result = np.asarray(result if output < 0 else result[output])
    return tuple(result.shape), result.dtype


def host_call_shape(*_: Shape, shape: Shape, **__: Any) -> Shape:
    return tuple(shape)


def host_call_dtype(*_: np.dtype, dtype: np.dtype, **__: Any) -> np.dtype:
    return np.dtype(dtype)


OPS[Op.HOST_CALL] = OpDef(Op.HOST_CALL, OpKind.CALL, None, host_call_shape, host_call_dtype,
                          _host_call_impl)

# Groups that passes match on.
ELEMENTWISE: frozenset[Op] = frozenset(o for o, d in OPS.items() if d.kind is OpKind.ELEMENTWISE)
# elementwise ops computed inside loop kernels (the rest run as host steps)
LOOP_ELEMENTWISE: frozenset[Op] = frozenset(o for o in ELEMENTWISE if OPS[o].loop_lowered)
UNARY: frozenset[Op] = frozenset(o for o in ELEMENTWISE if OPS[o].arity == 1)
BINARY: frozenset[Op] = frozenset(o for o in ELEMENTWISE if OPS[o].arity == 2)
REDUCTIONS: frozenset[Op] = frozenset(o for o, d in OPS.items() if d.kind is OpKind.REDUCTION)
ARG_REDUCTIONS: frozenset[Op] = frozenset(o for o in REDUCTIONS if OPS[o].reduction.arg)
SPLITTABLE: frozenset[Op] = frozenset(o for o in REDUCTIONS if OPS[o].reduction.splittable)
VIEWS: frozenset[Op] = frozenset(o for o, d in OPS.items() if d.view is not None)
SOURCES: frozenset[Op] = frozenset(o for o, d in OPS.items() if d.kind is OpKind.SOURCE)
COMPARISONS: frozenset[Op] = frozenset({Op.GT, Op.GE, Op.LT, Op.LE, Op.EQ, Op.NE})


def opdef(op: Op) -> OpDef:
    return OPS[op]


def attrs_repr(attrs: Mapping[str, Any]) -> str:
    parts = []
    for key, value in attrs.items():
        if isinstance(value, np.dtype):
            from .dtypes import short_name

            value = short_name(value)
        parts.append(f"{key}={value}")
    return " ".join(parts)
