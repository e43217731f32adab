"""Reverse-mode autodiff: every differentiable op against central finite differences (float64,
hypothesis shapes), whole-model gradients against hand-written backprop, structures, has_aux,
composition with jit, and the errors.

Op-level checks run the transformed graph with the reference target (the NumPy interpreter, fast
to "compile"); the composition tests use the default compiled target.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphjit as gj
from graphjit.compiler.autodiff import VJP_RULES, value_and_grad_graph, vjp_graph
from graphjit.compiler.interpret import interpret
from graphjit.compiler.ir import Graph
from graphjit.compiler.ops import Op
from graphjit.compiler.verify import verify

RTOL, ATOL = 1e-5, 1e-6
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
SEEDS = st.integers(0, 2**32 - 1)
SETTINGS = settings(max_examples=8, deadline=None)


# ---------------------------------------------------------------- helpers

def numeric_grad(fn: Callable, args: tuple, argnum: int, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of a scalar NumPy function with respect to args[argnum]."""
    x = np.asarray(args[argnum], dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        high = fn(*_replace(args, argnum, plus))
        low = fn(*_replace(args, argnum, minus))
        grad[index] = (high - low) / (2 * eps)
    return grad


def _replace(args: tuple, n: int, value: np.ndarray) -> tuple:
    return tuple(value if i == n else a for i, a in enumerate(args))


def weighted(fn: Callable, out_shape: tuple, seed: int) -> Callable:
    """sum(fn(*args) * w) with fixed random weights, so every output element gets its own
    cotangent (a plain sum would hide transposed or misplaced cotangents)."""
    weights = np.random.default_rng(seed).uniform(0.5, 1.5, out_shape)

    def loss(*args):
        return np.sum(fn(*args) * weights)

    return loss


def check_grads(fn: Callable, *args: np.ndarray, argnums: tuple[int, ...] = (0,),
                seed: int = 0) -> None:
    out_shape = np.shape(fn(*args))
    loss = weighted(fn, out_shape, seed)
    grads = gj.jit(gj.grad(loss, argnums=argnums), target="reference")(*args)
    for got, n in zip(grads, argnums):
        expected = numeric_grad(loss, args, n)
        assert np.shape(got) == np.shape(args[n])
        assert np.asarray(got).dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL,
                                   err_msg=f"gradient of argument {n}")


def uniform(seed: int, shape: tuple, low: float, high: float) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape)


# ---------------------------------------------------------------- elementwise

UNARY = {
    "neg": (np.negative, -2, 2),
    "abs": (np.abs, -2, 2),
    "exp": (np.exp, -2, 2),
    "log": (np.log, 0.5, 3),
    "log1p": (np.log1p, -0.5, 2),
    "expm1": (np.expm1, -2, 2),
    "sqrt": (np.sqrt, 0.5, 3),
    "tanh": (np.tanh, -2, 2),
    "sin": (np.sin, -3, 3),
    "cos": (np.cos, -3, 3),
    "square": (np.square, -2, 2),
    "reciprocal": (np.reciprocal, 0.5, 2),
    "log2": (np.log2, 0.5, 3),
    "exp2": (np.exp2, -2, 2),
    "clip": (lambda x: np.clip(x, -0.5, 0.5), -2, 2),
    "cast_f32_f64": (lambda x: x.astype(np.float32).astype(np.float64) * 1.0, -2, 2),
    "pow_const": (lambda x: x ** 3, -2, 2),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), -3, 3),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@SETTINGS
@given(shape=SHAPES, seed=SEEDS)
def test_unary_gradient(name, shape, seed):
    fn, low, high = UNARY[name]
    x = uniform(seed, shape, low, high)
    if name == "cast_f32_f64":
        # the float32 round trip passes the cotangent through unchanged
        got = gj.jit(gj.grad(lambda v: np.sum(fn(v))), target="reference")(x)
        np.testing.assert_array_equal(got, np.ones(shape))
        return
    check_grads(fn, x, seed=seed)


BINARY = {
    "add": (np.add, (-2, 2), (-2, 2)),
    "sub": (np.subtract, (-2, 2), (-2, 2)),
    "mul": (np.multiply, (-2, 2), (-2, 2)),
    "div": (np.divide, (-2, 2), (0.5, 2)),
    "pow": (np.power, (0.5, 2), (-1, 2)),
    "maximum": (np.maximum, (-2, 2), (-2, 2)),
    "minimum": (np.minimum, (-2, 2), (-2, 2)),
    "mod": (np.mod, (2.2, 2.8), (1.0, 1.05)),
    "where": (lambda a, b: np.where(a > 0, a * b, b - a), (-2, 2), (-2, 2)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3),
       seed=SEEDS)
