"""Data-parallel fit on a dask.distributed cluster of two process workers against single-process
fit: the same loss curve (float tolerance), replicas bit-identical after every step, optimizer
state and callbacks as on one machine, and a worker killed mid-fit ending in a clear error.

The cluster is started and stopped by a module fixture (every wait has a timeout); the module
skips when the `distributed` extra is not installed.
"""
import os
import signal

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import graphjit as gj  # noqa: E402
from graphjit import callbacks, layers, losses  # noqa: E402
from graphjit.distribute import DaskDataParallel, DistributedTrainingError  # noqa: E402

TIMEOUT = 60


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cluster = distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
        env={"GRAPHJIT_CACHE_DIR": str(tmp_path_factory.mktemp("shared-gj-cache")),
             "GRAPHJIT_NUM_THREADS": "1"})
    client = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        client.wait_for_workers(2, timeout=TIMEOUT)
        yield client
    finally:
        client.close(timeout=20)
        cluster.close(timeout=30)


def model_and_data(n=70, seed=0):
    layers.set_seed(seed)
    model = gj.Sequential([layers.Input((5,)), layers.Dense(8, activation="tanh", name="hidden"),
                           layers.Dense(3, name="logits")])
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    return model, x, y


class BatchLog(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


def schedule(epoch, rate):
    return 0.02 / (1 + epoch)


def fit(model, x, y, **kwargs):
    log = BatchLog()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=1,
                        callbacks=[log, callbacks.LearningRateScheduler(schedule)], **kwargs)
    return history, log


def test_two_workers_match_one_process_with_bit_identical_replicas(client):
    single, x, y = model_and_data()
    single_history, single_log = fit(single, x, y)

    model, _, _ = model_and_data()
    with DaskDataParallel(client, verify=True) as strategy:  # verify: digests after every step
        history, log = fit(model, x, y, distribute=strategy)
        assert len(strategy.workers) == 2
        # 70 samples in batches of 16: 5 steps an epoch, the last of 6 split 3 + 3
        assert len(strategy.timings) == 15
        replicas = strategy.replica_weights(model)

    np.testing.assert_allclose(history.history["loss"], single_history.history["loss"],
                               rtol=1e-5)
    np.testing.assert_allclose(log.losses, single_log.losses, rtol=1e-5)
    assert history.history["accuracy"] == single_history.history["accuracy"]
    for got, expected in zip(model.get_weights(), single.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    # optimizer state and the scheduled learning rate as on one machine
    assert int(model._opt_state["step"]) == int(single._opt_state["step"]) == 15
    assert model.optimizer.learning_rate == single.optimizer.learning_rate == pytest.approx(
        0.02 / 3)
    for name in ("m", "v"):
        for layer, weights in single._opt_state[name].items():
            for key, value in weights.items():
                np.testing.assert_allclose(model._opt_state[name][layer][key], value,
                                           rtol=1e-3, atol=1e-7)
    # every replica holds exactly the driver's weights
    for params, opt_state, state in replicas.values():
        for layer, weights in model.params.items():
            for key, value in weights.items():
                np.testing.assert_array_equal(params[layer][key], value)
        np.testing.assert_array_equal(opt_state["m"]["hidden"]["kernel"],
                                      model._opt_state["m"]["hidden"]["kernel"])


def test_replicas_pick_up_weights_set_between_fits(client):
    model, x, y = model_and_data(n=32, seed=2)
    single, _, _ = model_and_data(n=32, seed=2)
    with DaskDataParallel(client, workers=2, verify=True) as strategy:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, distribute=strategy)
        single.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        fresh = [w * 0.5 for w in model.get_weights()]
        model.set_weights(fresh)
        single.set_weights(fresh)
        second = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                           distribute=strategy)
        expected = single.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(second.history["loss"], expected.history["loss"], rtol=1e-5)


def test_killed_worker_mid_fit_is_a_clear_error_and_fit_resumes(client):
    model, x, y = model_and_data(n=64, seed=3)
    victim = sorted(client.nthreads())[1]
    pid = client.run(os.getpid, workers=[victim])[victim]

    class KillAfterTwoBatches(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                os.kill(pid, signal.SIGKILL)

    strategy = DaskDataParallel(client, timeout=TIMEOUT, poll=0.2)
    with pytest.raises(DistributedTrainingError, match="left the cluster"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, distribute=strategy,
                  callbacks=[KillAfterTwoBatches()])
    # the model kept the weights of the steps that completed
    assert int(model._opt_state["step"]) == 2
    assert all(np.isfinite(w).all() for w in model.get_weights())
    client.wait_for_workers(2, timeout=TIMEOUT)      # the nanny restarted the worker
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, distribute=strategy)
    assert np.isfinite(history.history["loss"][0]) and int(model._opt_state["step"]) == 10
    strategy.close()
