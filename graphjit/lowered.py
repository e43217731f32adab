"""`fn.lower(*args)`: every stage of one compilation, for people to read."""
from __future__ import annotations

import os
from typing import Any

from graphjit.compiler.printer import format_graph


class Lowered:
    """One compilation's stages: "traced", every pass of compiler/pipeline.py by name (graph
    passes print the graph, "fuse" the fusion plan, the Program passes the Program), then the
    backend's ("llvm", "asm", "cuda", "ptx")."""

    def __init__(self, jitted: Any, traced: Any, log: Any, program: Any, executable: Any,
                 stats: dict[str, float]):
        self.jitted = jitted
        self.traced = traced
        self.log = log
        self.program = program
        self.graph = program.graph
        self.executable = executable
        self.stats = stats

    @property
    def _texts(self) -> Any:
        # not copied: a backend may make some texts (the assembly) only when first asked for
        return getattr(self.executable, "texts", {})

    def stages(self) -> list[str]:
        return [*self.log, "optimized", "program", *self._texts]

    def as_text(self, stage: str = "optimized") -> str:
        """The IR as traced ('traced'), after a pass (its name: 'fold_constants' ...
        'eliminate_dead_code' print the graph, 'fuse' the fusion plan, 'schedule',
        'split_full_reductions' and 'plan_buffers' the Program), 'optimized' (the graph with
        each node's kernel), 'program' (the final Program), or a backend stage ('llvm', 'asm',
        'cuda', 'ptx')."""
        if stage in ("optimized", "optimised", "ir"):
            return self._optimized_text()
        if stage in self.log:
            return self.log[stage]
        if stage == "program":
            from graphjit.compiler.report import format_program

            return format_program(self.program)
        if stage in self._texts:
            return self._texts[stage]
        raise KeyError(f"no stage {stage!r}; stages are: {', '.join(self.stages())}")

    def _optimized_text(self) -> str:
        group_of = {}
        for index, step in enumerate(self.program.steps):
            for node in step.nodes:
                group_of[node] = index
        return format_graph(self.graph, group_of)

    def __str__(self) -> str:
        return self.as_text("optimized")

    def __repr__(self) -> str:
        return f"<Lowered {self.graph.name}: stages {self.stages()}>"

    def fusion_report(self) -> str:
        from graphjit.compiler.report import fusion_report

        return fusion_report(self.graph, self.program)

    def profile(self, *args: Any, **kwargs: Any) -> Any:
        """Time per kernel, BLAS call and host step on these arguments (graphjit/profiling.py);
        `print()` it. Keywords min_time= and eager= go to the profiler."""
        from graphjit.profiling import profile

        return profile(self.jitted, *args, **kwargs)

    def compile_stats(self) -> dict[str, float]:
        return dict(self.stats)

    def to_dot(self) -> str:
        from graphjit.render import to_dot

        return to_dot(self.graph, self.program)

    def render(self, path: str = "graph.svg") -> str:
        from graphjit.render import render

        return render(self.graph, self.program, path)

    def dump_if_requested(self) -> None:
        directory = os.environ.get("GRAPHJIT_DUMP")
        if not directory:
            return
        os.makedirs(directory, exist_ok=True)
        base = f"{self.graph.name}_{id(self):x}"
        for number, stage in enumerate(self.stages()):
            try:
                text = self.as_text(stage)
            except Exception as exc:  # a dump must never break a compilation
                text = f"<could not produce stage {stage}: {exc}>"
            path = os.path.join(directory, f"{base}.{number:02d}.{stage}.txt")
            with open(path, "w") as handle:
                handle.write(text)
