"""What `fit`, `evaluate` and `predict` accept as data, as batches of NumPy arrays.

- arrays (or lists/dicts of them, one per model input or output), batched and shuffled here;
- a Python generator or iterator yielding `x`, `(x, y)` or `(x, y, sample_weight)` batches
  (iterated across epochs; `steps_per_epoch` says where an epoch ends);
- a `Sequence`-style object (`__len__` and `__getitem__(i)` returning a batch; `on_epoch_end()`
  called after each epoch, as Keras' `PyDataset`);
- any other re-iterable dataset (`__iter__` giving a fresh iterator of batches: a `tf.data`-
  or torch-`DataLoader`-like object), iterated afresh each epoch, or, with `steps_per_epoch`,
  continued across epochs and restarted when it runs out (Keras' rule for datasets).

Batches from generators and sequences are pulled on a background thread (a short queue), so the
next one is ready while the compiled step runs. Every check that can be made on the host before
training (sample counts, batch sizes, label ranges) is made here, with an error naming the argument.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

PREFETCH = 2  # batches waiting ahead of the compiled step


def is_array_like(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic, list, tuple, int, float)) or \
        hasattr(value, "__array__")


def is_sequence(value: Any) -> bool:
    """A Keras Sequence / PyDataset: indexable batches with a length, not an array."""
    return (hasattr(value, "__getitem__") and hasattr(value, "__len__")
            and not isinstance(value, (np.ndarray, list, tuple, dict, str))
            and not hasattr(value, "__array__"))


def is_generator(value: Any) -> bool:
    return isinstance(value, Iterator) and not is_sequence(value)


def is_iterable_dataset(value: Any) -> bool:
    """Re-iterable batches (tf.data.Dataset, a DataLoader...): `__iter__` but neither an
    iterator, a Sequence nor array data."""
    return (hasattr(value, "__iter__") and not isinstance(value, Iterator)
            and not isinstance(value, (np.ndarray, list, tuple, dict, str, bytes))
            and not hasattr(value, "__array__") and not is_sequence(value))


def is_batch_source(value: Any) -> bool:
    return is_generator(value) or is_sequence(value) or is_iterable_dataset(value)


def _length(source: Any) -> int | None:
    try:
        return int(len(source))
    except (TypeError, ValueError):  # no len, or an infinite / unknown one (tf.data raises)
        return None


def unpack(batch: Any, what: str) -> tuple[Any, Any, Any]:
    """(x, y, sample_weight) from a batch yielded as x, (x,), (x, y) or (x, y, sample_weight)."""
    if isinstance(batch, tuple):
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch
        raise GraphjitError(f"{what} yielded a tuple of {len(batch)} items; yield x, (x, y) or "
                            "(x, y, sample_weight)")
    return batch, None, None


def check_batch_size(batch_size: Any, what: str = "batch_size") -> int:
    if batch_size is None:
        return 32  # Keras' default
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise GraphjitError(f"{what} must be a positive integer or None (32), got "
                            f"{batch_size!r}")
    if batch_size <= 0:
        raise GraphjitError(f"{what} must be a positive integer, got {batch_size}")
    return int(batch_size)


def check_count(value: Any, what: str, minimum: int = 0, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GraphjitError(f"{what} must be an integer >= {minimum}"
                            f"{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def common_length(arrays: list[np.ndarray], names: list[str]) -> int:
    lengths = {}
    for name, array in zip(names, arrays):
        if np.ndim(array) == 0:
            raise GraphjitError(f"{name} is a scalar; it must be an array with one row per "
                                "sample")
        lengths.setdefault(len(array), []).append(name)
    if len(lengths) > 1:
        described = ", ".join(f"{'/'.join(v)}: {k}" for k, v in sorted(lengths.items()))
        raise GraphjitError(f"x, y and sample_weight have different numbers of samples "
                            f"({described}); they need one row per sample each")
    return next(iter(lengths)) if lengths else 0


# ---------------------------------------------------------------- batch sources


class ArrayBatches:
    """Shuffled (or ordered) slices of in-memory arrays."""

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray] | None,
                 sws: list[np.ndarray] | None, batch_size: int, shuffle: bool,
                 steps_per_epoch: int | None = None):
        self.xs, self.ys, self.sws = xs, ys, sws
        self.batch_size, self.shuffle = batch_size, shuffle
        self.count = common_length(xs + (ys or []) + (sws or []),
                                   [f"x[{i}]" for i in range(len(xs))]
                                   + [f"y[{i}]" for i in range(len(ys or []))]
                                   + [f"sample_weight[{i}]" for i in range(len(sws or []))])
        self.batches_per_pass = -(-self.count // batch_size)
        self.steps = steps_per_epoch or self.batches_per_pass
        self._order: np.ndarray | None = None
        self._position = 0
        self._started = False

    def _take(self, arrays: list[np.ndarray] | None, index: Any) -> list[np.ndarray] | None:
        return None if arrays is None else [a[index] for a in arrays]

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple]:
        for _ in range(self.steps):
            if self._position >= self.count or not self._started:
                self._order = rng.permutation(self.count) if self.shuffle else None
                self._position, self._started = 0, True
            start, stop = self._position, min(self._position + self.batch_size, self.count)
            self._position = stop
            index = slice(start, stop) if self._order is None else self._order[start:stop]
            yield self._take(self.xs, index), self._take(self.ys, index), \
                self._take(self.sws, index)

    def close(self) -> None:
        pass


class _Prefetcher:
    """Pulls items of an iterator on a daemon thread into a short queue."""

    _DONE = object()

    def __init__(self, items: Iterator[Any]):
        self._queue: queue.Queue = queue.Queue(PREFETCH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), daemon=True,
                                        name="graphjit-prefetch")
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
        except BaseException as exc:  # handed to the training thread, raised there
            self._put(("error", exc))
            return
        self._put(("done", None))

    def get(self) -> tuple[str, Any]:
        return self._queue.get()

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass


class SourceBatches:
    """Batches from a generator (iterated across epochs), a Sequence (one pass per epoch) or a
    re-iterable dataset (one pass per epoch; with steps_per_epoch, continued and restarted)."""

    def __init__(self, source: Any, steps_per_epoch: int | None, shuffle: bool, what: str,
                 convert: Callable[[Any], tuple]):
        self.source, self.what, self.convert = source, what, convert
        self.sequence = is_sequence(source)
        self.iterable = is_iterable_dataset(source)
        self.shuffle = shuffle and self.sequence
        self.steps_per_epoch = steps_per_epoch
        if self.sequence:
            length = len(source)
            if length == 0:
                raise GraphjitError(f"{what} is empty: its len() is 0")
            self.steps = min(steps_per_epoch, length) if steps_per_epoch else length
        elif self.iterable:
            length = _length(source)
            if length == 0:
                raise GraphjitError(f"{what} is empty: its len() is 0")
            self.steps = steps_per_epoch or length  # None: until one pass ends
        else:
            self.steps = steps_per_epoch  # None: until the generator is exhausted
        self._prefetch: _Prefetcher | None = None
        self.exhausted = False

    def _sequence_items(self, rng: np.random.Generator) -> Iterator[Any]:
        order = rng.permutation(len(self.source)) if self.shuffle else range(len(self.source))
        for i in list(order)[:self.steps]:
            yield self.source[int(i)]

    def epoch(self, rng: np.random.Generator) -> Iterator[tuple]:
        if self.iterable:
            yield from self._iterable_epoch()
            return
        if self.sequence:
            prefetch = _Prefetcher(self._sequence_items(rng))
        elif self.exhausted:
            return  # the caller sees an epoch of no batches and stops (Keras: "ran out of data")
        else:
            if self._prefetch is None:
                self._prefetch = _Prefetcher(iter(self.source))
            prefetch = self._prefetch
        produced = 0
        try:
            while self.steps is None or produced < self.steps:
                kind, item = prefetch.get()
                if kind == "error":
                    raise item
                if kind == "done":
                    self.exhausted = True
                    if produced == 0:
                        raise GraphjitError(
                            f"{self.what} yielded no batches"
                            + (" (it ran out of data: a generator is iterated across epochs; "
                               "pass steps_per_epoch, or a Sequence-style object with "
                               "__len__/__getitem__ to start over each epoch)"
                               if not self.sequence else ""))
                    return
                produced += 1
                yield self.convert(item)
        finally:
            if self.sequence:
                prefetch.close()
                if hasattr(self.source, "on_epoch_end"):
                    self.source.on_epoch_end()

    def _iterable_epoch(self) -> Iterator[tuple]:
        produced = 0
        fresh_pass: int | None = None  # batches taken from a pass begun in this epoch
        if self._prefetch is None or self.steps_per_epoch is None:
            self._restart()
            fresh_pass = 0
        try:
            while self.steps is None or produced < self.steps:
                kind, item = self._prefetch.get()
                if kind == "error":
                    raise item
                if kind == "done":
                    if fresh_pass == 0:
                        raise GraphjitError(f"{self.what} yielded no batches (one pass over it "
                                            "ended before its first batch)")
                    if self.steps_per_epoch is None:
                        return  # one pass is one epoch
                    self._restart()  # steps_per_epoch reaches past the end: a new pass
                    fresh_pass = 0
                    continue
                produced += 1
                if fresh_pass is not None:
                    fresh_pass += 1
                yield self.convert(item)
        finally:
            if self.steps_per_epoch is None:
                self.close()

    def _restart(self) -> None:
        self.close()
        self._prefetch = _Prefetcher(iter(self.source))

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None
