"""NumPy's mutation semantics, traced (issue 10): arrays made inside the function are writable,
writes through views reach every alias, arguments are written back (aliased ones too), NumPy
scalars are immutable. Every test compares with the undecorated NumPy function, including the
final contents of every argument (tests/helpers.py `check_against_numpy`)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit.compiler.errors import ArgumentError, GraphjitError, ReadOnlyError, UnsupportedError

from helpers import check_against_numpy

RNG = np.random.default_rng(0)


def arr(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- the issue's snippets

def fill_rows(x):
    out = np.zeros((3, 4))
    for i in range(3):
        out[i] = 2 * x[i]
    return out


def accumulate(g):
    G = np.zeros(g.shape)
    G += g * g
    return G


def scatter(v, i):
    a = np.zeros(4)
    np.add.at(a, i, v)
    return a


def reset(x):
    d = np.zeros_like(x)
    d.fill(0)
    return d + x


def relax(g):
    inner, left = g[1:], g[:-1]
    inner[:] = inner + left
    return left.sum()


def bump(U):
    u = U[1:-1]
    u += 1.0


def sweeps(x0, b):
    x = x0 * 1.0
    for _ in range(3):
        x[1:-1, 1:-1] = (b[1:-1, 1:-1] + x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2]
                         + x[1:-1, 2:]) * 0.2
        x[0, 1:-1] = x[1, 1:-1]
        x[-1, 1:-1] = x[-2, 1:-1]
    return x


@pytest.mark.parametrize("fn, args", [
    (fill_rows, (arr(3, 4),)),
    (accumulate, (arr(3, 4),)),
    (scatter, (arr(3), np.array([0, 1, 1]))),
    (reset, (arr(2, 3),)),
    (relax, (np.arange(4.0),)),
    (bump, (arr(5, 4),)),
    (sweeps, (arr(6, 6), arr(6, 6))),
], ids=lambda v: getattr(v, "__name__", ""))
def test_issue_snippets(fn, args):
    check_against_numpy(fn, *args)


def test_aliased_arguments_get_numpys_semantics():
    @gj.jit
    def f(x, y):
        x += 1
        y += 1

    a = np.arange(4.0)
    f(a, a)
    np.testing.assert_array_equal(a, [2, 3, 4, 5])
    b, c = np.arange(4.0), np.arange(4.0)
    f(b, c)   # the same specialisation without aliasing: each written once
    np.testing.assert_array_equal(b, [1, 2, 3, 4])
    np.testing.assert_array_equal(c, [1, 2, 3, 4])
    f(a, a)
    np.testing.assert_array_equal(a, [4, 5, 6, 7])


def test_alias_of_a_read_argument():
    def g(x, y):
        x *= 2
        return y + 1   # y is x: reads the written value

    a = np.arange(3.0)
    expected_a = a.copy()
    expected = g(expected_a, expected_a)
    got = gj.jit(g)(a, a)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(a, expected_a)


def test_disjoint_views_of_one_array_are_written_back():
    def g(x, y):
        x[:] = y * 2
        return x.sum()

    a, b = np.arange(8.0), np.arange(8.0)
    assert gj.jit(g)(a[:4], a[4:]) == g(b[:4], b[4:])
    np.testing.assert_array_equal(a, b)


def test_overlapping_written_arguments_are_refused():
    @gj.jit
    def g(x, y):
        x[:] = y * 2

    a = np.arange(5.0)
    with pytest.raises(ArgumentError, match="overlap in memory"):
        g(a[:4], a[1:])
    np.testing.assert_array_equal(a, np.arange(5.0))   # nothing half-written


def test_overlapping_read_only_arguments_are_fine():
    check_against_numpy(lambda x, y: x * y, np.arange(5.0)[:4], np.arange(5.0)[1:])
    a = np.arange(5.0)
    assert np.allclose(gj.jit(lambda x, y: x * y)(a[:4], a[1:]), a[:4] * a[1:])


# ---------------------------------------------------------------- views and writes through them

def write_through_views(a):
    v = a[1:]
    v[0] = 5.0
    t = a.reshape(2, 3).T
    t[1] += 10
    a[::2] *= -1
    return v * 1, t * 1


def chained_setitem(a):
    a[1:][::2] = 7.0
    a[0][1] += 3.0    # 2-d: a[0] is a view
    s = a[2:, 1:]
    s[s > 0] = 0.0    # a mask into a view
    return a.sum()


def views_see_later_writes(x):
    out = np.zeros((4, 3))
    row = out[2]
    col = out[:, 1]
    out[2, :] = x
    col += 1.0
    return row * 1, col * 1, out


def squeeze_expand_ravel(x):
    a = x.copy()
    a.reshape(-1)[3] = 100.0
    np.expand_dims(a, 0)[0, 0, 0] = -1.0
    a[:, 1:2].squeeze(1)[:] = 42.0
    a.ravel()[0] += 1.0
    a.T.ravel()[0] = 9.0     # ravel of a transpose is a copy: no write into a
    a[...] += 0.5
    return a


def advanced_writes(a, idx):
    a[idx] = 0.0
    a[[0, 2], 1] += 1.0
    a[:, [True, False, True, False]] *= 3.0
    b = a[1:]
    b[idx[:1]] = -5.0
    return a


def inplace_out_and_ufunc_at(x, i):
    y = np.zeros(5)
    np.multiply(x, 2.0, out=y[:3])
    np.add.at(y[1:], i, 1.0)
    np.subtract.at(y, i, x[: i.size])
    np.maximum.at(y, [0, 4], 7.0)
    return y


def inplace_functions(x):
    a = np.zeros(6)
    np.put(a, [0, 2], x[:2])
    np.putmask(a, a == 0, -1.0)
    b = np.ones((2, 3))
    np.copyto(b, x[:3], where=np.array([True, False, True]))
    np.copyto(b[1], x[3])
    c = np.zeros(5)
    np.place(c, np.arange(5) % 2 == 0, x[:2])
    d = np.empty(3)
    d.fill(2.5)
    return a, b, c, d


@pytest.mark.parametrize("fn, args", [
    (write_through_views, (np.arange(6.0),)),
    (chained_setitem, (arr(4, 3),)),
    (views_see_later_writes, (arr(3),)),
    (squeeze_expand_ravel, (arr(3, 4),)),
    (advanced_writes, (arr(4, 4), np.array([1, 3]))),
    (inplace_out_and_ufunc_at, (arr(3), np.array([0, 2, 2]))),
    (inplace_functions, (arr(6),)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_views_and_writes(fn, args):
    check_against_numpy(fn, *args)


def test_broadcast_to_is_read_only():
    def fn(x):
        b = np.broadcast_to(x, (3, 4))
        b[0] = 1.0
        return b

    with pytest.raises(ReadOnlyError, match="read-only"):
        gj.jit(fn)(arr(4))


def test_int_dtype_in_place_keeps_dtype():
    def fn(x):
        a = np.zeros(4, dtype=np.int32)
        a[1:3] = x[:2]      # float into int: NumPy casts (unsafe for setitem)
        a += 2
        return a

    check_against_numpy(fn, np.array([1.7, 2.2, 3.0]))


# ---------------------------------------------------------------- arrays made in the function

def creations(x):
    a = np.arange(6).reshape(2, 3).astype(np.float64)
    a[0] += x[0]
    e = np.eye(3)
    e[1, 1] = x[1]
    i = np.identity(2)
    i[0] = x[:2]
    f = np.full((2, 2), x[2])
    f[0, 0] = 0.0
    l = np.linspace(0, 1, 4)
    l[1:3] = x[:2]
    t = np.tri(3)
    t *= x[0]
    o = np.ones_like(x)
    o[0] = 5.0
    arr_ = np.array([x[0], 1.0, x[1]])
    arr_[1] = 3.0
    z = np.asarray([1.0, 2.0])
    z += x[:2]
    c = x.copy()
    c[0] = 100.0
    return a, e, i, f, l, t, o, arr_, z, c


def test_creation_functions_make_writable_arrays():
    check_against_numpy(creations, arr(3))


def test_constants_made_in_the_function_stay_usable_as_indices():
    def fn(x):
        m = np.zeros(x.shape[0], bool)
        m[1] = True
        idx = np.arange(3)
        k = int(np.argmax(np.array([0, 5, 1])))
        return x[m], x[idx * 2 % 3], x[k], np.tril(np.ones((3, 3))) @ x

    check_against_numpy(fn, arr(3))


def test_interception_is_invisible_to_other_threads():
    seen = {}
    started, release = threading.Event(), threading.Event()

    def other():
        started.wait(10)
        seen["zeros"] = type(np.zeros(3))
        seen["array"] = type(np.array([1.0, 2.0]))
        release.set()

    def fn(x):
        started.set()
        release.wait(10)    # the other thread runs NumPy while this one traces
        out = np.zeros(3)
        out[0] = x[0]
        return out

    thread = threading.Thread(target=other)
    thread.start()
    result = gj.jit(fn)(np.array([4.0, 5.0, 6.0]))
    thread.join()
    assert seen == {"zeros": np.ndarray, "array": np.ndarray}
    np.testing.assert_array_equal(result, [4.0, 0.0, 0.0])
    assert np.zeros is np.zeros.__class__.__call__ or not hasattr(np.zeros, "__wrapped__")


# ---------------------------------------------------------------- NumPy scalars, closures

def test_numpy_scalars_are_immutable():
    def fn(a):
        v = a[0]            # a NumPy scalar (a copy), not a view
        v += 1.0
        s = a.sum()
        s += 1.0
        return v, s, a

    check_against_numpy(fn, arr(4))


def test_numpy_scalar_argument_is_not_written_back():
    def fn(v):
        v += 1
        return v

    check_against_numpy(fn, np.float32(2.0))
    check_against_numpy(fn, np.array(2.0))   # a 0-d array is written back, as NumPy does


TABLE = np.arange(12.0).reshape(4, 3)


def test_closed_over_array_with_traced_index_names_the_fix():
    def fn(ids):
        return TABLE[ids]

    with pytest.raises(GraphjitError, match=r"^test_mutation\.py:\d+: indexing a NumPy array "
                       r"that is not traced.*np\.take\(table, ids, axis=0\)") as error:
        gj.jit(fn)(np.array([0, 2]))
    assert "storing" not in str(error.value)
    check_against_numpy(lambda ids: np.take(TABLE, ids, axis=0), np.array([0, 2]))


def test_writing_into_a_closed_over_array_is_refused():
    def fn(x):
        TABLE[0] = x
        return x

    with pytest.raises(GraphjitError, match=r"storing into a NumPy array that was not made "
                       r"inside the function.*np\.array\(table\)") as error:
        gj.jit(fn)(arr(3))
    assert "np.take" not in str(error.value)

    def fn2(x):
        np.add(x, 1.0, out=TABLE[0])

    with pytest.raises(UnsupportedError, match="closed-over"):
        gj.jit(fn2)(arr(3))
    np.testing.assert_array_equal(TABLE, np.arange(12.0).reshape(4, 3))


# ---------------------------------------------------------------- realistic snippets

def kv_cache_decode(q, ks, vs):
    steps, d = ks.shape
    k_cache = np.zeros((steps, d))
    v_cache = np.zeros((steps, d))
    outs = np.empty((steps, d))
    for t in range(steps):
        k_cache[t] = ks[t]
        v_cache[t, :] = vs[t]
        scores = k_cache[: t + 1] @ q[t] / np.sqrt(d)
        w = np.exp(scores - scores.max())
        w /= w.sum()
        outs[t] = w @ v_cache[: t + 1]
    return outs


def im2col(x, k=2):
    c, h, w = x.shape
    oh, ow = h - k + 1, w - k + 1
    cols = np.zeros((c * k * k, oh * ow))
    row = 0
    for ch in range(c):
        for i in range(k):
            for j in range(k):
                cols[row] = x[ch, i:i + oh, j:j + ow].reshape(-1)
                row += 1
    return cols


def stencil_loops(u):
    out = u.copy()
    n = u.shape[0]
    for i in range(1, n - 1):
        out[i] = 0.5 * u[i] + 0.25 * (u[i - 1] + u[i + 1])
    return out


def rnn_states(xs, h0, W, U):
    steps = xs.shape[0]
    hs = np.zeros((steps + 1, h0.shape[0]))
    hs[0] = h0
    for t in range(steps):
        hs[t + 1] = np.tanh(W @ hs[t] + U @ xs[t])
    return hs


@pytest.mark.parametrize("fn, args", [
    (kv_cache_decode, (arr(4, 3), arr(4, 3), arr(4, 3))),
    (im2col, (arr(2, 4, 4),)),
    (stencil_loops, (arr(6),)),
    (rnn_states, (arr(4, 2), arr(3), arr(3, 3), arr(3, 2))),
], ids=lambda v: getattr(v, "__name__", ""))
def test_model_code(fn, args):
    check_against_numpy(fn, *args)


# ---------------------------------------------------------------- random programs of views

VIEW_STEPS = st.sampled_from(["slice", "step", "T", "reshape", "row", "none"])
WRITES = st.sampled_from(["setitem", "iadd", "imul", "add_at", "mask", "fill"])


def _view(a, kind):
    if kind == "slice" and a.shape[0] > 1:
        return a[1:]
    if kind == "step":
        return a[::2]
    if kind == "T":
        return a.T
    if kind == "reshape" and a.ndim == 2:
        return a.reshape(-1)   # a view where NumPy can make one, else a copy (in both runs)
    if kind == "row" and a.ndim == 2:
        return a[-1]
    return a[...]


def _apply_write(v, kind, value):
    if kind == "setitem":
        v[...] = value
    elif kind == "iadd":
        v += value
    elif kind == "imul":
        v *= 0.5
    elif kind == "add_at":
        np.add.at(v, (0,) * v.ndim, value)
    elif kind == "mask":
        v[v > 0] = -value
    else:
        v.fill(value)


def make_program(plan):
    def program(x):
        base = x * 1.0
        live = [base]
        for steps, write, value in plan:
            v = live[-1 if steps[0] != "none" else 0]
            for kind in steps:
                if v.size > 1:
                    v = _view(v, kind)
            live.append(v)
            _apply_write(v, write, value)
            live.append(base[1:] + 0.0)     # a read after the write
        return tuple(a * 1 for a in live)

    return program


@settings(max_examples=20)
@given(st.lists(st.tuples(st.lists(VIEW_STEPS, min_size=1, max_size=3), WRITES,
                          st.sampled_from([1.0, 2.5, -3.0])), min_size=1, max_size=4))
def test_random_programs_of_views_and_writes(plan):
    program = make_program(plan)
    x = np.arange(12.0).reshape(3, 4) - 5.0
    expected = program(x.copy())
    got = gj.jit(program, target="reference")(x.copy())
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e)


# ---------------------------------------------------------------- autodiff through writes

def finite_differences(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (f(xp) - f(xm)) / (2 * eps)
    return g


def loss_fill_and_slices(x):
    out = np.zeros((3, 4))
    for i in range(3):
        out[i] = np.sin(x[i]) * x[(i + 1) % 3]
    out[:, 1:] += out[:, :-1] * 2
    v = out[1:]
    v[0, 0] = x[0, 0] ** 2        # a write through a view
    return (out ** 2).sum()


def loss_scatter(x):
    a = np.zeros(5)
    np.add.at(a, np.array([0, 1, 1, 4]), x[:4] * x[1:])
    a[2:] *= x[:3]
    a[np.array([0, 3])] = x[4]
    return (a * a).sum()


def loss_bptt(x):
    hs = np.zeros((4, 3))
    for t in range(1, 4):
        hs[t] = np.tanh(hs[t - 1] * 0.5 + x[t - 1])
    return (hs[1:] ** 2).sum()


@pytest.mark.parametrize("fn, shape", [
    (loss_fill_and_slices, (3, 4)), (loss_scatter, (5,)), (loss_bptt, (3, 3)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_grad_through_writes_matches_finite_differences(fn, shape):
    x = np.random.default_rng(3).normal(size=shape)
    got = gj.jit(gj.grad(fn))(x)
    np.testing.assert_allclose(got, finite_differences(fn, x), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- ufunc.at for every ufunc

UFUNC_AT_CASES = [
    (np.multiply, np.float64, 1.5), (np.maximum, np.float64, 0.25), (np.minimum, np.float32, 0.0),
    (np.divide, np.float64, 2.0), (np.power, np.float64, 2.0), (np.fmax, np.float64, np.nan),
    (np.bitwise_or, np.int64, 6), (np.left_shift, np.int32, 1), (np.add, np.int64, -0.5),
    (np.subtract, np.int8, 300.7), (np.add, np.float32, 1e-9), (np.negative, np.float64, None),
]


@pytest.mark.parametrize("ufunc,dtype,value", UFUNC_AT_CASES,
                         ids=lambda v: getattr(v, "__name__", None) or str(v))
@pytest.mark.parametrize("traced_indices", [False, True])
def test_ufunc_at_applies_once_per_repeated_index(ufunc, dtype, value, traced_indices):
    """Repeated indices apply the ufunc repeatedly (unbuffered), as NumPy's ufunc.at does,
    including NumPy's unsafe cast of the results back into the target's dtype."""
    values = () if value is None else (value,)
    constant = np.array([0, 2, 2, 4, 0])

    def update(a, i):
        np.multiply(a, 1, out=a)                   # a traced write before the scatter
        ufunc.at(a, i if traced_indices else constant, *values)
        return a.sum()

    a = (np.arange(6) + 1).astype(dtype)
    check_against_numpy(update, a, constant)


def test_ufunc_at_through_a_view_and_with_a_value_array():
    def update(x, i, v):
        y = x * 1.0
        np.maximum.at(y[:, 1:], (i, i), v)        # a 2-D scatter into a view
        np.multiply.at(y[0], i, 2.0)
        return y

    check_against_numpy(update, arr(4, 5), np.array([1, 1, 3]), arr(3))


def test_ufunc_at_with_repeats_refuses_differentiation_clearly():
    def loss(x, i):
        y = x * 1.0
        np.multiply.at(y, i, 2.0)
        return y.sum()

    with pytest.raises(GraphjitError, match=r"multiply\.at"):
        gj.jit(gj.grad(loss))(arr(4), np.array([0, 0, 1]))
