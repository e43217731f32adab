"""PTX for sm_90 of every CUDA kernel kind, and the "no GPU" error, in a subprocess.

`lower().as_text("ptx")` and `as_text("cuda")` work on a machine with no GPU and no driver; only
running needs a device (or the simulator), and says so with CUDAUnavailableError.

Numba's simulator (on for the rest of the suite, see conftest.py) replaces `numba.cuda` entirely,
and it cannot compile PTX, so these checks run in a fresh Python process started without
NUMBA_ENABLE_CUDASIM. `numba.cuda.compile_ptx` needs NVVM (from the numba-cuda[cu13] extra) but
no GPU or driver.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.cuda

TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from numba import config
    assert not config.ENABLE_CUDASIM
    from test_cuda import (
        F32, F64, bias_relu_epilogue, matmul_program, softmax_program, run_reduction,
        ProgramBuilder, load, op, contiguous,
    )
    from graphjit.compiler.kernel import Access, BufferKind, Level, LoopKernel, Store
    from graphjit.compiler.ops import Op
    from graphjit.runtime.cuda import library, program_ptx
    library.ENABLED = False     # on a GPU with CuPy, large products would go to cuBLAS: no PTX

    def elementwise(dtype):
        b = ProgramBuilder()
        x = b.buffer((64, 32), dtype, BufferKind.PARAM)
        row = b.buffer((32,), dtype, BufferKind.PARAM)
        out = b.buffer((64, 32), dtype, BufferKind.OUTPUT)
        s = contiguous((64, 32))
        instrs = (load(x, s, dtype=dtype), load(row, (0, 1), dtype=dtype),
                  op(Op.MUL, (0, 1), dtype), op(Op.TANH, (2,), dtype),
                  op(Op.FLOORDIV, (3, 1), dtype), op(Op.MOD, (4, 0), dtype),
                  op(Op.MAXIMUM, (5, 0), dtype), op(Op.POW, (6, 1), dtype),
                  op(Op.EXP, (7,), dtype), op(Op.LOG1P, (8,), dtype))
        b.steps.append(LoopKernel("ew", (64, 32), (), instrs, (Store(9, Access(out, s)),)))
        return b.program()

    def argmax_rows(dtype):
        b = ProgramBuilder()
        x = b.buffer((16, 100), dtype, BufferKind.PARAM)
        out = b.buffer((16,), np.dtype(np.int64), BufferKind.OUTPUT)
        instrs = (load(x, (100, 1), dtype=dtype),
                  op(Op.ARGMAX, (0,), np.int64, Level.OUTER, axis=1, keepdims=False))
        b.steps.append(LoopKernel("argmax", (16, 100), (1,), instrs,
                                  (Store(1, Access(out, (1, 0))),)))
        return b.program()

    programs = {{
        "elementwise_f32": elementwise(F32),
        "elementwise_f64": elementwise(F64),
        "softmax_row_f32": softmax_program((128, 1024)).program(),
        "softmax_row_f64": softmax_program((8, 33), F64).program(),
        "argmax_row_f32": argmax_rows(F32),
        "matmul_epilogue_f32": matmul_program(   # large enough for the 128 x 128 tiles
            (2048, 64), (64, 2048), F32, epilogue=bias_relu_epilogue((2048,), 2048, 2048)
        ).program(),
        "matmul_epilogue_f64": matmul_program(
            (65, 33), (33, 17), F64, epilogue=bias_relu_epilogue((17,), 65, 17, F64)).program(),
        "matmul_transposed_batched_f32": matmul_program(
            (64, 32), (32, 48), F32, True, True, batch=(3,)).program(),
    }}
    result = {{}}
    for name, program in programs.items():
        ptx = program_ptx(program, cc=(9, 0))
        result[name] = {{"target": ".target sm_90" in ptx, "entries": ptx.count(".entry"),
                        "shared": ".shared" in ptx, "shuffles": "shfl.sync" in ptx,
                        "length": len(ptx)}}

    # through gj.jit(...).lower(): the reduction strategies of runtime/cuda/reduce.py, at the
    # shapes that pick each of them on an H100-sized machine
    import re
    import graphjit as gj
    x = np.ones((8192, 4096), np.float32)
    lowerings = {{
        "row_wide_softmax": (lambda a: np.exp(a - a.max(-1, keepdims=True))
                             / np.exp(a - a.max(-1, keepdims=True)).sum(-1, keepdims=True),
                             np.ones((256, 4096), np.float32)),
        "rows_per_block": (lambda a: a.sum(axis=-1), np.ones((4096, 24), np.float32)),
        "split_full_sum": (lambda a: a.sum(), np.ones((4, 1 << 20), np.float32)),
        "column_sum": (lambda a: a.sum(axis=0), np.ones((64, 1 << 16), np.float32)),
        "split_column_sum": (lambda a: a.mean(axis=0), np.ones((1 << 16, 64), np.float32)),
        "argmax_rows_f64": (lambda a: a.argmax(axis=1), np.ones((512, 300), np.float64)),
    }}
    for name, (fn, arg) in lowerings.items():
        lowered = gj.jit(fn, target="cuda").lower(arg)
        ptx, source = lowered.as_text("ptx"), lowered.as_text("cuda")
        result["jit_" + name] = {{
            "target": ".target sm_90" in ptx, "entries": ptx.count(".entry"),
            "shuffles": "shfl.sync" in ptx, "kinds": re.findall(r"# (.*) kernel, launch", source),
        }}

    # with no GPU and no simulator, target="cuda" must say how to get one
    from numba import cuda
    if not cuda.is_available():
        from graphjit.runtime.cuda import CUDABackend, CUDAUnavailableError
        executable = CUDABackend().compile(programs["elementwise_f32"], {{}})
        try:
            executable.run([np.ones((64, 32), np.float32), np.ones(32, np.float32)])
            result["no_gpu_error"] = "no error raised"
        except CUDAUnavailableError as exc:
            result["no_gpu_error"] = str(exc)
        try:
            gj.jit(lambda x: x + 1, target="cuda")(np.ones(3, np.float32))
            result["jit_error"] = "no error raised"
        except gj.GraphjitError as exc:
            result["jit_error"] = type(exc).__name__ + ": " + str(exc)
    print("RESULT" + json.dumps(result))
""")


