"""Numerical routines built from traced ops (so they fuse and differentiate): np.polyval
(Horner), np.vander, np.cross, np.cov, np.corrcoef, np.trapezoid, np.convolve and np.block;
np.interp and np.unwrap run as host steps. Each follows NumPy's own algorithm step for step, so
dtypes match NumPy's and so does rounding (np.convolve sums its taps in its own order)."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, ShapeError, UnsupportedError

from .creation import astype
from .elementwise import host_call, where
from .indexing import take
from .numpy_api import _first_tracer, implements, lift, lift_all
from .shapes import concatenate, moveaxis, reshape, stack
from .source import user_source
from .tracer import Tracer

# np.convolve with a kernel of at most this many taps is a sum of shifted slices (one fused
# loop); a longer one runs np.convolve itself as a host step
CONVOLVE_UNROLL_LIMIT = 64


def _context(*values: Any) -> Any:
    """The trace of the first tracer among the (possibly nested) arguments."""
    return _first_tracer(values)._ctx


def _static_scalar(value: Any, what: str, function: str) -> Any:
    if isinstance(value, Tracer):
        known = value._known()
        if known is None:
            raise UnsupportedError(f"np.{function}: {what} must be a static number, not a "
                                   "traced value", user_source())
        return known.item()
    return value.item() if isinstance(value, np.generic) else value


def _strong(ctx: Any, value: Any) -> Tracer:
    """An operand as NumPy's asarray makes it: a Python scalar becomes a (strong) 0-d array."""
    if isinstance(value, Tracer) or (isinstance(value, (list, tuple)) and any(
            isinstance(v, Tracer) for v in value)):
        return lift(ctx, value)
    return lift(ctx, np.asarray(value))


# ---------------------------------------------------------------- interpolation

@implements(np.interp)
def interp(x, xp, fp, left=None, right=None, period=None) -> Tracer:
    """A host step; traced `left`/`right` fill the outside points with np.where."""
    options = {"period": _static_scalar(period, "period", "interp")}
    traced_fill = {}
    for name, value in (("left", left), ("right", right)):
        if isinstance(value, Tracer) and value._known() is None:
            traced_fill[name] = value
        elif value is not None:
            options[name] = _static_scalar(value, name, "interp")
    options = {k: v for k, v in options.items() if v is not None}
    result = host_call("interp", [x, xp, fp], **options)
    if traced_fill and options.get("period") is None:
        x, xp = lift_all([x, xp])
        if "left" in traced_fill:
            result = where(x < xp[0], traced_fill["left"], result)
        if "right" in traced_fill:
            result = where(x > xp[-1], traced_fill["right"], result)
    return result


@implements(np.unwrap)
def unwrap(p, discont=None, axis=-1, *, period=2 * np.pi) -> Tracer:
    options = {"discont": _static_scalar(discont, "discont", "unwrap"),
               "period": _static_scalar(period, "period", "unwrap"), "axis": int(axis)}
    return host_call("unwrap", [p], **{k: v for k, v in options.items() if v is not None})


# ---------------------------------------------------------------- polynomials

@implements(np.polyval)
def polyval(p, x) -> Tracer:
    """Horner's rule, as NumPy computes it: y = y * x + c for each coefficient c."""
    ctx = _context(p, x)
    p, x = _strong(ctx, p), _strong(ctx, x)
    if p.ndim == 0:
        raise DTypeError("np.polyval: iteration over a 0-d array (p must be a sequence of "
                         "coefficients)", user_source())
    y = np.zeros_like(x)
    for i in range(p.shape[0]):
        y = y * x + p[i]
    return y


@implements(np.vander)
def vander(x, N=None, increasing=False) -> Tracer:
    """Columns x**0, x**1, ... by repeated multiplication (NumPy's multiply.accumulate)."""
    (x,) = lift_all([x])
    if x.ndim != 1:
        raise ShapeError("x must be a one-dimensional array or sequence.", user_source())
    x = astype(x, np.promote_types(x.dtype, int))
    columns = int(x.shape[0] if N is None else _static_scalar(N, "N", "vander"))
    if columns < 0:
        raise ShapeError("negative dimensions are not allowed", user_source())
    if columns == 0:
        return lift(x._ctx, np.zeros((x.shape[0], 0), x.dtype))
    powers = [np.ones_like(x)]
    for _ in range(1, columns):
        powers.append(x if len(powers) == 1 else powers[-1] * x)
    return stack(powers if increasing else powers[::-1], axis=1)


