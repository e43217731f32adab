"""Legalize dtypes: loop and matmul kernels compute in `LOOP_DTYPES` only.

A computation on a narrower dtype becomes casts to its compute dtype, the op there, and a cast
back: NumPy's own float16 loops compute in float32 and round after every op, and the narrow
integers wrap modulo 2**bits in any wider width. uint64 computes as int64 (the same bits); where
order matters (comparisons, maximum/minimum and their reductions) both operands are shifted by
2**63 first, which maps unsigned order onto signed order. Casts are split so that each backend
cast has a loop dtype on one side: narrow <-> its compute dtype, then loop dtype <-> loop dtype.
Views and host steps keep the narrow dtypes: they only move bytes or call NumPy.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import LOOP_DTYPES, compute_dtype
from ..errors import UnsupportedError
from ..ir import Graph, Node, rebuild
from ..ops import OPS, VIEWS, Execution, Op

UINT64 = np.dtype(np.uint64)
INT64 = np.dtype(np.int64)
# ops whose int64 result differs from the uint64 one unless the operands are shifted by 2**63
ORDERED: frozenset[Op] = frozenset({
    Op.GT, Op.GE, Op.LT, Op.LE, Op.MAXIMUM, Op.MINIMUM, Op.REDUCE_MAX, Op.REDUCE_MIN,
    Op.ARGMAX, Op.ARGMIN,
})
# results of ORDERED ops that are operand values (shifted back afterwards)
VALUE_RESULTS: frozenset[Op] = frozenset({Op.MAXIMUM, Op.MINIMUM, Op.REDUCE_MAX, Op.REDUCE_MIN})
# ops with no exact int64 form for uint64 operands
UINT64_UNSUPPORTED: frozenset[Op] = frozenset({
    Op.FLOORDIV, Op.MOD, Op.SIGN, Op.ABS, Op.RIGHT_SHIFT, Op.FMOD,
})
_SIGN_BIAS = np.int64(np.iinfo(np.int64).min)   # x + 2**63 (mod 2**64) flips the sign bit


def _cast(new: Graph, node_id: int, dtype: np.dtype, source: str) -> int:
    if new.node(node_id).dtype == np.dtype(dtype):
        return node_id
    return new.add(Op.CAST, (node_id,), {"dtype": np.dtype(dtype)}, source)


def _bias(new: Graph, node_id: int, source: str) -> int:
    node = new.node(node_id)
    bias = new.const(np.full((), _SIGN_BIAS), source=source)
    if node.shape:
        bias = new.add(Op.BROADCAST, (bias,), {"shape_to": node.shape}, source)
    return new.add(Op.ADD, (node_id, bias), None, source)


def _legalize_cast(new: Graph, node: Node) -> int | None:
    src, dst = new.node(node.args[0]).dtype, node.dtype
    if src in LOOP_DTYPES and dst in LOOP_DTYPES:
        return None
    if compute_dtype(src) == dst or compute_dtype(dst) == src:
        return None   # a backend cast: narrow <-> its own compute dtype
    if src == UINT64 and dst.kind == "f":
        # a backend cast too (unsigned to float); through int64 it would lose the top bit
        return _cast(new, _cast(new, node.args[0], compute_dtype(dst), node.source), dst,
                     node.source) if dst not in LOOP_DTYPES else None
    value = _cast(new, node.args[0], compute_dtype(src), node.source)
    value = _cast(new, value, compute_dtype(dst), node.source)
    return _cast(new, value, dst, node.source)


def _needs_legalizing(new: Graph, node: Node) -> bool:
    if node.op in VIEWS or OPS[node.op].execution not in (Execution.LOOP, Execution.MATMUL):
        return False
    dtypes = [node.dtype, *(new.node(a).dtype for a in node.args)]
    return any(d not in LOOP_DTYPES for d in dtypes)


def _legalize(new: Graph, node_id: int, node: Node) -> int | None:
    if node.op is Op.CAST:
        return _legalize_cast(new, node)
    if not _needs_legalizing(new, node):
        return None
    operand_dtypes = [new.node(a).dtype for a in node.args]
    unsigned64 = UINT64 in operand_dtypes
    if unsigned64 and node.op in UINT64_UNSUPPORTED:
        raise UnsupportedError(f"np.{OPS[node.op].ufunc.__name__} of uint64 values is not "
                               "compiled; convert to int64 first if the values fit",
                               node.source)
    args = [_cast(new, a, compute_dtype(d), node.source)
            for a, d in zip(node.args, operand_dtypes)]
    shifted = unsigned64 and node.op in ORDERED
    if shifted:
        args = [_bias(new, a, node.source) if d == UINT64 else a
                for a, d in zip(args, operand_dtypes)]
    result = new.add(node.op, tuple(args), node.attrs, node.source)
    if shifted and node.op in VALUE_RESULTS:
        result = _bias(new, result, node.source)
    return _cast(new, result, node.dtype, node.source)


def legalize_dtypes(graph: Graph) -> Graph:
    """A copy of `graph` whose loop and matmul nodes compute in loop dtypes only."""
    return rebuild(graph, _legalize)
