"""The thread pool: splitting, the work threshold, GRAPHJIT_NUM_THREADS, errors, busy fallback."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphjit.runtime.cpu import threads
from graphjit.runtime.cpu.threads import MIN_WORK_PER_CHUNK, ThreadPool, chunk_count, split


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 16))
def test_split_covers_the_range_in_order_with_balanced_chunks(extent, chunks):
    ranges = split(extent, chunks)
    assert ranges[0][0] == 0 and ranges[-1][1] == extent
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [end - begin for begin, end in ranges]
    assert max(sizes) - min(sizes) <= 1
    assert len(ranges) == max(1, min(chunks, extent))


def test_small_loops_stay_single_threaded_and_big_ones_use_every_thread():
    assert chunk_count(1000, 10, threads=2) == 1
    assert chunk_count(MIN_WORK_PER_CHUNK * 2, 1, threads=2) == 2
    assert chunk_count(10**8, 1, threads=4) == 4
    assert chunk_count(3, 10**9, threads=8) == 3          # never more chunks than items


def test_num_threads_reads_the_environment(monkeypatch):
    monkeypatch.setenv("GRAPHJIT_NUM_THREADS", "3")
    assert threads.num_threads() == 3
    monkeypatch.setenv("GRAPHJIT_NUM_THREADS", "0")
    assert threads.num_threads() == 1
    monkeypatch.delenv("GRAPHJIT_NUM_THREADS")
    assert threads.num_threads() == len(os.sched_getaffinity(0))


def test_default_pool_in_a_fresh_process_respects_graphjit_num_threads():
    code = ("from graphjit.runtime.cpu.threads import default_pool; import threading; "
            "p = default_pool(); print(p.size, sum(t.name.startswith('graphjit-worker') "
            "for t in threading.enumerate()))")
    env = dict(os.environ, GRAPHJIT_NUM_THREADS="3")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.split() == ["3", "2"]


def test_pool_runs_every_range_once_across_several_threads():
    pool = ThreadPool(3)
    seen, names = [], set()
    lock = threading.Lock()
    barrier = threading.Barrier(3, timeout=10)

    def task(begin, end):
        barrier.wait()        # proves three chunks ran at the same time, on three threads
        with lock:
            seen.extend(range(begin, end))
            names.add(threading.current_thread().name)

    pool.parallel_for(task, split(30, 3))
    pool.close()
    assert sorted(seen) == list(range(30))
    assert len(names) == 3 and threading.current_thread().name in names


def test_more_ranges_than_threads():
    pool = ThreadPool(2)
    seen = []
    lock = threading.Lock()

    def task(begin, end):
        with lock:
            seen.extend(range(begin, end))

    pool.parallel_for(task, split(100, 7))
    pool.close()
    assert sorted(seen) == list(range(100))


def test_a_failing_chunk_raises_in_the_caller_and_the_pool_keeps_working():
    pool = ThreadPool(2)

    def task(begin, end):
        if begin > 0:
            raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        pool.parallel_for(task, split(10, 2))
    done = []
    pool.parallel_for(lambda b, e: done.append((b, e)), split(10, 2))
    pool.close()
    assert sorted(done) == [(0, 5), (5, 10)]


def test_busy_pool_runs_a_second_callers_loop_serially_in_that_thread():
    pool = ThreadPool(2)
    release = threading.Event()
    started = threading.Event()
    second_threads = set()

    def slow(begin, end):
        started.set()
        release.wait(10)

    def other(begin, end):
        second_threads.add(threading.current_thread().name)

    first = threading.Thread(target=pool.parallel_for, args=(slow, split(2, 2)))
    first.start()
    started.wait(10)
    pool.parallel_for(other, split(10, 2))        # must not wait for the first loop
    release.set()
    first.join()
    pool.close()
    assert second_threads == {threading.current_thread().name}


def test_native_calls_run_in_parallel_with_the_gil_released():
    """Two chunks of a ctypes call into a C function that sleeps finish in ~one sleep."""
    import ctypes

    libc = ctypes.CDLL(None)
    usleep = libc.usleep
    usleep.argtypes = [ctypes.c_uint]
    pool = ThreadPool(2)
    start = time.perf_counter()
    pool.parallel_for(lambda b, e: usleep(200_000), split(2, 2))
    elapsed = time.perf_counter() - start
    pool.close()
    assert elapsed < 0.35


# ---------------------------------------------------------------- the native hand-off

MARK_IR = """
define void @mark(ptr %counts, i64 %begin, i64 %end) {
entry:
  br label %head
head:
  %i = phi i64 [%begin, %entry], [%next, %body]
  %more = icmp slt i64 %i, %end
  br i1 %more, label %body, label %exit
body:
  %p = getelementptr inbounds i64, ptr %counts, i64 %i
  %old = atomicrmw add ptr %p, i64 1 seq_cst
  %next = add i64 %i, 1
  br label %head
exit:
  ret void
}
"""


@pytest.fixture(scope="module")
def mark_kernel():
    """A native kernel(counts, begin, end) adding 1 to counts[begin:end], as codegen's are."""
    import ctypes

    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(MARK_IR)
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    kernel = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)(
        engine.get_function_address("mark"))
    yield kernel, engine


