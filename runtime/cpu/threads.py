"""A persistent pool of threads that splits native loops over the cores.

`ThreadPool(n)` keeps n - 1 worker threads; the calling thread runs the first chunk itself, so a
parallel loop costs one queue hand-off per worker. Work items are native functions called through
ctypes, which releases the GIL for the duration of the call, so the chunks really run at once.

One pool owns the cores at a time: when a second Python thread asks for the pool while it is busy,
its loop runs serially in that thread instead of queueing (the cores are busy anyway), and nothing
that is itself multi-threaded (BLAS) is ever run from inside a parallel region.

Native hand-off: a Python hand-off (queue put, a worker waking and taking the GIL, a second
queue back) costs 50-300 us on a virtual machine, where waking an idle vCPU goes through the
hypervisor; that is more than a whole 1e6-element kernel. So on x86-64 Linux the workers live
in a small native loop (LLVM IR below, compiled once per process): they spin on a generation
counter for about 100 us after each job (`pause` between polls), then sleep on a futex (longer
spinning steals the core from the BLAS threads that run between our loops: train_step got 30%
slower with a 1 ms spin).
A native kernel task (a ctypes function bound to its buffer table with functools.partial) is
handed over by one native call that publishes the ranges, bumps the generation, runs range 0
itself and spins until the workers are done: about a microsecond, and the GIL is released for
the whole loop. Python tasks still work: the native loop returns to its Python thread, which
takes the job from its queue. Elsewhere (or if LLVM fails) the pool is pure Python.

`GRAPHJIT_NUM_THREADS` sets the pool size (default: the number of usable cores).

Fork: a child process inherits the pool's objects but none of its threads (and possibly a lock
or a job counter some parent thread held mid-call). `os.register_at_fork` gives every pool a
fresh state, fresh locks and no workers in the child; the workers start again on the child's
first parallel loop, so a forked child never waits on a thread it does not have.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import queue
import sys
import threading
import weakref
from collections.abc import Callable

# A loop is split only when it does at least this many element-operations per chunk (OP_WEIGHTS
# units of runtime/cpu/elementwise.py OP_WEIGHTS, roughly 0.05-0.2 ns each vectorised). Measured on the 2-vCPU
# VM: with the native hand-off (~1-3 us when the worker is spinning, up to ~100 us when it must
# be woken) splitting pays from about 20-40 us of single-threaded work on an idle machine, and
# costs on a shared one, where the second core is often busy: adam's (256,100) update
# (1.1e6 element-ops, ~20 us serial) took 21.7 us on two threads idle and 43 us under load, 22
# serial; layernorm of (128,256) 9 us serial, 25 split under load; batchnorm_backward_alt's
# column kernel (2.1e6) 18 us serial, ~20 split idle, 52-76 split under load. So a split needs
# two chunks of 2e6 (~35 us serial).
MIN_WORK_PER_CHUNK = 2_000_000

Task = Callable[[int, int], None]   # task(begin, end) runs work items [begin, end)


def num_threads() -> int:
    """The thread count: GRAPHJIT_NUM_THREADS if set (>= 1), else the usable cores."""
    configured = os.environ.get("GRAPHJIT_NUM_THREADS", "").strip()
    if configured:
        try:
            return max(1, int(configured))      # 0 or less: no worker threads
        except ValueError:
            _warn_setting_once(f"graphjit: GRAPHJIT_NUM_THREADS={configured!r} is not a thread "
                               "count (a whole number); using the number of usable cores")
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_warned_settings: set[str] = set()


def _warn_setting_once(message: str) -> None:
    if message not in _warned_settings:
        _warned_settings.add(message)
        import warnings

        warnings.warn(message, RuntimeWarning, stacklevel=3)


def split(extent: int, chunks: int) -> list[tuple[int, int]]:
    """[0, extent) as `chunks` contiguous ranges whose sizes differ by at most one."""
    chunks = max(1, min(chunks, extent))
    base, extra = divmod(extent, chunks)
    ranges = []
    begin = 0
    for i in range(chunks):
        end = begin + base + (1 if i < extra else 0)
        ranges.append((begin, end))
        begin = end
    return ranges


def chunk_count(extent: int, cost_per_item: int, threads: int, work_factor: int = 1) -> int:
    """How many chunks a loop of `extent` items of `cost_per_item` each is worth splitting into
    (each chunk at least `work_factor` times MIN_WORK_PER_CHUNK element-ops)."""
    work = extent * max(1, cost_per_item)
    return max(1, min(threads, extent, work // (MIN_WORK_PER_CHUNK * work_factor)))


# ---------------------------------------------------------------- the native hand-off

# The shared state: an array of int64 slots (the generation is the low 32 bits of slot 0, the
# futex word). Counters the workers write sit on their own cache lines.
GENERATION, REMAINING, FUNCTION, ARGUMENT, RANGES, COUNT, STOP, SLEEPERS = 0, 8, 16, 17, 18, 19, \
    20, 24
STATE_SLOTS = 32
SPIN_POLLS = 4_000         # `pause` polls (~100 us) before an idle worker sleeps on the futex
SYS_FUTEX = 202            # x86-64 Linux
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129
WORKER_STOPPED = -1

NATIVE_POOL_IR = f"""
declare i64 @syscall(i64, ...)
declare void @llvm.x86.sse2.pause()

