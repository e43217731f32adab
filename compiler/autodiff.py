"""Reverse-mode automatic differentiation as a graph transform.

Each op's derivative is a vector-Jacobian-product rule in `VJP_RULES`, the table this module
owns (keyed by op, like the op table; a test checks every op has a rule). A rule has the signature
`rule(builder, node_id, cotangent_id) -> tuple of cotangent ids (or None) per operand` and emits
the backward nodes with `builder` (plain `graph.add` calls, tagged with the forward node's source
line). Rules only see the graph, so the backward pass is ordinary IR: it is optimised, fused and
compiled together with the forward pass.

Conventions (documented for users in `graphjit.transforms`):
- `maximum`/`minimum`: where both operands are equal the cotangent is split 0.5/0.5 (like JAX).
- `reduce_max`/`reduce_min`: the cotangent is shared equally among all positions equal to the
  extreme value.
- `abs`: gradient `sign(x)`, so 0 at 0.
- Ops whose derivative is zero almost everywhere or undefined (comparisons, argmax, floor, ceil,
  sign, floordiv, casts to or from integers, random numbers) give zero gradients.
- `setitem` with repeated indices: the value's gradient counts every repeat (NumPy keeps the last).

Two entry points:
- `append_backward(graph, seeds, wrt)` appends the backward pass to a graph in place. The public
  transforms use it while tracing, so `jit(value_and_grad(f))` builds one graph.
- `value_and_grad_graph` / `vjp_graph` are pure graph -> graph versions.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import GraphjitError
from .ir import Graph, Node, rebuild
from .ops import COMPARISONS, Op, Shape, host_call_type

VjpRule = Callable[["Builder", int, int], Sequence["int | None"]]


class Builder:
    """Emits backward nodes into a graph; every node gets the forward node's source line."""

    def __init__(self, graph: Graph, active: set[int]):
        self.graph = graph
        self.active = active
        self.source = ""

    def node(self, node_id: int) -> Node:
        return self.graph.node(node_id)

    def needs(self, node_id: int) -> bool:
        """Whether a cotangent for this operand is wanted (it depends on a differentiated input)."""
        return node_id in self.active

    def emit(self, op: Op, args: Sequence[int], **attrs) -> int:
        return self.graph.add(op, tuple(args), attrs, self.source)

    # ------------------------------------------------------------ constants
    def full(self, value: float, shape: Shape, dtype: np.dtype) -> int:
        scalar = self.graph.const(np.asarray(value, dtype=dtype), source=self.source)
        return self.broadcast(scalar, shape)

    def full_like(self, value: float, like: int) -> int:
        node = self.node(like)
        return self.full(value, node.shape, node.dtype)

    def zeros_like(self, like: int) -> int:
        return self.full_like(0, like)

    # ------------------------------------------------------------ shapes
    def reshape(self, node_id: int, shape: Shape) -> int:
        if self.node(node_id).shape == tuple(shape):
            return node_id
        return self.emit(Op.RESHAPE, (node_id,), shape_to=tuple(shape))

    def broadcast(self, node_id: int, shape: Shape) -> int:
        """Broadcast to `shape` (NumPy rules: leading axes may be added)."""
        shape = tuple(shape)
        if self.node(node_id).shape == shape:
            return node_id
        return self.emit(Op.BROADCAST, (node_id,), shape_to=shape)

    def sum_to(self, node_id: int, shape: Shape) -> int:
        """Undo a broadcast: sum over the axes along which `shape` was broadcast."""
        source = self.node(node_id).shape
        shape = tuple(shape)
        if source == shape:
            return node_id
        lead = len(source) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, d in enumerate(shape) if d == 1 and source[lead + i] != 1)
        if axes:
            node_id = self.emit(Op.SUM, (node_id,), axes=axes, keepdims=False)
        return self.reshape(node_id, shape)

    def keep_reduced(self, node_id: int, reduced: int) -> int:
        """Broadcast a reduction's result (or cotangent) back to its operand's shape."""
        node = self.node(reduced)
        source = self.node(node.args[0]).shape
        axes, keepdims = node.attrs["axes"], node.attrs["keepdims"]
        if not keepdims:
            kept = tuple(1 if i in axes else d for i, d in enumerate(source))
            node_id = self.reshape(node_id, kept)
        return self.broadcast(node_id, source)

    def transpose_last(self, node_id: int) -> int:
        ndim = self.node(node_id).ndim
        perm = (*range(ndim - 2), ndim - 1, ndim - 2)
        return self.emit(Op.TRANSPOSE, (node_id,), perm=perm)

    # ------------------------------------------------------------ arithmetic
    def neg(self, a: int) -> int:
        return self.emit(Op.NEG, (a,))

    def add(self, a: int, b: int) -> int:
        return self.emit(Op.ADD, (a, b))

    def sub(self, a: int, b: int) -> int:
        return self.emit(Op.SUB, (a, b))

    def mul(self, a: int, b: int) -> int:
        return self.emit(Op.MUL, (a, b))

    def div(self, a: int, b: int) -> int:
        return self.emit(Op.DIV, (a, b))

    def where(self, cond: int, a: int, b: int) -> int:
        return self.emit(Op.WHERE, (cond, a, b))

    def cast(self, a: int, dtype: np.dtype) -> int:
        if self.node(a).dtype == np.dtype(dtype):
            return a
        return self.emit(Op.CAST, (a,), dtype=np.dtype(dtype))

    def scale(self, a: int, value: float) -> int:
        return self.mul(a, self.full_like(value, a))

    # ------------------------------------------------------------ host steps
    def host_call(self, function: str, args: Sequence[int], output: int = -1, **kwargs) -> int:
        """NumPy's `function` (a HOST_FUNCTIONS name) as a host step, typed and keyed like the
        frontend's, so a call the forward pass already makes is merged with it by CSE."""
        static = tuple(sorted(kwargs.items()))
        nodes = [self.node(a) for a in args]
        shape, dtype = host_call_type([n.shape for n in nodes], [n.dtype for n in nodes],
                                      function, output, static)
        return self.emit(Op.HOST_CALL, args, function=function, output=output, kwargs=static,
                         shape=shape, dtype=dtype)