# ---------------------------------------------------------------- vectors

def _cross_components(a: list, b: list) -> list:
    """NumPy's formulas, in its order of operations (a missing third component is 0)."""
    if len(a) == 2 and len(b) == 2:
        return [a[0] * b[1] - a[1] * b[0]]
    if len(a) == 2:
        return [a[1] * b[2], -(a[0] * b[2]), a[0] * b[1] - a[1] * b[0]]
    if len(b) == 2:
        return [-(a[2] * b[1]), a[2] * b[0], a[0] * b[1] - a[1] * b[0]]
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


@implements(np.cross)
def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None) -> Tracer:
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = lift_all([a, b])
    if a.ndim < 1 or b.ndim < 1:
        raise ShapeError("At least one array has zero dimension", user_source())
    for name, x, ax in (("axisa", a, axisa), ("axisb", b, axisb)):
        if not -x.ndim <= ax < x.ndim:
            raise ShapeError(f"{name}: axis {ax} is out of bounds for array of dimension "
                             f"{x.ndim}", user_source())
    a, b = moveaxis(a, axisa, -1), moveaxis(b, axisb, -1)
    if a.shape[-1] not in (2, 3) or b.shape[-1] not in (2, 3):
        raise ShapeError("incompatible dimensions for cross product\n(dimension must be 2 or 3)",
                         user_source())
    dtype = np.promote_types(a.dtype, b.dtype)
    if dtype.kind == "b":
        raise DTypeError("np.cross of booleans: NumPy's subtract does not support booleans; "
                         "convert with .astype(int) first", user_source())
    a, b = astype(a, dtype), astype(b, dtype)
    components = _cross_components([a[..., i] for i in range(a.shape[-1])],
                                   [b[..., i] for i in range(b.shape[-1])])
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    components = [np.broadcast_to(c, shape) for c in components]
    if len(components) == 1:
        return components[0]
    if not -(len(shape) + 1) <= axisc < len(shape) + 1:
        raise ShapeError(f"axisc: axis {axisc} is out of bounds for array of dimension "
                         f"{len(shape) + 1}", user_source())
    return moveaxis(stack(components, axis=-1), -1, axisc)


# ---------------------------------------------------------------- statistics

def _as_2d(ctx: Any, m: Any, dtype: np.dtype, name: str) -> tuple[Tracer, int]:
    """np.array(m, ndmin=2, dtype=dtype), and m's own number of dimensions."""
    x = astype(_strong(ctx, m), dtype)
    ndim = x.ndim
    if ndim > 2:
        raise ShapeError(f"{name} has more than 2 dimensions", user_source())
    return (reshape(x, (1,) * (2 - ndim) + x.shape) if ndim < 2 else x), ndim


def _weights(ctx: Any, weights: Any, name: str, samples: int) -> Tracer:
    w = astype(_strong(ctx, weights), np.float64)
    if w.ndim > 1:
        raise ShapeError(f"cannot handle multidimensional {name}", user_source())
    if w.shape[0] != samples:
        raise ShapeError(f"incompatible numbers of samples and {name}", user_source())
    known = w._known()
    if known is not None and np.any(known < 0):
        raise ShapeError(f"{name} cannot be negative", user_source())
    if name == "fweights" and known is not None and not np.all(known == np.around(known)):
        raise DTypeError("fweights must be integer", user_source())
    return w


