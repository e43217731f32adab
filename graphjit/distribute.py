"""Data-parallel training over dask.distributed: `fit(..., distribute=DaskDataParallel(client))`.

Every worker holds a replica of the model (weights, optimizer state, layer state). Each step
the driver splits the global batch into one shard per worker; every replica runs the compiled
gradient half of the train step on its shard; the gradients are averaged (weighted by shard
size, so the result is the gradient of the global batch's mean loss) by one reduce task on the
first worker, to which Dask moves the other workers' gradients directly; the averaged gradients
go back to every replica (and to the driver, which holds a replica too), and each applies the
same compiled optimizer update. Same inputs, same code: the replicas stay bit-identical, which
`verify=True` checks after every step.

The engine is Dask's scheduler (its worker-to-worker transfers), not a home-made one: the same
code runs on `LocalCluster` and on a real cluster (`Client("tcp://scheduler:8786")`).
"""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphjit.compiler.errors import ArgumentError, ConfigurationError, GraphjitError
from graphjit.frontend.pytree import flatten, unflatten

__all__ = ["DaskDataParallel", "DistributedTrainingError"]


class DistributedTrainingError(GraphjitError):
    """A data-parallel step could not finish: a replica's worker left the cluster, a step ran
    past its timeout, or a replica raised."""


# ---------------------------------------------------------------- the strategy (driver side)
class DaskDataParallel:
    """Synchronous data-parallel training on the workers of a dask.distributed `client`.

        with DaskDataParallel(client) as strategy:
            model.fit(x, y, batch_size=256, epochs=5, distribute=strategy)

    `workers`: the worker addresses that hold replicas (default: every worker when training
    starts; a number takes the first that many). `timeout`: seconds one step may take before
    it fails with `DistributedTrainingError` (never a hang). `verify`: compare a digest of every
    replica's weights and optimizer state with the driver's after every step.

    Each step's timings (seconds: `step`, `compute` = the slowest replica's gradient pass,
    `update` = the driver's optimizer update, `communication` = the rest: shard transfers, the
    reduce, the broadcast, scheduling) are appended to `timings`."""

    def __init__(self, client: Any, workers: Sequence[str] | int | None = None,
                 timeout: float = 300.0, verify: bool = False, poll: float = 0.5):
        _check_distributed()
        if not hasattr(client, "submit") or not hasattr(client, "nthreads"):
            raise ArgumentError("DaskDataParallel needs a dask.distributed Client")
        self.client = client
        self._requested_workers = workers
        self.timeout = float(timeout)
        self.verify = bool(verify)
        self.poll = float(poll)
        self.timings: list[dict[str, float]] = []
        self.workers: list[str] = []
        self._steps: list[_DistributedStep] = []

    def train_function(self, model: Any, use_jit: bool = True) -> Callable:
        """The train step `fit` calls (the signature of `model.step_function('train')`)."""
        for step in self._steps:
            if step.model is model and step.use_jit == use_jit and step.alive():
                return step
        step = _DistributedStep(self, model, use_jit)
        self._steps.append(step)
        return step

    def resolve_workers(self) -> list[str]:
        available = sorted(self.client.nthreads())
        requested = self._requested_workers
        if requested is None:
            chosen = available
        elif isinstance(requested, int):
            chosen = available[:requested]
            if len(chosen) < requested:
                raise DistributedTrainingError(f"DaskDataParallel(workers={requested}) but the "
                                               f"cluster has {len(available)} workers")
        else:
            missing = [w for w in requested if w not in available]
            if missing:
                raise DistributedTrainingError(f"workers {missing} are not in the cluster")
            chosen = list(requested)
        if not chosen:
            raise DistributedTrainingError("the Dask cluster has no workers")
        self.workers = chosen
        return chosen

    def replica_weights(self, model: Any) -> dict[str, tuple]:
        """(params, opt_state, state) of every replica of `model`, by worker address."""
        for step in reversed(self._steps):
            if step.model is model and step.workers:
                return step.replica_weights()
        raise ArgumentError("this strategy holds no replica of that model: fit it first")

    def close(self) -> None:
        """Drop the replicas from the workers."""
        for step in self._steps:
            step.release()
        self._steps = []

    def __enter__(self) -> DaskDataParallel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DaskDataParallel(workers={self.workers or self._requested_workers})"


