"""`fn.lower(*args)`: every stage of one compilation, for people to read."""
from __future__ import annotations

import os
from typing import Any

from graphjit.compiler.printer import format_graph


class Lowered:
    def __init__(self, jitted: Any, traced: Any, pipeline: Any, program: Any, executable: Any,
                 texts: dict[str, str], stats: dict[str, float]):
        self.jitted = jitted
        self.traced = traced
        self.graph = pipeline.graph
        self.pipeline = pipeline
        self.program = program
        self.executable = executable
        self._texts = texts
        self.stats = stats

    def stages(self) -> list[str]:
        names = [*self.pipeline.stages, "optimized"]
        if self.program is not None:
            names.append("program")
        names.extend(self._texts)
        return names

    def as_text(self, stage: str = "optimized") -> str:
        """The IR as traced ('traced'), after a pass (its name), 'optimized', 'program',
        or a backend stage ('llvm', 'asm', 'cuda', 'ptx')."""
        if stage in ("optimized", "optimised", "ir"):
            return self._optimized_text()
        if stage in self.pipeline.stages:
            return self.pipeline.stages[stage]
        if stage == "program" and self.program is not None:
            from graphjit.compiler.report import format_program

            return format_program(self.program)
        if stage in self._texts:
            return self._texts[stage]
        raise KeyError(f"no stage {stage!r}; stages are: {', '.join(self.stages())}")

    def _optimized_text(self) -> str:
        if self.program is None:
            return format_graph(self.graph)
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