define internal ptr @slot(ptr %s, i64 %n) alwaysinline {{
  %p = getelementptr inbounds i64, ptr %s, i64 %n
  ret ptr %p
}}

; Waits for a generation other than %seen; runs this worker's range of a native job and loops.
; Returns the generation of a Python job (fn == 0) to its Python thread, or -1 on stop.
define i64 @gj_pool_worker(ptr %s, i64 %w, i64 %seen_in) nounwind {{
entry:
  %seen_start = trunc i64 %seen_in to i32
  br label %top
top:
  %seen = phi i32 [%seen_start, %entry], [%g, %ran]
  br label %spin
spin:
  %polls = phi i64 [0, %top], [%polls1, %pause], [0, %unsleep]
  %g = load atomic i32, ptr %s seq_cst, align 8
  %changed = icmp ne i32 %g, %seen
  br i1 %changed, label %job, label %idle
idle:
  %stopp = call ptr @slot(ptr %s, i64 {STOP})
  %stop = load atomic i64, ptr %stopp seq_cst, align 8
  %stopping = icmp ne i64 %stop, 0
  br i1 %stopping, label %exit, label %count
count:
  %polls1 = add i64 %polls, 1
  %spinning = icmp slt i64 %polls1, {SPIN_POLLS}
  br i1 %spinning, label %pause, label %sleep
pause:
  call void @llvm.x86.sse2.pause()
  br label %spin
sleep:
  %sleepers = call ptr @slot(ptr %s, i64 {SLEEPERS})
  %old = atomicrmw add ptr %sleepers, i64 1 seq_cst
  %g2 = load atomic i32, ptr %s seq_cst, align 8
  %same = icmp eq i32 %g2, %seen
  br i1 %same, label %futex, label %unsleep
futex:
  %expected = zext i32 %seen to i64
  %r = call i64 (i64, ...) @syscall(i64 {SYS_FUTEX}, ptr %s, i64 {FUTEX_WAIT_PRIVATE},
                                    i64 %expected, ptr null)
  br label %unsleep
unsleep:
  %old2 = atomicrmw sub ptr %sleepers, i64 1 seq_cst
  br label %spin
job:
  %fnp = call ptr @slot(ptr %s, i64 {FUNCTION})
  %fn = load atomic i64, ptr %fnp seq_cst, align 8
  %python = icmp eq i64 %fn, 0
  br i1 %python, label %to_python, label %native
to_python:
  %acked = call ptr @slot(ptr %s, i64 {REMAINING})
  %old4 = atomicrmw sub ptr %acked, i64 1 seq_cst
  %g64 = zext i32 %g to i64
  ret i64 %g64
native:
  %countp = call ptr @slot(ptr %s, i64 {COUNT})
  %n = load atomic i64, ptr %countp seq_cst, align 8
  %mine = icmp slt i64 %w, %n
  br i1 %mine, label %run, label %ran
run:
  %argp = call ptr @slot(ptr %s, i64 {ARGUMENT})
  %arg = load atomic i64, ptr %argp seq_cst, align 8
  %rangesp = call ptr @slot(ptr %s, i64 {RANGES})
  %ranges = load atomic i64, ptr %rangesp seq_cst, align 8
  %rp = inttoptr i64 %ranges to ptr
  %bi = shl i64 %w, 1
  %bp = getelementptr inbounds i64, ptr %rp, i64 %bi
  %begin = load i64, ptr %bp, align 8
  %ep = getelementptr inbounds i64, ptr %bp, i64 1
  %end = load i64, ptr %ep, align 8
  %f = inttoptr i64 %fn to ptr
  %a = inttoptr i64 %arg to ptr
  call void %f(ptr %a, i64 %begin, i64 %end)
  br label %ran
ran:
  %remaining = call ptr @slot(ptr %s, i64 {REMAINING})
  %old3 = atomicrmw sub ptr %remaining, i64 1 seq_cst
  br label %top
exit:
  ret i64 {WORKER_STOPPED}
}}

