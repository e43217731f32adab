"""gj.random: counter-based keys that are reproducible, differ per key, agree eagerly and compiled,
and have the right statistics."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit.compiler.ops import Op

N = 20_000  # samples for the statistics checks: standard errors are ~0.2-0.7% of the moments


def test_key_is_a_small_int_array_and_a_pure_function_of_the_seed():
    key = gj.random.key(42)
    assert key.shape == (2,) and key.dtype == np.int64
    np.testing.assert_array_equal(key, gj.random.key(42))
    assert not np.array_equal(key, gj.random.key(43))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**63 - 1),
       shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_same_key_same_numbers_eagerly(seed, shape, dtype):
    key = gj.random.key(seed)
    first = gj.random.uniform(key, shape, dtype)
    assert first.shape == shape and first.dtype == dtype
    np.testing.assert_array_equal(first, gj.random.uniform(key, shape, dtype))
    np.testing.assert_array_equal(gj.random.normal(key, shape, dtype),
                                  gj.random.normal(key, shape, dtype))
    assert np.all((first >= 0) & (first < 1))


def test_different_keys_and_functions_differ():
    k1, k2 = gj.random.split(gj.random.key(0))
    a, b = gj.random.uniform(k1, (100,)), gj.random.uniform(k2, (100,))
    assert not np.array_equal(a, b)
    # the same key used by two functions reads two different streams
    assert not np.allclose(gj.random.normal(k1, (100,)), a)
    keys = gj.random.split(k1, 5)
    assert keys.shape == (5, 2) and len({tuple(k) for k in keys}) == 5


def test_eager_and_compiled_agree_bit_for_bit():
    @gj.jit
    def sample(key):
        k1, k2 = gj.random.split(key)
        return (gj.random.uniform(k1, (3, 4), np.float32), gj.random.normal(k2, (5,)),
                gj.random.bernoulli(k2, 0.3, (6,)), gj.random.split(key, 3))

    key = gj.random.key(7)
    compiled = sample(key)
    eager = sample.eager(key)
    for got, expected in zip(compiled, eager):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    graph = sample.lower(key).graph
    # uniform + bernoulli's uniform, one normal: each sample is one node in the IR
    assert graph.count(Op.RANDOM_UNIFORM) == 2 and graph.count(Op.RANDOM_NORMAL) == 1


def test_compiled_dropout_is_reproducible_and_differs_per_step():
    @gj.jit
    def dropout(key, x, rate):
        keep = gj.random.bernoulli(key, 1.0 - rate, x.shape)
        return np.where(keep, x / (1.0 - rate), 0.0)

    x = np.ones((64, 32), np.float32)
    key = gj.random.key(1)
    first = dropout(key, x, 0.25)
    np.testing.assert_array_equal(first, dropout(key, x, 0.25))
    second = dropout(gj.random.split(key)[0], x, 0.25)
    assert not np.array_equal(first, second)
    assert first.dtype == np.float32
    assert set(np.unique(first)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(np.mean(first == 0) - 0.25) < 0.03
    assert dropout.cache_info()["misses"] == 1


def test_fold_in_with_a_traced_step():
    @gj.jit
    def noise(key, step):
        return gj.random.uniform(gj.random.fold_in(key, step), (4,))

    key = gj.random.key(3)
    np.testing.assert_array_equal(noise(key, 1), noise.eager(key, 1))
    np.testing.assert_array_equal(noise(key, np.int64(2)), gj.random.uniform(
        gj.random.fold_in(key, 2), (4,)))
    assert not np.array_equal(noise(key, 1), noise(key, 2))
    assert noise.cache_info()["misses"] <= 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_statistics(dtype):
    values = gj.random.uniform(gj.random.key(11), (N,), dtype, minval=-1.0, maxval=3.0)
    assert values.dtype == dtype
    assert values.min() >= -1.0 and values.max() < 3.0
    assert abs(values.mean() - 1.0) < 0.05  # mean 1, std error 0.008
    assert abs(values.var() - 16 / 12) < 0.05  # var 4/3
    counts = np.histogram(values, bins=8, range=(-1, 3))[0]
    assert counts.min() > N / 8 * 0.9


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_statistics(dtype):
    values = gj.random.normal(gj.random.key(12), (N,), dtype, mean=2.0, stddev=0.5)
    assert values.dtype == dtype
    assert abs(values.mean() - 2.0) < 0.02
    assert abs(values.std() - 0.5) < 0.02
    standard = (values - 2.0) / 0.5
    assert abs(np.mean(np.abs(standard) < 1) - 0.6827) < 0.02


def test_bernoulli_statistics_and_traced_probability():
    draws = gj.random.bernoulli(gj.random.key(13), 0.3, (N,))
    assert draws.dtype == bool and abs(draws.mean() - 0.3) < 0.02
    p = np.array([0.0, 1.0, 0.5])
    both = gj.jit(lambda k, p: gj.random.bernoulli(k, p))(gj.random.key(14), p)
    assert both.shape == (3,) and not both[0] and both[1]


def test_gradient_through_dropout_uses_the_mask():
    def loss(w, key):
        keep = gj.random.bernoulli(key, 0.5, w.shape)
        return np.sum(np.where(keep, w * 2.0, 0.0) + gj.random.normal(key, w.shape))

    w, key = np.ones(10), gj.random.key(5)
    keep = gj.random.bernoulli(key, 0.5, w.shape)
    np.testing.assert_array_equal(gj.grad(loss)(w, key), np.where(keep, 2.0, 0.0))


def test_bad_keys_and_arguments_are_clear_errors():
    with pytest.raises(gj.GraphjitError, match="shape"):
        gj.random.uniform(np.zeros(3, np.int64), (2,))
    with pytest.raises(gj.GraphjitError, match="keys\\[i\\]"):
        gj.random.uniform(gj.random.split(gj.random.key(0)), (2,))
    with pytest.raises(gj.GraphjitError, match="integer"):
        gj.random.uniform(np.zeros(2), (2,))
    with pytest.raises(gj.GraphjitError, match="float32 or float64"):
        gj.random.uniform(gj.random.key(0), (2,), np.int32)
    with pytest.raises(gj.GraphjitError, match="seed"):
        gj.random.key(-1)
    with pytest.raises(gj.GraphjitError, match="static"):
        gj.jit(lambda k, n: gj.random.uniform(k, (n,)))(gj.random.key(0), 3)
