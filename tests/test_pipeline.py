"""The compiler's pipeline (compiler/pipeline.py), the Program verifier (compiler/verify_program.py)
and the backend table (graphjit/backends.py)."""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

import graphjit as gj
from graphjit import backends
from graphjit.compiler.errors import VerifyError
from graphjit.compiler.ir import Graph
from graphjit.compiler.kernel import (Access, BufferKind, Kernel, Level, LoopKernel, Operand,
                                      Program, Store)
from graphjit.compiler.ops import Op
from graphjit.compiler.pipeline import (GRAPH_PASSES, PROGRAM_PASSES, PassLog, compile,
                                        stage_names)
from graphjit.compiler.verify_program import verify_program


def softmax_graph() -> Graph:
    graph = Graph("softmax")
    x = graph.add(Op.PARAM, (), {"index": 0, "shape": (4, 8), "dtype": np.dtype("f4")})
    m = graph.add(Op.REDUCE_MAX, (x,), {"axes": (1,), "keepdims": True})
    e = graph.add(Op.EXP, (graph.add(Op.SUB, (x, graph.add(Op.BROADCAST, (m,),
                                                             {"shape_to": (4, 8)})),),))
    s = graph.add(Op.SUM, (e,), {"axes": (1,), "keepdims": True})
    graph.outputs = [graph.add(Op.DIV, (e, graph.add(Op.BROADCAST, (s,), {"shape_to": (4, 8)})))]
    return graph


def test_compile_records_every_pass_in_order_with_its_value():
    log = PassLog()
    program = compile(softmax_graph(), log, check=True)
    assert list(log) == stage_names()
    assert stage_names() == ["traced", *(n for n, _ in GRAPH_PASSES),
                             *(n for n, _ in PROGRAM_PASSES)]
    assert log.values["plan_buffers"] is program
    assert log["fuse"].startswith("fusion plan softmax")
    assert log["schedule"].startswith("program softmax")
    assert set(log.stats()) >= {"schedule", *(f"pass:{n}" for n in stage_names()[1:])}


def test_program_passes_return_new_programs():
    """A pass never mutates its input, so every recorded stage still shows what that pass made."""
    graph = Graph("sum")
    x = graph.add(Op.PARAM, (), {"index": 0, "shape": (1 << 18,), "dtype": np.dtype("f4")})
    graph.outputs = [graph.add(Op.SUM, (graph.add(Op.EXP, (x,)),),
                               {"axes": (0,), "keepdims": False})]
    log = PassLog()
    compile(graph, log, check=True)
    scheduled, split = log.values["schedule"], log.values["split_full_reductions"]
    assert scheduled is not split
    assert len(scheduled.steps) < len(split.steps)          # the big sum was split in two
    assert all(b.slot is None for b in split.buffers)
    assert any(b.slot is not None for b in log.values["plan_buffers"].buffers)


def test_lowered_dumps_every_pass_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHJIT_DUMP", str(tmp_path))
    lowered = gj.jit(lambda a: np.exp(a).sum(axis=1)).lower(np.ones((3, 4), np.float32))
    for name in stage_names():
        assert name in lowered.stages()
        assert lowered.as_text(name)
    dumped = sorted(os.listdir(tmp_path))
    for name in ["fuse", "schedule", "split_full_reductions", "plan_buffers", "llvm"]:
        assert any(f.endswith(f".{name}.txt") for f in dumped), name


# ---------------------------------------------------------------- the verifier catches breakage

def good_program() -> Program:
    return compile(softmax_graph(), check=True)


def with_step(program: Program, step: Kernel, position: int = 0) -> Program:
    steps = list(program.steps)
    steps[position] = step
    return replace(program, steps=steps)


def first_loop(program: Program) -> LoopKernel:
    return next(s for s in program.steps if isinstance(s, LoopKernel))


def test_the_verifier_accepts_what_the_pipeline_makes():
    assert verify_program(good_program())


def test_the_verifier_rejects_an_access_past_the_end_of_its_buffer():
    program = good_program()
    kernel = first_loop(program)
    load = next(i for i, instr in enumerate(kernel.instrs) if instr.op is Operand.LOAD)
    access = kernel.instrs[load].attrs["access"]
    moved = replace(kernel.instrs[load],
                    attrs={"access": Access(access.buffer, access.strides, access.offset + 1)})
    instrs = (*kernel.instrs[:load], moved, *kernel.instrs[load + 1:])
    broken = with_step(program, replace(kernel, instrs=instrs), program.steps.index(kernel))
    with pytest.raises(VerifyError, match="reaches elements"):
        verify_program(broken, after="test")


def test_the_verifier_rejects_an_outer_instruction_reading_a_full_one():
    program = good_program()
    kernel = first_loop(program)
    full = next(i for i, instr in enumerate(kernel.instrs) if instr.level is Level.FULL)
    bad = replace(kernel.instrs[full], op=Op.NEG, args=(full,), level=Level.OUTER, attrs={})
    broken = with_step(program, replace(kernel, instrs=(*kernel.instrs, bad)),
                       program.steps.index(kernel))
    with pytest.raises(VerifyError, match="OUTER instruction reads a FULL"):
        verify_program(broken)


def test_the_verifier_rejects_reading_a_buffer_before_it_is_written():
    program = good_program()
    temp = next(b for b in program.buffers if b.kind is BufferKind.OUTPUT)
    kernel = first_loop(program)
    load = replace(kernel.instrs[0], op=Operand.LOAD, args=(), level=Level.FULL,
                   attrs={"access": Access(temp.index, (8, 1))})
    store = Store(len(kernel.instrs), kernel.stores[0].access)
    broken = with_step(program, replace(kernel, instrs=(*kernel.instrs, load),
                                        stores=(*kernel.stores, store)),
                       program.steps.index(kernel))
    with pytest.raises(VerifyError, match="before any step writes it"):
        verify_program(broken)


def test_the_verifier_rejects_two_live_buffers_in_one_slot():
    a = np.ones((4, 4), np.float32)
    program = gj.jit(lambda a, b: np.concatenate([a @ b, b @ a])).lower(a, a).program
    temps = [b for b in program.buffers if b.kind is BufferKind.TEMP]
    assert len(temps) >= 2
    buffers = [replace(b, slot=0) if b.kind is BufferKind.TEMP else b for b in program.buffers]
    with pytest.raises(VerifyError, match="share slot"):
        verify_program(replace(program, buffers=buffers))


def test_the_verifier_rejects_an_output_that_is_not_an_output_buffer():
    program = good_program()
    param = next(b.index for b in program.buffers if b.kind is BufferKind.PARAM)
    with pytest.raises(VerifyError, match="output"):
        verify_program(replace(program, outputs=[param]))


# ---------------------------------------------------------------- backends

def test_every_target_has_a_backend_and_compiles_the_same_program():
    program = good_program()
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    expected = np.exp(x - x.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    for target in ("cpu", "reference"):
        executable = backends.compile(program, target, {})
        np.testing.assert_allclose(executable.run([x])[0], expected, rtol=1e-5)
    assert backends.TARGETS == {"cpu", "cuda", "reference"}