def test_binary_gradient_with_broadcasting(name, shapes, seed):
    fn, (low_a, high_a), (low_b, high_b) = BINARY[name]
    a = uniform(seed, shapes.input_shapes[0], low_a, high_a)
    b = uniform(seed + 1, shapes.input_shapes[1], low_b, high_b)
    check_grads(fn, a, b, argnums=(0, 1), seed=seed)


# ---------------------------------------------------------------- reductions

REDUCTIONS = {
    "sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min, "mean": np.mean,
    "var": np.var, "std": np.std,
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=SEEDS,
       data=st.data())
def test_reduction_gradient(name, shape, seed, data):
    axis = data.draw(st.one_of(st.none(), st.integers(0, len(shape) - 1)))
    keepdims = data.draw(st.booleans())
    count = np.prod(shape) if axis is None else shape[axis]
    assume(name != "std" or count > 1)  # sqrt(var) has no derivative where var == 0
    x = uniform(seed, shape, 0.5, 1.5)
    reducer = REDUCTIONS[name]
    check_grads(lambda v: reducer(v, axis=axis, keepdims=keepdims), x, seed=seed)


def test_prod_gradient_with_zeros():
    grad = gj.jit(gj.grad(np.prod), target="reference")
    np.testing.assert_allclose(grad(np.array([2.0, 0.0, 3.0])), [0.0, 6.0, 0.0])
    np.testing.assert_allclose(grad(np.array([2.0, 0.0, 0.0])), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(grad(np.array([2.0, 4.0, 3.0])), [12.0, 6.0, 8.0])


def test_tie_rules():
    """Documented: maximum/minimum split 0.5/0.5; max/min share among all tied positions."""
    both = gj.jit(gj.grad(lambda a, b: np.sum(np.maximum(a, b)), argnums=(0, 1)),
                  target="reference")
    ga, gb = both(np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0]))
    np.testing.assert_allclose(ga, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(gb, [0.5, 1.0, 0.0])
    ga, gb = gj.jit(gj.grad(lambda a, b: np.sum(np.minimum(a, b)), argnums=(0, 1)))(
        np.array([1.0, 2.0]), np.array([1.0, 5.0]))
    np.testing.assert_allclose(ga, [0.5, 1.0])
    np.testing.assert_allclose(gb, [0.5, 0.0])
    gmax = gj.jit(gj.grad(np.max), target="reference")(np.array([1.0, 3.0, 3.0, 2.0]))
    np.testing.assert_allclose(gmax, [0.0, 0.5, 0.5, 0.0])
    grelu = gj.jit(gj.grad(lambda x: np.sum(np.maximum(x, 0.0))))(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_allclose(grelu, [0.0, 0.5, 1.0])


def test_non_differentiable_ops_give_zero_gradients():
    x = np.array([0.3, 1.7, -2.2, 2.5])

    def fn(v):
        step = np.floor(v) + np.ceil(v) + np.sign(v) + np.argmax(v) + (v > 1) + v // 2
        return np.sum(v * step) + np.sum(v.astype(np.int64))

    expected = np.floor(x) + np.ceil(x) + np.sign(x) + np.argmax(x) + (x > 1) + x // 2
    np.testing.assert_allclose(gj.grad(fn)(x), expected)


# ---------------------------------------------------------------- shapes

SHAPE_FUNCTIONS = {
    "reshape": (lambda x: x.reshape(6, 4), (2, 3, 4)),
    "transpose": (lambda x: np.transpose(x, (2, 0, 1)), (2, 3, 4)),
    "swapaxes": (lambda x: x.swapaxes(0, 1), (2, 3)),
    "slice": (lambda x: x[1:, ::2, 1:3], (3, 5, 4)),
    "slice_negative_step": (lambda x: x[::-1, -2::-2], (3, 5)),
    "int_index": (lambda x: x[1, :, 2], (3, 4, 5)),
    "newaxis": (lambda x: x[:, None] * x[None, :], (3,)),
    "broadcast_to": (lambda x: np.broadcast_to(x, (4, 2, 3)), (2, 1)),
    "expand_squeeze": (lambda x: np.squeeze(np.expand_dims(x, 0), 2), (3, 1, 2)),
    "stack": (lambda x: np.stack([x, 2 * x, x * x], axis=1), (2, 3)),
    "concat_self": (lambda x: np.concatenate([x, x[:1] * 3], axis=0), (3, 2)),
    "ravel": (lambda x: np.ravel(x.T) * np.arange(6), (2, 3)),
}


@pytest.mark.parametrize("name", sorted(SHAPE_FUNCTIONS))
def test_shape_op_gradient(name):
    fn, shape = SHAPE_FUNCTIONS[name]
    check_grads(fn, uniform(3, shape, -2, 2), seed=4)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), seed=SEEDS, data=st.data())