def test_native_tasks_are_recognised_only_in_their_exact_form(mark_kernel):
    import functools

    kernel, _ = mark_kernel
    assert threads.native_task(functools.partial(kernel, 1234)) is not None
    assert threads.native_task(functools.partial(kernel, 1234, 5)) is None
    assert threads.native_task(lambda b, e: None) is None
    assert threads.native_task(functools.partial(print, 1234)) is None


@pytest.mark.skipif(threads.native_hand_off() is None, reason="no native hand-off here")
def test_native_hand_off_runs_every_range_once_and_mixes_with_python_tasks(mark_kernel):
    import ctypes
    import functools

    import numpy as np

    kernel, _ = mark_kernel
    pool = ThreadPool(3)
    assert pool._native is not None
    counts = np.zeros(1000, np.int64)
    task = functools.partial(kernel, counts.ctypes.data)
    for extent in (2, 3, 17, 1000):
        for _ in range(50):
            pool.parallel_for(task, split(extent, 3))
        python_seen = []
        pool.parallel_for(lambda b, e: python_seen.extend(range(b, e)), split(10, 5))
        assert sorted(python_seen) == list(range(10))
    expected = np.zeros(1000, np.int64)
    for extent in (2, 3, 17, 1000):
        expected[:extent] += 50
    np.testing.assert_array_equal(counts, expected)
    # the workers went to sleep and come back: a job after an idle pause still completes
    time.sleep(0.05)
    pool.parallel_for(task, split(1000, 3))
    assert counts[999] == 51
    pool.close()
    assert not any(t.is_alive() for t in pool._threads)


@pytest.mark.skipif(threads.native_hand_off() is None, reason="no native hand-off here")
def test_native_hand_off_runs_every_range_of_many_loops(mark_kernel):
    """1000 back-to-back loops (the hand-off's hot path): every range runs exactly once each.
    Its speed (~4 us per loop vs ~260 us for a Python hand-off) is measured, not asserted."""
    import functools

    import numpy as np

    kernel, _ = mark_kernel
    pool = ThreadPool(2)
    counts = np.zeros(2, np.int64)
    task, ranges = functools.partial(kernel, counts.ctypes.data), split(2, 2)
    for _ in range(1000):
        pool.parallel_for(task, ranges)
    pool.close()
    assert counts.tolist() == [1000, 1000]


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
                    reason="the native hand-off is x86-64 Linux only")
def test_native_hand_off_compiles_on_x86_64_linux():
    """It falls back to the Python pool silently at run time; here a broken one must fail."""
    threads.NativeHandOff()
