"""A persistent pool of threads that splits native loops over the cores.

`ThreadPool(n)` keeps n - 1 worker threads; the calling thread runs the first chunk itself, so a
parallel loop costs one queue hand-off per worker. Work items are native functions called through
ctypes, which releases the GIL for the duration of the call, so the chunks really run at once.

One pool owns the cores at a time: when a second Python thread asks for the pool while it is busy,
its loop runs serially in that thread instead of queueing (the cores are busy anyway), and nothing
that is itself multi-threaded (BLAS) is ever run from inside a parallel region.

`GRAPHJIT_NUM_THREADS` sets the pool size (default: the number of usable cores).
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable

# A loop is split only when it does at least this many element-operations per chunk: below it the
# hand-off (about 10-20 us to wake a worker and wait for it) costs more than the work it saves.
MIN_WORK_PER_CHUNK = 100_000

Task = Callable[[int, int], None]   # task(begin, end) runs work items [begin, end)


def num_threads() -> int:
    """The thread count: GRAPHJIT_NUM_THREADS if set (>= 1), else the usable cores."""
    configured = os.environ.get("GRAPHJIT_NUM_THREADS", "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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


def chunk_count(extent: int, cost_per_item: int, threads: int) -> int:
    """How many chunks a loop of `extent` items of `cost_per_item` each is worth splitting into."""
    work = extent * max(1, cost_per_item)
    return max(1, min(threads, extent, work // MIN_WORK_PER_CHUNK))


class ThreadPool:
    """n - 1 persistent workers plus the caller."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._busy = threading.Lock()
        self._inboxes: list[queue.SimpleQueue] = []
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        for n in range(self.size - 1):
            inbox: queue.SimpleQueue = queue.SimpleQueue()
            thread = threading.Thread(target=self._work, args=(inbox,),
                                      name=f"graphjit-worker-{n}", daemon=True)
            thread.start()
            self._inboxes.append(inbox)
            self._threads.append(thread)

    def _work(self, inbox: queue.SimpleQueue) -> None:
        while True:
            job = inbox.get()
            if job is None:
                return
            task, begin, end = job
            error = None
            try:
                task(begin, end)
            except BaseException as exc:  # handed back to the caller, who re-raises it
                error = exc
            self._done.put(error)

    def parallel_for(self, task: Task, ranges: list[tuple[int, int]]) -> None:
        """Run task(begin, end) for every range, spread over the pool; return when all are done."""
        if len(ranges) == 1 or self.size == 1 or not self._busy.acquire(blocking=False):
            for begin, end in ranges:
                task(begin, end)
            return
        try:
            self._run_locked(task, ranges)
        finally:
            self._busy.release()

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

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
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