@implements(np.cov)
def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *,
        dtype=None) -> Tracer:
    """NumPy's algorithm: center each row on its (weighted) mean, X @ X.T, times 1 / fact."""
    if ddof is not None and ddof != int(ddof):
        raise ShapeError("ddof must be integer", user_source())
    ctx = _context(m, y, fweights, aweights)
    operands = [_strong(ctx, m)] + ([] if y is None else [_strong(ctx, y)])
    if dtype is None:
        dtype = np.result_type(*(t.dtype for t in operands), np.float64)
    x, m_ndim = _as_2d(ctx, m, dtype, "m")
    if not rowvar and m_ndim != 1:      # NumPy's two tests differ: m by ndim, y by shape
        x = x.T
    if x.shape[0] == 0:
        return lift(ctx, np.array([]).reshape(0, 0))
    if y is not None:
        y, _ = _as_2d(ctx, y, dtype, "y")
        if not rowvar and y.shape[0] != 1:
            y = y.T
        x = concatenate([x, y], axis=0)
    ddof = (1 if bias == 0 else 0) if ddof is None else int(ddof)
    w = None
    if fweights is not None:
        w = _weights(ctx, fweights, "fweights", x.shape[1])
    if aweights is not None:
        aw = _weights(ctx, aweights, "aweights", x.shape[1])
        w = aw if w is None else w * aw
    if w is None:
        avg = np.mean(x, axis=1)
        fact: Any = x.shape[1] - ddof
        if fact <= 0:
            fact = 0.0
    else:
        w_sum = np.sum(astype(w, np.result_type(dtype, w.dtype)))
        avg = np.sum(x * w, axis=1) / w_sum
        if ddof == 0:
            fact = w_sum
        elif aweights is None:
            fact = w_sum - ddof
        else:
            fact = w_sum - ddof * np.sum(w * aw) / w_sum
        fact = where(fact <= 0, 0.0, fact)
    x = astype(x - reshape(avg, (avg.shape[0], 1)), x.dtype)     # NumPy's X -= avg[:, None]
    c = np.dot(x, (x if w is None else x * w).T)
    with np.errstate(divide="ignore"):
        c = astype(c * np.true_divide(1, fact), c.dtype)         # NumPy's c *= 1 / fact
    return np.squeeze(c)


@implements(np.corrcoef)
def corrcoef(x, y=None, rowvar=True, *, dtype=None) -> Tracer:
    c = cov(x, y, rowvar, dtype=dtype)
    if c.ndim == 0:
        return c / c
    stddev = np.sqrt(np.diagonal(c))
    c = c / reshape(stddev, (-1, 1))
    c = c / reshape(stddev, (1, -1))
    return np.clip(c, -1, 1)


# ---------------------------------------------------------------- integration

def _diff(x: Tracer, axis: int) -> Tracer:
    axis %= x.ndim
    later = tuple(slice(1, None) if i == axis else slice(None) for i in range(x.ndim))
    earlier = tuple(slice(None, -1) if i == axis else slice(None) for i in range(x.ndim))
    return x[later] - x[earlier]


def trapezoid(y, x=None, dx=1.0, axis=-1) -> Tracer:
    """The trapezoidal rule, in NumPy's order: sum(d * (y[1:] + y[:-1]) / 2.0)."""
    ctx = _context(y, x, dx)
    y = _strong(ctx, y)
    if not -y.ndim <= axis < max(y.ndim, 1) or y.ndim == 0:
        raise ShapeError(f"axis {axis} is out of bounds for array of dimension {y.ndim}",
                         user_source())
    if x is None:
        d = dx
    else:
        x = _strong(ctx, x)
        if x.ndim == 1:
            d = _diff(x, 0)
            shape = [1] * y.ndim
            shape[axis] = d.shape[0]
            d = reshape(d, tuple(shape))
        else:
            d = _diff(x, axis)
    later = tuple(slice(1, None) if i == axis % y.ndim else slice(None) for i in range(y.ndim))
    earlier = tuple(slice(None, -1) if i == axis % y.ndim else slice(None)
                    for i in range(y.ndim))
    return np.sum(d * (y[later] + y[earlier]) / 2.0, axis=axis)


for _name in ("trapezoid", "trapz"):
    if hasattr(np, _name):
        implements(getattr(np, _name))(trapezoid)


# ---------------------------------------------------------------- signals

