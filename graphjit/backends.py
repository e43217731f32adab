"""The backends by target: each implements `Backend` (compile a Program to an Executable)."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from graphjit.compiler.kernel import Program


class Executable(Protocol):
    texts: Mapping[str, str]          # backend stages for `lower().as_text` (llvm, asm, cuda...)

    def run(self, leaves: Sequence[Any]) -> list[Any]: ...


class Backend(Protocol):
    name: str

    def compile(self, program: Program, stats: dict[str, float] | None = None) -> Executable: ...


def object_cache() -> Any:
    """The persistent cache of object code (GRAPHJIT_CACHE_DIR), or None when it is "off"."""
    from graphjit.runtime.disk_cache import cache_enabled, default_cache

    return default_cache() if cache_enabled() else None


def _cpu() -> Backend:
    from graphjit.runtime.cpu import CPUBackend

    return CPUBackend(cache=object_cache())


def _cuda() -> Backend:
    from graphjit.runtime.cuda import CUDABackend

    return CUDABackend()


def _reference() -> Backend:
    from graphjit.runtime.reference import ReferenceBackend

    return ReferenceBackend()


# imported on first use: `import graphjit` loads no backend
BACKENDS: dict[str, Callable[[], Backend]] = {"cpu": _cpu, "cuda": _cuda, "reference": _reference}
TARGETS = frozenset(BACKENDS)


def compile(program: Program, target: str, stats: dict[str, float]) -> Executable:
    """`program` compiled by the backend of `target`."""
    return BACKENDS[target]().compile(program, stats)
