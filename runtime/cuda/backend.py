"""CUDABackend: Program -> rendered Numba CUDA source -> compiled kernels -> CUDAExecutable.

A backend is a renderer (runtime/cuda/render.py: step -> source text) plus a compiler (here:
exec the text, `cuda.jit` the function with its explicit signature). Compiled kernels are kept in
`KERNEL_CACHE`, keyed by (source, signature): the same fused group at the same shape is compiled
once per process, whichever Program it comes from.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from graphjit.compiler.errors import CompileError, GraphjitError
from graphjit.compiler.kernel import (
    BufferKind, HostKernel, Kernel, LoopKernel, MatmulKernel, Program,
)

from .device import CUDAUnavailableError, device_info, numba_cuda, simulator_enabled
from .executable import CUDAExecutable, DevicelessExecutable, ExternalStep, HostStep, KernelLaunch
from .launch import DEFAULT_SM_COUNT
from .library import LibraryMatmul, library_for
from .reduce import ScratchAllocator, render_reduction
from .render import (
    RenderedKernel, epilogue_fusible, module_header, render_elementwise, render_matmul,
    same_walk,
)

SIMULATOR_PTX_NOTE = (
    "// PTX is not available in Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1): the kernels run\n"
    "// as Python. Run on a GPU, or call gj.jit(f, target='cuda').lower(*args).as_text('ptx')\n"
    "// in a process without NUMBA_ENABLE_CUDASIM (needs numba-cuda's NVVM, not a GPU).\n"
)
DEFAULT_CC = (9, 0)      # PTX target when there is no device to ask (an H100 / H200)


class KernelCache:
    """Compiled kernels by (source, signature), with hit and miss counters."""

    def __init__(self) -> None:
        self._kernels: dict[tuple[str, str, bool], Any] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, rendered: RenderedKernel, simulator: bool) -> Any:
        key = (rendered.source, rendered.signature, simulator)
        with self._lock:
            kernel = self._kernels.get(key)
            if kernel is not None:
                self.hits += 1
                return kernel
            self.misses += 1
            kernel = compile_kernel(rendered, simulator)
            self._kernels[key] = kernel
            return kernel

    def clear(self) -> None:
        with self._lock:
            self._kernels.clear()
            self.hits = self.misses = 0


KERNEL_CACHE = KernelCache()


def python_function(rendered: RenderedKernel) -> Any:
    """Exec the rendered module; return its kernel function (not yet compiled)."""
    namespace: dict[str, Any] = {"__name__": f"graphjit_cuda_{rendered.name}"}
    exec(compile(rendered.source, f"<graphjit cuda {rendered.name}>", "exec"), namespace)
    return namespace[rendered.name]


def compile_kernel(rendered: RenderedKernel, simulator: bool) -> Any:
    cuda = numba_cuda()
    try:
        function = python_function(rendered)
        return cuda.jit(rendered.signature)(function)
    except GraphjitError:
        raise
    except Exception as exc:
        raise CompileError(f"the CUDA backend failed to compile kernel {rendered.name}: "
                           f"{type(exc).__name__}: {_summary(exc)}") from None


def _summary(exc: BaseException, lines: int = 6) -> str:
    text = [line for line in str(exc).strip().splitlines() if line.strip()]
    return " | ".join(text[:lines])


# ---------------------------------------------------------------- rendering a Program

RenderedStep = RenderedKernel | HostKernel | LibraryMatmul


def render_step(step: Kernel, program: Program, position: int, simulator: bool,
                sm_count: int = DEFAULT_SM_COUNT, scratch: ScratchAllocator | None = None
                ) -> list[RenderedStep]:
    """The kernels one Program step becomes (a matmul whose epilogue cannot fuse, or that goes
    to a GEMM library: two; a reduction split over many blocks: two)."""
    if scratch is None:
        scratch = ScratchAllocator(len(program.buffers), [])
    buffers = [*program.buffers, *scratch.buffers]
    if isinstance(step, HostKernel):
        return [step]
    if isinstance(step, LoopKernel):
        if step.reduce_axes:
            outer = math.prod(n for d, n in enumerate(step.loop_shape)
                              if d not in step.reduce_axes)
            if outer == 0:
                return []
            return render_reduction(step, buffers, simulator, sm_count, scratch)
        if math.prod(step.loop_shape) == 0:
            return []
        return [render_elementwise(step, buffers, simulator, sm_count)]
    if isinstance(step, MatmulKernel):
        if step.m * step.n * math.prod(step.batch) == 0:
            return []
        plain = MatmulKernel(step.name, step.a, step.b, step.out, step.batch, step.m, step.n,
                             step.k, step.dtype, None, step.nodes)
        provider = library_for(step)
        if provider is not None:
            epilogue = [] if step.epilogue is None else render_step(
                step.epilogue, program, position, simulator, sm_count, scratch)
            return [LibraryMatmul(step.name, plain, provider), *epilogue]
        if epilogue_fusible(step):
            store = product_needed(program, position, step)
            return [render_matmul(step, buffers, simulator, store, sm_count)]
        return [render_matmul(plain, buffers, simulator, True, sm_count),
                *render_step(step.epilogue, program, position, simulator, sm_count, scratch)]
    raise CompileError(f"the CUDA backend does not know the step {type(step).__name__}")


def product_needed(program: Program, position: int, step: MatmulKernel) -> bool:
    """Must the raw product be written to its buffer, or does only the epilogue's result live?"""
    if step.epilogue is None:
        return True
    shape = (*step.batch, step.m, step.n)
    if any(s.access.buffer == step.out and same_walk(s.access, step.out, shape)
           for s in step.epilogue.stores):
        return False          # the epilogue overwrites every element of the product
    if program.buffers[step.out].kind is not BufferKind.TEMP or step.out in program.outputs:
        return True
    return any(step.out in _reads(later) for later in program.steps[position + 1:])


