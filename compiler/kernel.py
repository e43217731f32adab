"""The Program: what the compiler hands a backend. Backend-neutral; CPU and CUDA lower the same one.

A Program is an ordered list of steps over numbered buffers. Every buffer holds one materialised
graph node, C-contiguous, with the node's shape and dtype, except that an update (a basic-index
setitem) may write a region of its target's buffer in place, so that one buffer holds several
graph values over time (`Buffer.versions`, the last being its final value). A step is one of:

- `LoopKernel`: a fused group of elementwise ops, views and reductions, described as a flat list of
  SSA instructions evaluated over one iteration space (`loop_shape`). Views never appear as
  instructions: they were folded into the affine `Access` of each load.
- `MatmulKernel`: a (batched) matrix product C = op(A) @ op(B), operands possibly transposed views;
  optionally followed by an elementwise epilogue applied to C in place (a LoopKernel whose loop
  space is C's shape). The product is written to buffer `out`; the epilogue reads C back from
  `out` only at C's own element (C-contiguous access), so a backend may run it per tile of C.
  When nothing else needs the raw product, `out` is the buffer of an epilogue result of C's
  dtype, and the epilogue stores that result into `out` in place (read C[i], then write out[i]).
- `HostKernel`: one graph node run with its NumPy reference implementation (ops without a native
  lowering yet: gathers, scatters, concat...).

Semantics of a LoopKernel, for a backend:
    for each outer index o (loop dims not in reduce_axes):
        for each instruction in order, evaluated lazily where needed:
            LOAD   reads buffers[access.buffer][offset + sum(strides[d] * i[d])]
            CONST  is attrs["value"], a Python scalar of the instruction's dtype
            an elementwise Op applies the op table's meaning to its args
            a reduction Op (SUM, PROD, REDUCE_MAX, REDUCE_MIN, ARGMAX, ARGMIN) folds its FULL-level
              operand over every index of the reduce axes (with o fixed); its result is OUTER-level.
              ARGMAX/ARGMIN return the position along their single reduce axis (first on ties,
              NaN wins like NumPy); REDUCE_MAX/MIN propagate NaN like NumPy.
        each Store writes its instruction's value at its Access: FULL-level stores once per full
        index, OUTER-level stores once per outer index (their strides are 0 on reduce axes).
An instruction's `level` says whether its value varies along the reduce axes (FULL) or not (OUTER).
A kernel with no reduce axes has only FULL instructions. Guarantees the scheduler gives backends:
instructions are in topological order; an OUTER instruction only reads OUTER ones; a reduction's
operand is FULL-level; a FULL instruction may read OUTER ones (in particular results of earlier
reductions: softmax's `x - max` needs a second pass over the reduce axes, so a backend evaluates a
kernel with reductions in passes over the reduce axes, one per chain of dependent reductions plus
one for the FULL stores); a store is FULL iff its access has a nonzero stride on a reduce axis,
and then its instruction is FULL-level. Strides are 0 on loop dims of extent 1. A kernel may load a buffer it stores into
(an in-place update) only where the load touches no element any of its stores writes, or reads
exactly the element a store writes in the same iteration (the value from before the kernel); its
stores into one buffer write disjoint elements. So no result depends on the order of the
iterations (compiler/regions.py decides disjointness). Loads are
deduplicated (one LOAD per distinct access, dtype and level). Reductions keep their graph attrs:
{"axes", "keepdims"} (SUM, PROD, REDUCE_MAX, REDUCE_MIN) or {"axis", "keepdims"} (ARGMAX,
ARGMIN), where the axes are the kernel's reduce_axes (the loop space is the operand's shape);
keepdims means nothing inside a kernel: results are written through store Accesses.
LOAD instructions carry {"access": Access}; CONST ones {"value": Python scalar}; CAST {"dtype"}.
Float sums should accumulate pairwise or in blocks (NumPy's accuracy); integer ops follow NumPy
(wrap-around, floor division/modulo with Python signs, division by zero gives 0 for integers).
`compiler.program_interpreter.run_program` is the executable definition of these semantics.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .ir import Attrs, Graph
from .ops import Op


class Level(enum.Enum):
    FULL = "full"
    OUTER = "outer"


class Operand(enum.Enum):
    """The instructions that bring a value into a kernel (not ops of the graph): LOAD reads a
    buffer through an Access, CONST is an immediate scalar."""

    LOAD = "load"
    CONST = "const"


class BufferKind(enum.Enum):
    PARAM = "param"      # a flat argument leaf of the call (made C-contiguous by the runtime)
    CONST = "const"      # a constant array baked into the executable
    TEMP = "temp"        # an intermediate, allocated once per workspace
    OUTPUT = "output"    # returned to the caller: allocated fresh on every call


@dataclass(frozen=True)
class Buffer:
    index: int
    node: int                      # graph node id whose value the buffer holds
    shape: tuple[int, ...]
    dtype: np.dtype
    kind: BufferKind
    param_index: int | None = None  # for PARAM buffers
    # TEMP buffers with the same slot share memory (the planner proved their lifetimes disjoint:
    # the last step touching one runs before the first step touching the next); a slot is as
    # large as its largest buffer (`Program.slot_nbytes`). None: a buffer of its own.
    slot: int | None = None
    value: np.ndarray | None = field(default=None, compare=False, repr=False)  # CONST buffers
    # later graph nodes the buffer holds, in order: updates (basic setitem) that wrote a region
    # of it in place after `node` (its value when first written); the last one is its final value
    versions: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        size = 1
        for d in self.shape:
            size *= d
        return size * self.dtype.itemsize


@dataclass(frozen=True)
class Access:
    """An affine view of a buffer from the loop indices: element offset + strides (in elements)."""

    buffer: int
    strides: tuple[int, ...]
    offset: int = 0


@dataclass(frozen=True)
class Instr:
    op: Op | Operand
    args: tuple[int, ...]
    dtype: np.dtype
    level: Level = Level.FULL
    attrs: Attrs = field(default_factory=Attrs)   # LOAD: access; CONST: value; CAST: dtype; ...
    node: int | None = None                        # the graph node it came from (for reports)
    source: str = ""


@dataclass(frozen=True)
class Store:
    instr: int
    access: Access


@dataclass(frozen=True)
class LoopKernel:
    name: str
    loop_shape: tuple[int, ...]
    reduce_axes: tuple[int, ...]
    instrs: tuple[Instr, ...]
    stores: tuple[Store, ...]
    nodes: tuple[int, ...] = ()      # graph nodes fused into this kernel

    def buffers(self) -> tuple[int, ...]:
        """Buffer indices this kernel reads or writes, in a stable order."""
        seen: dict[int, None] = {}
        for instr in self.instrs:
            if instr.op is Operand.LOAD:
                seen.setdefault(instr.attrs["access"].buffer)
        for store in self.stores:
            seen.setdefault(store.access.buffer)
        return tuple(seen)


@dataclass(frozen=True)
class MatmulKernel:
    name: str
    a: Access            # strides over (batch..., m, k) of A as read
    b: Access            # strides over (batch..., k, n)
    out: int             # output buffer (C-contiguous (batch..., m, n))
    batch: tuple[int, ...]
    m: int
    n: int
    k: int
    dtype: np.dtype
    epilogue: LoopKernel | None = None   # applied after the product, over (batch..., m, n)
    nodes: tuple[int, ...] = ()


@dataclass(frozen=True)
class HostKernel:
    name: str
    node: int
    op: Op
    attrs: Attrs
    inputs: tuple[int, ...]   # buffer indices, in operand order
    out: int
    nodes: tuple[int, ...] = ()


Kernel = LoopKernel | MatmulKernel | HostKernel


@dataclass
class Program:
    graph: Graph
    buffers: list[Buffer]
    steps: list[Kernel]
    outputs: list[int]          # buffer index per graph output (same order as graph.outputs)
    # for each fusion boundary, why fusion stopped (for fusion_report)
    notes: dict[str, Any] = field(default_factory=dict)

    def slot_nbytes(self) -> dict[int, int]:
        """Bytes each TEMP slot needs: the largest of the buffers that share it."""
        sizes: dict[int, int] = {}
        for buffer in self.buffers:
            if buffer.slot is not None:
                sizes[buffer.slot] = max(sizes.get(buffer.slot, 0), buffer.nbytes)
        return sizes

    def buffer_of_param(self, param_index: int) -> Buffer:
        for buffer in self.buffers:
            if buffer.kind is BufferKind.PARAM and buffer.param_index == param_index:
                return buffer
        raise KeyError(param_index)