; Publishes a job to %workers workers and bumps the generation (waking sleepers). For a native
; job (%fn != 0) the caller then runs range 0. With %must_wait, it spins until every worker has
; finished (native) or taken (Python, fn == 0) the job, so no worker can read the fields of the
; next job under this job's generation.
define void @gj_pool_run(ptr %s, i64 %fn, i64 %arg, i64 %ranges, i64 %n, i64 %workers,
                         i64 %must_wait) nounwind {{
entry:
  %fnp = call ptr @slot(ptr %s, i64 {FUNCTION})
  store atomic i64 %fn, ptr %fnp seq_cst, align 8
  %argp = call ptr @slot(ptr %s, i64 {ARGUMENT})
  store atomic i64 %arg, ptr %argp seq_cst, align 8
  %rangesp = call ptr @slot(ptr %s, i64 {RANGES})
  store atomic i64 %ranges, ptr %rangesp seq_cst, align 8
  %countp = call ptr @slot(ptr %s, i64 {COUNT})
  store atomic i64 %n, ptr %countp seq_cst, align 8
  %remaining = call ptr @slot(ptr %s, i64 {REMAINING})
  store atomic i64 %workers, ptr %remaining seq_cst, align 8
  %old = atomicrmw add ptr %s, i32 1 seq_cst
  %sleepersp = call ptr @slot(ptr %s, i64 {SLEEPERS})
  %sleepers = load atomic i64, ptr %sleepersp seq_cst, align 8
  %asleep = icmp ne i64 %sleepers, 0
  br i1 %asleep, label %wake, label %work
wake:
  %r = call i64 (i64, ...) @syscall(i64 {SYS_FUTEX}, ptr %s, i64 {FUTEX_WAKE_PRIVATE},
                                    i64 2147483647)
  br label %work
work:
  %python = icmp eq i64 %fn, 0
  br i1 %python, label %maybe_wait, label %own
maybe_wait:
  %waiting = icmp ne i64 %must_wait, 0
  br i1 %waiting, label %wait, label %exit
own:
  %rp = inttoptr i64 %ranges to ptr
  %begin = load i64, ptr %rp, align 8
  %ep = getelementptr inbounds i64, ptr %rp, i64 1
  %end = load i64, ptr %ep, align 8
  %f = inttoptr i64 %fn to ptr
  %a = inttoptr i64 %arg to ptr
  call void %f(ptr %a, i64 %begin, i64 %end)
  br label %wait
wait:
  %left = load atomic i64, ptr %remaining seq_cst, align 8
  %done = icmp eq i64 %left, 0
  br i1 %done, label %exit, label %pause
pause:
  call void @llvm.x86.sse2.pause()
  br label %wait
exit:
  ret void
}}
"""

WORKER_FUNCTION = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                                   ctypes.c_int64)
RUN_FUNCTION = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)


class NativeHandOff:
    """The two native functions of NATIVE_POOL_IR (compiled once per process)."""

    def __init__(self) -> None:
        from . import shared_object

        # through the disk cache: a warm process start compiles nothing and loads no LLVM
        names = ("gj_pool_worker", "gj_pool_run")
        self._library = shared_object.load_ir_library([NATIVE_POOL_IR], names)
        if self._library is None:
            from . import llvm

            libc = ctypes.CDLL(None)
            llvm.register_symbol("syscall", ctypes.cast(libc.syscall, ctypes.c_void_p).value)
            self._library = llvm.compile_ir_cached([NATIVE_POOL_IR], required=names)
        self.worker = WORKER_FUNCTION(self._library.address("gj_pool_worker"))
        self.run = RUN_FUNCTION(self._library.address("gj_pool_run"))


_native: NativeHandOff | None = None
_native_failed = False
_native_lock = threading.Lock()


def native_hand_off() -> NativeHandOff | None:
    """The process's native hand-off, or None where it is unavailable (not x86-64 Linux)."""
    global _native, _native_failed
    if _native is not None or _native_failed:
        return _native
    with _native_lock:
        if _native is None and not _native_failed:
            supported = sys.platform.startswith("linux") and platform.machine() in (
                "x86_64", "AMD64") and os.environ.get("GRAPHJIT_NATIVE_POOL", "1") != "0"
            try:
                _native = NativeHandOff() if supported else None
            except Exception:   # no LLVM target, no libc symbol: the Python pool still works
                _native = None
            _native_failed = _native is None
    return _native


