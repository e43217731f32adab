"""np.linalg: factorisations and solvers as host steps, norms and products as compositions.

The factorisations and solvers (det, inv, solve, cholesky, qr, svd, eigh, pinv, lstsq, ...) run
as host steps that call NumPy's own function, so values, dtypes (integers give float64, float32
stays float32) and batched `(..., M, N)` shapes are NumPy's by construction; their result types
come from calling NumPy on identity-matrix stand-ins at trace time, which is also where shape
errors (a non-square det, mismatched solve) surface, naming the user's line. A tuple result
(slogdet, qr, svd, eigh, lstsq) is one host step per element, returned in NumPy's own result
class (SVDResult, ...). Their derivatives live in compiler/autodiff_linalg.py.

norm, vector_norm, matrix_norm, cond, matrix_power, multi_dot, tensorinv, tensorsolve and the
array-API names (matmul, outer, vecdot, matrix_transpose, trace, diagonal) are written with
traced ops (abs, sum, max, sqrt, power, matmul), following NumPy's own code path (for norm,
branch by branch for each `ord`), so they fuse and differentiate like any other composition;
the 2-, -2- and nuclear norms take the singular values from one host step. linalg.tensordot and
linalg.cross delegate to np.tensordot and np.cross.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, UnsupportedError

from .elementwise import host_call
from .linalg import dot, matmul
from .numpy_api import implements, lift_all, write_out
from .source import user_source
from .tracer import Tracer, broadcast_node

linalg = np.linalg
_MISSING = object()


def _result_class(function: Any, *args: Any, **kwargs: Any) -> type:
    """NumPy's named result tuple (SVDResult, EighResult, ...) of `function`."""
    return type(function(*args, **kwargs))


SlogdetResult = _result_class(linalg.slogdet, np.eye(1))
QRResult = _result_class(linalg.qr, np.eye(1))
SVDResult = _result_class(linalg.svd, np.eye(1))
EighResult = _result_class(linalg.eigh, np.eye(1))


def _array(x: Any) -> Tracer:
    return lift_all([x])[0]


def _static(value: Any, function: str, name: str) -> Any:
    """A keyword argument that must be known at trace time (it selects NumPy's code path)."""
    if isinstance(value, Tracer) and value._known() is not None:   # a constant made in the fn
        value = value._known()
    if isinstance(value, Tracer) or (np.ndim(value) if value is not None else 0):
        raise UnsupportedError(f"np.linalg.{function}: {name} must be a static Python scalar "
                               "(a traced or array-valued one is not supported)", user_source())
    return value.item() if isinstance(value, (np.generic, np.ndarray)) else value


def _outputs(function: str, operands: list, count: int, **kwargs: Any) -> list[Tracer]:
    """One host step per element of a tuple result."""
    return [host_call(f"linalg.{function}", operands, output=i, **kwargs) for i in range(count)]


# ---------------------------------------------------------------- host steps

@implements(linalg.det)
def det(a):
    return host_call("linalg.det", [a])


@implements(linalg.slogdet)
def slogdet(a):
    return SlogdetResult(*_outputs("slogdet", [a], 2))


@implements(linalg.inv)
def inv(a):
    return host_call("linalg.inv", [a])


@implements(linalg.solve)
def solve(a, b):
    return host_call("linalg.solve", [a, b])


@implements(linalg.cholesky)
def cholesky(a, /, *, upper=False):
    if _static(upper, "cholesky", "upper"):
        return host_call("linalg.cholesky", [a], upper=True)
    return host_call("linalg.cholesky", [a])


@implements(linalg.qr)
def qr(a, mode="reduced"):
    mode = _static(mode, "qr", "mode")
    if mode == "r":
        return host_call("linalg.qr", [a], mode=mode)
    outputs = _outputs("qr", [a], 2, mode=mode)
    return tuple(outputs) if mode == "raw" else QRResult(*outputs)


@implements(linalg.svd)
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    hermitian = bool(_static(hermitian, "svd", "hermitian"))
    if not _static(compute_uv, "svd", "compute_uv"):
        return _singular_values(a, hermitian)
    full = bool(_static(full_matrices, "svd", "full_matrices"))
    return SVDResult(*_outputs("svd", [a], 3, full_matrices=full, hermitian=hermitian))