class _DistributedStep:
    """One model's replicas and the step that trains them."""

    def __init__(self, strategy: DaskDataParallel, model: Any, use_jit: bool):
        self.strategy = strategy
        self.model = model
        self.use_jit = use_jit
        self.replica_id = uuid.uuid4().hex
        self.workers: list[str] = []
        self._apply = model.step_function("apply_gradients", use_jit)
        self._known: tuple[Any, list] | None = None   # (treedef, leaves) every replica holds
        self._pending: dict[str, Any] = {}   # per worker: its last task, which the next awaits

    def alive(self) -> bool:
        return bool(self.workers) and all(w in self._cluster_workers() for w in self.workers)

    def _cluster_workers(self) -> set[str]:
        return set(self.strategy.client.nthreads())

    # ------------------------------------------------------------ one step
    def __call__(self, params: Any, opt_state: Any, state: Any, xs: list, ys: list, key: Any,
                 sample_weights: list | None = None) -> tuple:
        client = self.strategy.client
        start = time.perf_counter()
        if not self.workers:
            self._create_replicas()
        weights = (params, opt_state, state)
        if not self._holds(weights):
            self._broadcast(weights)
        count = len(xs[0])
        bounds = np.linspace(0, count, len(self.workers) + 1).round().astype(int)
        keys = _shard_keys(key, len(self.workers))
        gradient_futures, shard_sizes, after = [], [], dict(self._pending)
        for index, worker in enumerate(self.workers):
            lo, hi = int(bounds[index]), int(bounds[index + 1])
            if hi == lo:
                continue     # fewer samples than replicas: this one only applies the update
            shard = ([x[lo:hi] for x in xs], [y[lo:hi] for y in ys], keys[index],
                     None if sample_weights is None else [w[lo:hi] for w in sample_weights])
            future = client.submit(_replica_gradients, self.replica_id, *shard,
                                   after.get(worker), workers=[worker],
                                   allow_other_workers=False, pure=False)
            gradient_futures.append(future)
            after[worker] = future
            shard_sizes.append(hi - lo)
        results = [self._result(f, gradient_futures) for f in gradient_futures]
        # the allreduce's sum, on the driver: one gather, then the average out to every replica
        grads, new_state, loss, sums, compute_seconds = _weighted_reduce(
            results, [n / count for n in shard_sizes])
        # each replica applies it after its gradient pass (and before its next one): the driver
        # does not wait for it, errors surface on the next step's dependent task
        self._pending = {worker: client.submit(
            _replica_apply, self.replica_id, (grads, new_state), self.strategy.verify,
            after.get(worker), workers=[worker], allow_other_workers=False, pure=False)
            for worker in self.workers}
        update_start = time.perf_counter()
        new_params, new_opt_state = self._apply(params, opt_state, grads)
        new_opt_state = _as_arrays(new_opt_state)
        update_seconds = time.perf_counter() - update_start
        result = (new_params, new_opt_state, new_state)
        if self.strategy.verify:
            self._verify(result)
        self._remember(result)
        total = time.perf_counter() - start
        self.strategy.timings.append({
            "step": total, "compute": compute_seconds, "update": update_seconds,
            "communication": max(total - compute_seconds - update_seconds, 0.0)})
        return new_params, new_opt_state, new_state, loss, sums

    def _verify(self, result: tuple) -> None:
        pending = list(self._pending.values())
        digests = {w: self._result(f, pending) for w, f in self._pending.items()}
        mine = weights_digest(result)
        different = sorted(w for w, d in digests.items() if d != mine)
        if different:
            raise DistributedTrainingError(
                f"after step {len(self.strategy.timings) + 1} the replicas on {different} differ "
                "from the driver's: the workers do not compute bit-identical updates (different "
                "CPUs or library versions?)")

    # ------------------------------------------------------------ replicas
    def _create_replicas(self) -> None:
        client = self.strategy.client
        self.workers = self.strategy.resolve_workers()
        model = client.scatter(self.model, broadcast=True, workers=self.workers, hash=False)
        futures = [client.submit(_create_replica, self.replica_id, model, self.use_jit,
                                 workers=[w], allow_other_workers=False, pure=False)
                   for w in self.workers]
        for future in futures:
            self._result(future, futures)
        self._known, self._pending = None, {}

    def _holds(self, weights: tuple) -> bool:
        if self._known is None:
            return False
        treedef, leaves = self._known
        incoming, incoming_def = flatten(weights)
        return incoming_def == treedef and len(incoming) == len(leaves) and all(
            _same_leaf(a, b) for a, b in zip(incoming, leaves))

    def _remember(self, weights: tuple) -> None:
        leaves, treedef = flatten(weights)
        self._known = (treedef, leaves)

    def _broadcast(self, weights: tuple) -> None:
        """Send the driver's weights to every replica (first step, or set by a callback)."""
        client = self.strategy.client
        shared = client.scatter([weights], broadcast=True, workers=self.workers, hash=False)[0]
        futures = [client.submit(_set_replica, self.replica_id, shared, self._pending.get(w),
                                 workers=[w], allow_other_workers=False, pure=False)
                   for w in self.workers]
        for future in futures:
            self._result(future, futures)
        self._remember(weights)

    def replica_weights(self) -> dict[str, tuple]:
        client = self.strategy.client
        futures = {w: client.submit(_get_replica, self.replica_id, self._pending.get(w),
                                    workers=[w], allow_other_workers=False, pure=False)
                   for w in self.workers}
        return {w: self._result(f, list(futures.values())) for w, f in futures.items()}

    def release(self) -> None:
        if not self.workers:
            return
        try:
            for future in self._pending.values():    # let the last updates finish first
                self._result(future, list(self._pending.values()))
            self.strategy.client.run(_drop_replica, self.replica_id, workers=self.workers)
        except Exception:   # a worker already gone holds nothing any more
            pass
        self.workers, self._pending = [], {}

    # ------------------------------------------------------------ waiting, never forever
    def _result(self, future: Any, group: list) -> Any:
        """The future's result; a clear error, with the step's other tasks cancelled and the
        replicas dropped (the next fit re-creates them from the driver's weights), when a task
        fails, a replica's worker leaves the cluster or the step runs past the timeout."""
        deadline = time.monotonic() + self.strategy.timeout
        while True:
            try:
                return future.result(timeout=self.strategy.poll)
            except TimeoutError:
                pass
            except GraphjitError:
                self._fail(group)
                raise
            except Exception as exc:
                self._fail(group)
                raise DistributedTrainingError(f"a data-parallel task failed on the cluster: "
                                               f"{type(exc).__name__}: {exc}") from exc
            lost = [w for w in self.workers if w not in self._cluster_workers()]
            if lost:
                self._fail(group)
                raise DistributedTrainingError(
                    f"worker(s) {lost} holding a replica left the cluster (killed or lost) "
                    "during a data-parallel step; the model keeps the weights of the last "
                    "completed step: call fit again to train on the workers still there")
            if time.monotonic() > deadline:
                self._fail(group)
                raise DistributedTrainingError(
                    f"a data-parallel step ran past DaskDataParallel(timeout="
                    f"{self.strategy.timeout:g}) seconds")

    def _fail(self, group: list) -> None:
        self._abandon([*group, *self._pending.values()])
        self.workers, self._pending = [], {}

    def _abandon(self, futures: list) -> None:
        try:
            self.strategy.client.cancel(futures)
        except Exception:
            pass