def native_task(task: Task) -> tuple[int, int] | None:
    """(function address, first argument) of a ctypes kernel bound with functools.partial."""
    if type(task) is not functools.partial or task.keywords or len(task.args) != 1:
        return None
    function = task.func
    if not isinstance(function, ctypes._CFuncPtr):
        return None
    argument = task.args[0]
    if argument is not None and type(argument) is not int:
        return None
    return ctypes.cast(function, ctypes.c_void_p).value or 0, argument or 0


class ThreadPool:
    """n - 1 persistent workers plus the caller."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._native = native_hand_off() if self.size > 1 else None
        self._reset()
        self._start_workers()
        _pools.add(self)

    def _reset(self) -> None:
        """Fresh locks, queues and shared state, and no workers (at creation and after fork)."""
        self._busy = threading.Lock()
        self._inboxes: list[queue.SimpleQueue] = []
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._state = (ctypes.c_int64 * STATE_SLOTS)()
        self._state_address = ctypes.addressof(self._state)
        self._ranges: dict[int, tuple[list, ctypes.Array]] = {}
        self._started = False

    def _start_workers(self) -> None:
        for n in range(self.size - 1):
            inbox: queue.SimpleQueue = queue.SimpleQueue()
            thread = threading.Thread(target=self._work, args=(inbox, n + 1, self._state_address),
                                      name=f"graphjit-worker-{n}", daemon=True)
            self._inboxes.append(inbox)
            self._threads.append(thread)
            thread.start()
        self._started = True

    def _after_fork_in_child(self) -> None:
        if self._started:
            self._reset()   # the workers start again on the first parallel loop

    def _work(self, inbox: queue.SimpleQueue, worker: int, state_address: int) -> None:
        seen = 0
        while True:
            if self._native is None:
                if not self._run_job(inbox.get()):
                    return
                continue
            # native jobs run inside; it returns for Python jobs (or -1: stop)
            seen = self._native.worker(state_address, worker, seen)
            if seen == WORKER_STOPPED:
                return
            while True:   # every job queued for this worker (there may be none, or several)
                try:
                    job = inbox.get_nowait()
                except queue.Empty:
                    break
                if not self._run_job(job):
                    return

    def _run_job(self, job: tuple[Task, int, int] | None) -> bool:
        """Run one queued job and report its error to the caller; False on the stop marker."""
        if job is None:
            return False
        task, begin, end = job
        error = None
        try:
            task(begin, end)
        except BaseException as exc:  # handed back to the caller, who re-raises it
            error = exc
        self._done.put(error)
        return True

    def parallel_for(self, task: Task, ranges: list[tuple[int, int]]) -> None:
        """Run task(begin, end) for every range, spread over the pool; return when all are done."""
        if len(ranges) == 1 or self.size == 1 or not self._busy.acquire(blocking=False):
            for begin, end in ranges:
                task(begin, end)
            return
        try:
            if not self._started:   # a forked child: its workers were left in the parent
                self._start_workers()
            native = native_task(task) if self._native is not None else None
            if native is not None and len(ranges) <= self.size:
                self._run_native(native, ranges)
            else:
                self._run_locked(task, ranges)
        finally:
            self._busy.release()

    def _run_native(self, task: tuple[int, int], ranges: list[tuple[int, int]]) -> None:
        """One native call: publish the ranges, run range 0 here, wait for the workers."""
        cached = self._ranges.get(id(ranges))
        if cached is None or cached[0] is not ranges:
            flat = (ctypes.c_int64 * (2 * len(ranges)))(*(v for r in ranges for v in r))
            if len(self._ranges) > 1024:
                self._ranges.clear()
            cached = self._ranges[id(ranges)] = (ranges, flat)   # holds `ranges`: ids stay valid
        function, argument = task
        self._native.run(self._state_address, function, argument, ctypes.addressof(cached[1]),
                         len(ranges), self.size - 1, 1)

    def _run_locked(self, task: Task, ranges: list[tuple[int, int]]) -> None:
        # Round-robin the ranges after the first over the workers; the caller runs every
        # size-th range starting at the first.
        handed = 0
        mine = []
        for position, (begin, end) in enumerate(ranges):
            worker = position % self.size
            if worker == 0:
                mine.append((begin, end))
            else:
                self._inboxes[worker - 1].put((task, begin, end))
                handed += 1
        if handed:
            self._signal_python_jobs()
        error = None
        try:
            for begin, end in mine:
                task(begin, end)
        except BaseException as exc:
            error = exc
        for _ in range(handed):
            worker_error = self._done.get()
            error = error or worker_error
        if error is not None:
            raise error

    def _signal_python_jobs(self, wait: bool = True) -> None:
        """Bring native-waiting workers back to Python to take their queued jobs."""
        if self._native is not None:
            self._native.run(self._state_address, 0, 0, 0, 0, self.size - 1, int(wait))

    def close(self) -> None:
        _pools.discard(self)
        for inbox in self._inboxes:
            inbox.put(None)
        if self._native is not None:
            self._state[STOP] = 1
            self._signal_python_jobs(wait=False)   # stopping workers do not acknowledge
        for thread in self._threads:
            thread.join()
        self._inboxes, self._threads = [], []
        self.size = 1


_default_pool: ThreadPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ThreadPool:
    """The process-wide pool, created on first use with `num_threads()` threads."""
    global _default_pool
    if _default_pool is None:
        with _default_lock:
            if _default_pool is None:
                _default_pool = ThreadPool(num_threads())
    return _default_pool


def default_pool_size() -> int:
    """The size of the process-wide pool, without starting it (planning needs only this)."""
    pool = _default_pool
    return pool.size if pool is not None else num_threads()


# Every live pool, so a forked child can reset them all (executables hold their pool directly).
_pools: weakref.WeakSet[ThreadPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _native_lock, _default_lock
    _native_lock = threading.Lock()
    _default_lock = threading.Lock()
    for pool in list(_pools):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