def _singular_values(a: Any, hermitian: bool = False) -> Tracer:
    # "linalg.svdvals" is np.linalg.svd with compute_uv=False: one name for every way to ask
    return host_call("linalg.svdvals", [a], compute_uv=False, hermitian=hermitian)


if hasattr(linalg, "svdvals"):
    implements(linalg.svdvals)(lambda x, /: _singular_values(x))


@implements(linalg.eigh)
def eigh(a, UPLO="L"):
    return EighResult(*_outputs("eigh", [a], 2, UPLO=_static(UPLO, "eigh", "UPLO")))


@implements(linalg.eigvalsh)
def eigvalsh(a, UPLO="L"):
    return host_call("linalg.eigvalsh", [a], UPLO=_static(UPLO, "eigvalsh", "UPLO"))


def _no_complex(name: str):
    def fail(*args, **kwargs):
        raise DTypeError(f"np.linalg.{name} returns complex values in general and graphjit has "
                         "no complex dtypes; for a symmetric matrix use np.linalg.eigh (or "
                         "eigvalsh), whose results are real", user_source())

    return fail


implements(linalg.eig)(_no_complex("eig"))
implements(linalg.eigvals)(_no_complex("eigvals"))


def _given_options(function: str, **options: Any) -> dict[str, Any]:
    """The static keyword arguments the caller gave (None / _MISSING: NumPy's own default)."""
    return {name: _static(value, function, name) for name, value in options.items()
            if value is not None and value is not _MISSING}


@implements(linalg.pinv)
def pinv(a, rcond=None, hermitian=False, *, rtol=_MISSING):
    return host_call("linalg.pinv", [a], hermitian=bool(_static(hermitian, "pinv", "hermitian")),
                     **_given_options("pinv", rcond=rcond, rtol=rtol))


@implements(linalg.matrix_rank)
def matrix_rank(A, tol=None, hermitian=False, *, rtol=None):
    return host_call("linalg.matrix_rank", [A],
                     hermitian=bool(_static(hermitian, "matrix_rank", "hermitian")),
                     **_given_options("matrix_rank", tol=tol, rtol=rtol))


@implements(linalg.lstsq)
def lstsq(a, b, rcond=None):
    kwargs = {} if rcond is None else {"rcond": _static(rcond, "lstsq", "rcond")}
    solution, _, rank, singular = _outputs("lstsq", [a, b], 4, **kwargs)
    # the residuals' length depends on the rank found at run time: a step of its own that
    # says so if the matrix turns out rank-deficient (NumPy returns an empty array then)
    residuals = host_call("linalg.lstsq_residuals", [a, b], **kwargs)
    return solution, residuals, rank, singular


# ---------------------------------------------------------------- compositions

def _square_stack(a: Tracer, function: str) -> None:
    if a.ndim < 2:
        raise ShapeError(f"np.linalg.{function}: {a.ndim}-dimensional array given. Array must "
                         "be at least two-dimensional", user_source())
    if a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"np.linalg.{function}: Last 2 dimensions of the array must be square "
                         f"(shape {a.shape})", user_source())


@implements(linalg.matrix_power)
def matrix_power(a, n):
    """NumPy's own multiplication order (so float results round the same way)."""
    a = _array(a)
    if isinstance(n, Tracer):
        raise UnsupportedError("np.linalg.matrix_power: the exponent must be a static integer",
                               user_source())
    try:
        n = operator.index(n)
    except TypeError:
        raise DTypeError("np.linalg.matrix_power: exponent must be an integer",
                         user_source()) from None
    _square_stack(a, "matrix_power")
    if n == 0:
        ctx = a._ctx
        identity = ctx.node_of(np.eye(a.shape[-1], dtype=a.dtype))
        return Tracer(ctx, broadcast_node(ctx, identity, a.shape))
    if n < 0:
        a, n = inv(a), -n
    if n == 1:
        return a
    if n == 2:
        return matmul(a, a)
    if n == 3:
        return matmul(matmul(a, a), a)
    power = result = None
    while n > 0:
        power = a if power is None else matmul(power, power)
        n, bit = divmod(n, 2)
        if bit:
            result = power if result is None else matmul(result, power)
    return result


