"""NumPy's array functions built from traced ops (frontend/array_functions.py), each compared
with the undecorated function on value, dtype and shape, over dtypes, shapes and views."""
from __future__ import annotations

import numpy as np
import pytest

import graphjit as gj
from graphjit.compiler.errors import GraphjitError

RNG = np.random.default_rng(0)

cases = {
 'flip': lambda x: np.flip(x), 'flip0': lambda x: np.flip(x, 0), 'flipneg': lambda x: np.flip(x, (-1,)),
 'flipud': np.flipud, 'fliplr': np.fliplr,
 'rot90': np.rot90, 'rot90_2': lambda x: np.rot90(x, 2), 'rot90_3': lambda x: np.rot90(x, -1, axes=(1, 0)),
 'roll': lambda x: np.roll(x, 2), 'roll_ax': lambda x: np.roll(x, -1, axis=1), 'roll_multi': lambda x: np.roll(x, (1, 2), axis=(0, 1)), 'roll0': lambda x: np.roll(x, 3, axis=0),
 'tril': np.tril, 'triu1': lambda x: np.triu(x, 1), 'trilneg': lambda x: np.tril(x, -1),
 'diag2': np.diag, 'diag2k': lambda x: np.diag(x, 1), 'diag1': lambda x: np.diag(x[0]), 'diag1k': lambda x: np.diag(x[0], -2), 'diag1kp': lambda x: np.diag(x[0], 1),
 'diagflat': np.diagflat, 'trace': np.trace, 'trace_off': lambda x: np.trace(x, 1), 
 'diff': np.diff, 'diff2': lambda x: np.diff(x, 2, axis=0), 'diff_pre': lambda x: np.diff(x, prepend=0, append=x[:, :1]),
 'ediff1d': np.ediff1d, 'ediff_ends': lambda x: np.ediff1d(x, to_end=np.array([1]), to_begin=0),
 'kron': lambda x: np.kron(x, x[:2, :2]), 'kron1': lambda x: np.kron(x[0], x), 
 'tensordot': lambda x: np.tensordot(x, x), 'tensordot1': lambda x: np.tensordot(x, x.T, 1), 'tensordot_ax': lambda x: np.tensordot(x, x, axes=([0], [1])), 'tensordot0': lambda x: np.tensordot(x[0], x[1], 0),
 'isclose': lambda x: np.isclose(x, x + 1e-7), 'isclose_nan': lambda x: np.isclose(x / x, x / x, equal_nan=True),
 'nan_to_num': lambda x: np.nan_to_num(x / (x - x)), 'nan_to_num2': lambda x: np.nan_to_num(np.log(x), nan=1.0, posinf=2.0, neginf=-3.0),
 'meshgrid': lambda x: np.meshgrid(x[0], x[1, :3]), 'meshgrid_ij': lambda x: np.meshgrid(x[0], x[1, :3], x[2, :2], indexing='ij'), 'meshgrid_sparse': lambda x: np.meshgrid(x[0], x[1,:2], sparse=True),
 'select': lambda x: np.select([x > 1, x < -1], [x, -x], 7), 'select_default': lambda x: np.select([x > 0], [x]),
 'sinc': np.sinc, 'i0': np.i0,
 'isreal': np.isreal, 'iscomplex': np.iscomplex, 'real_if_close': np.real_if_close,
}


DTYPES = [np.float64, np.float32, np.int32, np.int8, np.bool_]
SHAPES = [(4, 4), (3, 5)]


def _same(expected, actual, where):
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    actual = actual if isinstance(actual, (tuple, list)) else (actual,)
    assert len(expected) == len(actual), where
    for e, a in zip(expected, actual):
        e, a = np.asarray(e), np.asarray(a)
        assert (e.shape, e.dtype) == (a.shape, a.dtype), where
        np.testing.assert_allclose(a.astype(float), e.astype(float), rtol=1e-5, equal_nan=True,
                                   err_msg=where)


@pytest.mark.parametrize("name", sorted(cases))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_array_function_matches_numpy(name, dtype):
    fn = cases[name]
    compiled = gj.jit(fn)
    for shape in SHAPES:
        for view in (False, True):
            base = (RNG.standard_normal((shape[0], 2 * shape[1])) * 3).astype(dtype)
            x = base[:, ::2] if view else np.ascontiguousarray(base[:, :shape[1]])
            with np.errstate(all="ignore"):
                try:
                    expected = fn(x.copy())
                except Exception as error:   # NumPy refuses: so must graphjit, clearly
                    with pytest.raises(GraphjitError):
                        compiled(x.copy())
                    continue
                _same(expected, compiled(x), f"{name} {np.dtype(dtype).name} {shape} view={view}")


@pytest.mark.parametrize("fn", [
    lambda x: np.flip(x), lambda x: np.roll(x, 1), lambda x: np.diff(x),
    lambda x: np.ediff1d(x), lambda x: np.nan_to_num(x), lambda x: np.sinc(x)])
def test_array_functions_of_empty_and_zero_d_inputs(fn):
    for x in (np.zeros((0,)), np.zeros((0, 3)), np.array(1.5)):
        try:
            expected = fn(x)
        except Exception:
            with pytest.raises(GraphjitError):
                gj.jit(fn)(x)
            continue
        _same(expected, gj.jit(fn)(x), repr(x))


def test_gradients_through_compositions_match_finite_differences():
    def loss(x):
        return (np.tensordot(np.roll(np.tril(x), 1, axis=0), np.kron(x[:2, :2], x[2:, 2:]), 1)
                * np.rot90(np.diff(x, prepend=0.0, axis=1)).T[:, :1]).sum()

    x = RNG.standard_normal((4, 4))
    grad = gj.jit(gj.grad(loss))(x)
    numeric = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = 1e-6
        numeric[index] = (loss(x + step) - loss(x - step)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_tensordot_shape_mismatch_names_the_line():
    with pytest.raises(GraphjitError, match=r"test_array_functions\.py:\d+: .*shape-mismatch"):
        gj.jit(lambda a, b: np.tensordot(a, b, axes=([0], [0])))(np.ones((2, 3)), np.ones((3, 2)))