# ---------------------------------------------------------------- rules: elementwise

def _unary(derivative: Callable[[Builder, int, int], int]) -> VjpRule:
    """A unary rule from its derivative dy/dx, written with the operand x and the result y."""

    def rule(b: Builder, node_id: int, g: int) -> tuple[int]:
        (x,) = b.node(node_id).args
        return (b.mul(g, derivative(b, x, node_id)),)

    return rule


def _neg_vjp(b: Builder, node_id: int, g: int):
    return (b.neg(g),)


def _log_vjp(b: Builder, node_id: int, g: int):
    (x,) = b.node(node_id).args
    return (b.div(g, x),)


def _log1p_vjp(b: Builder, node_id: int, g: int):
    (x,) = b.node(node_id).args
    return (b.div(g, b.add(x, b.full_like(1, x))),)


def _sqrt_vjp(b: Builder, node_id: int, g: int):
    # d sqrt(x) = 1 / (2 sqrt(x))
    return (b.div(b.scale(g, 0.5), node_id),)


def _cast_vjp(b: Builder, node_id: int, g: int):
    (x,) = b.node(node_id).args
    if b.node(x).dtype.kind != "f" or b.node(node_id).dtype.kind != "f":
        return (None,)  # casts to or from integers carry no gradient
    return (b.cast(g, b.node(x).dtype),)


def _add_vjp(b: Builder, node_id: int, g: int):
    return (g, g)


def _sub_vjp(b: Builder, node_id: int, g: int):
    return (g, b.neg(g) if b.needs(b.node(node_id).args[1]) else None)


def _mul_vjp(b: Builder, node_id: int, g: int):
    x, y = b.node(node_id).args
    return (b.mul(g, y) if b.needs(x) else None, b.mul(g, x) if b.needs(y) else None)


def _div_vjp(b: Builder, node_id: int, g: int):
    # d(x/y) = dx / y - dy * (x/y) / y
    x, y = b.node(node_id).args
    gx = b.div(g, y) if b.needs(x) else None
    gy = b.neg(b.div(b.mul(g, node_id), y)) if b.needs(y) else None
    return (gx, gy)


def _mod_vjp(b: Builder, node_id: int, g: int):
    # x mod y = x - floor(x / y) * y
    x, y = b.node(node_id).args
    gy = None
    if b.needs(y):
        gy = b.neg(b.mul(g, b.emit(Op.FLOOR, (b.div(x, y),))))
    return (g, gy)


def _pow_vjp(b: Builder, node_id: int, g: int):
    # d x**y = y x**(y-1) dx + x**y log(x) dy; both terms are 0 where their factor is 0, so no
    # 0 * inf = nan appears at x == 0 (x**0 has slope 0; 0**y has no log(0) term).
    x, y = b.node(node_id).args
    zero, one = b.zeros_like(x), b.full_like(1, x)
    gx = gy = None
    if b.needs(x):
        slope = b.mul(y, b.emit(Op.POW, (x, b.sub(y, one))))
        gx = b.mul(g, b.where(b.emit(Op.EQ, (y, zero)), zero, slope))
    if b.needs(y):
        positive = b.emit(Op.GT, (x, zero))
        log_x = b.emit(Op.LOG, (b.where(positive, x, one),))
        gy = b.mul(g, b.where(positive, b.mul(node_id, log_x), zero))
    return (gx, gy)


