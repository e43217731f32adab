"""Vector-Jacobian products of np.linalg's host steps, registered in autodiff's `HOST_CALL_RULES`.

The rules are JAX's (and the matrix-calculus literature's): they are written with matmuls,
elementwise ops and further host steps (an inverse, a solve, the factorisation itself), and a
host step the forward pass already made is the same node after CSE, so no factorisation runs
twice for the backward pass.

Conventions (as JAX's):
- cholesky and eigh read one triangle of their operand; their gradients are symmetrised
  ((G + G^T) / 2), the derivative with respect to a symmetric input.
- svd's U and Vh, eigh's eigenvectors: the gradient assumes distinct singular values or
  eigenvalues (repeated ones give inf/NaN); the full U or Vh of a non-square matrix
  (full_matrices=True) is not unique and has no gradient.
- pinv and lstsq (solution and residuals): the derivative at full rank (the rank is locally
  constant); lstsq's rank and singular values have none.
- det: g * det(A) * inv(A)^T, so a singular A raises at run time like inv would.
"""
from __future__ import annotations

import numpy as np

from .autodiff import HOST_CALL_RULES, Builder
from .errors import GraphjitError
from .ops import Op


# ---------------------------------------------------------------- matrix helpers

def _kwargs(b: Builder, node_id: int) -> dict:
    return dict(b.node(node_id).attrs["kwargs"])


def _matmul(b: Builder, x: int, y: int) -> int:
    """x @ y for operands of rank >= 2 whose batch dimensions broadcast."""
    x_shape, y_shape = b.node(x).shape, b.node(y).shape
    batch = np.broadcast_shapes(x_shape[:-2], y_shape[:-2])
    x = b.broadcast(x, (*batch, *x_shape[-2:]))
    y = b.broadcast(y, (*batch, *y_shape[-2:]))
    return b.emit(Op.MATMUL, (x, y))


def _t(b: Builder, x: int) -> int:
    return b.transpose_last(x)


def _constant_matrix(b: Builder, matrix: np.ndarray, like: int) -> int:
    """A constant (k, k) matrix broadcast to the shape of `like` (..., k, k)."""
    node = b.node(like)
    return b.broadcast(b.graph.const(matrix.astype(node.dtype), source=b.source), node.shape)


def _eye_like(b: Builder, like: int) -> int:
    return _constant_matrix(b, np.eye(b.node(like).shape[-1]), like)


def _rows(b: Builder, v: int) -> int:
    """v (..., k) as (..., 1, k): multiplying a matrix by it scales column j by v[j]."""
    shape = b.node(v).shape
    return b.reshape(v, (*shape[:-1], 1, shape[-1]))


def _columns(b: Builder, v: int) -> int:
    """v (..., k) as (..., k, 1): multiplying a matrix by it scales row i by v[i]."""
    return b.reshape(v, (*b.node(v).shape, 1))


def _scale_columns(b: Builder, matrix: int, v: int) -> int:
    return b.mul(matrix, b.broadcast(_rows(b, v), b.node(matrix).shape))


def _scale_rows(b: Builder, matrix: int, v: int) -> int:
    return b.mul(matrix, b.broadcast(_columns(b, v), b.node(matrix).shape))


def _times_scalars(b: Builder, matrix: int, scalars: int) -> int:
    """matrix (..., m, n) times one scalar (...,) per matrix."""
    shape = b.node(scalars).shape
    return b.mul(matrix, b.broadcast(b.reshape(scalars, (*shape, 1, 1)), b.node(matrix).shape))


def _symmetrise(b: Builder, x: int) -> int:
    return b.scale(b.add(x, _t(b, x)), 0.5)


def _reciprocal_gaps(b: Builder, values: int, square: bool) -> int:
    """F[i, j] = 1 / (v[j] - v[i]) off the diagonal, 0 on it (v[i]**2 with `square`)."""
    if square:
        values = b.mul(values, values)
    k = b.node(values).shape[-1]
    shape = (*b.node(values).shape[:-1], k, k)
    gaps = b.sub(b.broadcast(_rows(b, values), shape), b.broadcast(_columns(b, values), shape))
    diagonal = b.emit(Op.NE, (_eye_like(b, gaps), b.zeros_like(gaps)))
    one, zero = b.full_like(1, gaps), b.zeros_like(gaps)
    return b.where(diagonal, zero, b.div(one, b.where(diagonal, one, gaps)))


