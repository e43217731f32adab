"""The reduction accumulators of the CPU renderer: REDUCERS[op][dtype kind] -> Reducer.

loops.py drives them: `init` before the reduce loops, `update` per element, per-block
`block_init`/`merge` around the blocked innermost loop, `finish` after the last pass.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from graphjit.compiler.errors import CompileError
from graphjit.compiler.kernel import Instr
from graphjit.compiler.ops import Op

from .emitter import INT_LIMITS, Emitter, const, llvm_type

if TYPE_CHECKING:
    from .loops import KernelRenderer

# ---------------------------------------------------------------- reductions

class Reducer:
    """The accumulator of one reduction. `state` is carried through every reduce loop; the
    innermost (blocked) loop carries `block` values, started from and merged into the state."""

    state_types: list[str]
    block_types: list[str]

    def init(self) -> list[str]:
        raise NotImplementedError

    def block_init(self, state: list[str]) -> list[str]:
        return state

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        raise NotImplementedError

    def merge(self, state: list[str], block: list[str]) -> list[str]:
        return block

    def finish(self, state: list[str]) -> str:
        return state[0]


class FoldReducer(Reducer):
    """acc = combine(acc, x) from an identity element."""

    def __init__(self, e: Emitter, ty: str, identity: str,
                 combine: Callable[[Emitter, str, str, str], str]):
        self.e, self.ty, self.identity, self.combine = e, ty, identity, combine
        self.state_types = self.block_types = [ty]

    def init(self) -> list[str]:
        return [self.identity]

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        return [self.combine(self.e, self.ty, block[0], value)]


class BlockedFloatSum(Reducer):
    """Per-block sums in the value's type (vectorised, `reassoc`), added into a float64 total."""

    def __init__(self, e: Emitter, ty: str):
        self.e, self.ty = e, ty
        self.state_types, self.block_types = ["double"], [ty]

    def init(self) -> list[str]:
        return [const(0.0, "double")]

    def block_init(self, state: list[str]) -> list[str]:
        return [const(0.0, self.ty)]   # -0.0 would keep -0 sums; NumPy's sum gives +0 too

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        return [self.e.fbin("fadd", self.ty, block[0], value, flags="reassoc contract")]

    def merge(self, state: list[str], block: list[str]) -> list[str]:
        partial = widen_to_double(self.e, self.ty, block[0])
        return [self.e.fbin("fadd", "double", state[0], partial, flags="")]

    def finish(self, state: list[str]) -> str:
        if self.ty == "double":
            return state[0]
        return self.e.cast("fptrunc", "double", state[0], self.ty)


def widen_to_double(e: Emitter, ty: str, value: str) -> str:
    return value if ty == "double" else e.cast("fpext", ty, value, "double")


class ArgReducer(Reducer):
    """(best, index): the first position of the extreme value; the first NaN wins (NumPy)."""

    def __init__(self, e: Emitter, ty: str, kind: str, maximum: bool):
        self.e, self.ty, self.kind, self.maximum = e, ty, kind, maximum
        self.state_types = self.block_types = [ty, "i64"]

    def init(self) -> list[str]:
        if self.kind == "f":
            start = -math.inf if self.maximum else math.inf
        elif self.kind == "i":
            lo, hi = INT_LIMITS[self.ty]
            start = lo if self.maximum else hi
        else:
            start = 0 if self.maximum else 1
        return [const(start, self.ty), "0"]

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        e, ty = self.e, self.ty
        best, index = block
        if self.kind == "f":
            better = e.fcmp("ogt" if self.maximum else "olt", ty, value, best)
            nan_first = e.ibin("and", "i1", e.is_nan(ty, value),
                               e.fcmp("ord", ty, best, best))
            better = e.ibin("or", "i1", better, nan_first)
        else:
            signed = "s" if self.kind == "i" else "u"
            better = e.icmp(f"{signed}{'gt' if self.maximum else 'lt'}", ty, value, best)
        return [e.select(better, ty, value, best), e.select(better, "i64", position, index)]

    def finish(self, state: list[str]) -> str:
        return state[1]


class FirstPosition(Reducer):
    """The first position whose value is `extreme` (a NaN where the extreme is NaN): the second
    pass of a row's arg-reduction. A min over select(match, position, NONE) carries no chain
    through the values, so it vectorises (ArgReducer's compare-and-select chain does not);
    positions are i32 where the reduce space allows (twice the lanes of i64)."""

    def __init__(self, e: Emitter, ty: str, kind: str, extreme: str, size: int):
        self.e, self.ty, self.kind, self.extreme = e, ty, kind, extreme
        self.index_type = "i32" if size < INT_LIMITS["i32"][1] else "i64"
        self.none = str(INT_LIMITS[self.index_type][1])
        self.state_types = self.block_types = [self.index_type]
        # loop-invariant: whether the extreme is NaN (then the first NaN is the answer)
        self.extreme_is_nan = e.is_nan(ty, extreme) if kind == "f" else None

    def init(self) -> list[str]:
        return [self.none]

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        e, ty, it = self.e, self.ty, self.index_type
        if self.kind == "f":
            both_nan = e.ibin("and", "i1", self.extreme_is_nan, e.is_nan(ty, value))
            match = e.ibin("or", "i1", e.fcmp("oeq", ty, value, self.extreme), both_nan)
        else:
            match = e.icmp("eq", ty, value, self.extreme)
        if it != "i64":
            position = e.cast("trunc", "i64", position, it)
        candidate = e.select(match, it, position, self.none)
        return [e.intrinsic(f"llvm.smin.{it}", it, [(it, block[0]), (it, candidate)])]

    def finish(self, state: list[str]) -> str:
        if self.index_type == "i64":
            return state[0]
        return self.e.cast("sext", self.index_type, state[0], "i64")


