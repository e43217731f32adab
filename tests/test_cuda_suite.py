"""The CPU's differential suite on target="cuda", in Numba's simulator (on a GPU when one is lent).

The CPU tests' own functions run here unchanged, with their case lists (tests/helpers.py), their
hypothesis strategies and example counts. An autouse fixture swaps the backend table for the
duration of each test so that every compilation, whatever target the test names (cpu, or the
reference interpreter some gradient tests use for speed), is a CUDA compilation; the oracles stay
what they are in the CPU tests (eager NumPy, finite differences, hand-written backprop). The same
fixture counts the CUDA compilations and fails a test that made none, so nothing here can pass
without the CUDA backend having run.

Collected here: every test of test_ops.py (every op case, dtype, broadcasting, 0-d, size-0 and
strided input: new cases join as they are added), the gradient tests of test_autodiff.py, the
model gradients and one Keras-style `fit` step of test_models.py, the layers' forward passes
(dense, normalisation, convolution, pooling, embedding, dropout, one recurrent cell), the fused
workloads of the fusion tests and the benchmarks, and the training step of
benchmarks/workloads.py (in-place updates of its arguments). Left out, because they compile
nothing or inspect the CPU's own output: test_autodiff's error and graph-structure tests.
Nothing in these lists is refused on CUDA today; ops without a CUDA lowering (gathers, scatters,
sorts, random numbers...) run as host steps, listed in the README's CUDA section.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphjit.backends
import test_autodiff
import test_layers
import test_layers_recurrent
import test_models
import test_ops
from helpers import check_against_numpy
from workloads import chain, gelu, layernorm, mlp, scale_shift, softmax, sumsq, train_step

pytest.importorskip("graphjit.runtime.cuda")
pytestmark = pytest.mark.cuda

# test_autodiff's tests that compile nothing (errors raised while tracing, graph structure, the
# op table) or whose assertions are about the trace, not the backend
_TARGET_INDEPENDENT = {
    "test_integer_argument_is_a_clear_error", "test_non_scalar_output_is_a_clear_error",
    "test_argnums_out_of_range", "test_missing_rule_is_a_clear_error",
    "test_value_and_grad_graph_is_pure_and_verified", "test_vjp_graph",
    "test_every_rule_sits_on_the_op_table",
}


def _collect(module, names=None) -> None:
    """Bind `module`'s tests (all, or `names`) into this module, where pytest collects them."""
    for name in dir(module):
        if name.startswith("test_") and (names is None or name in names) \
                and name not in _TARGET_INDEPENDENT and callable(getattr(module, name)):
            globals()[name] = getattr(module, name)


_collect(test_ops)
_collect(test_autodiff)
_collect(test_models, {
    "test_model_gradient_matches_numpy_backprop_classification",
    "test_model_gradient_matches_numpy_backprop_regression",
    "test_one_fit_step_is_one_sgd_step_on_the_backprop_gradient",
})
_collect(test_layers, {
    "test_dense_with_activation", "test_dense_on_rank3_inputs_and_without_bias",
    "test_layer_normalization", "test_batch_normalization_training_and_inference",
    "test_conv2d_matches_direct_convolution", "test_max_pooling", "test_embedding_gathers_rows",
    "test_dropout_only_while_training",
})
_collect(test_layers_recurrent, {"test_gru_reset_before_matmul"})


@pytest.fixture(autouse=True)
def every_compilation_on_cuda(monkeypatch):
    """All targets compile with the CUDA backend; a test that compiled nothing on it fails."""
    cuda = graphjit.backends.BACKENDS["cuda"]
    compiled = []

    def counting_cuda():
        backend = cuda()
        original = backend.compile

        def compile(program, stats=None):
            compiled.append(program)
            return original(program, stats)

        backend.compile = compile
        return backend

    for target in graphjit.backends.TARGETS:
        monkeypatch.setitem(graphjit.backends.BACKENDS, target, counting_cuda)
    yield
    assert compiled, "this test compiled nothing with the CUDA backend"


# ---------------------------------------------------------------- fused workloads

RNG = np.random.default_rng(3)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


FUSION_SHAPES = {
    "softmax": (softmax, lambda: (f32(5, 13),)),
    "log_softmax": (log_softmax, lambda: (f32(3, 9),)),
    "layernorm": (layernorm, lambda: (f32(4, 11), f32(11), f32(11))),
    "gelu": (gelu, lambda: (f32(37),)),
    "chain": (chain, lambda: (f32(29),)),
    "scale_shift": (scale_shift, lambda: (f32(6, 7),)),
    "sumsq": (sumsq, lambda: (f32(40),)),
    "mlp": (mlp, lambda: (f32(4, 9), f32(9, 6), f32(6), f32(6, 3), f32(3))),
    "transposed_matmul": (lambda a, b: a.T @ b, lambda: (f32(5, 3), f32(5, 4))),
    "multi_output": (lambda x: (np.exp(x) * 2 + 1, np.exp(x) * 2 - 1), lambda: (f32(12),)),
    "siblings": (lambda x: (np.exp(x), np.sin(x)), lambda: (f32(12),)),
    "reductions_over_two_axes": (lambda x: (x - x.sum(axis=1, keepdims=True)).sum(axis=0),
                                 lambda: (f32(4, 6),)),
    "host_op_on_a_view": (lambda x, i: np.take(x.T, i, axis=0) * 2,
                          lambda: (f32(4, 6), np.array([0, 2, 5]))),
    "view_reindexing_a_value": (lambda x: np.exp(x).T + np.exp(x), lambda: (f32(5, 5),)),
    "matmul_host_loop": (lambda x, w, i: np.take(x @ w, i, axis=0) + 1,
                         lambda: (f32(4, 3), f32(3, 5), np.array([1, 0]))),
    "batched_matmul_epilogue": (lambda a, b, c: np.tanh(a @ b) * c,
                                lambda: (f32(2, 3, 4), f32(2, 4, 5), f32(5))),
}


@pytest.mark.parametrize("name", sorted(FUSION_SHAPES))
def test_fused_workload_on_cuda(name):
    fn, make = FUSION_SHAPES[name]
    check_against_numpy(fn, *make(), target="cuda", rtol=1e-5, atol=1e-5)


def test_training_step_updates_its_arguments_in_place_on_cuda():
    rng = np.random.default_rng(5)
    batch, features, hidden, classes = 8, 12, 7, 10
    x = rng.standard_normal((batch, features)).astype(np.float32)
    t = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, batch)]
    w1 = (rng.standard_normal((features, hidden)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((hidden, classes)) * 0.3).astype(np.float32)
    b1, b2 = np.zeros(hidden, np.float32), np.zeros(classes, np.float32)
    check_against_numpy(train_step, x, t, w1, b1, w2, b2, 0.1, target="cuda",
                        rtol=1e-4, atol=1e-5)