def test_concatenate_gradient(shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    other = tuple(d + 1 if i == axis else d for i, d in enumerate(shape))
    a, b = uniform(seed, shape, -2, 2), uniform(seed + 1, other, -2, 2)
    check_grads(lambda u, v: np.concatenate([u, v], axis=axis), a, b, argnums=(0, 1), seed=seed)


# ---------------------------------------------------------------- matmul and indexing

@SETTINGS
@given(m=st.integers(1, 4), k=st.integers(1, 4), n=st.integers(1, 4),
       batch=st.sampled_from([(), (2,), (2, 1)]), seed=SEEDS)
def test_matmul_gradient(m, k, n, batch, seed):
    a = uniform(seed, (*batch, m, k), -1, 1)
    b = uniform(seed + 1, (k, n), -1, 1)
    check_grads(np.matmul, a, b, argnums=(0, 1), seed=seed)


@pytest.mark.parametrize("fn, shapes", [
    (lambda a, b: a @ b, ((3,), (3, 2))),
    (lambda a, b: a @ b, ((2, 3), (3,))),
    (lambda a, b: np.dot(a, b), ((3,), (3,))),
    (lambda a, b: np.outer(a, b), ((3,), (2,))),
], ids=["vec_mat", "mat_vec", "dot", "outer"])
def test_vector_products_gradient(fn, shapes):
    a, b = (uniform(i, s, -1, 1) for i, s in enumerate(shapes))
    check_grads(fn, a, b, argnums=(0, 1))


INDEX = np.array([2, 0, 2, 1, 2])  # repeated indices must accumulate

INDEXING = {
    "take_rows": lambda x: x[INDEX],
    "take_columns": lambda x: x[:, INDEX[:3] % 3],
    "np_take": lambda x: np.take(x, INDEX, axis=0),
    "fancy_pair": lambda x: x[INDEX, INDEX % 3],
    "fancy_mixed": lambda x: x[INDEX[:2], 1:],
    "bool_mask_constant": lambda x: x[np.array([True, False, True])],
    "take_along_axis": lambda x: np.take_along_axis(x, np.array([[0, 2], [1, 1], [2, 0]]), 1),
    "take_along_axis_one": lambda x: np.take_along_axis(x, np.array([[0], [-1], [1]]), 1),
    "take_along_axis_rows": lambda x: np.take_along_axis(x, np.array([[2, 0, -3]]), 0),
}


@pytest.mark.parametrize("name", sorted(INDEXING))
def test_indexing_gradient(name):
    check_grads(INDEXING[name], uniform(5, (3, 3), -2, 2), seed=6)


def test_gather_with_traced_indices_gradient():
    def fn(x, index):
        return np.sum(x[index] * np.arange(1.0, 6.0)[:, None])

    x, index = uniform(1, (3, 2), -1, 1), INDEX
    got = gj.jit(gj.grad(fn))(x, index)
    np.testing.assert_allclose(got, numeric_grad(fn, (x, index), 0), rtol=RTOL, atol=ATOL)


def _set_slice(x, v):
    y = x * 1.0
    y[1:3] = v
    return y


def _set_fancy(x, v):
    y = x * 1.0
    y[np.array([0, 2])] = v
    return y


def _add_at(x, v):
    y = x * 1.0
    np.add.at(y, np.array([0, 2, 0]), v)
    return y


def _set_mask(x, v):
    y = x * 1.0
    y[x > 0] = v[0, 0]
    return y


@pytest.mark.parametrize("fn", [_set_slice, _set_fancy, _add_at, _set_mask],
                         ids=["slice", "fancy", "add_at", "mask"])
def test_setitem_gradient(fn):
    x = uniform(7, (4, 3), -2, 2)
    v = uniform(8, (1, 3), -2, 2)
    check_grads(fn, x, v, argnums=(0, 1))


# ---------------------------------------------------------------- a whole model

def _mlp_loss(params, x, labels):
    hidden = np.maximum(x @ params["w1"] + params["b1"], 0.0)
    logits = hidden @ params["w2"] + params["b2"]
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return -np.mean(np.take_along_axis(log_probs, labels[:, None], axis=1))


def _mlp_backprop(params, x, labels):
    """Hand-written NumPy backprop of `_mlp_loss`."""
    pre = x @ params["w1"] + params["b1"]
    hidden = np.maximum(pre, 0.0)
    logits = hidden @ params["w2"] + params["b2"]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    d_logits = probs.copy()
    d_logits[np.arange(len(labels)), labels] -= 1
    d_logits /= len(labels)
    d_hidden = d_logits @ params["w2"].T
    d_pre = d_hidden * (pre > 0)
    return {"w1": x.T @ d_pre, "b1": d_pre.sum(0), "w2": hidden.T @ d_logits,
            "b2": d_logits.sum(0)}


def _mlp_problem(dtype=np.float64):
    rng = np.random.default_rng(0)
    params = {"w1": rng.normal(0, 0.5, (6, 8)), "b1": rng.normal(0, 0.1, 8),
              "w2": rng.normal(0, 0.5, (8, 4)), "b2": rng.normal(0, 0.1, 4)}
    params = {k: v.astype(dtype) for k, v in params.items()}
    return params, rng.normal(size=(10, 6)).astype(dtype), rng.integers(0, 4, 10)


def test_mlp_softmax_cross_entropy_against_handwritten_backprop():
    params, x, labels = _mlp_problem()
    loss, grads = gj.value_and_grad(_mlp_loss)(params, x, labels)
    assert np.isclose(loss, _mlp_loss(params, x, labels), rtol=1e-12)
    expected = _mlp_backprop(params, x, labels)
    assert set(grads) == set(expected)
    for name in expected:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-12)


