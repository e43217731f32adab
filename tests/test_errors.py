"""Every error the tracer raises on purpose: a graphjit error, raised at trace time, whose message
names this file and the offending line and says what to do instead."""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import graphjit as gj
from graphjit.compiler.dtypes import supported_list
from graphjit import ArgumentError, DTypeError, ShapeError, TracerBoolError, UnsupportedError

THIS_FILE = os.path.basename(__file__)


def line_of(fn, text: str) -> int:
    """The absolute line number of the first line of `fn`'s source that contains `text`."""
    lines, first = inspect.getsourcelines(fn)
    for offset, line in enumerate(lines):
        if text in line and "line_of" not in line and not line.lstrip().startswith("def "):
            return first + offset
    raise AssertionError(f"{text!r} not in the source of {fn.__name__}")


def expect_error(fn, error: type, line: int, *args, hints: tuple[str, ...] = (), **jit_kw):
    with pytest.raises(error) as info:
        gj.jit(fn, **jit_kw)(*args)
    message = str(info.value)
    assert isinstance(info.value, gj.GraphjitError)
    assert f"{THIS_FILE}:{line}" in message, message
    for hint in hints:
        assert hint in message, f"{hint!r} missing from: {message}"
    assert info.value.__cause__ is None  # no chained traceback from NumPy, LLVM or Numba
    return message


X = np.arange(12, dtype=np.float32).reshape(3, 4)


# ---------------------------------------------------------------- concrete values of tracers

def test_if_on_a_traced_value():
    def fn(a):
        if a.sum() > 0:
            return a
        return -a

    expect_error(fn, TracerBoolError, line_of(fn, "if a.sum()"), X,
                 hints=("np.where", "static_argnums"))


def test_while_on_a_traced_value():
    def fn(a):
        while a.max() > 1:
            a = a / 2
        return a

    expect_error(fn, TracerBoolError, line_of(fn, "while"), X, hints=("np.where",))


def test_bool_float_int_of_traced_values():
    def as_bool(a):
        return bool(a.any())

    def as_float(a):
        return a * float(a.mean())

    def as_int(a):
        return a[: int(a.argmax())]

    def logical_and(a):
        return (a > 0) and (a < 5)

    expect_error(as_bool, TracerBoolError, line_of(as_bool, "bool("), X, hints=("bool()",))
    expect_error(as_float, TracerBoolError, line_of(as_float, "float("), X, hints=("float()",))
    expect_error(as_int, TracerBoolError, line_of(as_int, "int("), X, hints=("int()",))
    expect_error(logical_and, TracerBoolError, line_of(logical_and, " and "), X,
                 hints=("np.where",))


def test_item_and_tolist_of_traced_values():
    def item(a):
        return a.sum().item()

    expect_error(item, TracerBoolError, line_of(item, ".item()"), X)


def test_storing_into_a_closed_over_array():
    # arrays made inside the function are traced and writable (tests/test_mutation.py); one made
    # outside it is not, and the error says what to do
    out = np.zeros(X.shape, np.float32)

    def fn(a):
        out[0] = a[0]
        return out

    expect_error(fn, TracerBoolError, line_of(fn, "out[0] ="), X, hints=("np.array(table)",))


# ---------------------------------------------------------------- unsupported functions

def test_unsupported_numpy_function():
    def fn(a):
        return np.roots(a[0])

    expect_error(fn, UnsupportedError, line_of(fn, "roots"), X,
                 hints=("np.roots is not supported", "pass the result in as an argument"))


def test_unsupported_ufunc():
    def fn(a):
        return np.matvec(a, a[0])

    expect_error(fn, UnsupportedError, line_of(fn, "matvec"), X, hints=("np.matvec",))


def test_data_dependent_shape():
    # tests/test_sorting_functions.py checks every such function; this is the family's message
    def fn(a):
        return np.unique(a[:3, :3])

    expect_error(fn, UnsupportedError, line_of(fn, "unique"), X,
                 hints=("np.unique's result has a shape that depends on the values",
                        "pass the result in"))


