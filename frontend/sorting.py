"""Sorting, searching and counting: np.sort / argsort / partition / argpartition / lexsort,
np.searchsorted, np.digitize, np.histogram, np.bincount, np.isin, and the in-place
`ndarray.sort()` / `ndarray.partition()` methods.

The sorts and searches run as host steps (HOST_CALL: NumPy itself computes them, so NaN order,
stability and dtypes are NumPy's by construction); np.isin on a small test set is a fused OR of
comparisons. Functions whose result *shape* depends on the values (np.nonzero, np.unique,
...) are refused here with a message that says why and what to write instead.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from graphjit.compiler.errors import DTypeError, UnsupportedError

from .elementwise import host_call
from .indexing import take
from .numpy_api import METHODS, _eager_on_known, implements, lift_all
from .shapes import ravel, reshape
from .source import user_source
from .tracer import Tracer

# np.isin with at most this many test values compares against each one in a fused loop; larger
# test sets go to NumPy's own sort-based isin as a host step
ISIN_UNROLL_LIMIT = 32


def _static(value: Any, what: str, function: str) -> Any:
    """A static argument (an int, a tuple of ints, a string...): a traced one is refused unless
    its value is known while tracing (made from constants inside the function)."""
    if isinstance(value, Tracer):
        known = value._known()
        if known is None:
            raise UnsupportedError(
                f"np.{function}: {what} must be static (a Python value), not a traced array; "
                "mark the argument static with gj.jit(static_argnums=...)", user_source())
        value = known
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item() if value.ndim == 0 else tuple(value.tolist())
    if isinstance(value, list):
        return tuple(value)
    return value


def _axis_arg(axis: Any, function: str) -> int | None:
    axis = _static(axis, "axis", function)
    return None if axis is None else int(axis)


def _no_order(order: Any, function: str) -> None:
    if order is not None:
        raise UnsupportedError(f"np.{function}(order=...) sorts structured arrays by field, "
                               "which graphjit does not compile", user_source())


def _options(**options: Any) -> dict[str, Any]:
    """Keyword arguments left at their default (None) are not passed: NumPy's own defaults."""
    return {name: value for name, value in options.items() if value is not None}


# ---------------------------------------------------------------- sorts

@implements(np.sort)
def sort(a, axis=-1, kind=None, order=None, *, stable=None) -> Tracer:
    _no_order(order, "sort")
    return host_call("sort", [a], axis=_axis_arg(axis, "sort"),
                     **_options(kind=kind, stable=stable))


@implements(np.argsort, method="argsort")
def argsort(a, axis=-1, kind=None, order=None, *, stable=None) -> Tracer:
    _no_order(order, "argsort")
    return host_call("argsort", [a], axis=_axis_arg(axis, "argsort"),
                     **_options(kind=kind, stable=stable))


def _in_place_axis(axis: Any, method: str) -> int:
    if axis is None:
        raise DTypeError(f"ndarray.{method}(axis=None): the in-place method needs an integer "
                         f"axis (NumPy raises too); np.{method}(a, axis=None) returns a "
                         "flattened copy", user_source())
    return axis


def sort_in_place(a: Tracer, axis=-1, kind=None, order=None, *, stable=None) -> None:
    """ndarray.sort(): the array itself (and every view of it) is sorted, as NumPy does."""
    a._rebind(sort(a, _in_place_axis(axis, "sort"), kind, order, stable=stable))


def _kth(kth: Any, function: str) -> int | tuple[int, ...]:
    kth = _static(kth, "kth", function)
    if isinstance(kth, tuple):
        return tuple(int(k) for k in kth)
    return int(kth)


@implements(np.partition)
def partition(a, kth, axis=-1, kind="introselect", order=None) -> Tracer:
    _no_order(order, "partition")
    return host_call("partition", [a], kth=_kth(kth, "partition"),
                     axis=_axis_arg(axis, "partition"), kind=kind)