def test_mlp_float32_gradients():
    params, x, labels = _mlp_problem(np.float32)
    loss, grads = gj.jit(gj.value_and_grad(_mlp_loss))(params, x, labels)
    expected = _mlp_backprop({k: v.astype(np.float64) for k, v in params.items()},
                             x.astype(np.float64), labels)
    assert np.asarray(loss).dtype == np.float32
    for name in expected:
        assert grads[name].dtype == np.float32
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- structures and options

def test_nested_structure_gradients():
    def fn(tree, scale):
        (a, b), named = tree["pair"], tree["named"]
        return np.sum(a * b) * scale + np.sum(named[0] ** 2) + np.sum(named[1]["c"] * 3)

    tree = {"pair": (np.array([1.0, 2.0]), np.array([3.0, 4.0])),
            "named": [np.array([[1.0, -1.0]]), {"c": np.array(2.0)}]}
    g_tree, g_scale = gj.grad(fn, argnums=(0, 1))(tree, 2.0)
    assert isinstance(g_tree, dict) and isinstance(g_tree["pair"], tuple)
    assert isinstance(g_tree["named"], list) and isinstance(g_tree["named"][1], dict)
    np.testing.assert_allclose(g_tree["pair"][0], [6.0, 8.0])
    np.testing.assert_allclose(g_tree["pair"][1], [2.0, 4.0])
    np.testing.assert_allclose(g_tree["named"][0], [[2.0, -2.0]])
    np.testing.assert_allclose(g_tree["named"][1]["c"], 3.0)
    np.testing.assert_allclose(g_scale, 11.0)


def test_has_aux():
    def fn(w, x):
        prediction = x @ w
        return np.sum(prediction ** 2), {"prediction": prediction, "count": np.sum(x > 0)}

    w, x = np.array([1.0, -2.0]), np.array([[1.0, 2.0], [3.0, 4.0]])
    (value, aux), grads = gj.value_and_grad(fn, has_aux=True)(w, x)
    np.testing.assert_allclose(value, 34.0)
    np.testing.assert_allclose(aux["prediction"], [-3.0, -5.0])
    assert aux["count"] == 4
    np.testing.assert_allclose(grads, 2 * x.T @ (x @ w))
    grads_only, aux_only = gj.grad(fn, has_aux=True)(w, x)
    np.testing.assert_allclose(grads_only, grads)
    np.testing.assert_allclose(aux_only["prediction"], aux["prediction"])


