"""The tracer against NumPy: indexing, in-place idioms and writebacks, pytrees, NEP 50 promotion,
static arguments, closures and constants."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphjit as gj
from helpers import ALL_DTYPES, check_against_numpy, noncontiguous, random_array


def _x(shape=(4, 5), dtype=np.float32, seed=0):
    return random_array(np.random.default_rng(seed), shape, dtype, specials=False)


# ---------------------------------------------------------------- __getitem__

BASIC_KEYS = [
    0, -1, 2, (1, 2), (-1, -2), slice(None), slice(1, 3), slice(None, None, 2),
    slice(None, None, -1), slice(3, 0, -2), slice(-2, None), slice(10, 20), slice(None, -10, -1),
    (slice(None), 1), (Ellipsis, 0), (0, Ellipsis), (None,), (None, 1), (slice(None), None),
    (Ellipsis, None), (1, None, slice(None, None, -2)), (slice(1, None), Ellipsis, None),
    (Ellipsis,), (),
]


@pytest.mark.parametrize("key", BASIC_KEYS, ids=repr)
def test_basic_indexing(key):
    check_against_numpy(lambda a: a[key], _x())


@given(start=st.integers(-6, 6) | st.none(), stop=st.integers(-6, 6) | st.none(),
       step=st.sampled_from([None, 1, 2, 3, -1, -2, -3]), dtype=st.sampled_from(ALL_DTYPES),
       strided=st.booleans())
def test_slices_with_steps(start, stop, step, dtype, strided):
    x = _x((5, 3), dtype)
    x = noncontiguous(x) if strided else x
    check_against_numpy(lambda a: a[start:stop:step], x)
    check_against_numpy(lambda a: a[:, start:stop:step], x)


INTEGER_ARRAY_KEYS = [
    np.array([0, 2, 2]), np.array([-1, 0, -4]), [1, 3], [[0, 1], [2, -1]], range(1, 4),
    range(3, -1, -2), (np.array([0, 1]), np.array([2, -1])), (slice(None), [0, -1, 4]),
    (Ellipsis, [1, 1]), ([0, 3], slice(1, 3)), (np.array([[0], [3]]), np.array([1, 2])),
    ([1, 2], None), (0, [1, 2]), (None, [1, 2], 1), ([], slice(None)),
    (np.array([True, False, True, False]),),
]


@pytest.mark.parametrize("key", INTEGER_ARRAY_KEYS, ids=repr)
def test_integer_array_indexing(key):
    check_against_numpy(lambda a: a[key], _x())


def test_traced_integer_indices_gather():
    x = _x((5, 3))
    idx = np.array([4, 0, -1, -5, 2])
    check_against_numpy(lambda a, i: a[i], x, idx)
    check_against_numpy(lambda a, i: a[i, 1], x, idx)
    check_against_numpy(lambda a, i: a[:, i[:3] % 3], x, idx)
    check_against_numpy(lambda a, i: a[i[:2], i[2:4] % 3], x, idx)
    check_against_numpy(lambda a, i: a[i.astype(np.int32)], x, idx)
    check_against_numpy(lambda a, i: a[np.argmax(a, axis=0)], x, idx)


def test_embedding_lookup_and_one_hot():
    table = _x((10, 4))
    tokens = np.array([[1, 2, 9], [0, 0, 3]])
    check_against_numpy(lambda t, i: t[i], table, tokens)
    check_against_numpy(lambda e, i: e[i], np.eye(10, dtype=np.float32), tokens)
    check_against_numpy(lambda i: (i[..., None] == np.arange(10)).astype(np.float32), tokens)


def test_getitem_of_zero_d_and_iteration():
    x = _x((3, 2))
    check_against_numpy(lambda a: [row.sum() for row in a], x)
    check_against_numpy(lambda a: a.sum()[()], x)
    check_against_numpy(lambda a: a[0, 0][None], x)


# ---------------------------------------------------------------- in-place idioms

def test_setitem_basic_and_broadcast():
    def fn(a):
        b = a.copy()
        b[0] = 1.0
        b[:, 1] = -2
        b[1:3, ::2] = np.arange(3, dtype=np.float32)
        b[..., -1] = b[..., 0] * 2
        b[None, 2] = 7
        return b

    check_against_numpy(fn, _x())


def test_setitem_integer_arrays_and_repeated_indices():
    def fn(a, i):
        b = a.copy()
        b[i] = 0.5                   # repeated indices: last write wins (all the same value)
        c = a.copy()
        c[i] -= 1.0                  # buffered: a repeated index is decremented once, like NumPy
        d = a.copy()
        d[i, 1] += np.arange(5, dtype=np.float32)
        e = a.copy()
        np.add.at(e, i, 1.0)         # unbuffered: repeated indices accumulate
        f = a.copy()
        np.subtract.at(f, (i, 0), np.ones(5, np.float32))
        return b, c, d, e, f

    check_against_numpy(fn, _x((4, 3)), np.array([0, 2, 2, -1, 0]))


def test_setitem_with_traced_values_and_mixed_keys():
    def fn(a, v):
        a = a.copy()
        a[[0, 2], 1:] = v[:2, None]
        a[-1, [0, 2]] = v[2]
        return a

    check_against_numpy(fn, _x((3, 4)), np.array([1.0, 2.0, 3.0], np.float32))


def test_masked_assignment_is_a_select():
    def fn(a):
        b = a.copy()
        b[b < 0] = 0
        c = a.copy()
        c[a > 0.5] = np.inf
        d = a.copy()
        d[np.array([True, False, True, False])] = -1  # a row mask on a 2-d array
        return b, c, d

    check_against_numpy(fn, _x())


def test_augmented_assignment_keeps_dtype():
    def fn(a, b, i):
        a += b
        a *= 2
        a -= 1.5
        a /= 3
        i += 1
        i *= 3
        i //= 2
        i %= 5
        return a, i

    check_against_numpy(fn, _x((3, 2)), _x((2,), seed=1), np.arange(6).reshape(3, 2))


def test_out_arguments():
    def fn(a, b):
        out = np.zeros_like(a)
        np.multiply(a, b, out=out)
        np.exp(out, out=out)
        np.maximum(out, 1.0, out=out)
        np.clip(out, 0, 5, out=out)
        product = np.empty_like(a)
        np.matmul(a, b.T, out=product)
        return out, product

    check_against_numpy(fn, _x((3, 3)), _x((3, 3), seed=1))


def test_writes_to_arguments_are_visible_to_the_caller():
    def update(params, grads, lr):
        for name in params:
            params[name] -= lr * grads[name]
        params["w"][0, 0] = 42.0
        return None

    params = {"w": _x((2, 3)), "b": _x((3,), seed=1)}
    grads = {"w": _x((2, 3), seed=2), "b": _x((3,), seed=3)}
    check_against_numpy(update, params, grads, 0.1)


def test_inplace_on_argument_then_read():
    def fn(a, b):
        a[1:] += b[:-1]
        a *= 2
        b[0] = a.sum()
        return a.mean()

    check_against_numpy(fn, _x((4,)), _x((4,), seed=1))


def test_inplace_on_noncontiguous_argument_writes_back():
    def fn(a):
        a += 1
        return a * 2

    check_against_numpy(fn, noncontiguous(_x((3, 4))))
    check_against_numpy(fn, _x((4, 3)).T)


def test_len_and_python_loops_over_static_sizes():
    def fn(a):
        total = np.zeros(a.shape[1:], a.dtype)
        for i in range(len(a)):
            total = total + a[i] * (i + 1)
        return total, len(a), a.shape[0] * 2

    check_against_numpy(fn, _x())


# ---------------------------------------------------------------- arguments and outputs

def test_pytree_arguments_and_outputs():
    def fn(inputs, weights):
        x, y = inputs
        h = x @ weights["w"] + weights["b"]
        return {"sum": h.sum(), "pair": (h, [y * 2, y.max()]), "none": None, "n": 3}

    inputs = (_x((2, 3)), _x((4,), seed=1))
    weights = {"w": _x((3, 5), seed=2), "b": _x((5,), seed=3)}
    check_against_numpy(fn, inputs, weights)


def test_scalar_outputs_have_numpys_types():
    check_against_numpy(lambda a: a.sum(), _x())                  # np.float32
    check_against_numpy(lambda a: a.shape[0] * 1.5, _x())         # Python float
    check_against_numpy(lambda a, s: s * 2.0, _x(), 3.0)          # Python float argument: weak
    check_against_numpy(lambda a, s: s + 1, _x(), 3)              # Python int stays Python int
    check_against_numpy(lambda a, s: a * s, _x(), np.float64(2))  # NumPy scalar: strong
    check_against_numpy(lambda a: a.argmax(), _x())               # np.int64
    check_against_numpy(lambda a: np.float32(2.0) * a.max(), _x())


@pytest.mark.parametrize("scalar", [2.0, 3, True, np.float64(2.0), np.float32(2.0), np.int32(2),
                                    np.int64(2), np.bool_(True)], ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.bool_], ids=str)
def test_nep50_scalar_arguments(scalar, dtype):
    x = random_array(np.random.default_rng(0), (3,), dtype, specials=False)
    check_against_numpy(lambda a, s: a + s, x, scalar)
    check_against_numpy(lambda a, s: s * a, x, scalar)
    check_against_numpy(lambda a, s: np.where(a > 0, a, s), x, scalar)


def test_nep50_literals():
    x = _x((3,), np.float32)
    check_against_numpy(lambda a: a * 2.0, x)                     # stays float32
    check_against_numpy(lambda a: a * np.float64(2), x)           # float64
    check_against_numpy(lambda a: a + np.int64(2), x)             # float32 (kind wins)
    check_against_numpy(lambda a: a.astype(np.int32) + 2.5, x)    # float64
    check_against_numpy(lambda a: a.astype(np.int32) * 3, x)      # int32
    check_against_numpy(lambda a: (a > 0) + 1, x)                 # int64
    check_against_numpy(lambda a: (a > 0) * 1.5, x)               # float64
    check_against_numpy(lambda a: np.float32(3) / a.astype(np.int64), x)


def test_closed_over_arrays_become_constants():
    table = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    bias = np.float32(0.25)

    def fn(a):
        return a @ table + bias + np.arange(4)

    check_against_numpy(fn, _x((2, 3)))
    lowered = gj.jit(fn).lower(_x((2, 3)))
    assert "const" in lowered.as_text("traced")


def test_arrays_created_inside_are_constants():
    def fn(a):
        mask = np.tril(np.ones((4, 4), dtype=bool))
        return np.where(mask, a, -np.inf), np.eye(4) @ a, np.array([1.0, 2.0]) * 3

    check_against_numpy(fn, _x((4, 4)))


def test_static_argnums_and_argnames():
    def fn(a, axis, scale=1.0, *, keep=False):
        return a.sum(axis=axis, keepdims=keep) * scale

    x = _x((3, 4))
    check_against_numpy(fn, x, 1, static_argnums=1)
    check_against_numpy(fn, x, 0, static_argnums=(1,), kwargs={"keep": True},
                        static_argnames="keep")
    check_against_numpy(fn, x, kwargs={"axis": -1, "scale": 2.0}, static_argnames=("axis",))
    jitted = gj.jit(fn, static_argnums=1)
    jitted(x, 0)
    jitted(x, 1)
    jitted(x, 1)
    assert jitted.cache_info() == {"hits": 1, "misses": 2, "entries": 2}


def test_static_arg_controls_python_flow():
    def fn(a, mode):
        if mode == "relu":
            return np.maximum(a, 0)
        return np.tanh(a)

    check_against_numpy(fn, _x(), "relu", static_argnums=1)
    check_against_numpy(fn, _x(), "tanh", static_argnames="mode")


def test_noncontiguous_and_transposed_arguments():
    x = _x((4, 6))
    check_against_numpy(lambda a, b: a @ b, x[:, ::2], x.T[::2])
    check_against_numpy(lambda a: np.exp(a) + a.sum(0), x[::-1, 1::2])


def test_jit_inside_jit_and_methods():
    inner = gj.jit(lambda a: a * 2)

    def outer(a):
        return inner(a) + 1

    check_against_numpy(outer, _x())


def test_dtype_properties_and_helpers():
    def fn(a):
        return (a.dtype == np.float32, a.itemsize, a.nbytes, np.ndim(a),
                a.astype(a.dtype).shape, a.T.shape)

    check_against_numpy(fn, _x())
