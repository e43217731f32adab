"""Keras' callbacks: hooks `fit`, `evaluate` and `predict` call around epochs and batches.

    model.fit(x, y, epochs=50, validation_split=0.2, callbacks=[
        callbacks.EarlyStopping(patience=3, restore_best_weights=True),
        callbacks.ModelCheckpoint("best.keras", save_best_only=True),
    ])

A callback sees `self.model` and `self.params` ({"verbose", "epochs", "steps"}). The logs passed to
`on_*_batch_*` are the epoch's running means, as in Keras, but lazily: the compiled step's results
are read back to the host only when a callback looks at them (the progress bar does a few times a
second), so batch hooks cost no synchronisation per batch unless they ask for the values.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from graphjit.compiler.errors import GraphjitError

from .progress import ProgressBar, auto_verbose

BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_test_batch_begin",
               "on_test_batch_end", "on_predict_batch_begin", "on_predict_batch_end")


class Callback:
    """Base class: override any of the `on_*` hooks."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: dict | None = None) -> None: ...
    def on_train_end(self, logs: dict | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_begin(self, logs: dict | None = None) -> None: ...
    def on_test_end(self, logs: dict | None = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_begin(self, logs: dict | None = None) -> None: ...
    def on_predict_end(self, logs: dict | None = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None: ...

    # Keras 2 spellings, still called by Keras 3 through the train hooks
    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None: ...
    def on_batch_end(self, batch: int, logs: dict | None = None) -> None: ...


class CallbackList(Callback):
    """Dispatches every hook to a list of callbacks; adds History and the progress bar."""

    def __init__(self, callbacks: Iterable[Callback] | None = None, add_history: bool = False,
                 add_progbar: bool = False, model: Any = None, **params: Any):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise GraphjitError(f"callbacks must be Callback instances, got "
                                    f"{type(callback).__name__}")
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        if add_history:
            history = next((c for c in self.callbacks if isinstance(c, History)), None)
            if history is None:
                history = History()
                self.callbacks.append(history)
            self.history = history
        # the progress bar prints last, after the other callbacks have added their logs
        self.callbacks.sort(key=lambda c: isinstance(c, ProgbarLogger))
        if model is not None:
            self.set_model(model)
        self.set_params(params)

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        for callback in self.callbacks:
            callback.set_params(params)

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)


_INDEXED_HOOKS = ("on_epoch_begin", "on_epoch_end", *BATCH_HOOKS)


def _dispatcher(hook: str) -> Callable:
    arity = 2 if hook in _INDEXED_HOOKS else 1

    def dispatch(self: CallbackList, *args: Any) -> None:
        args = (*args, None)[:arity]  # logs are always passed, as Keras does (LambdaCallback)
        self._call(hook, *args)
        if hook == "on_train_batch_begin":
            self._call("on_batch_begin", *args)
        elif hook == "on_train_batch_end":
            self._call("on_batch_end", *args)

    dispatch.__name__ = hook
    return dispatch


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_test_begin", "on_test_end", "on_predict_begin", "on_predict_end", *BATCH_HOOKS):
    setattr(CallbackList, _hook, _dispatcher(_hook))


class History(Callback):
    """Records every epoch's logs: `history[name]` is the list of per-epoch values."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.epoch_times: list[float] = []
        self._epoch_start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epoch, self.epoch_times = [], []
        self.history = {}  # Keras keeps one History per model: a new fit starts a new record
        if self.model is not None:
            self.model.history = self

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch.append(epoch)
        self.epoch_times.append(time.perf_counter() - self._epoch_start)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)

    def __repr__(self) -> str:
        return f"<History epochs={len(self.epoch)} logs={list(self.history)}>"


class ProgbarLogger(Callback):
    """Prints the epoch header and progress bar (`fit(verbose=...)` adds one)."""

    def __init__(self) -> None:
        super().__init__()
        self._bar: ProgressBar | None = None
        self._mode = "train"

    @property
    def verbose(self) -> int:
        return auto_verbose(self.params.get("verbose", 1))

    def _start(self, steps: int | None, mode: str) -> None:
        self._mode = mode
        self._bar = ProgressBar(steps, self.verbose) if self.verbose else None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.verbose:
            epochs = self.params.get("epochs")
            print(f"Epoch {epoch + 1}/{epochs}")
        self._start(self.params.get("steps"), "train")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None and self._mode == "train":
            self._bar.update(batch + 1, logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.finish(logs or {})
            self._bar = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self.params.get("mode") == "test":  # a standalone evaluate(), not fit's validation
            self._start(self.params.get("steps"), "test")

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None and self._mode == "test":
            self._bar.update(batch + 1, logs)

    def on_test_end(self, logs: dict | None = None) -> None:
        if self._bar is not None and self._mode == "test":
            self._bar.finish(logs or {})
            self._bar = None

    def on_predict_begin(self, logs: dict | None = None) -> None:
        self._start(self.params.get("steps"), "predict")

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None and self._mode == "predict":
            self._bar.update(batch + 1, None)

    def on_predict_end(self, logs: dict | None = None) -> None:
        if self._bar is not None and self._mode == "predict":
            self._bar.finish({})
            self._bar = None


# ---------------------------------------------------------------- monitoring a value


class _Monitor(Callback):
    """Shared by EarlyStopping, ModelCheckpoint and ReduceLROnPlateau: compare a logged value."""

    def __init__(self, monitor: str, mode: str, min_delta: float, what: str):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise GraphjitError(f"{what}(mode={mode!r}): mode must be 'auto', 'min' or 'max'")
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self._what = what

    @property
    def _maximize(self) -> bool:
        if self.mode != "auto":
            return self.mode == "max"
        name = self.monitor.removeprefix("val_")
        return name in ("acc", "accuracy", "auc") or name.endswith("accuracy") or \
            name.endswith("_acc") or name.endswith("auc")

    def _initial(self) -> float:
        return -math.inf if self._maximize else math.inf

    def _improved(self, current: float, reference: float) -> bool:
        if self._maximize:
            return current - self.min_delta > reference
        return current + self.min_delta < reference

    def _value(self, logs: dict | None) -> float | None:
        logs = logs or {}
        if self.monitor not in logs:
            import warnings

            warnings.warn(f"{self._what} monitors {self.monitor!r}, which is not among the "
                          f"logs {sorted(logs)}; it does nothing this epoch", RuntimeWarning,
                          stacklevel=3)
            return None
        return float(logs[self.monitor])


class EarlyStopping(_Monitor):
    """Stop training when `monitor` has not improved by `min_delta` for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__(monitor, mode, min_delta, "EarlyStopping")
        self.patience, self.verbose, self.baseline = int(patience), verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = self._initial()
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        current = self._value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print("Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (or only its weights) after each epoch, or only when `monitor` improves.

    `filepath` may hold `{epoch}` and any log name, e.g. "ckpt-{epoch:02d}-{val_loss:.3f}.keras".
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str = "epoch",
                 initial_value_threshold: float | None = None):
        super().__init__(monitor, mode, 0.0, "ModelCheckpoint")
        if save_freq != "epoch":
            raise GraphjitError("ModelCheckpoint(save_freq=...) supports only 'epoch'")
        self.filepath = os.fspath(filepath)
        self.verbose, self.save_best_only = verbose, save_best_only
        self.save_weights_only = save_weights_only
        self.best = initial_value_threshold

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.best is None:
            self.best = self._initial()

    def _path(self, epoch: int, logs: dict) -> str:
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as exc:
            raise GraphjitError(f"ModelCheckpoint filepath {self.filepath!r} names {exc}, which "
                                f"is not among the logs {sorted(logs)} (or 'epoch')") from None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        if self.save_best_only:
            current = self._value(logs)
            if current is None or not self._improved(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model")
            self.best = current
        path = self._path(epoch, logs)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite (reads each batch's loss)."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start to `schedule(epoch, lr)` (or
    `schedule(epoch)`); the compiled step reads it as an input, so nothing recompiles."""

    def __init__(self, schedule: Callable, verbose: int = 0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:
            lr = self.schedule(epoch)
        lr = float(lr)
        if not math.isfinite(lr):
            raise GraphjitError(f"LearningRateScheduler: the schedule returned {lr} at epoch "
                                f"{epoch}; it must return a finite float")
        optimizer.learning_rate = lr
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(_Monitor):
    """Multiply the learning rate by `factor` when `monitor` stops improving for `patience`
    epochs (then wait `cooldown` epochs), never below `min_lr`."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0):
        super().__init__(monitor, mode, min_delta, "ReduceLROnPlateau")
        if factor >= 1.0:
            raise GraphjitError(f"ReduceLROnPlateau(factor={factor}): factor must be < 1")
        self.factor, self.patience, self.verbose = float(factor), int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait, self.cooldown_counter = 0, 0
        self.best = self._initial()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        optimizer = self.model.optimizer
        if logs is not None:
            logs["learning_rate"] = float(optimizer.learning_rate)
        current = self._value(logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(optimizer.learning_rate)
                if old > self.min_lr:
                    optimizer.learning_rate = max(old * self.factor, self.min_lr)
                    if self.verbose:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {optimizer.learning_rate}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Append each epoch's logs as a row of a CSV file (header on the first row)."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self._file: Any = None
        self._writer: Any = None
        self._keys: list[str] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        exists = self.append and os.path.exists(self.filename) and \
            os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer, self._keys = None, None
        if exists:
            with open(self.filename, newline="") as handle:
                header = next(csv.reader(handle, delimiter=self.separator), None)
            self._keys = header[1:] if header else None
            self._writer = csv.writer(self._file, delimiter=self.separator)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.separator)
            self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *(logs.get(k, "NA") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class BackupAndRestore(Callback):
    """Fault tolerance: after every epoch, back up the weights and the optimizer state to
    `backup_dir`; a later `fit` with the same `backup_dir` restores them and resumes after the
    last finished epoch. A `fit` that completes deletes the backup (`delete_checkpoint`)."""

    ARCHIVE, METADATA = "latest.npz", "training_metadata.json"

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True):
        super().__init__()
        if save_freq != "epoch":
            raise GraphjitError("BackupAndRestore(save_freq=...) supports only 'epoch'")
        if double_checkpoint:
            raise GraphjitError("BackupAndRestore(double_checkpoint=True) is not supported")
        self.backup_dir = os.fspath(backup_dir)
        self.delete_checkpoint = delete_checkpoint

    def _paths(self) -> tuple[str, str]:
        return (os.path.join(self.backup_dir, self.ARCHIVE),
                os.path.join(self.backup_dir, self.METADATA))

    def on_train_begin(self, logs: dict | None = None) -> None:
        from . import saving

        archive, metadata = self._paths()
        if not (os.path.exists(archive) and os.path.exists(metadata)):
            return
        with open(metadata) as handle:
            epoch = int(json.load(handle)["epoch"])
        saving.restore_training_state(self.model, archive)
        self.model._resume_epoch = epoch + 1  # fit starts its epoch loop there

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from . import saving

        os.makedirs(self.backup_dir, exist_ok=True)
        archive, metadata = self._paths()
        saving.save_training_state(self.model, archive)
        temporary = metadata + ".tmp"
        with open(temporary, "w") as handle:
            json.dump({"epoch": epoch}, handle)
        os.replace(temporary, metadata)

    def on_train_end(self, logs: dict | None = None) -> None:
        if not self.delete_checkpoint:
            return
        for path in self._paths():
            if os.path.exists(path):
                os.remove(path)
        try:
            os.rmdir(self.backup_dir)
        except OSError:  # holds other files: leave it
            pass


class LambdaCallback(Callback):
    """A callback from plain functions: `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`."""

    def __init__(self, on_epoch_begin: Callable | None = None,
                 on_epoch_end: Callable | None = None, on_train_begin: Callable | None = None,
                 on_train_end: Callable | None = None,
                 on_train_batch_begin: Callable | None = None,
                 on_train_batch_end: Callable | None = None, **kwargs: Callable):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for hook, fn in hooks.items():
            if not hasattr(Callback, hook) or not hook.startswith("on_"):
                raise GraphjitError(f"LambdaCallback: unknown hook {hook!r}")
            if fn is not None:
                setattr(self, hook, fn)


__all__ = [
    "Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping", "ModelCheckpoint",
    "TerminateOnNaN", "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger", "LambdaCallback",
    "BackupAndRestore",
]