@pytest.fixture(scope="module")
def ptx_report() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    process = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(TESTS))],
                             capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT")]
    assert process.returncode == 0 and lines, (
        f"PTX subprocess failed (rc={process.returncode}):\n{process.stdout[-3000:]}\n"
        f"{process.stderr[-6000:]}")
    return json.loads(lines[-1][len("RESULT"):])


KINDS = ["elementwise_f32", "elementwise_f64", "softmax_row_f32", "softmax_row_f64",
         "argmax_row_f32", "matmul_epilogue_f32", "matmul_epilogue_f64",
         "matmul_transposed_batched_f32"]


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_compiles_to_sm90_ptx(ptx_report, kind):
    report = ptx_report[kind]
    assert report["target"], report
    assert report["entries"] == 1, report      # one kernel: the epilogue / consumers are fused
    if kind.startswith("matmul"):
        assert report["shared"], report        # tiles in shared memory
    elif not kind.startswith("elementwise"):
        assert report["shuffles"], report      # reductions combine lanes by warp shuffles


JIT_KINDS = {
    "row_wide_softmax": ["row reduction"],
    "rows_per_block": ["row reduction, several rows per block"],
    "split_full_sum": ["split row reduction (partials)", "row reduction"],
    "column_sum": ["column reduction"],
    "split_column_sum": ["split column reduction (partials)", "column reduction"],
    "argmax_rows_f64": ["row reduction, several rows per block"],
}


@pytest.mark.parametrize("name", sorted(JIT_KINDS))
def test_lowered_reductions_compile_to_sm90_ptx_without_a_gpu(ptx_report, name):
    report = ptx_report["jit_" + name]
    assert report["target"], report
    expected = JIT_KINDS[name]
    assert len(report["kinds"]) >= len(expected), report
    assert all(kind.startswith(wanted) for kind, wanted in zip(report["kinds"], expected)), report
    assert report["entries"] == len(report["kinds"]), report
    if "row" in JIT_KINDS[name][0]:
        assert report["shuffles"], report        # warp shuffles, not shared-memory tree steps


def test_no_gpu_error_names_both_ways_on(ptx_report):
    if "no_gpu_error" not in ptx_report:
        pytest.skip("this machine has a GPU: the no-GPU error cannot be provoked")
    message = ptx_report["no_gpu_error"]
    assert "no CUDA GPU" in message
    assert "graphjit[cuda]" in message and "NUMBA_ENABLE_CUDASIM=1" in message
    assert "CUDAUnavailableError" in ptx_report["jit_error"]
    assert "NUMBA_ENABLE_CUDASIM=1" in ptx_report["jit_error"]