def test_argnums_default_and_tuple():
    fn = lambda a, b: np.sum(a * b * b)  # noqa: E731
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_allclose(gj.grad(fn)(a, b), b * b)
    np.testing.assert_allclose(gj.grad(fn, argnums=1)(a, b), 2 * a * b)
    ga, gb = gj.grad(fn, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, b * b)
    np.testing.assert_allclose(gb, 2 * a * b)
    # the same array twice: each position gets its own gradient
    np.testing.assert_allclose(gj.grad(fn, argnums=(0, 1))(a, a)[1], 2 * a * a)


def test_static_arguments_and_keywords():
    def loss(w, x, training=False, mode="square"):
        y = x @ w
        if training:
            y = y * 2.0
        return np.sum(y * y) if mode == "square" else np.sum(np.abs(y))

    w, x = np.array([1.0, -1.0]), np.array([[1.0, 2.0], [3.0, 5.0]])
    grad = gj.grad(loss, static_argnames=("training", "mode"))
    np.testing.assert_allclose(grad(w, x, training=True), 8 * x.T @ (x @ w))
    np.testing.assert_allclose(grad(w, x, True, "abs"), 2 * x.T @ np.sign(x @ w))
    np.testing.assert_allclose(grad(w, x), 2 * x.T @ (x @ w))
    # under jit, static values simply pass through
    inner = gj.jit(lambda w, x: gj.grad(loss)(w, x, training=True))
    np.testing.assert_allclose(inner(w, x), 8 * x.T @ (x @ w))


# ---------------------------------------------------------------- composition with jit

def _tanh_layer_loss(w, x):
    return np.mean(np.tanh(x @ w) ** 2)


def test_jit_of_value_and_grad_is_one_graph():
    rng = np.random.default_rng(1)
    w, x = rng.normal(size=(4, 3)), rng.normal(size=(5, 4))
    step = gj.jit(gj.value_and_grad(_tanh_layer_loss))
    value, grads = step(w, x)
    np.testing.assert_allclose(value, _tanh_layer_loss(w, x), rtol=1e-12)
    np.testing.assert_allclose(grads, numeric_grad(_tanh_layer_loss, (w, x), 0), rtol=RTOL,
                               atol=ATOL)
    lowered = step.lower(w, x)
    graph = lowered.graph
    assert graph.count(Op.TANH) >= 1          # forward
    assert graph.count(Op.MATMUL) == 2        # forward x @ w and backward x.T @ g
    assert graph.count(Op.TRANSPOSE) >= 1     # backward
    assert len(graph.outputs) == 2
    step(w, x)
    assert step.cache_info()["misses"] == 1 and step.cache_info()["hits"] >= 1


def test_grad_of_concrete_call_caches_per_signature():
    grad = gj.grad(_tanh_layer_loss)
    w, x = np.ones((4, 3)), np.ones((5, 4))
    grad(w, x)
    grad(w * 2, x)
    assert grad.cache_info() == {"hits": 1, "misses": 1, "entries": 1}
    grad(np.ones((4, 2)), x)
    assert grad.cache_info()["misses"] == 2


def test_grad_of_jit():
    rng = np.random.default_rng(2)
    w, x = rng.normal(size=(4, 3)), rng.normal(size=(5, 4))
    jitted = gj.jit(_tanh_layer_loss)
    np.testing.assert_allclose(gj.grad(jitted)(w, x), gj.grad(_tanh_layer_loss)(w, x),
                               rtol=1e-12)
    np.testing.assert_allclose(gj.jit(gj.grad(jitted))(w, x),
                               numeric_grad(_tanh_layer_loss, (w, x), 0), rtol=RTOL, atol=ATOL)


def test_closure_over_traced_values_inside_jit():
    @gj.jit
    def step(w, x, lr):
        loss, g = gj.value_and_grad(lambda v: _tanh_layer_loss(v, x))(w)
        return loss, w - lr * g

    rng = np.random.default_rng(3)
    w, x = rng.normal(size=(4, 3)), rng.normal(size=(5, 4))
    loss, new_w = step(w, x, 0.1)
    expected_g = numeric_grad(_tanh_layer_loss, (w, x), 0)
    np.testing.assert_allclose(new_w, w - 0.1 * expected_g, rtol=1e-6, atol=1e-8)


