"""Pickling jitted functions and models: by reference when importable, by value through
cloudpickle for closures and lambdas; the receiver compiles on first call or loads the shared
disk cache. Pools (fork and spawn) and a fresh interpreter receive them."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphjit as gj
import importlib

jit_module = importlib.import_module("graphjit.jit")
from graphjit import layers

cloudpickle = pytest.importorskip("cloudpickle")

MODULE = '''
import numpy as np
import graphjit as gj

@gj.jit
def affine(x):
    return x * 2.0 + 1.0

def scaled_by(c):
    @gj.jit
    def scale(x):
        return np.tanh(x) * c
    return scale

class Holder:
    @gj.jit
    def method_like(x):
        return x - 1.0

shift = gj.jit(lambda x: x + 5.0)

def call(function, x):
    return function(x)
'''


@pytest.fixture()
def jitmod(tmp_path, monkeypatch):
    (tmp_path / "gj_pickle_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get(
        "PYTHONPATH", "")]))
    import importlib
    module = importlib.import_module("gj_pickle_mod")
    yield module
    sys.modules.pop("gj_pickle_mod", None)


X = np.linspace(-1, 1, 12).reshape(3, 4)


def test_importable_functions_pickle_by_reference(jitmod):
    for function in (jitmod.affine, jitmod.Holder.method_like):
        blob = pickle.dumps(function)
        assert b"cloudpickle" not in blob and len(blob) < 200   # a name, not code
        assert pickle.loads(blob) is function
    np.testing.assert_allclose(pickle.loads(pickle.dumps(jitmod.affine))(X), X * 2 + 1)


def test_closures_and_lambdas_pickle_by_value_with_cloudpickle(jitmod):
    scale = jitmod.scaled_by(3.0)
    for function, expected in ((scale, np.tanh(X) * 3.0), (jitmod.shift, X + 5.0)):
        for dumps in (pickle.dumps, cloudpickle.dumps):
            copy = pickle.loads(dumps(function))
            np.testing.assert_allclose(copy(X), expected)
    local = gj.jit(lambda x: x * x)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(local))(X), X * X)


def test_one_process_keeps_one_object_per_unpickled_function():
    function = gj.jit(lambda x: x + 1.0)
    blob = pickle.dumps(function)
    assert pickle.loads(blob) is function          # the sender's own object
    first, second = pickle.loads(blob), pickle.loads(pickle.dumps(function))
    assert first is second is function


def test_a_function_that_refers_to_itself_pickles():
    def make():
        def body(x):
            return x * 2.0
        jitted = gj.jit(body)
        body.jitted = jitted          # the pickled function's state holds its own JitFunction
        return jitted

    function = make()
    copy = cloudpickle.loads(cloudpickle.dumps(function))
    np.testing.assert_allclose(copy(X), X * 2.0)


def test_without_cloudpickle_a_closure_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(jit_module, "_cloudpickle", lambda: None)
    function = gj.jit(lambda x: x + 1.0)
    with pytest.raises(pickle.PicklingError, match="cloudpickle"):
        pickle.dumps(function)


def test_options_travel_with_the_function():
    function = gj.jit(lambda x, n: x * n, static_argnums=1)
    copy = pickle.loads(cloudpickle.dumps(function))
    assert copy.static_argnums == (1,)
    np.testing.assert_allclose(copy(X, 3), X * 3)


def _run(code: str, tmp_path, input: bytes | None = None) -> subprocess.CompletedProcess:
    script = tmp_path / "receiver.py"
    script.write_text(textwrap.dedent(code))
    result = subprocess.run([sys.executable, str(script)], input=input, capture_output=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    return result


def test_a_fresh_interpreter_unpickles_and_loads_the_disk_cache(jitmod, tmp_path):
    x = np.linspace(0, 1, 7)
    scale = jitmod.scaled_by(2.0)
    lambda_fn = gj.jit(lambda v: np.exp(v) - v)
    for function in (jitmod.affine, scale, lambda_fn):
        function(x)                                    # writes the disk cache
    blob = pickle.dumps([jitmod.affine, scale, lambda_fn, x])
    result = _run('''
        import pickle, sys
        import numpy as np
        affine, scale, lambda_fn, x = pickle.loads(sys.stdin.buffer.read())
        for f, expected in ((affine, x * 2 + 1), (scale, np.tanh(x) * 2.0),
                            (lambda_fn, np.exp(x) - x)):
            np.testing.assert_allclose(f(x), expected)
            stats = f.lower(x).compile_stats()
            print("llvm" in stats, "load" in stats)
    ''', tmp_path, input=blob)
    # every one compiled on first call, straight from the shared disk cache: no LLVM work
    assert result.stdout.decode().split() == ["False", "True"] * 3


POOLS = '''
import pickle, sys
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
import numpy as np
import gj_pickle_mod as mod

if __name__ == "__main__":
    x = np.linspace(-1, 1, 9)
    functions = [mod.affine, mod.scaled_by(4.0), mod.shift]
    expected = [x * 2 + 1, np.tanh(x) * 4.0, x + 5.0]
    mod.affine(x)                              # the parent has compiled (and run) one of them
    with ProcessPoolExecutor(2, mp_context=mp.get_context(sys.argv[1])) as pool:
        results = list(pool.map(mod.call, functions, [x] * 3, timeout=90))
        # the function itself as the task, like pool.map(f, ...)
        direct = list(pool.map(mod.affine, [x, x * 2], timeout=90))
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(direct[1], x * 4 + 1)
    print("ok")
'''


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_process_pool_executor(jitmod, tmp_path, method):
    script = tmp_path / "pools.py"
    script.write_text(POOLS)
    result = subprocess.run([sys.executable, str(script), method], capture_output=True,
                            text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def _model() -> gj.Model:
    model = gj.Sequential([layers.Input((4,)), layers.Dense(8, activation="relu"),
                           layers.LayerNormalization(), layers.Dropout(0.1),
                           layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_models_and_layers_pickle_and_keep_training():
    rng = np.random.default_rng(0)
    x = rng.random((32, 4), dtype=np.float32)
    y = rng.random((32, 2), dtype=np.float32)
    model = _model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, seed=1)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(copy.predict(x), model.predict(x), rtol=1e-6)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, seed=1)
    copy.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False, seed=1)
    np.testing.assert_allclose(copy.predict(x), model.predict(x), rtol=1e-5)
    layer = pickle.loads(pickle.dumps(model.layers[0]))
    np.testing.assert_array_equal(layer.params["kernel"], model.layers[0].params["kernel"])
    # a Lambda layer holds a lambda: by value through cloudpickle
    lambda_model = gj.Sequential([layers.Input((4,)), layers.Lambda(lambda t: t * 2.0)])
    np.testing.assert_allclose(cloudpickle.loads(cloudpickle.dumps(lambda_model)).predict(x),
                               x * 2.0, rtol=1e-6)