def _extremum_vjp(strictly_wins: Op, strictly_loses: Op) -> VjpRule:
    """maximum/minimum: the cotangent goes to the winner; ties split it 0.5/0.5 (like JAX)."""

    def rule(b: Builder, node_id: int, g: int):
        x, y = b.node(node_id).args
        zero, half_g = b.zeros_like(g), b.scale(g, 0.5)
        tie = b.emit(Op.EQ, (x, y))
        shared = b.where(tie, half_g, zero)
        gx = b.where(b.emit(strictly_wins, (x, y)), g, shared) if b.needs(x) else None
        gy = b.where(b.emit(strictly_loses, (x, y)), g, shared) if b.needs(y) else None
        return (gx, gy)

    return rule


def _where_vjp(b: Builder, node_id: int, g: int):
    cond, _, _ = b.node(node_id).args
    zero = b.zeros_like(g)
    return (None, b.where(cond, g, zero), b.where(cond, zero, g))


def _no_gradient(b: Builder, node_id: int, g: int):
    return (None,) * len(b.node(node_id).args)


# ---------------------------------------------------------------- rules: shapes

def _broadcast_vjp(b: Builder, node_id: int, g: int):
    (x,) = b.node(node_id).args
    return (b.sum_to(g, b.node(x).shape),)


def _reshape_vjp(b: Builder, node_id: int, g: int):
    (x,) = b.node(node_id).args
    return (b.reshape(g, b.node(x).shape),)


def _transpose_vjp(b: Builder, node_id: int, g: int):
    perm = b.node(node_id).attrs["perm"]
    inverse = tuple(int(i) for i in np.argsort(perm))
    return (b.emit(Op.TRANSPOSE, (g,), perm=inverse),)


def _slice_vjp(b: Builder, node_id: int, g: int):
    """Put the cotangent back where the slice came from, zeros elsewhere."""
    node = b.node(node_id)
    (x,) = node.args
    shape, dtype = b.node(x).shape, node.dtype
    if node.size == 0:
        return (b.full(0, shape, dtype),)
    bounds = [slice(*s).indices(d) for s, d in zip(node.attrs["slices"], shape)]
    if any(step != 1 for _, _, step in bounds):
        template = tuple(("slice", *s) for s in node.attrs["slices"])
        target = b.full(0, shape, dtype)
        return (b.emit(Op.SETITEM, (target, g), template=template),)
    padded = g  # unit steps: pad with zeros one axis at a time (concat lowers natively)
    for axis, (start, _, _) in enumerate(bounds):
        current = b.node(padded).shape
        after = shape[axis] - start - current[axis]
        pieces = []
        for width in (start, None, after):
            if width is None:
                pieces.append(padded)
            elif width > 0:
                pieces.append(b.full(0, current[:axis] + (width,) + current[axis + 1:], dtype))
        if len(pieces) > 1:
            padded = b.emit(Op.CONCAT, pieces, axis=axis)
    return (padded,)


def _concat_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    axis, offset, pieces = node.attrs["axis"], 0, []
    for arg in node.args:
        width = b.node(arg).shape[axis]
        slices = tuple((offset, offset + width, 1) if i == axis else (0, d, 1)
                       for i, d in enumerate(node.shape))
        pieces.append(b.emit(Op.SLICE, (g,), slices=slices) if b.needs(arg) else None)
        offset += width
    return tuple(pieces)


# ---------------------------------------------------------------- rules: reductions

def _sum_vjp(b: Builder, node_id: int, g: int):
    return (b.keep_reduced(g, node_id),)


def _prod_vjp(b: Builder, node_id: int, g: int):
    """d prod / dx_i = product of the others, computed without dividing by zero."""
    node = b.node(node_id)
    (x,) = node.args
    axes = node.attrs["axes"]
    zero, one = b.zeros_like(x), b.full_like(1, x)
    is_zero = b.emit(Op.EQ, (x, zero))
    safe_x = b.where(is_zero, one, x)
    nonzero_product = b.keep_reduced(b.emit(Op.PROD, (safe_x,), axes=axes, keepdims=True), node_id)
    zero_count = b.keep_reduced(
        b.emit(Op.SUM, (b.cast(is_zero, node.dtype),), axes=axes, keepdims=True), node_id)
    no_zero = b.div(nonzero_product, safe_x)
    one_zero = b.where(b.emit(Op.EQ, (zero_count, one)), b.where(is_zero, nonzero_product, zero),
                       zero)
    others = b.where(b.emit(Op.EQ, (zero_count, zero)), no_zero, one_zero)
    return (b.mul(b.keep_reduced(g, node_id), others),)