def test_unsupported_pad_mode():
    def fn(a):
        return np.pad(a, 1, mode="reflect")

    expect_error(fn, UnsupportedError, line_of(fn, "np.pad"), X, hints=("mode='constant'",))


# ---------------------------------------------------------------- shapes

def test_incompatible_broadcast():
    def fn(a, b):
        return a + b

    message = expect_error(fn, ShapeError, line_of(fn, "a + b"), X, np.ones(5, np.float32),
                           hints=("broadcast",))
    assert "(3, 4)" in message and "(5,)" in message


def test_incompatible_broadcast_in_where():
    def fn(a, b):
        return np.where(a > 0, a, b)

    expect_error(fn, ShapeError, line_of(fn, "np.where"), X, np.ones(5, np.float32),
                 hints=("broadcast",))


def test_incompatible_matmul():
    def fn(a, b):
        return a @ b

    message = expect_error(fn, ShapeError, line_of(fn, "a @ b"), X, np.ones((5, 2), np.float32))
    assert "(3, 4)" in message and "(5, 2)" in message


def test_bad_reshape():
    def fn(a):
        return a.reshape(5, -1)

    expect_error(fn, ShapeError, line_of(fn, "reshape"), X, hints=("cannot reshape",))


def test_bad_einsum():
    def fn(a, b):
        return np.einsum("ij,jk->ik", a, b)

    expect_error(fn, ShapeError, line_of(fn, "einsum"), X, np.ones((5, 2), np.float32))


def test_out_of_bounds_index():
    def fn(a):
        return a[:, 7]

    with pytest.raises(IndexError, match=f"{THIS_FILE}:{line_of(fn, 'a[:, 7]')}"):
        gj.jit(fn)(X)


# ---------------------------------------------------------------- data-dependent shapes

def test_boolean_mask_read_suggests_where():
    def fn(a):
        return a[a > 2].sum()

    expect_error(fn, UnsupportedError, line_of(fn, "a[a > 2]"), X,
                 hints=("np.where", "depends on the data"))


def test_one_argument_where():
    def fn(a):
        return np.where(a > 2)

    expect_error(fn, UnsupportedError, line_of(fn, "np.where"), X,
                 hints=("np.where(condition, x, y)",))


# ---------------------------------------------------------------- arguments and dtypes

def test_unsupported_argument_type():
    def fn(a, name):
        return a

    line = line_of(test_unsupported_argument_type, 'gj.jit(fn)(X, "relu")')
    with pytest.raises(ArgumentError) as info:
        gj.jit(fn)(X, "relu")
    message = str(info.value)
    assert f"{THIS_FILE}:{line}" in message
    assert "static_argnums" in message and "str" in message


def test_unsupported_argument_object():
    class Opaque:
        pass

    def fn(a, obj):
        return a

    line = line_of(test_unsupported_argument_object, "gj.jit(fn)(X, Opaque())")
    with pytest.raises(ArgumentError, match=f"{THIS_FILE}:{line}"):
        gj.jit(fn)(X, Opaque())


def test_wrong_argument_dtype():
    def fn(a):
        return a * 2

    line = line_of(test_wrong_argument_dtype, "gj.jit(fn)(X.astype(np.complex64))")
    with pytest.raises(DTypeError) as info:
        gj.jit(fn)(X.astype(np.complex64))
    assert f"{THIS_FILE}:{line}" in str(info.value)
    assert ".astype()" in str(info.value)
    line = line_of(test_wrong_argument_dtype, "gj.jit(fn)(X.astype(np.longdouble))")
    with pytest.raises(DTypeError, match=f"{THIS_FILE}:{line}"):
        gj.jit(fn)(X.astype(np.longdouble))
    np.testing.assert_array_equal(gj.jit(fn)(X.astype(np.float16)), X.astype(np.float16) * 2)