EXTREME_OF = {Op.ARGMAX: Op.REDUCE_MAX, Op.ARGMIN: Op.REDUCE_MIN}


class BoolFold(Reducer):
    """any / all of bools, accumulated in i8: vectors of i1 make LLVM's code explode."""

    def __init__(self, e: Emitter, ty: str, any_true: bool):
        self.e, self.any_true = e, any_true
        self.state_types = self.block_types = ["i8"]

    def init(self) -> list[str]:
        return ["0" if self.any_true else "1"]

    def update(self, block: list[str], value: str, position: str) -> list[str]:
        widened = self.e.cast("zext", "i1", value, "i8")
        return [self.e.ibin("or" if self.any_true else "and", "i8", block[0], widened)]

    def finish(self, state: list[str]) -> str:
        return self.e.icmp("ne", "i8", state[0], "0")


def float_fold(name: str) -> Callable[[Emitter, str, str, str], str]:
    return lambda e, ty, acc, x: e.binary_intrinsic(name, ty, acc, x)


def int_fold(name: str) -> Callable[[Emitter, str, str, str], str]:
    return lambda e, ty, acc, x: e.ibin(name, ty, acc, x)


def int_fold_intrinsic(name: str) -> Callable[[Emitter, str, str, str], str]:
    return lambda e, ty, acc, x: e.intrinsic(f"llvm.{name}.{ty}", ty, [(ty, acc), (ty, x)])


ReducerFactory = Callable[[Emitter, str], Reducer]


def fold_table(f: ReducerFactory, i: ReducerFactory,
               b: ReducerFactory) -> dict[str, ReducerFactory]:
    """Reducer factories by operand kind: float, integer, bool."""
    return {"f": f, "i": i, "b": b}
ARG_REDUCTIONS = frozenset({Op.ARGMAX, Op.ARGMIN})

REDUCERS: dict[Op, dict[str, ReducerFactory]] = {
    Op.SUM: fold_table(
        f=BlockedFloatSum,
        i=lambda e, ty: FoldReducer(e, ty, "0", int_fold("add")),
        b=lambda e, ty: BoolFold(e, ty, any_true=True)),
    Op.PROD: fold_table(
        f=lambda e, ty: FoldReducer(e, ty, const(1.0, ty), lambda e_, t, a, x: e_.fbin(
            "fmul", t, a, x, flags="reassoc contract")),
        i=lambda e, ty: FoldReducer(e, ty, "1", int_fold("mul")),
        b=lambda e, ty: BoolFold(e, ty, any_true=False)),
    Op.REDUCE_MAX: fold_table(
        f=lambda e, ty: FoldReducer(e, ty, const(-math.inf, ty), float_fold("maximum")),
        i=lambda e, ty: FoldReducer(e, ty, str(INT_LIMITS[ty][0]), int_fold_intrinsic("smax")),
        b=lambda e, ty: BoolFold(e, ty, any_true=True)),
    Op.REDUCE_MIN: fold_table(
        f=lambda e, ty: FoldReducer(e, ty, const(math.inf, ty), float_fold("minimum")),
        i=lambda e, ty: FoldReducer(e, ty, str(INT_LIMITS[ty][1]), int_fold_intrinsic("smin")),
        b=lambda e, ty: BoolFold(e, ty, any_true=False)),
    Op.ARGMAX: {kind: (lambda e, ty, k=kind: ArgReducer(e, ty, k, True)) for kind in "fib"},
    Op.ARGMIN: {kind: (lambda e, ty, k=kind: ArgReducer(e, ty, k, False)) for kind in "fib"},
}


def make_reducer(r: KernelRenderer, instr: Instr, op: Op | None = None) -> Reducer:
    """The accumulator of `instr`'s reduction (computing `op` instead, when given)."""
    dtype = r.arg_dtype(instr)
    factory = REDUCERS.get(op or instr.op, {}).get(dtype.kind)
    if factory is None:
        raise CompileError(f"{instr.op.value} is not supported for {dtype} on the CPU backend",
                           instr.source)
    return factory(r.e, llvm_type(dtype))


def first_position_reducer(r: KernelRenderer, instr: Instr, extreme: str) -> Reducer:
    dtype = r.arg_dtype(instr)
    size = math.prod(d.extent for d in r.reduce_dims)
    return FirstPosition(r.e, llvm_type(dtype), dtype.kind, extreme, size)