def test_second_order_gradient():
    d2 = gj.grad(gj.grad(lambda x: x ** 3 + np.sin(x)))
    np.testing.assert_allclose(d2(1.5), 6 * 1.5 - np.sin(1.5), rtol=1e-12)
    hess_diag = gj.jit(gj.grad(lambda x: np.sum(gj.grad(lambda y: np.sum(np.exp(y) * y))(x))))
    x = np.array([0.1, 0.7])
    np.testing.assert_allclose(hess_diag(x), np.exp(x) * (x + 2), rtol=1e-12)


def test_vjp_eager_and_traced():
    def fn(a, b):
        return np.sin(a) * b, np.sum(a)

    a, b = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])
    (out, total), vjp_fn = gj.vjp(fn, a, b)
    np.testing.assert_allclose(out, np.sin(a) * b)
    ct = np.array([1.0, -1.0, 0.5])
    ga, gb = vjp_fn((ct, 2.0))
    np.testing.assert_allclose(ga, ct * np.cos(a) * b + 2.0)
    np.testing.assert_allclose(gb, ct * np.sin(a))

    @gj.jit
    def traced(a, b, ct):
        (_, _), pullback = gj.vjp(fn, a, b)
        return pullback((ct, 2.0))

    got = traced(a, b, ct)
    np.testing.assert_allclose(got[0], ga)
    np.testing.assert_allclose(got[1], gb)


# ---------------------------------------------------------------- errors

def test_integer_argument_is_a_clear_error():
    with pytest.raises(gj.GraphjitError, match="int64.*float"):
        gj.grad(lambda x: np.sum(x * 1.0))(np.arange(3))
    with pytest.raises(gj.GraphjitError, match="float"):
        gj.grad(lambda x, n: np.sum(x) * n, argnums=1)(np.ones(2), 3)
    # an integer argument outside argnums is fine
    assert gj.grad(lambda x, n: np.sum(x) * n)(np.ones(2), 3).tolist() == [3.0, 3.0]


def test_non_scalar_output_is_a_clear_error():
    with pytest.raises(gj.GraphjitError, match="float scalar"):
        gj.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(gj.GraphjitError, match="float scalar"):
        gj.grad(lambda x: (np.sum(x), x))(np.ones(3))


def test_argnums_out_of_range():
    with pytest.raises(gj.GraphjitError, match="argnums"):
        gj.grad(lambda x: np.sum(x), argnums=2)(np.ones(3))


def test_missing_rule_is_a_clear_error(monkeypatch):
    monkeypatch.delitem(VJP_RULES, Op.TANH)
    with pytest.raises(gj.GraphjitError, match="tanh"):
        gj.jit(gj.grad(lambda x: np.sum(np.tanh(x))), target="reference")(np.ones(2))


# ---------------------------------------------------------------- the graph -> graph transform

def _small_graph() -> Graph:
    graph = Graph("small")
    x = graph.add(Op.PARAM, (), {"index": 0, "shape": (3,), "dtype": np.dtype(np.float64)})
    y = graph.add(Op.PARAM, (), {"index": 1, "shape": (3,), "dtype": np.dtype(np.float64)})
    product = graph.add(Op.MUL, (graph.add(Op.EXP, (x,)), y))
    graph.outputs = [graph.add(Op.SUM, (product,), {"axes": (0,), "keepdims": False}), product]
    return graph


def test_value_and_grad_graph_is_pure_and_verified():
    graph = _small_graph()
    before = str(graph)
    new = value_and_grad_graph(graph, wrt=[0, 1])
    assert str(graph) == before
    verify(new)
    x, y = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])
    total, product, gx, gy = interpret(new, [x, y])
    np.testing.assert_allclose(total, np.sum(np.exp(x) * y))
    np.testing.assert_allclose(gx, np.exp(x) * y)
    np.testing.assert_allclose(gy, np.exp(x))


def test_vjp_graph():
    new = vjp_graph(_small_graph(), wrt=[0])
    verify(new)
    assert len(new.params) == 4  # x, y and one cotangent per float output
    x, y, ct = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 2.0])
    *_, gx = interpret(new, [x, y, np.array(1.0), ct])
    np.testing.assert_allclose(gx, np.exp(x) * y * (1.0 + ct))


def test_every_rule_sits_on_the_op_table():
    missing = [op for op in Op if op not in VJP_RULES]
    assert missing == [], f"ops without a vjp rule: {missing}"