def test_wrong_dtype_inside():
    def to_complex(a):
        return a.astype(np.complex64)

    def float_bitwise(a):
        return a & 3            # NumPy: bitwise_and is not defined for floats

    expect_error(to_complex, DTypeError, line_of(to_complex, "astype"), X,
                 hints=(supported_list("or"),))
    expect_error(float_bitwise, DTypeError, line_of(float_bitwise, "a & 3"), X,
                 hints=("bitwise_and", "float32"))


def test_bitwise_operators_on_integers_are_numpys_bitwise_ufuncs():
    def bitwise(a):
        i = a.astype(np.int32)
        j = (i & 3) | (i >> 1) ^ ~i
        j <<= 1
        return j, 5 & i, (i > 2) & (i < 5)

    for got, want in zip(gj.jit(bitwise)(X), bitwise(X)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_inplace_cast_that_numpy_rejects():
    def fn(a):
        i = a.astype(np.int32)
        i += a
        return i

    expect_error(fn, DTypeError, line_of(fn, "i += a"), X, hints=("same_kind", ".astype()"))


def test_unsupported_return_value():
    def fn(a):
        return "done"

    line = line_of(test_unsupported_return_value, "gj.jit(fn)(X)")
    with pytest.raises(UnsupportedError, match=f"{THIS_FILE}:{line}"):
        gj.jit(fn)(X)


def test_errors_name_the_innermost_user_line_in_helpers():
    def helper(a):
        return a @ a

    def fn(a):
        return helper(a) + 1

    expect_error(fn, ShapeError, line_of(helper, "a @ a"), X)


# ---------------------------------------------------------------- frozen randomness

@pytest.mark.parametrize("draw", [
    lambda a: a + np.random.rand(*a.shape),
    lambda a: a * np.random.normal(size=a.shape),
    lambda a: a + __import__("random").random(),
])
def test_global_random_draws_warn_once_that_they_are_frozen(draw):
    fn = gj.jit(draw)
    with pytest.warns(RuntimeWarning, match=r"gj\.random") as caught:
        first = fn(X)
    assert any("trace time" in str(w.message) for w in caught)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(X[:2])                     # a retrace of the same function: no second warning
    np.testing.assert_array_equal(fn(X), first)   # the draw is frozen, as the warning says


def test_explicit_keys_do_not_warn():
    import warnings
    fn = gj.jit(lambda key, a: a + gj.random.normal(key, a.shape, dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(gj.random.key(0), X)


# ---------------------------------------------------------------- read-only and out of memory

def test_writing_into_a_read_only_argument_is_refused_before_anything_runs():
    def update(a, b):
        a += 1.0
        b *= 2.0
        return a.sum()

    a, b = X.copy(), X.copy()
    b.flags.writeable = False
    with pytest.raises(ArgumentError) as info:
        gj.jit(update)(a, b)
    message = str(info.value)
    assert f"{THIS_FILE}:{line_of(update, 'b *= 2.0')}" in message, message
    assert "read-only" in message and "(3, 4)" in message
    np.testing.assert_array_equal(a, X)      # the writeable argument was not touched either
    b.flags.writeable = True
    gj.jit(update)(a, b)
    np.testing.assert_array_equal(b, X * 2)


def test_a_failed_allocation_names_the_users_array_and_its_shape():
    def outer(v):
        return np.multiply.outer(v, v) + 1.0

    with pytest.raises(gj.AllocationError) as info:
        gj.jit(outer)(np.ones(2_000_000))
    message = str(info.value)
    assert isinstance(info.value, MemoryError) and isinstance(info.value, gj.GraphjitError)
    assert "(2000000, 2000000)" in message and "float64" in message, message
    assert f"{THIS_FILE}:{line_of(outer, 'np.multiply.outer')}" in message, message
    assert "uint8" not in message