def _unsupported(b: Builder, node_id: int, why: str) -> GraphjitError:
    function = b.node(node_id).attrs["function"]
    return GraphjitError(f"cannot differentiate np.{function} here: {why}", b.node(node_id).source)


# ---------------------------------------------------------------- determinants and inverses

def _det_vjp(b: Builder, node_id: int, g: int):
    """d det(A) = det(A) tr(A^-1 dA): the cotangent is g det(A) A^-T."""
    (a,) = b.node(node_id).args
    inverse = b.host_call("linalg.inv", [a])
    return (_times_scalars(b, _t(b, inverse), b.mul(g, node_id)),)


def _slogdet_vjp(b: Builder, node_id: int, g: int):
    """The sign is locally constant; d log|det A| = tr(A^-1 dA)."""
    node = b.node(node_id)
    if node.attrs["output"] == 0:
        return (None,)
    inverse = b.host_call("linalg.inv", [node.args[0]])
    return (_times_scalars(b, _t(b, inverse), g),)


def _inv_vjp(b: Builder, node_id: int, g: int):
    """d A^-1 = -A^-1 dA A^-1."""
    inverse_t = _t(b, node_id)
    return (b.neg(_matmul(b, _matmul(b, inverse_t, g), inverse_t)),)


def _solve_vjp(b: Builder, node_id: int, g: int):
    """x = A^-1 b: the cotangent of b is A^-T g, that of A is -(A^-T g) x^T (NumPy 2: b is a
    vector only when it is 1-d; handled as one column)."""
    a, rhs = b.node(node_id).args
    vector = b.node(rhs).ndim == 1
    g_matrix = _columns(b, g) if vector else g
    x_matrix = _columns(b, node_id) if vector else node_id
    g_rhs = b.host_call("linalg.solve", [_t(b, a), g_matrix])
    g_a = None
    if b.needs(a):
        g_a = b.sum_to(b.neg(_matmul(b, g_rhs, _t(b, x_matrix))), b.node(a).shape)
    if vector:
        g_rhs = b.reshape(g_rhs, b.node(g_rhs).shape[:-1])
    return (g_a, b.sum_to(g_rhs, b.node(rhs).shape) if b.needs(rhs) else None)


def _pinv_cotangent(b: Builder, a: int, pinv: int, g: int) -> int:
    """X = pinv(A) at full rank (Golub & Pereyra):
    dX = -X dA X + X X^T dA^T (I - A X) + (I - X A) dA^T X^T X, whose transpose is
    g_A = -X^T G X^T + (I - A X) G^T X X^T + X^T X G^T (I - X A)."""
    x_t, g_t = _t(b, pinv), _t(b, g)
    first = b.neg(_matmul(b, _matmul(b, x_t, g), x_t))
    second = _matmul(b, b.sub(g_t, _matmul(b, a, _matmul(b, pinv, g_t))),
                     _matmul(b, pinv, x_t))
    third = _matmul(b, _matmul(b, x_t, pinv), b.sub(g_t, _matmul(b, _matmul(b, g_t, pinv), a)))
    return b.sum_to(b.add(b.add(first, second), third), b.node(a).shape)


def _pinv_vjp(b: Builder, node_id: int, g: int):
    (a,) = b.node(node_id).args
    return (_pinv_cotangent(b, a, node_id, g),)


def _lstsq_vjp(b: Builder, node_id: int, g: int):
    """The solution x = pinv(A) b at full rank; the other outputs have no gradient here."""
    node = b.node(node_id)
    a, rhs = node.args
    if node.attrs["output"] != 0:
        raise _unsupported(b, node_id, "only the solution (lstsq(...)[0]) has a gradient")
    pinv = b.host_call("linalg.pinv", [a])
    vector = b.node(rhs).ndim == 1
    g_matrix = _columns(b, g) if vector else g
    rhs_matrix = _columns(b, rhs) if vector else rhs
    g_a = _pinv_cotangent(b, a, pinv, _matmul(b, g_matrix, _t(b, rhs_matrix))) \
        if b.needs(a) else None
    g_rhs = None
    if b.needs(rhs):
        g_rhs = _matmul(b, _t(b, pinv), g_matrix)
        g_rhs = b.reshape(g_rhs, b.node(rhs).shape) if vector else g_rhs
    return (g_a, g_rhs)