def _extreme_reduction_vjp(b: Builder, node_id: int, g: int):
    """max/min: the cotangent is shared equally by every position holding the extreme value."""
    node = b.node(node_id)
    (x,) = node.args
    hits = b.cast(b.emit(Op.EQ, (x, b.keep_reduced(node_id, node_id))), node.dtype)
    count = b.emit(Op.SUM, (hits,), axes=node.attrs["axes"], keepdims=True)
    share = b.div(hits, b.keep_reduced(count, node_id))
    return (b.mul(b.keep_reduced(g, node_id), share),)


# ---------------------------------------------------------------- rules: matmul and indexing

def _matmul_vjp(b: Builder, node_id: int, g: int):
    x, y = b.node(node_id).args
    gx = b.emit(Op.MATMUL, (g, b.transpose_last(y))) if b.needs(x) else None
    gy = b.emit(Op.MATMUL, (b.transpose_last(x), g)) if b.needs(y) else None
    return (gx, gy)


def _scatter_into_zeros(b: Builder, like: int, g: int, indices: Sequence[int],
                        template: tuple) -> int:
    target = b.zeros_like(like)
    return b.emit(Op.SCATTER_ADD, (target, g, *indices), template=template)


def _take_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    x, index = node.args
    template = (("slice", None, None, None),) * node.attrs["axis"] + (("array",),)
    return (_scatter_into_zeros(b, x, g, (index,), template), None)


def _take_along_axis_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    x, index = node.args
    axis, shape = node.attrs["axis"], b.node(x).shape
    if node.shape[axis] == 1 and node.shape[:axis] + node.shape[axis + 1:] == \
            shape[:axis] + shape[axis + 1:]:
        return (_pick_one_vjp(b, x, index, g, axis), None)
    return (_scatter_along_axis(b, x, index, g, axis), None)


def _pick_one_vjp(b: Builder, x: int, index: int, g: int, axis: int) -> int:
    """One index per row (e.g. picking each label's log-probability): the gradient is a one-hot
    select, which fuses into a loop kernel instead of a host scatter."""
    shape = b.node(x).shape
    positions = np.arange(shape[axis], dtype=np.int64).reshape(
        tuple(shape[axis] if i == axis else 1 for i in range(len(shape))))
    iota = b.broadcast(b.graph.const(positions, source=b.source), shape)
    index = b.cast(index, np.dtype(np.int64))
    wrapped = b.where(b.emit(Op.LT, (index, b.full(0, b.node(index).shape, np.int64))),
                      b.add(index, b.full(shape[axis], b.node(index).shape, np.int64)), index)
    hit = b.emit(Op.EQ, (iota, b.broadcast(wrapped, shape)))
    return b.where(hit, b.broadcast(g, shape), b.zeros_like(x))


def _scatter_along_axis(b: Builder, x: int, index: int, g: int, axis: int) -> int:
    """Scatter-add through the full fancy index that take_along_axis builds."""
    shape = b.node(x).shape
    indices = []
    for dim, size in enumerate(shape):
        if dim == axis:
            indices.append(index)
            continue
        positions = np.arange(size, dtype=np.int64).reshape(
            tuple(size if i == dim else 1 for i in range(len(shape))))
        indices.append(b.graph.const(positions, source=b.source))
    template = (("array",),) * len(shape)
    return _scatter_into_zeros(b, x, g, indices, template)


def _getitem_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    x, *indices = node.args
    gx = _scatter_into_zeros(b, x, g, indices, node.attrs["template"])
    return (gx, *(None for _ in indices))


def _indexed_value_cotangent(b: Builder, node: Node, g: int) -> int:
    """The cotangent of the value written by setitem/scatter_add: g at the written positions."""
    _, value, *indices = node.args
    read = b.emit(Op.GETITEM, (g, *indices), template=node.attrs["template"])
    return b.sum_to(read, b.node(value).shape)


def _setitem_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    _, value, *indices = node.args
    zero = b.graph.const(np.zeros((), node.dtype), source=b.source)
    g_target = b.emit(Op.SETITEM, (g, zero, *indices), template=node.attrs["template"])
    g_value = _indexed_value_cotangent(b, node, g) if b.needs(value) else None
    return (g_target, g_value, *(None for _ in indices))


def _scatter_add_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    _, value, *indices = node.args
    g_value = _indexed_value_cotangent(b, node, g) if b.needs(value) else None
    return (g, g_value, *(None for _ in indices))


def _scatter_ufunc_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    raise GraphjitError(f"cannot differentiate through np.{node.attrs['ufunc']}.at with repeated "
                        "or traced indices; only np.add.at / np.subtract.at have a derivative "
                        "there (with unique constant indices every ufunc.at does)", node.source)


# ---------------------------------------------------------------- rules: NumPy's other ufuncs

def _one_minus_square(b: Builder, x: int) -> int:
    return b.sub(b.full_like(1, x), b.mul(x, x))


