"""Contractions: matmul, dot, outer, inner, vdot (np.linalg itself: linalg_functions.py)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.errors import ShapeError, TracerBoolError, UnsupportedError
from graphjit.compiler.ops import Op

from .numpy_api import HANDLED_FUNCTIONS, UFUNC_HANDLERS, implements, lift_all, write_out
from .reductions import sum_
from .shapes import moveaxis, ravel, reshape
from .source import user_source
from .tracer import Tracer, TraceContext, broadcast_node, cast_node, dtype_operand, reshape_node


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


def _lift_strong(values: list) -> list[Tracer]:
    """NumPy's contractions convert operands with asarray: Python scalars are not weak there."""
    return [Tracer(t._ctx, t._id) if t._weak else t for t in lift_all(values)]


@implements(np.dot, method="dot")
def dot(a, b, out=None):
    a, b = _lift_strong([a, b])
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
    a, b = _lift_strong([a, b])
    result = reshape(ravel(a), (a.size, 1)) * reshape(ravel(b), (1, b.size))
    return result if out is None else write_out(out, result)


@implements(np.inner)
def inner(a, b):
    """inner(a, b)[i..., j...] = sum_k a[i..., k] * b[j..., k]: one (M, K) @ (K, N) product."""
    a, b = _lift_strong([a, b])
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.shape[-1] != b.shape[-1]:
        raise ShapeError(f"np.inner: shapes {a.shape} and {b.shape} not aligned: {a.shape[-1]} "
                         f"(dim {a.ndim - 1}) != {b.shape[-1]} (dim {b.ndim - 1})",
                         user_source())
    size = a.shape[-1]
    rows = reshape(a, (a.size // size if size else math.prod(a.shape[:-1]), size))
    cols = reshape(b, (b.size // size if size else math.prod(b.shape[:-1]), size))
    return reshape(matmul(rows, cols.T), a.shape[:-1] + b.shape[:-1])


@implements(np.vdot)
def vdot(a, b):
    a, b = _lift_strong([a, b])
    if a.size != b.size:
        raise ShapeError(f"np.vdot: vectors of sizes {a.size} and {b.size} differ",
                         user_source())
    return matmul(ravel(a), ravel(b))


def _bool_error(name: str) -> Callable:
    def fail(*args, **kwargs):
        raise TracerBoolError(f"np.{name} returns a Python bool that depends on traced values; "
                              "use np.where or comparisons inside the computation instead",
                              user_source())

    return fail


for _name in ("allclose", "array_equal", "array_equiv"):
    HANDLED_FUNCTIONS[getattr(np, _name)] = _bool_error(_name)


UFUNC_HANDLERS[np.matmul] = matmul  # a ufunc in NumPy 2: arrives through __array_ufunc__
