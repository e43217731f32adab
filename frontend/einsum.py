"""np.einsum, traced as the ops it stands for: diagonals are strided views, labels that appear in
one operand only are summed, and operands combine left to right, as a batched matmul where they
share a contracted label and as a broadcast multiply where they do not."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graphjit.compiler.errors import ShapeError, UnsupportedError

from .linalg import matmul
from .numpy_api import implements, lift_all, result_type, write_out
from .reductions import sum_
from .shapes import reshape, transpose
from .source import user_source
from .tracer import Tracer, broadcast_node, cast_node

# labels standing for the dimensions an ellipsis covers (never valid einsum letters)
_ELLIPSIS_LABELS = tuple(chr(0x2460 + i) for i in range(32))


@dataclass
class Term:
    """One operand during the contraction: a tracer and one label per dimension."""

    value: Tracer
    labels: list[str]


def _error(message: str) -> ShapeError:
    return ShapeError(f"np.einsum: {message}", user_source())


def _expand_ellipsis(spec: str, ndim: int, width: int) -> list[str]:
    if "..." not in spec:
        if len(spec) != ndim:
            raise _error(f"operand has {ndim} dimensions but subscripts '{spec}' name {len(spec)}")
        return list(spec)
    head, tail = spec.split("...")
    covered = ndim - len(head) - len(tail)
    if covered < 0:
        raise _error(f"operand has {ndim} dimensions, fewer than subscripts '{spec}' name")
    return list(head) + list(_ELLIPSIS_LABELS[width - covered:width]) + list(tail)


def parse(subscripts: str, ndims: list[int]) -> tuple[list[list[str]], list[str]]:
    """Labels per operand and for the output, with '...' expanded to placeholder labels."""
    subscripts = subscripts.replace(" ", "")
    lhs, arrow, rhs = subscripts.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(ndims):
        raise _error(f"subscripts name {len(specs)} operands but {len(ndims)} were given")
    for spec in specs + [rhs]:
        if not all(c.isalpha() for c in spec.replace("...", "")) or spec.count("...") > 1:
            raise _error(f"invalid subscripts '{subscripts}'")
    width = max((n - len(s.replace("...", "")) for s, n in zip(specs, ndims) if "..." in s),
                default=0)
    inputs = [_expand_ellipsis(s, n, width) for s, n in zip(specs, ndims)]
    if arrow:
        output = list(rhs.replace("...", "".join(_ELLIPSIS_LABELS[:width])))
    else:
        letters = [label for labels in inputs for label in labels
                   if label not in _ELLIPSIS_LABELS]
        output = list(_ELLIPSIS_LABELS[:width]) + sorted(
            label for label in set(letters) if letters.count(label) == 1)
    known = {label for labels in inputs for label in labels}
    for label in output:
        if label not in known:
            raise _error(f"output subscript '{label}' does not appear in the inputs")
    if len(set(output)) != len(output):
        raise _error("output subscripts repeat a label")
    return inputs, output


def _label_sizes(terms: list[Term]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for term in terms:
        for label, size in zip(term.labels, term.value.shape):
            known = sizes.get(label, 1)
            if size != 1 and known != 1 and size != known:
                raise _error(f"label '{label}' has sizes {known} and {size}, which do not "
                             "broadcast")
            sizes[label] = max(known, size) if 0 not in (size, known) else 0
    return sizes


def _permute(term: Term, order: list[str]) -> Tracer:
    return transpose(term.value, [term.labels.index(label) for label in order])


def _diagonal(term: Term, label: str) -> Term:
    """Repeated label in one operand: keep the diagonal of the first two such axes."""
    first = term.labels.index(label)
    second = term.labels.index(label, first + 1)
    rest = [i for i in range(len(term.labels)) if i not in (first, second)]
    moved = transpose(term.value, rest + [first, second])
    size = term.value.shape[first]
    if term.value.shape[second] != size:
        raise _error(f"repeated label '{label}' has different sizes in one operand")
    flat = reshape(moved, moved.shape[:-2] + (size * size,))
    from .indexing import getitem

    diagonal = getitem(flat, (Ellipsis, slice(None, None, size + 1)))
    return Term(diagonal, [term.labels[i] for i in rest] + [label])


def _sum_labels(term: Term, labels: set[str]) -> Term:
    axes = tuple(i for i, label in enumerate(term.labels) if label in labels)
    if not axes:
        return term
    return Term(sum_(term.value, axis=axes, dtype=term.value.dtype),
                [label for label in term.labels if label not in labels])


def _broadcast_labels(value: Tracer, labels: list[str], sizes: dict[str, int]) -> Tracer:
    target = tuple(sizes[label] for label in labels)
    if value.shape == target:
        return value
    return Tracer(value._ctx, broadcast_node(value._ctx, value._id, target))


def _contract_pair(a: Term, b: Term, keep: set[str], sizes: dict[str, int]) -> Term:
    shared = [label for label in a.labels if label in b.labels]
    contracted = [label for label in shared if label not in keep]
    batch = [label for label in shared if label in keep]
    a_only = [label for label in a.labels if label not in b.labels]
    b_only = [label for label in b.labels if label not in a.labels]
    a_value = _broadcast_labels(_permute(a, batch + a_only + contracted),
                                batch + a_only + contracted, sizes)
    b_value = _broadcast_labels(_permute(b, batch + contracted + b_only),
                                batch + contracted + b_only, sizes)
    batch_shape = tuple(sizes[label] for label in batch)
    a_shape = tuple(sizes[label] for label in a_only)
    b_shape = tuple(sizes[label] for label in b_only)
    if not contracted:
        # broadcast multiply: (batch, a_only, 1...) * (batch, 1..., b_only)
        left = reshape(a_value, batch_shape + a_shape + (1,) * len(b_only))
        right = reshape(b_value, batch_shape + (1,) * len(a_only) + b_shape)
        return Term(left * right, batch + a_only + b_only)
    inner = math.prod(sizes[label] for label in contracted)
    batch_size = math.prod(batch_shape)
    left = reshape(a_value, (batch_size, math.prod(a_shape), inner))
    right = reshape(b_value, (batch_size, inner, math.prod(b_shape)))
    product = reshape(matmul(left, right), batch_shape + a_shape + b_shape)
    return Term(product, batch + a_only + b_only)


def _prepare(term: Term, output: list[str], others: list[Term]) -> Term:
    for label in list(dict.fromkeys(term.labels)):
        while term.labels.count(label) > 1:
            term = _diagonal(term, label)
    elsewhere = set(output).union(*(set(o.labels) for o in others))
    return _sum_labels(term, {label for label in term.labels if label not in elsewhere})


@implements(np.einsum)
def einsum(*operands, out=None, dtype=None, order="K", casting="safe", optimize=False):
    if not operands or not isinstance(operands[0], str):
        raise UnsupportedError("np.einsum with interleaved (operand, sublist) arguments is not "
                               "supported; pass a subscripts string", user_source())
    subscripts, arrays = operands[0], lift_all(list(operands[1:]))
    inputs, output = parse(subscripts, [a.ndim for a in arrays])
    common = np.dtype(dtype) if dtype is not None else result_type(*arrays)
    ctx = arrays[0]._ctx
    terms = [Term(Tracer(ctx, cast_node(ctx, a._id, common)), labels)
             for a, labels in zip(arrays, inputs)]
    sizes = _label_sizes(terms)
    terms = [_prepare(t, output, terms[:i] + terms[i + 1:]) for i, t in enumerate(terms)]
    result = terms[0]
    for position in range(1, len(terms)):
        keep = set(output).union(*(set(t.labels) for t in terms[position + 1:]))
        result = _contract_pair(result, terms[position], keep, sizes)
    result = _sum_labels(result, set(result.labels) - set(output))
    value = _broadcast_labels(_permute(result, output), output, sizes)
    return value if out is None else write_out(out, value)
