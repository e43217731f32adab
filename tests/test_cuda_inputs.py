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


# ---------------------------------------------------------------- in-place updates and refusals

def _add_in_place(x, y):
    x += y
    return x.sum()


@pytest.mark.parametrize("make_view", [lambda d: d, lambda d: d[::2], lambda d: d[:, 1:3].T],
                         ids=["contiguous", "every_other_row", "transposed_window"])
def test_in_place_updates_reach_the_callers_device_array(make_view):
    x = RNG.standard_normal((6, 4))
    y = RNG.standard_normal(make_view(x).shape)
    whole = to_device(x)
    view = make_view(whole)
    total = gj.jit(_add_in_place, target="cuda")(view, y)
    expected = x.copy()
    make_view(expected)[...] += y
    np.testing.assert_allclose(whole.copy_to_host(), expected)   # the rest left alone
    np.testing.assert_allclose(float(host(total)), make_view(expected).sum())


def test_in_place_update_of_a_host_argument_beside_a_device_one():
    x, y = RNG.standard_normal(5), RNG.standard_normal(5)
    expected = x + y
    gj.jit(_add_in_place, target="cuda")(x, to_device(y))      # results are device arrays
    np.testing.assert_allclose(x, expected)


def test_device_arrays_on_another_target_are_a_clear_error():
    with pytest.raises(gj.ArgumentError, match="target='cuda'"):
        gj.jit(lambda a: a + 1)(to_device(np.ones(3)))


def test_unsupported_device_dtype_is_a_dtype_error():
    with pytest.raises(gj.GraphjitError, match="complex64"):
        gj.jit(lambda a: a * 2, target="cuda")(to_device(np.ones(3, np.complex64)))


def test_float16_device_arrays_compute_like_numpy():
    # float16 is legalised like on the CPU: computed in float32, rounded after every op
    values = np.linspace(-3, 3, 7).astype(np.float16)
    out = gj.jit(lambda a: a * 2 + 1, target="cuda")(to_device(values))
    host = out.copy_to_host() if hasattr(out, "copy_to_host") else np.asarray(out)
    assert host.dtype == np.float16
    np.testing.assert_array_equal(host, values * 2 + 1)


def test_device_dtype_comes_from_the_interface_not_the_library_dtype():
    from graphjit.frontend.trace import device_array_dtype, leaf_spec

    class TorchLike:                       # torch's dtype is torch.float32, not a NumPy dtype
        shape = (2, 3)
        dtype = "torch.float32"
        __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False),
                                    "version": 3}

    assert device_array_dtype(TorchLike()) == np.float32
    assert leaf_spec(TorchLike(), "x").dtype == np.float32


def _gpu_library(name):
    """The module when it is importable and sees a GPU (simulator off), else None."""
    if device.simulator_enabled():
        return None
    try:
        module = __import__(name)
    except Exception:
        return None
    try:
        ok = module.cuda.is_available() if name == "torch" else \
            module.cuda.runtime.getDeviceCount() > 0
    except Exception:
        ok = False
    return module if ok else None


@pytest.mark.gpu
@pytest.mark.parametrize("library", ["torch", "cupy"])
def test_gpu_library_arrays_in_give_the_same_kind_out(library):
    module = _gpu_library(library)
    if module is None:
        pytest.skip(f"needs a real CUDA GPU and {library}")
    x = RNG.standard_normal((64, 48)).astype(np.float32)
    y = RNG.standard_normal((48, 64)).astype(np.float32)
    if library == "torch":
        dx, dy = module.from_numpy(x).cuda(), module.from_numpy(y).cuda().T   # a strided view
        back = lambda a: a.cpu().numpy()  # noqa: E731
    else:
        dx, dy = module.asarray(x), module.asarray(y).T
        back = module.asnumpy
    fn = gj.jit(lambda a, b: (np.tanh(a) + b, (a * b).sum(axis=0)), target="cuda")
    out, sums = fn(dx, dy)
    assert type(out) is type(dx) and type(sums) is type(dx)
    np.testing.assert_allclose(back(out), np.tanh(x) + y.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back(sums), (x * y.T).sum(axis=0), rtol=1e-4, atol=1e-4)
    gj.jit(_add_in_place, target="cuda")(dx, dy)
    np.testing.assert_allclose(back(dx), x + y.T, rtol=1e-6)