def _binary_rule(dx: Callable[[Builder, int, int, int], int] | None,
                 dy: Callable[[Builder, int, int, int], int] | None) -> VjpRule:
    """A binary rule from its partial derivatives, written with x, y and the result z."""

    def rule(b: Builder, node_id: int, g: int):
        x, y = b.node(node_id).args
        gx = b.mul(g, dx(b, x, y, node_id)) if dx is not None and b.needs(x) else None
        gy = b.mul(g, dy(b, x, y, node_id)) if dy is not None and b.needs(y) else None
        return (gx, gy)

    return rule


def _squared_sum(b: Builder, x: int, y: int) -> int:
    return b.add(b.mul(x, x), b.mul(y, y))


def _fmod_dy(b: Builder, x: int, y: int, z: int) -> int:
    return b.neg(b.emit(Op.TRUNC, (b.div(x, y),)))


ELEMENTWISE_RULES: dict[Op, VjpRule] = {
    Op.TAN: _unary(lambda b, x, y: b.add(b.full_like(1, y), b.mul(y, y))),
    Op.ARCSIN: _unary(lambda b, x, y: b.div(b.full_like(1, x),
                                            b.emit(Op.SQRT, (_one_minus_square(b, x),)))),
    Op.ARCCOS: _unary(lambda b, x, y: b.neg(b.div(b.full_like(1, x),
                                                  b.emit(Op.SQRT, (_one_minus_square(b, x),))))),
    Op.ARCSINH: _unary(lambda b, x, y: b.div(b.full_like(1, x), b.emit(
        Op.SQRT, (b.add(b.mul(x, x), b.full_like(1, x)),)))),
    Op.ARCCOSH: _unary(lambda b, x, y: b.div(b.full_like(1, x), b.emit(
        Op.SQRT, (b.sub(b.mul(x, x), b.full_like(1, x)),)))),
    Op.ARCTANH: _unary(lambda b, x, y: b.div(b.full_like(1, x), _one_minus_square(b, x))),
    Op.EXP2: _unary(lambda b, x, y: b.scale(y, float(np.log(2.0)))),
    Op.LOG2: _unary(lambda b, x, y: b.div(b.full_like(1 / np.log(2.0), x), x)),
    Op.LOG10: _unary(lambda b, x, y: b.div(b.full_like(1 / np.log(10.0), x), x)),
    Op.CBRT: _unary(lambda b, x, y: b.div(b.full_like(1, y), b.scale(b.mul(y, y), 3.0))),
    Op.ARCTAN2: _binary_rule(lambda b, x, y, z: b.div(y, _squared_sum(b, x, y)),
                             lambda b, x, y, z: b.neg(b.div(x, _squared_sum(b, x, y)))),
    Op.HYPOT: _binary_rule(lambda b, x, y, z: b.div(x, z), lambda b, x, y, z: b.div(y, z)),
    Op.COPYSIGN: _binary_rule(
        lambda b, x, y, z: b.emit(Op.SIGN, (b.mul(x, z),)), None),
    Op.FMOD: _binary_rule(lambda b, x, y, z: b.full_like(1, x), _fmod_dy),
    Op.LOGADDEXP2: _binary_rule(
        lambda b, x, y, z: b.emit(Op.EXP2, (b.sub(x, z),)),
        lambda b, x, y, z: b.emit(Op.EXP2, (b.sub(y, z),))),
    Op.LDEXP: _binary_rule(lambda b, x, y, z: b.div(z, x), None),
    Op.RECIPROCAL: _unary(lambda b, x, y: b.neg(b.mul(y, y))),
}


# ---------------------------------------------------------------- rules: host calls

# per HOST_FUNCTIONS name: rule(builder, node_id, cotangent) like any vjp rule
HOST_CALL_RULES: dict[str, VjpRule] = {}


def _host_call_vjp(b: Builder, node_id: int, g: int):
    node = b.node(node_id)
    rule = HOST_CALL_RULES.get(node.attrs["function"])
    if rule is None:
        raise GraphjitError(f"cannot differentiate through np.{node.attrs['function']}: it has "
                            "no derivative rule yet", node.source)
    return rule(b, node_id, g)


def _host_permutation(b: Builder, x: int, function: str, axis: int) -> int:
    """A host step giving the int64 argsort of `x` along `axis` (a stable order)."""
    kwargs = (("axis", axis), ("kind", "stable"))
    return b.emit(Op.HOST_CALL, (x,), function=function, output=-1, kwargs=kwargs,
                  shape=b.node(x).shape, dtype=np.dtype(np.int64))


