"""Views of traced arrays, with NumPy's view-or-copy answers: each helper returns a tracer that
shares its operand's storage (frontend/storage.py) wherever NumPy returns a view, and a fresh array
where NumPy copies (reshape of a non-contiguous view, flatten)."""
from __future__ import annotations

import numpy as np

from graphjit.compiler.errors import ShapeError
from graphjit.compiler.ops import Op

from .source import user_source
from .storage import (
    BroadcastStep, DiagonalStep, ReshapeStep, SliceStep, TransposeStep, reshaped_strides,
)
from .tracer import Tracer, reshape_node


def alias(x: Tracer) -> Tracer:
    """A new array object that views all of `x` (`x[...]`, `np.asarray(x)` of a view, `x.view()`)."""
    view = Tracer.__new__(Tracer)
    view._ctx = x._ctx
    view._weak = x._weak
    view._storage = x._storage
    view._view = x._view
    view._node_id = x._id
    view._version = x._storage.version
    view._layout = x._layout
    view._scalar = False
    return view


def slice_view(x: Tracer, slices: tuple[tuple, ...]) -> Tracer:
    if all(s == (0, d, 1) for s, d in zip(slices, x.shape)):
        return alias(x)
    return x._make_view(SliceStep(tuple(slices)))


def reshape_view(x: Tracer, shape: tuple[int, ...]) -> Tracer:
    """np.reshape: a view where NumPy can reshape without copying, else a copy."""
    shape = tuple(int(d) for d in shape)
    if shape == x.shape:
        return alias(x)
    strides = reshaped_strides(x.shape, x._strides_offset(), shape)
    if strides is None:
        return Tracer(x._ctx, reshape_node(x._ctx, x._id, shape))
    return x._make_view(ReshapeStep(x.shape, shape, strides))


def transpose_view(x: Tracer, perm: tuple[int, ...]) -> Tracer:
    if tuple(perm) == tuple(range(x.ndim)):
        return alias(x)
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"axes {perm} don't match array of dimension {x.ndim}", user_source())
    return x._make_view(TransposeStep(tuple(int(p) for p in perm)))


def broadcast_view(x: Tracer, shape: tuple[int, ...]) -> Tracer:
    """np.broadcast_to: read-only, like NumPy's."""
    return x._make_view(BroadcastStep(tuple(shape)))


def diagonal_node(ctx, node: int, offset: int, axis1: int, axis2: int) -> int:
    """The diagonal of axes (axis1, axis2) of `node`, moved last, as slice/reshape/transpose."""
    shape = ctx.graph.node(node).shape
    ndim = len(shape)
    rest = [i for i in range(ndim) if i not in (axis1, axis2)]
    perm = tuple(rest + [axis1, axis2])
    if perm != tuple(range(ndim)):
        node = ctx.add(Op.TRANSPOSE, (node,), {"perm": perm})
    n, m = shape[axis1], shape[axis2]
    lead = tuple(shape[i] for i in rest)
    rows = range(max(0, -offset), n)
    length = max(0, min(n - max(0, -offset), m - max(0, offset)))
    if length == 0:
        empty = ctx.graph.const(np.zeros(lead + (0,), ctx.graph.node(node).dtype))
        return empty
    start = rows.start * m + max(0, offset)
    flat = ctx.add(Op.RESHAPE, (node,), {"shape_to": lead + (n * m,)})
    slices = tuple((0, d, 1) for d in lead) + ((start, start + (length - 1) * (m + 1) + 1,
                                                m + 1),)
    return ctx.add(Op.SLICE, (flat,), {"slices": slices})


def diagonal(a, offset=0, axis1=0, axis2=1):
    """np.diagonal / ndarray.diagonal: a read-only view, as in NumPy."""
    from .numpy_api import lift_all

    x = lift_all([a])[0]
    if x.ndim < 2:
        raise ShapeError("diag requires an array of at least two dimensions", user_source())
    axis1, axis2 = axis1 % x.ndim, axis2 % x.ndim
    if axis1 == axis2:
        raise ShapeError("axis1 and axis2 cannot be the same", user_source())
    return x._make_view(DiagonalStep(int(offset), axis1, axis2))


def _register() -> None:
    from .numpy_api import METHODS, implements

    implements(np.diagonal, method="diagonal")(diagonal)
    METHODS["view"] = lambda x, *args, **kwargs: alias(x) if not args and not kwargs else \
        _view_dtype_error()


def _view_dtype_error():
    from graphjit.compiler.errors import UnsupportedError

    raise UnsupportedError("x.view(dtype) (reinterpreting the bytes) is not supported; use "
                           "x.astype(dtype)", user_source())


_register()