@implements(np.argpartition, method="argpartition")
def argpartition(a, kth, axis=-1, kind="introselect", order=None) -> Tracer:
    _no_order(order, "argpartition")
    return host_call("argpartition", [a], kth=_kth(kth, "argpartition"),
                     axis=_axis_arg(axis, "argpartition"), kind=kind)


def partition_in_place(a: Tracer, kth, axis=-1, kind="introselect", order=None) -> None:
    """ndarray.partition(): partitions the array itself, as NumPy does."""
    a._rebind(partition(a, kth, _in_place_axis(axis, "partition"), kind, order))


METHODS["sort"] = sort_in_place
METHODS["partition"] = partition_in_place


@implements(np.lexsort)
def lexsort(keys, axis=-1) -> Tracer:
    """The last key is the primary one; an array's first axis indexes the keys (as in NumPy:
    a 2-D array's rows, a 1-D array's elements as 0-d keys)."""
    if isinstance(keys, (list, tuple)):
        operands = lift_all(list(keys))
    else:
        (keys,) = lift_all([keys])
        operands = [keys[i] for i in range(keys.shape[0])] if keys.ndim else []
    if not operands:
        raise DTypeError("need sequence of keys with len > 0 in lexsort", user_source())
    return host_call("lexsort", operands, axis=_axis_arg(axis, "lexsort"))


# ---------------------------------------------------------------- searches

@implements(np.searchsorted, method="searchsorted")
def searchsorted(a, v, side="left", sorter=None) -> Tracer:
    """Indices (int64) where `v` would be inserted into sorted `a`; `sorter` permutes `a` first
    (a gather), exactly what NumPy's sorter argument means."""
    if sorter is not None:
        a, sorter = lift_all([a, sorter])
        a = take(a, sorter)
    return host_call("searchsorted", [a, v], side=_static(side, "side", "searchsorted"))


@implements(np.digitize)
def digitize(x, bins, right=False) -> Tracer:
    return host_call("digitize", [x, bins], right=bool(_static(right, "right", "digitize")))


# ---------------------------------------------------------------- counting

@implements(np.histogram)
def histogram(a, bins=10, range=None, density=None, weights=None) -> tuple[Tracer, Tracer]:
    """(counts, edges). `bins` is a static int or an array of edges (traced or not); `range`
    is static. Counts are int64 (float64 with `density` or float weights), as in NumPy."""
    if isinstance(bins, str):
        raise UnsupportedError(
            f"np.histogram(bins={bins!r}): the number of bins this rule picks depends on the "
            "data, so the result's shape is not known while tracing; pass an int or an array "
            "of bin edges", user_source())
    operands = [a]
    options: dict[str, Any] = {"range": _static(range, "range", "histogram"),
                               "density": _static(density, "density", "histogram"),
                               "weighted": weights is not None}
    if np.ndim(bins) == 0:        # a bin count: static (traced ones only if known)
        options["bins"] = int(_static(bins, "bins (a count)", "histogram"))
    else:
        operands.append(bins)
    if weights is not None:
        operands.append(weights)
    return tuple(host_call("histogram", operands, output=i, **options) for i in (0, 1))


@implements(np.bincount)
def bincount(x, weights=None, minlength=0) -> Tracer:
    """The result has max(x) + 1 (at least `minlength`) elements: static when x is a constant,
    or given by a static `minlength` (a value >= minlength is then an error at run time)."""
    done, result = _eager_on_known(np.bincount, (x,), {"weights": weights,
                                                      "minlength": minlength})
    if done:
        return result
    length = _static(minlength, "minlength", "bincount")
    known_x = x._known() if isinstance(x, Tracer) else np.asarray(x)
    if known_x is not None:       # constant bins, traced weights: the length is known
        length = np.bincount(known_x, minlength=length or 0).shape[0]
    elif not length:
        raise UnsupportedError(
            "np.bincount(x) has max(x) + 1 elements, which depends on the values of x, so its "
            "shape is not known while tracing. Pass minlength=N (a static bound on the values: "
            "the result then has exactly N elements, and a value >= N raises at run time), use "
            "np.add.at(np.zeros(N), x, 1), or count outside the jitted function", user_source())
    operands = [x] if weights is None else [x, weights]
    return host_call("bincount", operands, length=int(length))


