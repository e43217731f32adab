"""PTX for sm_90 of every CUDA kernel kind, and the "no GPU" error, in a subprocess.

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
    from graphjit.runtime.cuda import program_ptx

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
        "matmul_epilogue_f32": matmul_program(
            (256, 128), (128, 64), F32, epilogue=bias_relu_epilogue((64,), 256, 64)).program(),
        "matmul_epilogue_f64": matmul_program(
            (65, 33), (33, 17), F64, epilogue=bias_relu_epilogue((17,), 65, 17, F64)).program(),
        "matmul_transposed_batched_f32": matmul_program(
            (64, 32), (32, 48), F32, True, True, batch=(3,)).program(),
    }}
    result = {{}}
    for name, program in programs.items():
        ptx = program_ptx(program, cc=(9, 0))
        result[name] = {{"target": ".target sm_90" in ptx, "entries": ptx.count(".entry"),
                        "shared": ".shared" in ptx, "length": len(ptx)}}

    # with no GPU and no simulator, target="cuda" must say how to get one
    from numba import cuda
    if not cuda.is_available():
        from graphjit.runtime.cuda import CUDABackend, CUDAUnavailableError
        try:
            CUDABackend().compile(programs["elementwise_f32"], {{}})
            result["no_gpu_error"] = "no error raised"
        except CUDAUnavailableError as exc:
            result["no_gpu_error"] = str(exc)
        import graphjit as gj
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
    if not kind.startswith("elementwise"):
        assert report["shared"], report        # tree reductions and tiles use shared memory


def test_no_gpu_error_names_both_ways_on(ptx_report):
    if "no_gpu_error" not in ptx_report:
        pytest.skip("this machine has a GPU: the no-GPU error cannot be provoked")
    message = ptx_report["no_gpu_error"]
    assert "no CUDA GPU" in message
    assert "graphjit[cuda]" in message and "NUMBA_ENABLE_CUDASIM=1" in message
    assert "CUDAUnavailableError" in ptx_report["jit_error"]
    assert "NUMBA_ENABLE_CUDASIM=1" in ptx_report["jit_error"]