def _lstsq_residuals_vjp(b: Builder, node_id: int, g: int):
    """residuals = |b - A x|^2 per column at the least-squares x, where the derivative through
    x vanishes (the normal equations): g_b = 2 r g, g_A = -2 (r g) x^T, r = b - A x."""
    a, rhs = b.node(node_id).args
    rcond = _kwargs(b, node_id)
    solution = b.host_call("linalg.lstsq", [a, rhs], output=0, **rcond)
    vector = b.node(rhs).ndim == 1
    rhs_matrix = _columns(b, rhs) if vector else rhs
    solution_matrix = _columns(b, solution) if vector else solution
    residual = b.sub(rhs_matrix, _matmul(b, a, solution_matrix))
    weighted = b.scale(_scale_columns(b, residual, g), 2.0)      # 2 r g, column by column
    g_a = b.neg(_matmul(b, weighted, _t(b, solution_matrix))) if b.needs(a) else None
    g_rhs = b.reshape(weighted, b.node(rhs).shape) if b.needs(rhs) else None
    return (g_a, g_rhs)


# ---------------------------------------------------------------- factorisations

def _cholesky_vjp(b: Builder, node_id: int, g: int):
    """A = L L^T: g_A = sym(L^-T Phi(L^T g_L) L^-1), Phi = the lower triangle with the
    diagonal halved (Murray 2016; PyTorch's and JAX's rule)."""
    lower, g_lower = node_id, g
    if _kwargs(b, node_id).get("upper", False):
        lower, g_lower = _t(b, node_id), _t(b, g)
    n = b.node(lower).shape[-1]
    inverse = b.host_call("linalg.inv", [lower])
    phi = b.mul(_matmul(b, _t(b, lower), g_lower),
                _constant_matrix(b, np.tril(np.ones((n, n))) - 0.5 * np.eye(n), lower))
    return (_symmetrise(b, _matmul(b, _matmul(b, _t(b, inverse), phi), inverse)),)


def _eigh_parts(b: Builder, node_id: int) -> tuple[int, int]:
    """(eigenvalues, eigenvectors) of the operand, with the forward call's UPLO."""
    (a,) = b.node(node_id).args
    uplo = _kwargs(b, node_id).get("UPLO", "L")
    return tuple(b.host_call("linalg.eigh", [a], output=i, UPLO=uplo) for i in range(2))


def _eigh_vjp(b: Builder, node_id: int, g: int):
    """A = V diag(w) V^T: g_A = V (diag(g_w) + F * (V^T g_V)) V^T with F[i, j] = 1/(w_j - w_i)."""
    values, vectors = _eigh_parts(b, node_id)
    if b.node(node_id).attrs["output"] == 1:
        inner = b.mul(_reciprocal_gaps(b, values, square=False), _matmul(b, _t(b, vectors), g))
    else:   # eigenvalues: eigh(...)[0] or eigvalsh
        inner = _scale_columns(b, _eye_like(b, vectors), g)
    return (_symmetrise(b, _matmul(b, _matmul(b, vectors, inner), _t(b, vectors))),)


def _reduced_svd(b: Builder, node_id: int) -> tuple[int, int, int]:
    (a,) = b.node(node_id).args
    hermitian = _kwargs(b, node_id).get("hermitian", False)
    return tuple(b.host_call("linalg.svd", [a], output=i, full_matrices=False,
                             hermitian=hermitian) for i in range(3))


def _svd_values_cotangent(b: Builder, u: int, vh: int, g: int) -> int:
    """ds = diag(U^T dA V): g_A = U diag(g_s) Vh."""
    return _matmul(b, _scale_columns(b, u, g), vh)


def _svdvals_vjp(b: Builder, node_id: int, g: int):
    u, _, vh = _reduced_svd(b, node_id)
    return (_svd_values_cotangent(b, u, vh, g),)