@implements(linalg.multi_dot)
def multi_dot(arrays, *, out=None):
    """NumPy's product order: the cheapest parenthesisation for the (static) shapes."""
    arrays = lift_all(list(arrays))
    if len(arrays) < 2:
        raise ShapeError("np.linalg.multi_dot: Expecting at least two arrays.", user_source())
    if len(arrays) == 2:
        result = dot(arrays[0], arrays[1])
        return result if out is None else write_out(out, result)
    first_ndim, last_ndim = arrays[0].ndim, arrays[-1].ndim
    if first_ndim == 1:
        arrays[0] = np.reshape(arrays[0], (1, -1))
    if last_ndim == 1:
        arrays[-1] = np.reshape(arrays[-1], (-1, 1))
    for array in arrays:
        if array.ndim != 2:
            raise ShapeError(f"np.linalg.multi_dot: {array.ndim}-dimensional array given. Array "
                             "must be two-dimensional", user_source())
    if len(arrays) == 3:
        result = _multi_dot_three(*arrays)
    else:
        order = _chain_order([a.shape for a in arrays])
        result = _multi_dot(arrays, order, 0, len(arrays) - 1)
    if first_ndim == 1 and last_ndim == 1:
        result = np.reshape(result, ())
    elif first_ndim == 1 or last_ndim == 1:
        result = np.reshape(result, (-1,))
    return result if out is None else write_out(out, result)


def _multi_dot_three(a: Tracer, b: Tracer, c: Tracer) -> Tracer:
    (a0, a1b0), (b1c0, c1) = a.shape, c.shape
    left_first = a0 * b1c0 * (a1b0 + c1) < a1b0 * c1 * (a0 + b1c0)
    return dot(dot(a, b), c) if left_first else dot(a, dot(b, c))