# ---------------------------------------------------------------- worker side
class _Replica:
    def __init__(self, model: Any, use_jit: bool):
        self.model = model
        self.gradients = model.step_function("gradients", use_jit)
        self.apply = model.step_function("apply_gradients", use_jit)
        self.params = self.opt_state = self.state = None


_replicas: dict[str, _Replica] = {}
_replicas_lock = threading.Lock()


def _replica(replica_id: str) -> _Replica:
    with _replicas_lock:
        replica = _replicas.get(replica_id)
    if replica is None:
        raise DistributedTrainingError("this worker holds no replica of the model (it was "
                                       "restarted?): call fit again")
    return replica


def _create_replica(replica_id: str, model: Any, use_jit: bool) -> None:
    replica = _Replica(model, use_jit)
    with _replicas_lock:
        _replicas[replica_id] = replica


def _set_replica(replica_id: str, weights: tuple, after: Any = None) -> None:
    replica = _replica(replica_id)
    replica.params, replica.opt_state, replica.state = weights


def _get_replica(replica_id: str, after: Any = None) -> tuple:
    replica = _replica(replica_id)
    return replica.params, replica.opt_state, replica.state


def _drop_replica(replica_id: str) -> None:
    with _replicas_lock:
        _replicas.pop(replica_id, None)


