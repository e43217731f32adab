"""In-place updates (issue 10 item 6): a basic-index setitem compiles to a LoopKernel that stores
into its target's buffer when the old value is dead, fuses with its value's producers and with the
next update of the same array where no load of that buffer sees a store, and copies the old value
first otherwise. Every function is checked against the undecorated NumPy function (values, dtype,
shape, arguments written back); the Program checks look at kernel kinds and buffers, never at
timings. compiler/regions.py's disjointness is checked against brute-force address sets."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import graphjit as gj
from graphjit.compiler.errors import VerifyError
from graphjit.compiler.ir import Attrs
from graphjit.compiler.kernel import (
    Access, Buffer, BufferKind, HostKernel, Instr, LoopKernel, Operand, Program, Store,
)
from graphjit.compiler.program_interpreter import run_program
from graphjit.compiler.regions import disjoint, progressions, update_region
from graphjit.compiler.verify_program import verify_program
from graphjit.runtime.cpu.sharing import structural_key

from helpers import check_against_numpy

RNG = np.random.default_rng(7)


def program_of(fn, *args):
    return gj.jit(fn).lower(*args).program


def loops(program: Program) -> list[LoopKernel]:
    return [s for s in program.steps if isinstance(s, LoopKernel)]


def writes_loaded_buffer(kernel: LoopKernel) -> bool:
    loaded = {i.attrs["access"].buffer for i in kernel.instrs if i.op is Operand.LOAD}
    return any(s.access.buffer in loaded for s in kernel.stores)


def copies(program: Program) -> list[LoopKernel]:
    """Kernels that copy one whole value into a fresh buffer (an update that could not run in
    place, or an output copy)."""
    return [k for k in loops(program) if len(k.instrs) == 1 and len(k.stores) == 1
            and program.buffers[k.stores[0].access.buffer].shape == k.loop_shape]


# ---------------------------------------------------------------- the stencil

def sweeps(x0, b, count=6):
    x = x0 * 1.0
    for _ in range(count):
        x[1:-1, 1:-1] = (b[1:-1, 1:-1] + x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2]
                         + x[1:-1, 2:]) * 0.2
        x[0, 1:-1] = x[1, 1:-1]
        x[-1, 1:-1] = x[-2, 1:-1]
    return x


def heat(u, steps=5):
    u = u.copy()
    for _ in range(steps):
        u[1:-1] = u[1:-1] + 0.1 * (u[2:] - 2 * u[1:-1] + u[:-2])
    return u


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_stencil_matches_numpy(dtype):
    x0, b = RNG.random((10, 9)).astype(dtype), RNG.random((10, 9)).astype(dtype)
    check_against_numpy(sweeps, x0, b)
    check_against_numpy(heat, RNG.random(12).astype(dtype))


def test_the_stencil_runs_in_place_with_no_host_kernel():
    x0, b = RNG.random((10, 9)), RNG.random((10, 9))
    program = program_of(sweeps, x0, b)
    assert not any(isinstance(s, HostKernel) for s in program.steps)
    (out,) = program.outputs
    assert len(program.buffers[out].versions) >= 3 * 6 - 1   # nearly every update in place
    # one copy of the argument (it must not be written), none later
    assert len(copies(program)) == 1
    # the two boundary updates of each sweep share one kernel, storing twice into the array
    boundary = [k for k in loops(program) if len(k.stores) == 2
                and {s.access.buffer for s in k.stores} == {out}]
    assert len(boundary) == 6
    assert all(writes_loaded_buffer(k) for k in boundary)
    # the Jacobi update reads neighbours of what it writes: from a temp, not in one kernel
    interior = [k for k in loops(program) if k.loop_shape == (8, 7) and k.stores[0].access
                .buffer == out]
    for kernel in interior[1:]:
        loaded = {program.buffers[i.attrs["access"].buffer].kind for i in kernel.instrs
                  if i.op is Operand.LOAD}
        assert loaded == {BufferKind.TEMP}


def test_the_stencils_kernels_share_llvm_functions():
    x0, b = RNG.random((10, 9)), RNG.random((10, 9))
    text = gj.jit(sweeps).lower(x0, b).as_text("llvm")
    assert "_shared" in text


# ---------------------------------------------------------------- hazards and corner cases

def shifted(x):
    y = x * 2
    y[1:] = y[:-1] + 1          # reads what an earlier iteration writes
    return y


def shifted_back(x):
    y = x * 2
    y[:-1] = y[1:] + 1
    return y


def reversed_copy(x):
    y = x + 1
    y[::-1] = y
    return y


def reversed_value(x):
    y = x + 1
    y[::-1] = y * 3
    return y


def same_element(x):
    y = x + 1
    y[1:4] = y[1:4] * 3         # exactly the element written: fuses in place
    return y


def step_slices(x):
    y = x * 2
    y[::2] = y[1::2] * 3
    y[1::3] = -y[2::3]
    return y


def broadcast_row(x):
    y = x * 2
    y[1:, :] = y[0, :]
    y[:, 0] = 5
    return y


def broadcast_column(x):
    y = x * 2
    y[:, 1:] = y[:, :1] + 1
    return y


def int_targets(x):
    y = x * 2
    y[2] = 5
    y[-1, 1] = y[0, 0] * 3
    y[1, ::-1] = y[0]
    return y


def new_axes(x):
    y = x * 2
    y[None, 1:] = y[:-1] + 1
    y[..., 0] = 7
    return y


def negative_2d(x):
    y = x * 2
    y[::-1, ::2] = y[:, ::2] * 10
    return y


def old_version_later(x):
    y = x * 2
    z = y[1:3]                  # a view: NumPy's z sees the write
    old = y + 0                 # a value: the old version stays needed
    y[1] = 100
    return y, z * 1, old


def old_version_after(x):
    y = x * 2
    w = y * 1                   # simplify makes this y itself: read after the update
    y[0] = -1
    return w + y


def write_argument(x):
    x[1:3] = 0
    x[-1] *= 2


def write_argument_view(x):
    v = x[::2]
    v[:] = v[::-1]


def zeros_then_fill(x):
    out = np.zeros((3, 4))
    for i in range(3):
        out[i] = 2 * x[i]
    out[:, 1:] += out[:, :-1]
    return out


def empty_regions(x):
    y = x * 2
    y[2:2] = 5
    y[len(y):] = 1
    return y


def leading_unit_dims(x):
    y = x * 2
    y[0:3, 4] = y[2:3, ::2] + 3     # a (1, 3) value fills a (3,) region
    y[1:, :2] = y[None, :1, 2:4]
    return y


def empty_negative_steps(x):
    y = x * 2
    y[-4:-2:-2, 1:3] += y[-1, -3]   # slice(-4, -2, -2) of 3 rows is empty
    y[-1:-1:-1] = 5
    return y, x[-5:-2:-1] * 1


def accumulate_rows(x):
    y = x * 1.5
    for i in range(1, y.shape[0]):
        y[i] += y[i - 1]
    return y


CASES = [
    (shifted, (6,)), (shifted_back, (6,)), (reversed_copy, (5,)), (reversed_value, (5,)),
    (same_element, (6,)), (step_slices, (10,)), (broadcast_row, (3, 4)), (broadcast_column, (3, 4)),
    (int_targets, (3, 4)), (new_axes, (5,)), (negative_2d, (4, 5)), (old_version_later, (4,)),
    (old_version_after, (3,)), (write_argument, (5,)), (write_argument_view, (7,)),
    (zeros_then_fill, (3, 4)), (empty_regions, (4,)), (leading_unit_dims, (3, 6)), (empty_negative_steps, (3, 6)), (accumulate_rows, (5, 3)),
]


@pytest.mark.parametrize("fn, shape", CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_updates_match_numpy(fn, shape, dtype):
    x = (RNG.standard_normal(shape) * 10).astype(dtype)
    check_against_numpy(fn, x)


def test_bool_and_zero_d_updates():
    def flip(m):
        m = m.copy()
        m[1:] = ~m[:-1]
        return m

    def scalar(x):
        y = x.copy()
        y[()] = 3
        y[...] += 1
        return y

    check_against_numpy(flip, RNG.random(6) > 0.5)
    check_against_numpy(scalar, np.array(1.5))


def test_empty_arrays():
    def fill(x):
        y = x * 2
        y[:, 1:] = 3
        y[1:] = y[:-1]
        return y

    check_against_numpy(fill, np.zeros((0, 3)))
    check_against_numpy(fill, np.zeros((2, 0)))


def test_an_update_of_a_dead_temp_writes_its_buffer():
    def f(x):
        y = x * 2
        y[1:3] = 0
        return y

    program = program_of(f, np.arange(5.0))
    assert not copies(program)
    (out,) = program.outputs
    assert program.buffers[out].versions
    assert all(s.access.buffer == out for k in loops(program) for s in k.stores)


def test_an_update_fuses_with_its_value():
    def f(x, b):
        y = x * 2
        y[1:-1] = b[1:-1] * 3 + y[1:-1]
        return y

    program = program_of(f, np.arange(6.0), np.ones(6))
    update = [k for k in loops(program) if k.loop_shape == (4,)]
    assert len(update) == 1 and writes_loaded_buffer(update[0])
    ops = {i.op for i in update[0].instrs}
    assert gj.compiler.ops.Op.MUL in ops and gj.compiler.ops.Op.ADD in ops


def test_overlapping_reads_never_share_the_writing_kernel():
    for fn in (shifted, shifted_back, reversed_value, step_slices):
        program = program_of(fn, np.arange(10.0))
        verify_program(program)     # (the verifier's in-place rule, explicitly)
        for kernel in loops(program):
            stored = {s.access.buffer: s.access for s in kernel.stores}
            for instr in kernel.instrs:
                if instr.op is Operand.LOAD and instr.attrs["access"].buffer in stored:
                    assert instr.attrs["access"] == stored[instr.attrs["access"].buffer] or \
                        _disjoint(instr.attrs["access"], stored[instr.attrs["access"].buffer],
                                  kernel.loop_shape, program.buffers[instr.attrs["access"]
                                                                     .buffer].shape)


def _disjoint(a: Access, b: Access, loop_shape, buffer_shape) -> bool:
    return disjoint(a.strides, a.offset, b.strides, b.offset, loop_shape, buffer_shape)


def test_a_value_still_needed_is_copied_first():
    program = program_of(old_version_after, np.arange(3.0))
    assert len(copies(program)) >= 1
    x = np.arange(3.0)
    np.testing.assert_array_equal(gj.jit(old_version_after)(x), old_version_after(x))


def test_arguments_are_never_written_by_a_kernel():
    program = program_of(write_argument, np.arange(5.0))
    params = {b.index for b in program.buffers if b.kind is BufferKind.PARAM}
    assert not any(s.access.buffer in params for k in loops(program) for s in k.stores)


def test_the_program_interpreter_agrees():
    x0, b = RNG.random((6, 5)), RNG.random((6, 5))
    program = program_of(sweeps, x0, b)
    (result,) = run_program(program, [x0, b])
    np.testing.assert_allclose(result, sweeps(x0, b), rtol=1e-12)


def test_the_cuda_renderer_runs_in_place_updates():
    pytest.importorskip("graphjit.runtime.cuda")
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.skip("the simulator is off")
    x0, b = RNG.random((6, 5)), RNG.random((6, 5))
    check_against_numpy(lambda x0, b: sweeps(x0, b, 2), x0, b, target="cuda")
    check_against_numpy(step_slices, RNG.standard_normal(10), target="cuda")


# ---------------------------------------------------------------- random chains of updates

def _slice(start: int, step: int, length: int) -> slice:
    stop = start + step * length
    return slice(start, None if stop < 0 else stop, step)


def _progression(draw, extent: int, length: int) -> slice:
    """A slice of `length` elements of a dim of `extent`, with a random step and sign."""
    steps = [s for s in (1, 2, 3, -1, -2) if length <= 1 or abs(s) * (length - 1) <= extent - 1]
    step = draw(st.sampled_from(steps))
    span = abs(step) * max(length - 1, 0)
    low = draw(st.integers(0, max(0, extent - 1 - span)))
    return _slice(low if step > 0 else low + span, step, length)


@st.composite
def region_pairs(draw, shape):
    """(a region key, a source key of the same shape) over `shape`; the first dim of a 2-d
    shape may be an int index instead."""
    key, source = [], []
    for dim, extent in enumerate(shape):
        if dim == 0 and len(shape) > 1 and draw(st.booleans()):
            key.append(draw(st.integers(-extent, extent - 1)))
            source.append(draw(st.integers(-extent, extent - 1)))
            continue
        length = draw(st.integers(0, extent))
        key.append(_progression(draw, extent, length))
        broadcast = draw(st.integers(0, 3)) == 0          # a length-1 source broadcasts
        source.append(_progression(draw, extent, 1 if broadcast else length))
    if draw(st.booleans()):
        source.insert(0, None)                            # a leading unit dim NumPy drops
    return tuple(key), tuple(source)


@st.composite
def update_chains(draw):
    shape = draw(st.sampled_from([(7,), (5, 4), (3, 6)]))
    steps = []
    for _ in range(draw(st.integers(1, 5))):
        key, source = draw(region_pairs(shape))
        kind = draw(st.sampled_from(["scalar", "self", "shifted", "argument", "add"]))
        steps.append((key, source, kind, draw(st.integers(-3, 3))))
    return shape, steps


@settings(max_examples=25, deadline=None)
@given(update_chains(), st.booleans())
def test_random_chains_of_updates_match_numpy(chain, temp_first):
    shape, steps = chain

    def fn(x, b):
        y = x * 2 if temp_first else x
        for key, source, kind, scalar in steps:
            if kind == "scalar":
                y[key] = scalar
            elif kind == "self":
                y[key] = y[key] * 2 + scalar
            elif kind == "shifted":
                y[key] = y[source]
            elif kind == "argument":
                y[key] = b[source] + scalar
            else:
                y[key] += y[source]
        return y

    x = RNG.integers(-5, 5, shape).astype(np.float64)
    b = RNG.integers(-5, 5, shape).astype(np.float64)
    try:
        fn(x.copy(), b.copy())
    except ValueError:      # NumPy itself refuses (y[empty] += v broadcasts to (1, 0))
        assume(False)
    check_against_numpy(fn, x, b, check_cache=False)


# ---------------------------------------------------------------- regions

def _addresses(strides, offset, loop_shape) -> set[int]:
    return {offset + sum(s * i for s, i in zip(strides, index))
            for index in itertools.product(*(range(n) for n in loop_shape))}


@st.composite
def basic_views(draw, shape):
    key = []
    for extent in shape:
        if draw(st.booleans()) and extent > 0 and draw(st.booleans()):
            key.append(("int", draw(st.integers(-extent, extent - 1))))
        else:
            start = draw(st.one_of(st.none(), st.integers(-extent - 1, extent + 1)))
            stop = draw(st.one_of(st.none(), st.integers(-extent - 1, extent + 1)))
            step = draw(st.sampled_from([None, 1, 2, -1, -2, 3]))
            key.append(("slice", start, stop, step))
    return tuple(key)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([(6,), (4, 5), (3, 2, 4)]).flatmap(
    lambda shape: st.tuples(st.just(shape), basic_views(shape), basic_views(shape))))
def test_regions_and_disjointness_match_brute_force(case):
    shape, key_a, key_b = case
    a, b = update_region(shape, key_a), update_region(shape, key_b)
    base = np.arange(int(np.prod(shape))).reshape(shape)
    assert _addresses(a.strides, a.offset, a.shape) == set(base[tuple(
        slice(*k[1:]) if k[0] == "slice" else k[1] for k in key_a)].reshape(-1).tolist())
    if a.shape != b.shape:
        return
    overlap = bool(_addresses(a.strides, a.offset, a.shape)
                   & _addresses(b.strides, b.offset, b.shape))
    claimed = disjoint(a.strides, a.offset, b.strides, b.offset, a.shape, shape)
    assert not (claimed and overlap)
    if progressions(a.strides, a.offset, a.shape, shape) is not None and \
            progressions(b.strides, b.offset, b.shape, shape) is not None:
        assert claimed == (not overlap) or 0 in a.shape


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-7, 7), min_size=2, max_size=2),
       st.lists(st.integers(-7, 7), min_size=2, max_size=2),
       st.integers(0, 40), st.integers(0, 40))
def test_disjointness_of_arbitrary_strides_is_never_wrong(sa, sb, oa, ob):
    loop_shape, buffer_shape = (3, 2), (7, 9)
    a, b = _addresses(sa, oa, loop_shape), _addresses(sb, ob, loop_shape)
    if min(a | b) < 0 or max(a | b) >= 63:
        return
    if disjoint(tuple(sa), oa, tuple(sb), ob, loop_shape, buffer_shape):
        assert not (a & b)


# ---------------------------------------------------------------- the verifier and sharing

def _in_place_program(load_offset: int) -> Program:
    buffers = [Buffer(0, 0, (6,), np.dtype(np.float64), BufferKind.PARAM, param_index=0),
               Buffer(1, 1, (6,), np.dtype(np.float64), BufferKind.OUTPUT)]
    f64 = np.dtype(np.float64)
    copy = LoopKernel("k0", (6,), (), (Instr(Operand.LOAD, (), f64,
                                             attrs=Attrs({"access": Access(0, (1,))})),),
                      (Store(0, Access(1, (1,))),))
    update = LoopKernel("k1", (5,), (), (Instr(Operand.LOAD, (), f64, attrs=Attrs(
        {"access": Access(1, (1,), load_offset)})),), (Store(0, Access(1, (1,), 1)),))
    return Program(None, buffers, [copy, update], [1])


def test_the_verifier_rejects_a_load_that_sees_another_iterations_store():
    verify_program(_in_place_program(1))            # the element itself: fine
    with pytest.raises(VerifyError, match="another iteration"):
        verify_program(_in_place_program(0))        # x[1:] = x[:-1] in one kernel


def test_structural_keys_abstract_buffers_but_not_constants_or_aliasing():
    f64 = np.dtype(np.float64)

    def kernel(value, a, b):
        instrs = (Instr(Operand.LOAD, (), f64, attrs=Attrs({"access": Access(a, (1,))})),
                  Instr(Operand.CONST, (), f64, attrs=Attrs({"value": value})),
                  Instr(gj.compiler.ops.Op.MUL, (0, 1), f64))
        return LoopKernel("k", (4,), (), instrs, (Store(2, Access(b, (1,))),))

    buffers = [Buffer(i, i, (4,), f64, BufferKind.TEMP, slot=(0 if i in (2, 3) else None))
               for i in range(4)]
    key = structural_key(kernel(2.0, 0, 1), buffers)[0]
    assert structural_key(kernel(2.0, 1, 0), buffers)[0] == key
    assert structural_key(kernel(-2.0, 0, 1), buffers)[0] != key
    zero, negative_zero = (structural_key(kernel(v, 0, 1), buffers)[0] for v in (0.0, -0.0))
    assert zero != negative_zero
    assert structural_key(kernel(2.0, 2, 3), buffers)[0] != key    # one slot: may alias
