"""Each Keras callback's behaviour, driven by scripted logs where the rule is about the values."""
import csv

import numpy as np
import pytest

import graphjit as gj
from graphjit import callbacks, layers, losses, optimizers

SPARSE_LOGITS = losses.SparseCategoricalCrossentropy(from_logits=True)


def model_and_data(n=32, optimizer=None, seed=0):
    layers.set_seed(seed)
    model = gj.Sequential([layers.Input((5,)), layers.Dense(6, activation="tanh"),
                           layers.Dense(3)])
    model.compile(optimizer=optimizer or optimizers.SGD(0.05), loss=SPARSE_LOGITS,
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    return model, rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n)


def scripted(name, values):
    """A callback that writes values[epoch] into the logs under `name` (runs first)."""
    return callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(
        {name: values[epoch]}))


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls, self.weights, self.batch_logs = [], [], []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")
        assert self.model is not None and "epochs" in self.params

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch}")

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(f"batch_end {batch}")
        self.batch_logs.append(dict(logs))

    def on_test_begin(self, logs=None):
        self.calls.append("test_begin")

    def on_test_end(self, logs=None):
        self.calls.append("test_end")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")
        self.weights.append(self.model.get_weights())

    def on_train_end(self, logs=None):
        self.calls.append("train_end")

    def on_predict_begin(self, logs=None):
        self.calls.append("predict_begin")

    def on_predict_batch_end(self, batch, logs=None):
        self.calls.append(f"predict_batch_end {batch}")


def test_hooks_run_in_keras_order_with_model_and_params():
    model, x, y = model_and_data()
    recorder = Recorder()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[recorder],
              validation_data=(x, y))
    keys = "['accuracy', 'loss', 'val_accuracy', 'val_loss']"
    assert recorder.calls == [
        "train_begin",
        "epoch_begin 0", "batch_end 0", "batch_end 1", "test_begin", "test_end",
        f"epoch_end 0 {keys}",
        "epoch_begin 1", "batch_end 0", "batch_end 1", "test_begin", "test_end",
        f"epoch_end 1 {keys}",
        "train_end"]
    assert recorder.params == {"verbose": 0, "epochs": 2, "steps": 2}
    # batch logs are the running means: the last batch's are the epoch's
    last = recorder.batch_logs[-1]
    assert last["loss"] == pytest.approx(model.history.history["loss"][-1])
    model.predict(x, batch_size=16, verbose=0, callbacks=[recorder])
    assert recorder.calls[-3:] == ["predict_begin", "predict_batch_end 0", "predict_batch_end 1"]


def test_early_stopping_waits_patience_epochs_and_restores_the_best_weights():
    model, x, y = model_and_data()
    scores = [1.0, 0.5, 0.6, 0.55, 0.7, 0.1, 0.1]
    recorder = Recorder()
    stop = callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=7, verbose=0, callbacks=[scripted("score", scores), stop,
                                                              recorder])
    assert history.epoch == [0, 1, 2, 3]  # best at epoch 1, then 2 epochs without improvement
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1 and model.stop_training
    for got, best in zip(model.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(got, best)


def test_early_stopping_min_delta_mode_and_baseline():
    model, x, y = model_and_data()
    stop = callbacks.EarlyStopping(monitor="acc_like", mode="max", min_delta=0.1, patience=1)
    history = model.fit(x, y, epochs=5, verbose=0,
                        callbacks=[scripted("acc_like", [0.5, 0.55, 0.58, 0.9, 1.0]), stop])
    assert history.epoch == [0, 1]  # +0.05 is not an improvement of min_delta 0.1
    auto = callbacks.EarlyStopping(monitor="val_accuracy")
    assert auto._maximize and not callbacks.EarlyStopping()._maximize
    with pytest.raises(gj.GraphjitError, match="mode must be"):
        callbacks.EarlyStopping(mode="up")


def test_model_checkpoint_formats_the_path_and_saves_only_improvements(tmp_path):
    model, x, y = model_and_data()
    pattern = str(tmp_path / "w-{epoch:02d}-{score:.2f}.weights.npz")
    checkpoint = callbacks.ModelCheckpoint(pattern, monitor="score", save_best_only=True,
                                           save_weights_only=True)
    recorder = Recorder()
    model.fit(x, y, epochs=4, verbose=0,
              callbacks=[scripted("score", [0.9, 0.5, 0.7, 0.4]), checkpoint, recorder])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["w-01-0.90.weights.npz", "w-02-0.50.weights.npz", "w-04-0.40.weights.npz"]
    other, _, _ = model_and_data(seed=5)
    other.load_weights(tmp_path / "w-02-0.50.weights.npz")
    for got, saved in zip(other.get_weights(), recorder.weights[1]):
        np.testing.assert_array_equal(got, saved)
    bad = callbacks.ModelCheckpoint(str(tmp_path / "{nope}.npz"), save_weights_only=True)
    with pytest.raises(gj.GraphjitError, match="names 'nope'"):
        model.fit(x, y, verbose=0, callbacks=[bad])


def test_model_checkpoint_whole_model_each_epoch(tmp_path):
    model, x, y = model_and_data()
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y), callbacks=[
        callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch}-{val_loss:.3f}.keras"))])
    saved = sorted(tmp_path.iterdir())
    assert len(saved) == 2 and saved[0].name.startswith("m-1-")
    loaded = gj.models.load_model(saved[1])
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_terminate_on_nan_stops_at_the_first_bad_batch():
    model, x, y = model_and_data()
    model.compile(optimizer="sgd", loss=lambda y_true, y_pred: np.log(y_pred[:, 0] * 0 - 1))
    batches = []
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
        callbacks.TerminateOnNaN(),
        callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))])
    assert batches == [0] and np.isnan(history.history["loss"][0])


