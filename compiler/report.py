"""Readable listings of a FusionPlan (`format_fusion_plan`), a Program (`format_program`) and of what
fusion did (`fusion_report`)."""
from __future__ import annotations

from collections.abc import Callable

from .dtypes import short_name
from .ir import Graph
from .kernel import (
    Access, Buffer, HostKernel, Instr, Level, LoopKernel, MatmulKernel, Program, Operand, Kernel,
)
from .ops import attrs_repr
from .passes.fuse import FusionPlan
from .printer import format_node

SOURCE_COLUMN = 52


def _tuple(values: tuple[int, ...]) -> str:
    return "(" + ",".join(str(v) for v in values) + ")"


def format_access(access: Access) -> str:
    return f"b{access.buffer}[s={_tuple(access.strides)} o={access.offset}]"


def format_buffer(buffer: Buffer) -> str:
    shape = ",".join(str(d) for d in buffer.shape)
    kind = f"{buffer.kind.value} %{buffer.node}"
    text = f"  b{buffer.index}:{short_name(buffer.dtype)}[{shape}] {kind}"
    if buffer.param_index is not None:
        text += f" param={buffer.param_index}"
    if buffer.slot is not None:
        text += f" slot={buffer.slot}"
    if buffer.versions:   # updated in place: the later values it holds
        text += " in-place " + " ".join(f"%{n}" for n in buffer.versions[:3])
        if len(buffer.versions) > 3:
            text += f" ... %{buffer.versions[-1]} ({len(buffer.versions)} updates)"
    return text


def format_instr(index: int, instr: Instr) -> str:
    head = f"  v{index}:{short_name(instr.dtype)} = {instr.op.value}"
    if instr.op is Operand.LOAD:
        body = f"{head} {format_access(instr.attrs['access'])}"
    elif instr.op is Operand.CONST:
        body = f"{head} {instr.attrs['value']!r}"
    else:
        args = " ".join(f"v{a}" for a in instr.args)
        body = " ".join(part for part in (head, args, attrs_repr(instr.attrs)) if part)
    if instr.level is Level.OUTER:
        body += "  @outer"
    if instr.source:
        body = f"{body.ljust(SOURCE_COLUMN)}  # {instr.source}"
    return body


def format_loop_kernel(kernel: LoopKernel, title: str | None = None) -> list[str]:
    reduce = f" reduce={_tuple(kernel.reduce_axes)}" if kernel.reduce_axes else ""
    lines = [title or f"{kernel.name}: loop {_tuple(kernel.loop_shape)}{reduce}"]
    lines.extend(format_instr(i, instr) for i, instr in enumerate(kernel.instrs))
    lines.extend(f"  store {format_access(s.access)} <- v{s.instr}" for s in kernel.stores)
    return lines


def format_matmul_kernel(kernel: MatmulKernel) -> list[str]:
    batch = f" batch={_tuple(kernel.batch)}" if kernel.batch else ""
    lines = [f"{kernel.name}: matmul {short_name(kernel.dtype)} m={kernel.m} n={kernel.n} "
             f"k={kernel.k}{batch}",
             f"  b{kernel.out} <- {format_access(kernel.a)} @ {format_access(kernel.b)}"]
    if kernel.epilogue is not None:
        title = f"  epilogue {kernel.epilogue.name}: loop {_tuple(kernel.epilogue.loop_shape)}"
        lines.extend(format_loop_kernel(kernel.epilogue, title))
    return lines


def format_host_kernel(kernel: HostKernel) -> list[str]:
    inputs = " ".join(f"b{b}" for b in kernel.inputs)
    attrs = attrs_repr(kernel.attrs)
    text = " ".join(p for p in (f"  b{kernel.out} <- {kernel.op.value}", inputs, attrs) if p)
    return [f"{kernel.name}: host (NumPy)", text]


FORMATTERS: dict[type, Callable[..., list[str]]] = {
    LoopKernel: format_loop_kernel,
    MatmulKernel: format_matmul_kernel,
    HostKernel: format_host_kernel,
}


def format_step(step: Kernel) -> list[str]:
    return FORMATTERS[type(step)](step)


def format_program(program: Program) -> str:
    """Buffers, then every step with its instructions, one per line."""
    lines = [f"program {program.graph.name}", "buffers:"]
    lines.extend(format_buffer(b) for b in program.buffers)
    for step in program.steps:
        lines.extend(format_step(step))
    lines.append("outputs: " + ", ".join(f"b{b}" for b in program.outputs))
    return "\n".join(lines)


def format_fusion_plan(plan: FusionPlan) -> str:
    """Every group in execution order with its member nodes, then why fusion stopped."""
    graph = plan.graph
    name = graph.name if graph is not None else "graph"
    lines = [f"fusion plan {name}: {len(plan.groups)} group(s)"]
    for group in plan.groups:
        lines.append(f"group {group.id} ({group.kind}): {len(group.members)} node(s)")
        for member in sorted(group.members):
            text = format_node(member, graph.node(member)) if graph is not None else f"%{member}"
            lines.append(f"    {text}")
    stops = sorted((node, reasons) for node, reasons in plan.notes.items() if reasons)
    lines.append("boundaries:" if stops else "boundaries: none")
    for node, reasons in stops:
        lines.extend(f"  %{node}: {reason}" for reason in reasons)
    return "\n".join(lines)


def _step_kind(step: Kernel) -> str:
    if isinstance(step, MatmulKernel):
        return "matmul" + (" + epilogue" if step.epilogue is not None else "")
    if isinstance(step, HostKernel):
        return "host"
    reduce = f", reduce axes {_tuple(step.reduce_axes)}" if step.reduce_axes else ""
    return f"loop {_tuple(step.loop_shape)}{reduce}"


def fusion_report(graph: Graph, program: Program | None) -> str:
    """Each kernel with the graph nodes fused into it, then why fusion stopped at each boundary."""
    if program is None:
        return f"{graph.name}: no program (the graph ran on the reference interpreter)"
    lines = [f"fusion report for {graph.name}: {len(program.steps)} kernel(s)"]
    for step in program.steps:
        lines.append(f"{step.name} ({_step_kind(step)}): {len(step.nodes)} node(s)")
        lines.extend(f"    {format_node(n, graph.node(n))}" for n in step.nodes if n in graph)
    stops = [(node, reasons) for node, reasons in program.notes.items() if reasons]
    lines.append("boundaries:" if stops else "boundaries: none")
    for node, reasons in stops:
        lines.extend(f"  {node}: {reason}" for reason in reasons)
    return "\n".join(lines)
