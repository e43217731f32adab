"""Algebraic simplification: a table of local rewrites, each IEEE-safe.

Each rule is `rule(graph, node) -> replacement node id or None`, keyed by the op it matches. A rule
may only fire where the rewrite gives bit-identical results for every input, NaN, inf and -0.0
included (the differential tests compare NaN/inf positions with NumPy).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..ir import Graph, Node, rebuild
from ..ops import Op

Rule = Callable[[Graph, Node], "int | None"]


def scalar_constant(graph: Graph, node_id: int) -> float | None:
    """The value of a constant whose elements are all equal (looking through broadcasts)."""
    node = graph.node(node_id)
    while node.op in (Op.BROADCAST, Op.RESHAPE):
        node = graph.node(node.args[0])
    if node.op is not Op.CONST:
        return None
    value = node.attrs["value"].value
    if value.size == 0:
        return None
    first = value.flat[0]
    if value.size > 1 and not np.all(value == first):
        return None
    return first.item()


def _is(graph: Graph, node_id: int, value: float) -> bool:
    found = scalar_constant(graph, node_id)
    return found is not None and found == value and not (
        value == 0 and math.copysign(1.0, float(found)) != math.copysign(1.0, value))


def _same_type(graph: Graph, node: Node, operand: int) -> bool:
    other = graph.node(operand)
    return other.shape == node.shape and other.dtype == node.dtype


def _operand_if(graph: Graph, node: Node, operand: int) -> int | None:
    return operand if _same_type(graph, node, operand) else None


# x*1 -> x, 1*x -> x: exact for every x (NaN stays NaN, -0.0 stays -0.0)
def mul_by_one(graph: Graph, node: Node) -> int | None:
    a, b = node.args
    if _is(graph, b, 1):
        return _operand_if(graph, node, a)
    if _is(graph, a, 1):
        return _operand_if(graph, node, b)
    return None


# x*-1 -> -x: both flip only the sign bit
def mul_by_minus_one(graph: Graph, node: Node) -> int | None:
    a, b = node.args
    for x, c in ((a, b), (b, a)):
        if _is(graph, c, -1) and _same_type(graph, node, x) and node.dtype.kind == "f":
            return graph.add(Op.NEG, (x,), source=node.source)
    return None


# x+(-0.0) -> x always; x+0 -> x only for integers (+0.0 turns -0.0 into +0.0)
def add_zero(graph: Graph, node: Node) -> int | None:
    a, b = node.args
    integer = node.dtype.kind in "iub"
    for x, c in ((a, b), (b, a)):
        if _is(graph, c, -0.0) or (integer and _is(graph, c, 0)):
            return _operand_if(graph, node, x)
    return None


# x-(+0.0) -> x: -0.0 - 0.0 is -0.0, so this is exact for floats too
def sub_zero(graph: Graph, node: Node) -> int | None:
    a, b = node.args
    if _is(graph, b, 0.0) or (node.dtype.kind in "iu" and _is(graph, b, 0)):
        return _operand_if(graph, node, a)
    return None


# x/1 -> x
def div_by_one(graph: Graph, node: Node) -> int | None:
    a, b = node.args
    return _operand_if(graph, node, a) if _is(graph, b, 1) else None


# x/c -> x*(1/c) where 1/c is exact (c a power of two): both round the same real number once
def div_by_power_of_two(graph: Graph, node: Node) -> int | None:
    a, b = node.args
    c = scalar_constant(graph, b)
    if c is None or node.dtype.kind != "f" or c == 0 or not math.isfinite(c):
        return None
    mantissa, exponent = math.frexp(abs(c))
    finfo = np.finfo(node.dtype)
    if mantissa != 0.5 or not finfo.minexp <= 2 - exponent <= finfo.maxexp:
        return None
    reciprocal = graph.const(np.asarray(1.0 / c, dtype=node.dtype), source=node.source)
    reciprocal = graph.add(Op.BROADCAST, (reciprocal,), {"shape_to": node.shape},
                           source=node.source) if node.shape else reciprocal
    return graph.add(Op.MUL, (a, reciprocal), source=node.source)


# x**1 -> x; x**2 -> x*x (powf(x, 2) is correctly rounded, as is x*x)
def small_power(graph: Graph, node: Node) -> int | None:
    a, b = node.args
    if node.dtype.kind != "f":
        return None
    if _is(graph, b, 1):
        return _operand_if(graph, node, a)
    if _is(graph, b, 2):
        return graph.add(Op.MUL, (a, a), source=node.source)
    return None


# -(-x) -> x; not(not x) -> x
def double_negation(graph: Graph, node: Node) -> int | None:
    inner = graph.node(node.args[0])
    if inner.op is node.op:
        return inner.args[0]
    return None


# abs(-x) -> abs(x)
def abs_of_neg(graph: Graph, node: Node) -> int | None:
    inner = graph.node(node.args[0])
    if inner.op is Op.NEG:
        return graph.add(Op.ABS, (inner.args[0],), source=node.source)
    return None


# cast to its own dtype -> x; f32 -> f64 -> f32 -> x (the widening is exact)
def redundant_cast(graph: Graph, node: Node) -> int | None:
    operand = graph.node(node.args[0])
    if operand.dtype == node.dtype:
        return node.args[0]
    if operand.op is Op.CAST:
        source = graph.node(operand.args[0])
        widened = np.can_cast(source.dtype, operand.dtype, "safe")
        if source.dtype == node.dtype and widened:
            return operand.args[0]
    return None


# transpose(transpose(x)) -> one transpose (or x when the permutations cancel)
def double_transpose(graph: Graph, node: Node) -> int | None:
    inner = graph.node(node.args[0])
    if inner.op is not Op.TRANSPOSE:
        return None
    perm = tuple(inner.attrs["perm"][p] for p in node.attrs["perm"])
    if perm == tuple(range(len(perm))):
        return inner.args[0]
    return graph.add(Op.TRANSPOSE, (inner.args[0],), {"perm": perm}, source=node.source)


# reshape(reshape(x)) -> reshape(x); reshape to the same shape -> x
def reshape_chain(graph: Graph, node: Node) -> int | None:
    inner = graph.node(node.args[0])
    if inner.shape == node.shape:
        return node.args[0]
    if inner.op is Op.RESHAPE:
        source = inner.args[0]
        if graph.node(source).shape == node.shape:
            return source
        return graph.add(Op.RESHAPE, (source,), node.attrs, source=node.source)
    return None


# broadcast to its own shape -> x; broadcast(broadcast(x)) -> broadcast(x)
def broadcast_chain(graph: Graph, node: Node) -> int | None:
    inner = graph.node(node.args[0])
    if inner.shape == node.shape:
        return node.args[0]
    if inner.op is Op.BROADCAST:
        source = inner.args[0]
        return graph.add(Op.BROADCAST, (source,), node.attrs, source=node.source)
    return None


# where(c, x, x) -> x
def where_same_branches(graph: Graph, node: Node) -> int | None:
    _, a, b = node.args
    return a if a == b else None


# a reduction over axes of size 1 only is a reshape (one element: no arithmetic happens)
def reduce_unit_axes(graph: Graph, node: Node) -> int | None:
    operand = graph.node(node.args[0])
    if any(operand.shape[a] != 1 for a in node.attrs["axes"]) or operand.dtype != node.dtype:
        return None
    return graph.add(Op.RESHAPE, (node.args[0],), {"shape_to": node.shape}, source=node.source)


RULES: dict[Op, list[Rule]] = {
    Op.MUL: [mul_by_one, mul_by_minus_one],
    Op.ADD: [add_zero],
    Op.SUB: [sub_zero],
    Op.DIV: [div_by_one, div_by_power_of_two],
    Op.POW: [small_power],
    Op.NEG: [double_negation],
    Op.LOGICAL_NOT: [double_negation],
    Op.ABS: [abs_of_neg],
    Op.CAST: [redundant_cast],
    Op.TRANSPOSE: [double_transpose],
    Op.RESHAPE: [reshape_chain],
    Op.BROADCAST: [broadcast_chain],
    Op.WHERE: [where_same_branches],
    Op.SUM: [reduce_unit_axes],
    Op.PROD: [reduce_unit_axes],
    Op.REDUCE_MAX: [reduce_unit_axes],
    Op.REDUCE_MIN: [reduce_unit_axes],
}

MAX_SWEEPS = 4


def simplify_once(graph: Graph) -> tuple[Graph, int]:
    fired = 0

    def rewrite(new: Graph, node_id: int, node: Node):
        nonlocal fired
        for rule in RULES.get(node.op, ()):
            replacement = rule(new, node)
            if replacement is not None:
                fired += 1
                return replacement
        return None

    return rebuild(graph, rewrite), fired


def simplify(graph: Graph) -> Graph:
    """Apply the rule table until nothing fires (dead replaced nodes are left for DCE)."""
    for _ in range(MAX_SWEEPS):
        graph, fired = simplify_once(graph)
        if not fired:
            break
    return graph