def _sort_vjp(b: Builder, node_id: int, g: int):
    """y = x[perm] along the axis, perm = argsort(x): dx = g[inverse(perm)], a gather. Tied
    values share their cotangents in argsort's (stable) order, a valid subgradient."""
    node = b.node(node_id)
    (x,) = node.args
    shape = b.node(x).shape
    axis = dict(node.attrs["kwargs"]).get("axis", -1)
    if axis is None:
        x, axis = b.reshape(x, (int(np.prod(shape, dtype=np.int64)),)), 0
    axis %= len(b.node(x).shape)
    perm = _host_permutation(b, x, "argsort", axis)
    inverse = _host_permutation(b, perm, "argsort", axis)
    gx = b.emit(Op.TAKE_ALONG_AXIS, (g, inverse), axis=axis)
    return (b.reshape(gx, shape),)


def _unwrap_vjp(b: Builder, node_id: int, g: int):
    """unwrap adds piecewise-constant multiples of the period: its derivative is 1."""
    (x,) = b.node(node_id).args
    return (b.cast(g, b.node(x).dtype),)


def _bincount_vjp(b: Builder, node_id: int, g: int):
    """counts[k] = sum of weights[j] where x[j] == k: d weights[j] = g[x[j]]."""
    x, *weights = b.node(node_id).args
    if not weights:
        return (None,)
    gw = b.emit(Op.TAKE, (g, x), axis=0)
    return (None, b.cast(gw, b.node(weights[0]).dtype))


def _element(b: Builder, vector: int, i: int, shape: Shape) -> int:
    """vector[i] broadcast to `shape`."""
    item = b.emit(Op.SLICE, (vector,), slices=((i, i + 1, 1),))
    return b.broadcast(b.reshape(item, ()), shape)


def _interp_vjp(b: Builder, node_id: int, g: int):
    """y = fp[j] + (x - xp[j]) * slope_j on xp[j] <= x < xp[j+1]: dx = slope there; fp[j] and
    fp[j+1] get (1 - t) and t of g; the ends get g where y is fp[0] or fp[-1]."""
    node = b.node(node_id)
    x, xp, fp = node.args
    kwargs = dict(node.attrs["kwargs"])
    if "period" in kwargs or b.needs(xp):
        raise GraphjitError("cannot differentiate np.interp with respect to its sample points "
                            "xp, or with period=: it has no derivative rule for those yet",
                            node.source)
    f64, i64 = np.dtype(np.float64), np.dtype(np.int64)
    shape, n = b.node(x).shape, b.node(xp).shape[0]
    xv, xpv, fpv = (b.cast(a, f64) for a in (x, xp, fp))
    zero = b.zeros_like(g)
    first, last = _element(b, xpv, 0, shape), _element(b, xpv, n - 1, shape)
    below = b.emit(Op.LT, (xv, first))
    above = b.emit(Op.GT, (xv, last))
    end = b.emit(Op.EQ, (xv, last))
    if "right" not in kwargs:       # fp[-1] is the value right of the last point too
        end = b.emit(Op.LOGICAL_OR, (end, above))
    start = below if "left" not in kwargs else b.full(False, shape, np.dtype(bool))
    if n == 1:
        hits = b.emit(Op.LOGICAL_OR, (start, end))
        total = b.emit(Op.SUM, (b.where(hits, g, zero),), axes=tuple(range(len(shape))),
                       keepdims=False)
        gfp = b.cast(b.reshape(total, (1,)), b.node(fp).dtype) if b.needs(fp) else None
        return (b.cast(zero, b.node(x).dtype) if b.needs(x) else None, None, gfp)
    j = b.emit(Op.HOST_CALL, (xpv, xv), function="searchsorted", output=-1,
               kwargs=(("side", "right"),), shape=shape, dtype=i64)
    j = b.emit(Op.MINIMUM, (b.emit(Op.MAXIMUM, (b.sub(j, b.full(1, shape, i64)),
                                                b.full(0, shape, i64))), b.full(n - 2, shape, i64)))
    j1 = b.add(j, b.full(1, shape, i64))
    x0, x1 = b.emit(Op.TAKE, (xpv, j), axis=0), b.emit(Op.TAKE, (xpv, j1), axis=0)
    inside = b.emit(Op.LOGICAL_AND, (b.emit(Op.LOGICAL_NOT, (below,)),
                                     b.emit(Op.LT, (xv, last))))
    width = b.sub(x1, x0)
    gx = None
    if b.needs(x):
        rise = b.sub(b.emit(Op.TAKE, (fpv, j1), axis=0), b.emit(Op.TAKE, (fpv, j), axis=0))
        gx = b.cast(b.where(inside, b.mul(g, b.div(rise, width)), zero), b.node(x).dtype)
    gfp = None
    if b.needs(fp):
        t = b.div(b.sub(xv, x0), width)
        w0 = b.where(inside, b.mul(g, b.sub(b.full_like(1, t), t)), b.where(start, g, zero))
        w1 = b.where(inside, b.mul(g, t), b.where(end, g, zero))
        template = (("array",),)
        gfp = b.add(_scatter_into_zeros(b, fpv, w0, (j,), template),
                    _scatter_into_zeros(b, fpv, w1, (j1,), template))
        gfp = b.cast(gfp, b.node(fp).dtype)
    return (gx, None, gfp)