def _replica_gradients(replica_id: str, xs: list, ys: list, key: Any,
                       sample_weights: list | None, after: Any = None) -> tuple:
    """`after`: the replica's previous task (its update), which Dask runs first."""
    replica = _replica(replica_id)
    start = time.perf_counter()
    args = (replica.params, replica.state, xs, ys, key)
    if sample_weights is not None:
        args += (sample_weights,)
    grads, new_state, loss, sums = replica.gradients(*args)
    return grads, new_state, loss, sums, time.perf_counter() - start


def _weighted_reduce(results: list[tuple], weights: list[float]) -> tuple:
    """The allreduce's sum: gradients and floating layer state averaged with the shard weights
    (in float64, then cast back), the loss likewise, the logged sums added; always in shard
    order, so the result is deterministic."""
    grads = _weighted_sum([r[0] for r in results], weights)
    state = _weighted_sum([r[1] for r in results], weights, keep_first_non_float=True)
    loss = _weighted_sum([np.asarray(r[2]) for r in results], weights)
    sums_leaves = [flatten(r[3]) for r in results]
    sums = unflatten(sums_leaves[0][1], [
        np.sum([np.asarray(leaves[i], np.float64) for leaves, _ in sums_leaves], axis=0)
        for i in range(len(sums_leaves[0][0]))])
    return grads, state, loss, sums, max(r[4] for r in results)


def _weighted_sum(trees: list, weights: list[float], keep_first_non_float: bool = False) -> Any:
    flat = [flatten(t) for t in trees]
    treedef = flat[0][1]
    out = []
    for i, first in enumerate(flat[0][0]):
        parts = [np.asarray(leaves[i]) for leaves, _ in flat]
        if not np.issubdtype(parts[0].dtype, np.floating):
            if not keep_first_non_float:
                raise DistributedTrainingError(f"a gradient of dtype {parts[0].dtype}")
            out.append(first)
            continue
        total = np.zeros(parts[0].shape, np.float64)
        for weight, part in zip(weights, parts):
            total += weight * part.astype(np.float64)
        out.append(total.astype(parts[0].dtype))
    return unflatten(treedef, out)


def _replica_apply(replica_id: str, reduced: tuple, digest: bool, after: Any = None
                   ) -> str | None:
    replica = _replica(replica_id)
    grads, new_state = reduced[0], reduced[1]
    params, opt_state = replica.apply(replica.params, replica.opt_state, grads)
    replica.params, replica.opt_state, replica.state = params, _as_arrays(opt_state), new_state
    return weights_digest((replica.params, replica.opt_state, replica.state)) if digest else None


# ---------------------------------------------------------------- helpers
def weights_digest(tree: Any) -> str:
    """A digest of every leaf's dtype, shape and bytes (equal iff bit-identical)."""
    h = hashlib.blake2b(digest_size=16)
    leaves, treedef = flatten(tree)
    h.update(repr(treedef).encode())
    for leaf in leaves:
        array = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def _as_arrays(tree: Any) -> Any:
    # as fit keeps the optimizer state: 0-d results as arrays, so every replica holds the same
    leaves, treedef = flatten(tree)
    return unflatten(treedef, [np.asarray(leaf) for leaf in leaves])


def _same_leaf(a: Any, b: Any) -> bool:
    if a is b:
        return True
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)


def _shard_keys(key: Any, count: int) -> list[Any]:
    """One independent random key per shard (Dropout masks differ between shards)."""
    if key is None:
        return [None] * count
    from graphjit.models import _split_keys

    return _split_keys(key, count)


def _check_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ConfigurationError("data-parallel training needs dask.distributed: pip install "
                                 "'graphjit[distributed]'") from None