@implements(np.convolve)
def convolve(a, v, mode="full") -> Tracer:
    """A sum over the kernel's taps of shifted slices (one fused loop for the bulk), then
    NumPy's window for `same`/`valid`; a long kernel is a host step."""
    ctx = _context(a, v)
    a, v = (reshape(t, (1,)) if t.ndim == 0 else t for t in (_strong(ctx, a), _strong(ctx, v)))
    if a.ndim != 1 or v.ndim != 1:
        raise ShapeError("object too deep for desired array (np.convolve takes 1-D inputs)",
                         user_source())
    if a.shape[0] == 0:
        raise ShapeError("a cannot be empty", user_source())
    if v.shape[0] == 0:
        raise ShapeError("v cannot be empty", user_source())
    if mode not in ("full", "same", "valid"):
        raise ShapeError(f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})",
                         user_source())
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    n, m = a.shape[0], v.shape[0]
    if m > CONVOLVE_UNROLL_LIMIT:
        return host_call("convolve", [a, v], mode=mode)
    dtype = np.result_type(a.dtype, v.dtype)
    a, v = astype(a, dtype), astype(v, dtype)
    # full[k] = sum over taps t of a[k - t] * v[t] where 0 <= k - t < n. The middle outputs
    # (NumPy's 'valid' window) see every tap: a sum of shifted slices of `a`, one fused loop.
    middle = _sum_terms([a[m - 1 - t:n - t] * v[t] for t in range(m)])
    if mode == "valid" or m == 1:
        return middle
    # the m - 1 outputs on each edge see fewer taps: small (m - 1, m) gathers whose missing
    # taps are masked out (never multiplied, so an inf meets no padding zero)
    k, t = np.arange(m - 1)[:, None], np.arange(m)[None, :]
    left = _edge(a[:m - 1], v, k - t, k >= t)
    right = _edge(a[n - m + 1:], v, k - t + m - 1, t > k)
    start, stop = ((m - 1) // 2,) * 2 if mode == "same" else (0, m - 1)   # same: n outputs
    return concatenate([left[start:], middle, right[:stop]] if stop else [left[start:], middle])


def _sum_terms(terms: list) -> Tracer:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _edge(window: Tracer, v: Tracer, index: np.ndarray, valid: np.ndarray) -> Tracer:
    """sum over t of window[index[k, t]] * v[t] where valid[k, t]."""
    products = take(window, np.where(valid, index, 0)) * reshape(v, (1, v.shape[0]))
    zero = np.zeros((), products.dtype)
    return np.sum(where(valid, products, zero), axis=1, dtype=products.dtype)


# ---------------------------------------------------------------- assembling blocks

def _block_depth(arrays: Any, where: str) -> int:
    if isinstance(arrays, tuple):
        raise DTypeError(f"{where} is a tuple. Only lists can be used to arrange blocks, and "
                         "np.block does not allow implicit conversion from tuple to ndarray.",
                         user_source())
    if not isinstance(arrays, list):
        return 0
    if not arrays:
        raise ShapeError(f"List at {where} cannot be empty", user_source())
    depths = {_block_depth(a, f"{where}[{i}]") for i, a in enumerate(arrays)}
    if len(depths) != 1:
        raise ShapeError(f"List depths are mismatched under {where}: the nested lists of "
                         "np.block must all be equally deep", user_source())
    return depths.pop() + 1


def _block_leaves(arrays: Any) -> list:
    if isinstance(arrays, list):
        return [leaf for a in arrays for leaf in _block_leaves(a)]
    return [arrays]


def _assemble(ctx: Any, arrays: Any, depth: int, ndim: int) -> Tracer:
    if not isinstance(arrays, list):
        leaf = _strong(ctx, arrays)
        return reshape(leaf, (1,) * (ndim - leaf.ndim) + leaf.shape)
    parts = [_assemble(ctx, a, depth - 1, ndim) for a in arrays]
    try:
        return concatenate(parts, axis=-depth)
    except ShapeError:
        raise ShapeError("np.block: the blocks' shapes do not line up along axis "
                         f"{-depth} ({[p.shape for p in parts]})", user_source()) from None


@implements(np.block)
def block(arrays) -> Tracer:
    """Nested lists: the innermost joins along the last axis, the next along the one before."""
    depth = _block_depth(arrays, "arrays")
    leaves = _block_leaves(arrays)
    ctx = _context(leaves)
    ndim = max([depth] + [np.ndim(leaf) if not isinstance(leaf, Tracer) else leaf.ndim
                          for leaf in leaves])
    if depth == 0:
        return np.copy(_strong(ctx, arrays))
    return _assemble(ctx, arrays, depth, ndim)