def _convolve_vjp(b: Builder, node_id: int, g: int):
    """y = convolve(a, v) (full: y[k] = sum_j a[k - j] v[j]): da = correlate(g_full, v),
    dv = correlate(g_full, a), both 'valid', with g_full the cotangent placed in the full
    output (zeros outside a 'same'/'valid' window)."""
    node = b.node(node_id)
    a, v = node.args
    n, m = b.node(a).shape[0], b.node(v).shape[0]
    mode = dict(node.attrs["kwargs"]).get("mode", "full")
    f64 = np.dtype(np.float64)
    g = b.cast(g, f64)
    size = b.node(g).shape[0]
    before = {"full": 0, "same": (m - 1) // 2, "valid": m - 1}[mode]
    after = n + m - 1 - size - before
    if before or after:
        parts = [b.full(0, (count,), f64) for count in (before, after)]
        g = b.emit(Op.CONCAT, tuple(p for p in (parts[0], g, parts[1])
                                    if b.node(p).shape[0]), axis=0)

    def correlate(other: int) -> int:
        other = b.cast(other, f64)
        length = n + m - 1 - b.node(other).shape[0] + 1
        return b.emit(Op.HOST_CALL, (g, other), function="correlate", output=-1,
                      kwargs=(("mode", "valid"),), shape=(length,), dtype=f64)

    return (b.cast(correlate(v), b.node(a).dtype) if b.needs(a) else None,
            b.cast(correlate(a), b.node(v).dtype) if b.needs(v) else None)


HOST_CALL_RULES.update({"sort": _sort_vjp, "unwrap": _unwrap_vjp, "bincount": _bincount_vjp,
                        "interp": _interp_vjp, "convolve": _convolve_vjp})


# ---------------------------------------------------------------- the table

VJP_RULES: dict[Op, VjpRule] = {
    Op.NEG: _neg_vjp,
    Op.ABS: _unary(lambda b, x, y: b.emit(Op.SIGN, (x,))),
    Op.EXP: _unary(lambda b, x, y: y),
    Op.LOG: _log_vjp,
    Op.LOG1P: _log1p_vjp,
    Op.EXPM1: _unary(lambda b, x, y: b.add(y, b.full_like(1, y))),
    Op.SQRT: _sqrt_vjp,
    Op.TANH: _unary(lambda b, x, y: b.sub(b.full_like(1, y), b.mul(y, y))),
    Op.SIN: _unary(lambda b, x, y: b.emit(Op.COS, (x,))),
    Op.COS: _unary(lambda b, x, y: b.neg(b.emit(Op.SIN, (x,)))),
    Op.CAST: _cast_vjp,
    Op.ADD: _add_vjp,
    Op.SUB: _sub_vjp,
    Op.MUL: _mul_vjp,
    Op.DIV: _div_vjp,
    Op.MOD: _mod_vjp,
    Op.POW: _pow_vjp,
    Op.MAXIMUM: _extremum_vjp(Op.GT, Op.LT),
    Op.MINIMUM: _extremum_vjp(Op.LT, Op.GT),
    Op.WHERE: _where_vjp,
    Op.BROADCAST: _broadcast_vjp,
    Op.RESHAPE: _reshape_vjp,
    Op.TRANSPOSE: _transpose_vjp,
    Op.SLICE: _slice_vjp,
    Op.CONCAT: _concat_vjp,
    Op.SUM: _sum_vjp,
    Op.PROD: _prod_vjp,
    Op.REDUCE_MAX: _extreme_reduction_vjp,
    Op.REDUCE_MIN: _extreme_reduction_vjp,
    Op.MATMUL: _matmul_vjp,
    Op.TAKE: _take_vjp,
    Op.TAKE_ALONG_AXIS: _take_along_axis_vjp,
    Op.GETITEM: _getitem_vjp,
    Op.SETITEM: _setitem_vjp,
    Op.SCATTER_ADD: _scatter_add_vjp,
    Op.SCATTER_UFUNC: _scatter_ufunc_vjp,
}
VJP_RULES.update(ELEMENTWISE_RULES)
VJP_RULES[Op.HOST_CALL] = _host_call_vjp
NON_DIFFERENTIABLE: frozenset[Op] = frozenset({
    Op.PARAM, Op.CONST, Op.SIGN, Op.FLOOR, Op.CEIL, Op.FLOORDIV, Op.ARGMAX, Op.ARGMIN,
    Op.TRUNC, Op.SIGNBIT, Op.SPACING, Op.INVERT, Op.BITWISE_COUNT, Op.NEXTAFTER, Op.HEAVISIDE,
    Op.GCD, Op.LCM, Op.BITWISE_AND, Op.BITWISE_OR, Op.BITWISE_XOR, Op.LEFT_SHIFT,
    Op.RIGHT_SHIFT,
    Op.LOGICAL_NOT, Op.LOGICAL_AND, Op.LOGICAL_OR, Op.LOGICAL_XOR, *COMPARISONS,
    *(op for op in Op if op.name.startswith("RANDOM_")),
})
VJP_RULES.update({op: _no_gradient for op in NON_DIFFERENTIABLE})


# ---------------------------------------------------------------- the transform

def _is_float(node: Node) -> bool:
    return node.dtype.kind == "f"


def active_nodes(graph: Graph, wrt: Sequence[int]) -> set[int]:
    """Float nodes that depend on any node in `wrt` (the only ones that carry cotangents)."""
    active = {w for w in wrt if _is_float(graph.node(w))}
    if not active:
        return active
    first = min(active)
    for node_id, node in graph.items():
        if node_id <= first or node_id in active:
            continue
        if _is_float(node) and any(a in active for a in node.args):
            active.add(node_id)
    return active


def append_backward(graph: Graph, seeds: Sequence[tuple[int, int]],
                    wrt: Sequence[int]) -> list[int]:
    """Append the reverse pass to `graph` in place; return one gradient node per `wrt` node.

    `seeds` pairs an output node with its cotangent node (same shape and dtype). Cotangents stop
    at the `wrt` nodes: they are the inputs being differentiated, so give distinct nodes that do
    not depend on each other (graph params, or fresh identity nodes).
    """
    active = active_nodes(graph, wrt)
    stop = set(wrt)
    cotangents: dict[int, int] = {}
    builder = Builder(graph, active)
    for output, cotangent in seeds:
        if output in active:
            _accumulate(builder, cotangents, output, cotangent, "the seed")
    for node_id in sorted((n for n in active if n not in stop), reverse=True):
        if node_id not in cotangents:
            continue
        node = graph.node(node_id)
        builder.source = node.source
        rule = VJP_RULES.get(node.op)
        if rule is None:
            raise GraphjitError(f"cannot differentiate through '{node.op.value}': it has no "
                                "derivative rule yet", node.source)
        contributions = rule(builder, node_id, cotangents[node_id])
        for arg, contribution in zip(node.args, contributions, strict=True):
            if contribution is not None and arg in active:
                _accumulate(builder, cotangents, arg, contribution, node.op.value)
    return [cotangents[w] if w in cotangents else builder.zeros_like(w) for w in wrt]


def _accumulate(builder: Builder, cotangents: dict[int, int], node_id: int, contribution: int,
                origin: str) -> None:
    expected, got = builder.node(node_id), builder.node(contribution)
    if (expected.shape, expected.dtype) != (got.shape, got.dtype):
        raise GraphjitError(
            f"internal error: the vjp rule of '{origin}' gave a cotangent "
            f"{got.dtype}{list(got.shape)} for %{node_id} of type "
            f"{expected.dtype}{list(expected.shape)} (please report it)", expected.source)
    previous = cotangents.get(node_id)
    cotangents[node_id] = contribution if previous is None else builder.add(previous,
                                                                            contribution)


# ---------------------------------------------------------------- graph -> graph

def value_and_grad_graph(graph: Graph, wrt: Sequence[int], output: int = 0) -> Graph:
    """A new graph with `graph`'s params and outputs, followed by the gradient of output number
    `output` (a float scalar) with respect to each param position in `wrt`."""
    new = rebuild(graph)
    target = new.node(new.outputs[output])
    if target.shape != () or not _is_float(target):
        raise GraphjitError(f"grad needs a float scalar output, got "
                            f"{target.dtype}{list(target.shape)}")
    seed = new.const(np.ones((), target.dtype))
    new.outputs.extend(append_backward(new, [(new.outputs[output], seed)],
                                       [new.params[p] for p in wrt]))
    return new


def vjp_graph(graph: Graph, wrt: Sequence[int]) -> Graph:
    """A new graph that takes `graph`'s params plus one cotangent param per float output, and
    returns `graph`'s outputs followed by the vjp for each param position in `wrt`."""
    new = rebuild(graph)
    seeds = []
    for output in list(new.outputs):
        node = new.node(output)
        if _is_float(node):
            index = len(new.params)
            cotangent = new.add(Op.PARAM, (), {"index": index, "shape": node.shape,
                                               "dtype": node.dtype, "name": f"ct{index}"})
            seeds.append((output, cotangent))
    new.outputs.extend(append_backward(new, seeds, [new.params[p] for p in wrt]))
    return new


from . import autodiff_linalg  # noqa: E402,F401  np.linalg's rules register in HOST_CALL_RULES