def _reads(step: Kernel) -> set[int]:
    if isinstance(step, LoopKernel):
        return set(step.buffers())
    if isinstance(step, MatmulKernel):
        reads = {step.a.buffer, step.b.buffer}
        if step.epilogue is not None:
            reads |= set(step.epilogue.buffers())
        return reads
    return set(step.inputs)


def render_program(program: Program, simulator: bool, sm_count: int = DEFAULT_SM_COUNT,
                   scratch: ScratchAllocator | None = None) -> list[RenderedStep]:
    """Every kernel of the program, in order; backend scratch buffers go into `scratch`."""
    if scratch is None:
        scratch = ScratchAllocator(len(program.buffers), [])
    rendered: list[RenderedStep] = []
    for position, step in enumerate(program.steps):
        try:
            rendered.extend(render_step(step, program, position, simulator, sm_count, scratch))
        except GraphjitError:
            raise
        except Exception as exc:
            raise CompileError(f"the CUDA backend could not render step {step.name}: "
                               f"{type(exc).__name__}: {exc}") from None
    return rendered


def cuda_text(rendered: Sequence[RenderedStep], simulator: bool) -> str:
    """All kernels of a program as one readable module (the header once)."""
    bodies = "".join(item.source for item in rendered if isinstance(item, RenderedKernel))
    parts = [module_header(simulator, bodies)]
    for item in rendered:
        if isinstance(item, HostKernel):
            parts.append(f"# host step {item.name}: {item.op.value} runs with NumPy on the host "
                         f"(inputs copied from the device, result copied back)\n")
            continue
        if isinstance(item, LibraryMatmul):
            parts.append(item.describe())
            continue
        body = item.source.split("\n\n\n", 1)[-1]
        launch = item.launch
        parts.append(f"# {item.kind} kernel, launch grid={launch.grid} block={launch.block}\n"
                     f"# signature {item.signature}\n@cuda.jit\n{body}")
    return "\n\n".join(parts)


def program_ptx(program: Program, cc: tuple[int, int] = DEFAULT_CC) -> str:
    """PTX of every kernel of `program` for compute capability `cc` (no GPU or driver needed,
    only numba-cuda's NVVM; not available in the simulator)."""
    return kernels_ptx(render_program(program, simulator=False), cc)


def kernels_ptx(rendered: Sequence[RenderedStep], cc: tuple[int, int]) -> str:
    if simulator_enabled():
        return SIMULATOR_PTX_NOTE
    cuda = numba_cuda()
    texts = []
    for item in rendered:
        if not isinstance(item, RenderedKernel):
            continue
        try:
            ptx, _ = cuda.compile_ptx(python_function(item), item.signature, cc=cc)
        except Exception as exc:
            raise CompileError(f"PTX compilation of {item.name} failed: "
                               f"{type(exc).__name__}: {_summary(exc)}") from None
        texts.append(f"// ---- {item.name} ({item.kind})\n{ptx}")
    return "\n".join(texts)


class CUDATexts(Mapping):
    """The texts `lower().as_text` shows: "cuda" (the kernel source) and "ptx", compiled from
    that source on first request (NVVM takes about a second per kernel)."""

    def __init__(self, rendered: Sequence[RenderedStep], simulator: bool,
                 cc: tuple[int, int]):
        self._rendered = list(rendered)
        self._simulator = simulator
        self._cc = cc
        self._texts: dict[str, str] = {"cuda": cuda_text(rendered, simulator)}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> str:
        if key == "ptx":
            with self._lock:
                if "ptx" not in self._texts:
                    self._texts["ptx"] = (SIMULATOR_PTX_NOTE if self._simulator
                                          else kernels_ptx(self._rendered, self._cc))
        return self._texts[key]

    def __iter__(self):
        return iter(("cuda", "ptx"))

    def __len__(self) -> int:
        return 2


# ---------------------------------------------------------------- the backend

class CUDABackend:
    name = "cuda"

    def __init__(self, cache: KernelCache | None = None):
        self.cache = cache or KERNEL_CACHE

    def compile(self, program: Program,
                stats: dict | None = None) -> CUDAExecutable | DevicelessExecutable:
        """Kernels for the device (or the simulator). Without either, the kernels are still
        rendered and their PTX can be read, but the executable refuses to run."""
        stats = {} if stats is None else stats
        try:
            info = device_info()
        except CUDAUnavailableError as error:
            if simulator_enabled() or "cannot be imported" in str(error):
                raise
            rendered = render_program(program, simulator=False)
            return DevicelessExecutable(CUDATexts(rendered, False, DEFAULT_CC), error)
        start = time.perf_counter()
        scratch = ScratchAllocator(len(program.buffers), [])
        rendered = render_program(program, info.simulator, info.sm_count, scratch)
        stats["cuda:render"] = time.perf_counter() - start
        start = time.perf_counter()
        steps = []
        for item in rendered:
            if isinstance(item, HostKernel):
                node = program.graph.node(item.node)
                shapes = tuple(program.buffers[b].shape for b in item.inputs)
                steps.append(HostStep(item.name, node, item.inputs, shapes, item.out))
                continue
            if isinstance(item, LibraryMatmul):
                steps.append(ExternalStep(item.name, item.bind()))
                continue
            kernel = self.cache.get(item, info.simulator)
            configured = kernel[item.launch.grid, item.launch.block]
            steps.append(KernelLaunch(item.name, configured, item.buffers, info.simulator))
        stats["cuda:compile"] = time.perf_counter() - start
        texts = CUDATexts(rendered, info.simulator, info.compute_capability)
        return CUDAExecutable(program, steps, texts, scratch.buffers)
