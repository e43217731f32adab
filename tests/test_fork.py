"""Fork safety: a forked child (os.fork, a multiprocessing fork pool) gets a working thread pool
after the parent ran multi-threaded kernels and BLAS; spawn pools work too.

Each case runs in its own interpreter with four worker threads, so the parent really has
workers (and their locks and counters) that a child would otherwise wait on forever."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SHARED = '''
import os, sys, time
import numpy as np
import graphjit as gj

@gj.jit
def chain(x):
    return np.tanh(x * 2.0 + 1.0) - x

@gj.jit
def layer(x, w):
    return np.maximum(x @ w, 0.0)

BIG = np.linspace(-1, 1, 1_000_000).reshape(1000, 1000)   # split over the workers
W = np.linspace(0, 1, 1000 * 64).reshape(1000, 64)

def expected_chain(x):
    return np.tanh(x * 2.0 + 1.0) - x

def check(scale):
    x = BIG * scale
    assert np.allclose(chain(x), expected_chain(x)), "chain"
    assert np.allclose(layer(x, W), np.maximum(x @ W, 0.0)), "layer"
    return float(chain(x).sum())

def parent_warm_up():
    check(1.0)
    from graphjit.runtime.cpu.threads import default_pool
    assert default_pool().size == 4
'''


def _run(script: str, tmp_path, timeout: float = 120) -> str:
    path = tmp_path / "fork_case.py"
    path.write_text(SHARED + textwrap.dedent(script))
    env = dict(os.environ, GRAPHJIT_NUM_THREADS="4")
    result = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True,
                            timeout=timeout, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_os_fork_child_runs_parallel_kernels_and_blas_after_the_parent_did(tmp_path):
    out = _run('''
        parent_warm_up()
        children = []
        for n in range(2):
            pid = os.fork()
            if pid == 0:
                try:
                    check(0.5 + n)
                    check(0.25)                 # and again: the restarted workers are reusable
                    pid2 = os.fork()            # a grandchild after the child used its workers
                    if pid2 == 0:
                        check(2.0)
                        os._exit(0)
                    code = os.waitpid(pid2, 0)[1]
                    os._exit(0 if code == 0 else 3)
                except BaseException as exc:
                    print("child failed:", exc, flush=True)
                    os._exit(2)
            children.append(pid)
        deadline = time.time() + 60
        for pid in children:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0, status
                    break
                if time.time() > deadline:
                    os.kill(pid, 9)
                    raise SystemExit("a forked child hung")
                time.sleep(0.01)
        check(3.0)                              # the parent's own pool still works
        print("ok")
    ''', tmp_path)
    assert out.strip() == "ok"


def test_multiprocessing_fork_pool_after_parallel_work(tmp_path):
    out = _run('''
        import multiprocessing as mp

        def work(scale):
            return check(scale)

        if __name__ == "__main__":
            parent_warm_up()
            with mp.get_context("fork").Pool(2) as pool:
                result = pool.map_async(work, [0.5, 1.5, 2.5, 3.5])
                values = result.get(timeout=60)
            assert np.allclose(values, [float(expected_chain(BIG * s).sum())
                                        for s in [0.5, 1.5, 2.5, 3.5]])
            print("ok")
    ''', tmp_path)
    assert out.strip() == "ok"


def test_multiprocessing_spawn_pool(tmp_path):
    out = _run('''
        import multiprocessing as mp

        def work(scale):
            return check(scale)

        if __name__ == "__main__":
            parent_warm_up()
            with mp.get_context("spawn").Pool(2) as pool:
                values = pool.map_async(work, [0.5, 1.5]).get(timeout=90)
            assert np.allclose(values, [float(expected_chain(BIG * s).sum()) for s in [0.5, 1.5]])
            print("ok")
    ''', tmp_path)
    assert out.strip() == "ok"