# ---------------------------------------------------------------- membership

@implements(np.isin)
def isin(element, test_elements, assume_unique=False, invert=False, *, kind=None) -> Tracer:
    """Small test sets (<= ISIN_UNROLL_LIMIT values) compare against each value in one fused
    loop; larger ones run NumPy's isin as a host step."""
    element, test = lift_all([element, test_elements])
    if test.size > ISIN_UNROLL_LIMIT:
        return host_call("isin", [element, test], assume_unique=bool(assume_unique),
                         invert=bool(invert), **_options(kind=kind))
    values = ravel(test)
    found = np.zeros(element.shape, bool)
    for i in range(values.shape[0]):   # an OR of comparisons: one elementwise fused loop
        found = found | (element == values[i])
    return ~found if invert else found


# ---------------------------------------------------------------- data-dependent shapes

def _data_dependent(function: Callable, name: str, advice: str) -> Callable:
    """A handler that computes `function` on known (constant) operands, and otherwise refuses:
    its result's shape depends on the values, which a compiled function cannot have."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        done, result = _eager_on_known(function, args, kwargs)
        if done:
            return result
        raise UnsupportedError(
            f"{name}'s result has a shape that depends on the values of its input (how many "
            f"elements are selected or distinct), which graphjit cannot compile. {advice}; or "
            "compute it outside the jitted function and pass the result in", user_source())

    refuse.refuses = True      # registered only to explain itself (numpy_api.supported_names)
    return refuse


_MASK_ADVICE = ("Keep the shape with a mask instead: np.where(mask, x, fill), or a masked "
                "reduction such as np.sum(np.where(mask, x, 0))")
_SET_ADVICE = "Compare with np.isin(x, values) to get a mask of the same shape"
DATA_DEPENDENT: dict[str, str] = {
    "nonzero": _MASK_ADVICE, "argwhere": _MASK_ADVICE, "flatnonzero": _MASK_ADVICE,
    "trim_zeros": _MASK_ADVICE,
    "unique": _SET_ADVICE, "unique_values": _SET_ADVICE, "unique_counts": _SET_ADVICE,
    "unique_inverse": _SET_ADVICE, "unique_all": _SET_ADVICE, "setdiff1d": _SET_ADVICE,
    "union1d": _SET_ADVICE, "intersect1d": _SET_ADVICE, "setxor1d": _SET_ADVICE,
}
for _name, _advice in DATA_DEPENDENT.items():
    if hasattr(np, _name):
        implements(getattr(np, _name))(_data_dependent(getattr(np, _name), f"np.{_name}",
                                                       _advice))
METHODS["nonzero"] = _data_dependent(np.nonzero, "ndarray.nonzero()", _MASK_ADVICE)


def _known_condition(condition: Any) -> np.ndarray | None:
    if isinstance(condition, Tracer):
        return condition._known()
    return np.asarray(condition)


@implements(np.compress)
def compress(condition, a, axis=None, out=None) -> Tracer:
    """A static condition selects a static number of elements: a gather."""
    known = _known_condition(condition)
    if known is None or out is not None:
        return _data_dependent(np.compress, "np.compress", _MASK_ADVICE)(
            condition, a, axis=axis, out=out)
    (a,) = lift_all([a])
    if axis is None:
        a, axis = ravel(a), 0
    return take(a, np.flatnonzero(known), axis=axis)


@implements(np.extract)
def extract(condition, arr) -> Tracer:
    known = _known_condition(condition)
    if known is None:
        return _data_dependent(np.extract, "np.extract", _MASK_ADVICE)(condition, arr)
    (arr,) = lift_all([arr])
    return take(ravel(arr), np.flatnonzero(known))


METHODS["compress"] = lambda a, condition, axis=None, out=None: compress(condition, a, axis, out)