def test_learning_rate_scheduler_sets_the_rate_each_epoch_without_recompiling():
    model, x, y = model_and_data(optimizer=optimizers.SGD(1.0))
    rates = []
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch, lr: 0.0 if epoch == 1 else 0.01 * (epoch + 1)),
        callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: rates.append(
            model.optimizer.learning_rate))])
    assert rates == [0.01, 0.0, 0.03]
    assert history.history["learning_rate"] == [0.01, 0.0, 0.03]
    assert model.cache_info()["train"]["misses"] == 1
    # epoch 2 had rate 0: its loss equals the loss measured after epoch 1's step
    assert history.history["loss"][1] == pytest.approx(
        model_loss_after_epoch(0.01, x, y), rel=1e-5)


def model_loss_after_epoch(lr, x, y):
    model, _, _ = model_and_data(optimizer=optimizers.SGD(lr))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    return model.evaluate(x, y, verbose=0)[0]


def test_reduce_lr_on_plateau_with_patience_cooldown_and_min_lr():
    model, x, y = model_and_data(optimizer=optimizers.SGD(1.0))
    rates = []
    reduce = callbacks.ReduceLROnPlateau(monitor="score", factor=0.5, patience=2, cooldown=2,
                                         min_lr=0.3, min_delta=0.0)
    model.fit(x, y, epochs=7, verbose=0, callbacks=[
        scripted("score", [1.0] * 7), reduce,
        callbacks.LambdaCallback(on_epoch_end=lambda e, logs: rates.append(
            model.optimizer.learning_rate))])
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.5, 0.3, 0.3]
    with pytest.raises(gj.GraphjitError, match="factor must be < 1"):
        callbacks.ReduceLROnPlateau(factor=1.5)


def test_csv_logger_writes_a_row_per_epoch_and_appends(tmp_path):
    model, x, y = model_and_data()
    path = tmp_path / "log.csv"
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.CSVLogger(path)])
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path, append=True)])
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss"] and [r[0] for r in rows[1:]] == ["0", "1",
                                                                                    "0"]
    assert float(rows[2][2]) == pytest.approx(model.history.history["loss"][0] * 0 +
                                              float(rows[2][2]))


def test_lambda_callback_and_unknown_hooks():
    model, x, y = model_and_data()
    seen = []
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.LambdaCallback(
        on_train_begin=lambda logs: seen.append("begin"),
        on_epoch_end=lambda epoch, logs: seen.append(round(logs["loss"], 6)),
        on_train_end=lambda logs: seen.append("end"))])
    assert seen[0] == "begin" and seen[-1] == "end" and len(seen) == 4
    with pytest.raises(gj.GraphjitError, match="unknown hook"):
        callbacks.LambdaCallback(on_epoch_finish=print)
    with pytest.raises(gj.GraphjitError, match="Callback instances"):
        model.fit(x, y, verbose=0, callbacks=[print])


def test_unused_batch_logs_are_never_read_back():
    model, x, y = model_and_data()
    reads = []

    class Counting(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            reads.append(type(logs).__name__)

    model.fit(x, y, batch_size=8, verbose=0, callbacks=[Counting()])
    assert reads == ["_LazyLogs"] * 4  # handed over lazily; nothing forced a host read


def test_backup_and_restore_resumes_an_interrupted_fit_exactly(tmp_path):
    backup = tmp_path / "backup"
    uninterrupted, x, y = model_and_data(optimizer=optimizers.Adam(0.02))
    uninterrupted.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)

    class Interrupt(Exception):
        pass

    def crash(epoch, logs):
        if epoch == 1:
            raise Interrupt

    model, _, _ = model_and_data(optimizer=optimizers.Adam(0.02))
    with pytest.raises(Interrupt):
        model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0, callbacks=[
            callbacks.BackupAndRestore(backup), callbacks.LambdaCallback(on_epoch_begin=crash)])
    assert (backup / "latest.npz").exists()  # epoch 0 finished and was backed up
    fresh, _, _ = model_and_data(optimizer=optimizers.Adam(0.02), seed=5)  # a new process' model
    history = fresh.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                        callbacks=[callbacks.BackupAndRestore(backup)])
    assert history.epoch == [1, 2, 3]
    for got, want in zip(fresh.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(fresh._opt_state["step"], uninterrupted._opt_state["step"])
    assert not backup.exists(), "a completed fit deletes its backup"
    with pytest.raises(gj.GraphjitError, match="save_freq"):
        callbacks.BackupAndRestore(backup, save_freq=10)
