"""Pick a backend for a target and compile an optimised graph with it."""
from __future__ import annotations

import time
from typing import Any

from graphjit.compiler.ir import Graph

TARGETS = {"cpu", "cuda", "reference"}


def object_cache() -> Any:
    """The persistent cache of object code (GRAPHJIT_CACHE_DIR), or None when it is "off"."""
    from graphjit.runtime.disk_cache import cache_enabled, default_cache

    return default_cache() if cache_enabled() else None


def compile(graph: Graph, target: str, stats: dict[str, float]) -> tuple[Any, Any, dict]:
    """Returns (executable, program or None, extra text stages such as llvm/asm/ptx)."""
    if target == "reference":
        from graphjit.runtime.reference import ReferenceBackend

        executable = ReferenceBackend().compile_graph(graph)
        return executable, None, {}
    try:
        from graphjit.compiler.schedule import build_program
        from graphjit.runtime.cpu import CPUBackend
    except ImportError:  # backend under construction: run the reference interpreter
        from graphjit.runtime.reference import ReferenceBackend

        return ReferenceBackend().compile_graph(graph), None, {}
    start = time.perf_counter()
    program = build_program(graph)
    stats["schedule"] = time.perf_counter() - start
    if target == "cuda":
        from graphjit.runtime.cuda import CUDABackend

        backend = CUDABackend()
    else:
        backend = CPUBackend(cache=object_cache())
    executable = backend.compile(program, stats)
    # not copied: a backend may make some texts (the assembly) only when first asked for
    return executable, program, getattr(executable, "texts", {})
