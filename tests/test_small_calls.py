"""The fixed cost of a small call (issue 12): recycled medium outputs, the specialised result
builders of the hit path. Each behaviour checked against what a fresh NumPy result would do."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from graphjit.runtime.cpu import executable
from tests.helpers import check_against_numpy, run_in_threads

MEDIUM = executable.BlockPool.MIN_BYTES // 4 * 2     # float32 elements of a recycled output


def _twice(x):
    return x * 2


def test_a_dropped_result_is_reused_and_a_held_one_never_overwritten():
    f = gj.jit(_twice)
    x = np.arange(MEDIUM, dtype=np.float32)
    first = f(x)
    address = first.ctypes.data
    second = f(x + 1)                     # `first` held: a different array
    assert second.ctypes.data != address
    np.testing.assert_array_equal(first, x * 2)
    np.testing.assert_array_equal(second, (x + 1) * 2)
    del first
    third = f(x + 2)
    assert third.ctypes.data == address   # recycled
    np.testing.assert_array_equal(third, (x + 2) * 2)
    np.testing.assert_array_equal(second, (x + 1) * 2)


def test_a_view_of_a_dropped_result_keeps_it_from_reuse():
    f = gj.jit(_twice)
    x = np.arange(MEDIUM, dtype=np.float32)
    f(x)
    view = f(x)[10:20]                    # the result itself dropped, its view alive
    for k in range(3):
        f(x + k)
    np.testing.assert_array_equal(view, x[10:20] * 2)
    memory = memoryview(f(x + 5))         # a buffer export holds it too
    f(x + 6)
    np.testing.assert_array_equal(np.asarray(memory), (x + 5) * 2)


def test_results_changed_by_their_last_user_are_not_handed_out_again():
    f = gj.jit(_twice)
    x = np.arange(MEDIUM, dtype=np.float32).reshape(2, -1)
    a = f(x)
    a.shape = (-1,)
    del a
    b = f(x)
    assert b.shape == x.shape
    b.flags.writeable = False
    del b
    c = f(x)
    assert c.flags.writeable and c.shape == x.shape
    c[0, 0] = 7.0
    np.testing.assert_array_equal(c.ravel()[1:], (x * 2).ravel()[1:])


def test_an_output_fed_back_as_the_next_input_works():
    def step(w, dw, v):
        v = 0.9 * v - 0.01 * dw
        return w + v, v

    rng = np.random.default_rng(0)
    w, dw, v = (rng.standard_normal((64, MEDIUM // 64)).astype(np.float32) for _ in range(3))
    f = gj.jit(step)
    ew, ev = w.copy(), v.copy()
    for _ in range(5):
        w, v = f(w, dw, v)
        ew, ev = step(ew, dw, ev)
        np.testing.assert_allclose(w, ew, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(v, ev, rtol=1e-5, atol=1e-5)


def test_threads_calling_one_function_get_their_own_results():
    f = gj.jit(_twice)
    errors = []

    def work(seed: int) -> None:
        x = np.full(MEDIUM, seed, np.float32)
        kept = [f(x) for _ in range(50)]
        if not all((k == 2 * seed).all() for k in kept):
            errors.append(seed)

    run_in_threads(work, range(4))
    assert not errors


@pytest.mark.parametrize("fn", [
    lambda x: (x.sum(), x * 2),
    lambda x: (x * 2, float(3.0) * x.mean(), x.max()),
    lambda x: x.sum(),
    lambda x: (x.argmax(), x.shape[0] * x.min()),
    lambda x: (x,),
    lambda x: [x.sum(), x * 2],
    lambda x: {"a": x.sum(), "b": x + 1},
])
def test_result_trees_and_scalar_kinds_match_numpy(fn):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    check_against_numpy(fn, x)
    check_against_numpy(fn, x.astype(np.float64))


def test_a_scalar_result_is_a_fresh_object_each_call():
    f = gj.jit(lambda x: (x.sum(), x * 2))
    x = np.ones(4, np.float32)
    s1, _ = f(x)
    s2, _ = f(x * 3)
    assert s1 == 4 and s2 == 12 and type(s1) is np.float32


def test_python_scalar_arguments_are_bound_per_call():
    f = gj.jit(lambda x, lr, n, flag: x * lr + n - flag)
    x = np.arange(6, dtype=np.float32)
    for lr, n, flag in [(0.5, 3, True), (1.5, -2, False), (-0.25, 2**40, True)]:
        np.testing.assert_array_equal(f(x, lr, n, flag), x * lr + n - flag)
    assert f.cache_info()["misses"] == 1


def test_a_scalar_that_does_not_fit_is_refused_like_before():
    from graphjit.compiler.errors import GraphjitError

    f = gj.jit(lambda x, n: x + n)
    x = np.arange(3, dtype=np.int64)
    np.testing.assert_array_equal(f(x, 5), x + 5)
    with pytest.raises(GraphjitError):
        f(x, 2**70)
    np.testing.assert_array_equal(f(x, 7), x + 7)    # the workspace went back to the pool


def test_threads_with_scalar_arguments_do_not_share_them():
    f = gj.jit(lambda x, s: x * s)
    x = np.ones(MEDIUM, np.float32)
    errors = []

    def work(seed: int) -> None:
        for k in range(40):
            scale = float(seed * 100 + k)
            if not (f(x, scale) == scale).all():
                errors.append((seed, k))

    run_in_threads(work, range(4))
    assert not errors


def test_the_keyed_hit_path_still_copies_strided_arguments():
    f = gj.jit(lambda a, b: (a + b, a.sum()))
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.ones((3, 4), np.float32)
    f(a, b)
    transposed = np.arange(12, dtype=np.float32).reshape(4, 3).T     # same shape, strided
    total, s = f(transposed, b)
    np.testing.assert_array_equal(total, transposed + b)
    assert s == transposed.sum()
    sliced = np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2]
    np.testing.assert_array_equal(f(sliced, b)[0], sliced + b)
    assert f.cache_info()["misses"] == 1