def _chain_order(shapes: list[tuple[int, int]]) -> list[list[int]]:
    """Matrix-chain dynamic programme (Cormen), as np.linalg.multi_dot computes it."""
    n = len(shapes)
    dims = [s[0] for s in shapes] + [shapes[-1][1]]
    cost = [[0.0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = math.inf
            for k in range(i, j):
                q = cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1]
                if q < cost[i][j]:
                    cost[i][j], split[i][j] = q, k
    return split


def _multi_dot(arrays: list[Tracer], order: list[list[int]], i: int, j: int) -> Tracer:
    if i == j:
        return arrays[i]
    k = order[i][j]
    return dot(_multi_dot(arrays, order, i, k), _multi_dot(arrays, order, k + 1, j))


# ---------------------------------------------------------------- norms

def _norm_operand(x: Any) -> Tracer:
    x = _array(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _normalize_axis(axis: int, ndim: int) -> int:
    try:
        return operator.index(axis) + ndim if operator.index(axis) < 0 else operator.index(axis)
    except TypeError:
        raise DTypeError(f"np.linalg.norm: axis must be an integer or a tuple of integers, got "
                         f"{axis!r}", user_source()) from None


@implements(linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    """NumPy's norm, branch for branch (linalg/_linalg.py), as traced ops."""
    x = _norm_operand(x)
    if isinstance(ord, Tracer) or isinstance(axis, Tracer):
        raise UnsupportedError("np.linalg.norm: ord and axis must be static", user_source())
    if axis is None and (ord is None or (ord in ("f", "fro") and x.ndim == 2)
                         or (ord == 2 and x.ndim == 1)):
        result = np.sqrt(np.sum(x * x))
        return np.reshape(result, (1,) * x.ndim) if keepdims else result
    if axis is None:
        axis = tuple(range(x.ndim))
    elif not isinstance(axis, tuple):
        axis = (axis,)
    axis = tuple(_normalize_axis(a, x.ndim) for a in axis)
    for a in axis:
        if not 0 <= a < x.ndim:
            raise ShapeError(f"np.linalg.norm: axis {a} is out of bounds for array of dimension "
                             f"{x.ndim}", user_source())
    if len(axis) == 1:
        return _vector_norm(x, ord, axis, keepdims)
    if len(axis) == 2:
        return _matrix_norm(x, ord, axis, keepdims)
    raise ShapeError("np.linalg.norm: Improper number of dimensions to norm.", user_source())


def _vector_norm(x: Tracer, ord: Any, axis: tuple[int], keepdims: bool) -> Tracer:
    if ord == np.inf:
        return np.max(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == -np.inf:
        return np.min(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        return np.sum((x != 0).astype(x.dtype), axis=axis, keepdims=keepdims)
    if ord == 1:
        return np.sum(np.abs(x), axis=axis, keepdims=keepdims)
    if ord is None or ord == 2:
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
    if isinstance(ord, str):
        raise ShapeError(f"np.linalg.norm: Invalid norm order '{ord}' for vectors",
                         user_source())
    total = np.sum(np.abs(x) ** ord, axis=axis, keepdims=keepdims)
    return total ** np.asarray(1.0 / ord, total.dtype)


def _matrix_norm(x: Tracer, ord: Any, axis: tuple[int, int], keepdims: bool) -> Tracer:
    row, col = axis
    if row == col:
        raise ShapeError("np.linalg.norm: Duplicate axes given.", user_source())
    if ord == 2 or ord == -2:
        values = _singular_values(np.moveaxis(x, (row, col), (-2, -1)))
        result = (np.max if ord == 2 else np.min)(values, axis=-1)
    elif ord == 1 or ord == -1:
        extreme = np.max if ord == 1 else np.min
        result = extreme(np.sum(np.abs(x), axis=row), axis=col - 1 if col > row else col)
    elif ord == np.inf or ord == -np.inf:
        extreme = np.max if ord == np.inf else np.min
        result = extreme(np.sum(np.abs(x), axis=col), axis=row - 1 if row > col else row)
    elif ord in (None, "fro", "f"):
        result = np.sqrt(np.sum(x * x, axis=axis))
    elif ord == "nuc":
        result = np.sum(_singular_values(np.moveaxis(x, (row, col), (-2, -1))), axis=-1)
    else:
        raise ShapeError(f"np.linalg.norm: Invalid norm order {ord!r} for matrices.",
                         user_source())
    if keepdims:
        shape = list(x.shape)
        shape[row] = shape[col] = 1
        result = np.reshape(result, tuple(shape))
    return result


if hasattr(linalg, "vector_norm"):
    @implements(linalg.vector_norm)
    def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
        """NumPy's: the axes (all of them for None) flattened into one, then norm along it."""
        x = _norm_operand(x)
        shape = list(x.shape)
        axes = tuple(range(x.ndim)) if axis is None else axis if isinstance(axis, tuple) else (
            axis,)
        axes = tuple(_normalize_axis(a, x.ndim) for a in axes)
        if axis is None or isinstance(axis, tuple):
            rest = tuple(i for i in range(x.ndim) if i not in axes)
            x = np.reshape(np.transpose(x, axes + rest),
                           (math.prod(shape[i] for i in axes), *(shape[i] for i in rest)))
            axis = 0
        result = norm(x, ord=ord, axis=axis)
        if keepdims:
            for a in axes:
                shape[a] = 1
            result = np.reshape(result, tuple(shape))
        return result

if hasattr(linalg, "matrix_norm"):
    @implements(linalg.matrix_norm)
    def matrix_norm(x, /, *, keepdims=False, ord="fro"):
        x = _norm_operand(x)
        return norm(x, ord=ord, axis=(-2, -1), keepdims=keepdims)


@implements(linalg.cond)
def cond(x, p=None):
    """The 2-norm condition numbers from the singular values; any other p as NumPy's own step."""
    x = _array(x)
    if p is not None and p not in (2, -2):
        return host_call("linalg.cond", [x], p=_static(p, "cond", "p"))
    if x.ndim < 2:
        raise ShapeError(f"np.linalg.cond: {x.ndim}-dimensional array given. Array must be at "
                         "least two-dimensional", user_source())
    values = _singular_values(x)
    largest, smallest = values[..., 0], values[..., -1]
    ratio = smallest / largest if p == -2 else largest / smallest
    # NumPy: a NaN from a singular matrix is an infinite condition number (0/0 included),
    # unless the matrix itself holds a NaN
    has_nan = np.any(np.isnan(x), axis=(-2, -1))
    return np.where(np.isnan(ratio) & ~has_nan, np.asarray(np.inf, ratio.dtype), ratio)


# ---------------------------------------------------------------- tensor forms and array-API names

@implements(linalg.tensorinv)
def tensorinv(a, ind=2):
    a = _array(a)
    if not isinstance(ind, int) or ind <= 0:
        raise ShapeError("np.linalg.tensorinv: Invalid ind argument.", user_source())
    rows = math.prod(a.shape[ind:])
    inverse = inv(np.reshape(a, (rows, -1)))
    return np.reshape(inverse, a.shape[ind:] + a.shape[:ind])


@implements(linalg.tensorsolve)
def tensorsolve(a, b, axes=None):
    a, b = lift_all([a, b])
    if axes is not None:
        order = list(range(a.ndim))
        for k in axes:
            order.remove(k)
            order.insert(a.ndim, k)
        a = np.transpose(a, order)
    solution_shape = a.shape[-(a.ndim - b.ndim):]
    size = math.prod(solution_shape)
    if math.prod(a.shape) != size ** 2:
        raise ShapeError("np.linalg.tensorsolve: Input arrays must satisfy the requirement "
                         "prod(a.shape[b.ndim:]) == prod(a.shape[:b.ndim])", user_source())
    solution = solve(np.reshape(a, (size, size)), np.reshape(b, (-1,)))
    return np.reshape(solution, solution_shape)


def _stacked_matrices(x: Tracer, function: str) -> None:
    if x.ndim < 2:
        raise ShapeError(f"np.linalg.{function}: {x.ndim}-dimensional array given. Array must "
                         "be at least two-dimensional", user_source())


if hasattr(linalg, "matrix_transpose"):
    @implements(linalg.matrix_transpose)
    def matrix_transpose(x, /):
        x = _array(x)
        _stacked_matrices(x, "matrix_transpose")
        return np.swapaxes(x, -1, -2)

    @implements(linalg.matmul)
    def linalg_matmul(x1, x2, /):
        return matmul(x1, x2)

    @implements(linalg.outer)
    def linalg_outer(x1, x2, /):
        x1, x2 = lift_all([x1, x2])
        if x1.ndim != 1 or x2.ndim != 1:
            raise ShapeError(f"np.linalg.outer: Input arrays must be one-dimensional, but they "
                             f"are x1.ndim={x1.ndim} and x2.ndim={x2.ndim}.", user_source())
        return np.outer(x1, x2)

    @implements(linalg.vecdot)
    def linalg_vecdot(x1, x2, /, *, axis=-1):
        x1, x2 = lift_all([x1, x2])
        return np.sum(x1 * x2, axis=axis)

    @implements(linalg.trace)
    def linalg_trace(x, /, *, offset=0, dtype=None):
        x = _array(x)
        _stacked_matrices(x, "trace")
        return np.sum(np.diagonal(x, offset, -2, -1), axis=-1, dtype=dtype)

    @implements(linalg.diagonal)
    def linalg_diagonal(x, /, *, offset=0):
        x = _array(x)
        _stacked_matrices(x, "diagonal")
        return np.diagonal(x, offset, -2, -1)

    # NumPy's own: delegated, so they work wherever np.tensordot / np.cross are traced
    implements(linalg.tensordot)(lambda x1, x2, /, *, axes=2: np.tensordot(x1, x2, axes=axes))

    @implements(linalg.cross)
    def linalg_cross(x1, x2, /, *, axis=-1):
        x1, x2 = lift_all([x1, x2])
        if x1.ndim == 0 or x2.ndim == 0 or x1.shape[axis] != 3 or x2.shape[axis] != 3:
            raise ShapeError("np.linalg.cross: Both input arrays must be (arrays of) "
                             "3-dimensional vectors", user_source())
        return np.cross(x1, x2, axis=axis)
