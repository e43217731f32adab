"""CUDA inputs and concurrency in Numba's simulator: strided device arrays, device results of the
caller's kind, and one executable called from two host threads at once."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphjit as gj

pytest.importorskip("graphjit.runtime.cuda")
from graphjit.runtime.cuda import device  # noqa: E402

pytestmark = pytest.mark.cuda

RNG = np.random.default_rng(7)


def to_device(array):
    from numba import cuda

    return cuda.to_device(array)


def host(value):
    return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value)


@pytest.mark.parametrize("make_view", [
    lambda d: d[:, ::2], lambda d: d.T, lambda d: d[1:, 1:3], lambda d: d[::-1] if False else d[::2],
], ids=["step", "transpose", "window", "rows"])
def test_strided_device_inputs_are_gathered_on_the_device(make_view):
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    view = make_view(to_device(x))
    expected_input = make_view(x)
    assert not view.is_c_contiguous() or expected_input.flags.c_contiguous
    jitted = gj.jit(lambda a: np.tanh(a) * 2 + a.sum(axis=0), target="cuda")
    result = jitted(view)
    assert not isinstance(result, np.ndarray)            # a device array comes back
    np.testing.assert_allclose(host(result), np.tanh(expected_input) * 2
                               + expected_input.sum(axis=0), rtol=1e-5, atol=1e-5)


def test_device_inputs_give_device_outputs_for_every_output_kind():
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    jitted = gj.jit(lambda a: (a * 2, a.sum(), a.argmax(axis=1), a), target="cuda")
    doubled, total, arg, same = jitted(to_device(x))
    for value in (doubled, arg, same):
        assert hasattr(value, "copy_to_host")
    np.testing.assert_allclose(host(doubled), x * 2)
    np.testing.assert_array_equal(host(arg), x.argmax(axis=1))
    np.testing.assert_allclose(host(same), x)
    np.testing.assert_allclose(float(host(total)), x.sum(dtype=np.float64), rtol=1e-5)


def test_results_come_back_in_the_callers_array_kind(monkeypatch):
    class FakeCupyArray:
        pass

    FakeCupyArray.__module__ = "cupy._core.core"
    converted = []
    monkeypatch.setitem(device.RESULT_KINDS, "cupy", lambda a: converted.append(a) or "cupy!")
    assert device.result_converter(FakeCupyArray())("numba array") == "cupy!"
    assert converted == ["numba array"]
    numba_array = to_device(np.ones(2))
    assert device.result_converter(numba_array)(numba_array) is numba_array


def test_one_executable_called_from_two_threads_at_once():
    # the row sums and the column means are separate kernels with a temporary between them, and
    # the full sum is split over blocks (a scratch buffer of partials): both live per workspace
    def fn(a):
        centred = a - a.mean(axis=0)
        return centred.sum(axis=1) * 3, (centred * centred).sum()

    jitted = gj.jit(fn, target="cuda")
    inputs = [RNG.standard_normal((6, 9)).astype(np.float64) for _ in range(6)]
    jitted(inputs[0])                                   # compile once, before the threads
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(indices):
        try:
            start.wait()
            for i in indices:
                results[i] = jitted(inputs[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(range(k, 6, 2),)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, x in enumerate(inputs):
        expected = fn(x)
        np.testing.assert_allclose(results[i][0], expected[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(results[i][1], expected[1], rtol=1e-12)
    entry = next(iter(jitted._cache.values()))
    assert 1 <= entry.executable.workspaces_made <= 2


def test_an_unusable_device_argument_is_a_graphjit_error():
    class NotReallyOnTheDevice:
        __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False),
                                    "version": 3}
        shape = (3,)
        dtype = np.dtype(np.float32)

    jitted = gj.jit(lambda a: a + 1, target="cuda")
    with pytest.raises(gj.GraphjitError):
        jitted(NotReallyOnTheDevice())