def _svd_vjp(b: Builder, node_id: int, g: int):
    """Townsend (2016), for the reduced factors U (m, k), s (k,), Vh (k, n):
    g_A = U [(F * (U^T g_U - g_U^T U)) S + diag(g_s) + S (F * (V^T g_V - g_V^T V))] V^T
          + (I - U U^T) g_U S^-1 V^T + U S^-1 g_V^T (I - V V^T),  F[i, j] = 1/(s_j^2 - s_i^2)."""
    node = b.node(node_id)
    output, (a,) = node.attrs["output"], node.args
    u, s, vh = _reduced_svd(b, node_id)
    if output == 1:
        return (_svd_values_cotangent(b, u, vh, g),)
    m, n = b.node(a).shape[-2:]
    if _kwargs(b, node_id).get("full_matrices", True) and m != n:
        raise _unsupported(b, node_id, "the full U and Vh of a non-square matrix are not unique; "
                           "use full_matrices=False for a gradient")
    gaps = _reciprocal_gaps(b, s, square=True)
    inverse_s = b.div(b.full_like(1, s), s)
    if output == 0:   # g is g_U (m, k)
        u_t_g = _matmul(b, _t(b, u), g)
        inner = _scale_columns(b, b.mul(gaps, b.sub(u_t_g, _t(b, u_t_g))), s)
        outside = b.sub(g, _matmul(b, u, u_t_g))                      # (I - U U^T) g_U
        extra = _matmul(b, _scale_columns(b, outside, inverse_s), vh)
    else:             # g is g_Vh (k, n); g_V = g^T
        v_t_g = _matmul(b, vh, _t(b, g))                              # V^T g_V
        inner = _scale_rows(b, b.mul(gaps, b.sub(v_t_g, _t(b, v_t_g))), s)
        outside = b.sub(g, _matmul(b, _t(b, v_t_g), vh))              # g_V^T (I - V V^T)
        extra = _matmul(b, _scale_columns(b, u, inverse_s), outside)
    return (b.add(_matmul(b, _matmul(b, u, inner), vh), extra),)


def _qr_vjp(b: Builder, node_id: int, g: int):
    """A = Q R (m >= n, reduced): g_A = (g_Q + Q N) R^-T, N = M - tril(M - M^T, -1),
    M = g_R R^T - Q^T g_Q (the transpose of JAX's qr jvp)."""
    node = b.node(node_id)
    (a,) = node.args
    mode, output = _kwargs(b, node_id).get("mode", "reduced"), node.attrs["output"]
    m, n = b.node(a).shape[-2:]
    if mode == "raw" or m < n or (mode == "complete" and m != n):
        raise _unsupported(b, node_id, "only mode='reduced' or 'r' with rows >= columns (or a "
                           "square matrix) has a gradient")
    q, r = (b.host_call("linalg.qr", [a], output=i, mode="reduced") for i in range(2))
    if output == 0:
        g_q, m_matrix = g, b.neg(_matmul(b, _t(b, q), g))
    else:   # R: qr(...)[1] or mode="r"
        g_q, m_matrix = None, _matmul(b, g, _t(b, r))
    lower = _constant_matrix(b, np.tril(np.ones((n, n)), -1), m_matrix)
    n_matrix = b.sub(m_matrix, b.mul(lower, b.sub(m_matrix, _t(b, m_matrix))))
    left = _matmul(b, q, n_matrix)
    if g_q is not None:
        left = b.add(left, g_q)
    return (_matmul(b, left, _t(b, b.host_call("linalg.inv", [r]))),)


HOST_CALL_RULES.update({
    "linalg.det": _det_vjp,
    "linalg.slogdet": _slogdet_vjp,
    "linalg.inv": _inv_vjp,
    "linalg.solve": _solve_vjp,
    "linalg.pinv": _pinv_vjp,
    "linalg.lstsq": _lstsq_vjp,
    "linalg.lstsq_residuals": _lstsq_residuals_vjp,
    "linalg.cholesky": _cholesky_vjp,
    "linalg.eigh": _eigh_vjp,
    "linalg.eigvalsh": _eigh_vjp,
    "linalg.svd": _svd_vjp,
    "linalg.svdvals": _svdvals_vjp,
    "linalg.qr": _qr_vjp,
})
