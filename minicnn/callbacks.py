"""Callbacks: hooks that ``fit`` calls around epochs and batches, as in Keras.

``logs`` hold Python floats (loss, accuracy, val_loss, val_accuracy). A callback may set
``model.stop_training = True`` to end training after the current epoch. Each callback of a
fit is handed the run's ``training_state`` (``minicnn.state``): a checkpoint writes it, and a
resumed run gives each callback back the state it saved.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings

from minicnn.fileio import atomic_write
from minicnn.state import TrainingState


class Callback:
    writes_files = False  # True: runs on rank 0 only when training data-parallel

    def __init__(self):
        self.model = None
        self.params: dict = {}
        self.training_state = None  # the fit's TrainingState, set by fit

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch, also when training stops early."""

    def on_epoch_begin(self, epoch: int, logs=None):
        """Called at the start of each epoch (0-based)."""

    def on_epoch_end(self, epoch: int, logs=None):
        """Called after each epoch with its logs, validation included."""

    def on_train_batch_end(self, batch: int, logs=None):
        """Called after each training step (logs are None: reading them would sync a GPU)."""

    def get_state(self) -> dict:
        """What a checkpoint keeps of this callback (JSON-able), to resume it where it was."""
        return {}

    def set_state(self, state: dict) -> None:
        """Take up what ``get_state`` returned when the checkpoint was written."""
        for k, v in state.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class History(Callback):
    """Collects each epoch's logs: ``history.history["loss"]`` is one float per epoch."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stopped: str | None = None  # "interrupted", "non-finite" or "stopped" if cut short
        self.message: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))


class TerminateOnNaN(Callback):
    """Keras's name for what ``fit`` does by default (``terminate_on_nan=True``): stop at the
    first step whose loss or gradients are not finite, before that step changes any weight.
    Passing it turns the check on even with ``terminate_on_nan=False``."""


class ModelCheckpoint(Callback):
    """Save a checkpoint after each epoch: the model, the optimizer's state (Adam's moments and
    step count), the epoch, the history so far and the random generator's state, in one file
    written atomically. ``minicnn.load_checkpoint(path)`` takes a run up where it stopped.

    ``filepath`` may hold ``{epoch}`` and log names: ``"ckpt-{epoch:02d}-{val_loss:.3f}.minicnn"``.
    With ``save_best_only``, a file is written only when ``monitor`` improves (``mode``: "min",
    "max", or "auto": "max" for accuracies, else "min").
    """

    writes_files = True

    def __init__(
        self,
        filepath,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        mode: str = "auto",
        initial_value_threshold: float | None = None,
    ):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            raise ValueError(f'mode must be "auto", "min" or "max". Received: mode={mode!r}')
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.best = initial_value_threshold
        self.last_saved: str | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_begin(self, logs=None):
        state = self.training_state
        resumed = (state.resumed if state is not None else None) or {}
        if self.best is None and resumed.get("monitor") == self.monitor:
            self.best = resumed.get("best")  # a resumed run keeps the best value it had

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        value = logs.get(self.monitor)
        if self.save_best_only:
            if value is None:
                warnings.warn(
                    f"ModelCheckpoint: no {self.monitor!r} in the logs (they hold "
                    f"{sorted(logs)}); nothing saved. Give validation data or monitor another value",
                    stacklevel=2,
                )
                return
            if not self._improved(value):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
                return
        if value is not None and self._improved(value):
            self.best = float(value)
        state = self.training_state or TrainingState(epoch + 1, callbacks=[self])  # used by hand
        record = state.record(epoch + 1, self.monitor, self.best)
        self.model.save(path, training=record)  # the model writes the file, as in Keras
        self.last_saved = path
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved a checkpoint to {path}")

    def __repr__(self) -> str:
        return f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, save_best_only={self.save_best_only})"


def _mode(mode: str, monitor: str, owner: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f'{owner}: mode must be "auto", "min" or "max". Received: mode={mode!r}')
    return ("max" if "acc" in monitor else "min") if mode == "auto" else mode


class _Monitor(Callback):
    """A callback that watches one log value for improvement by more than ``min_delta``."""

    def __init__(self, monitor, mode, min_delta, patience):
        super().__init__()
        self.monitor, self.patience = monitor, patience
        self.mode = _mode(mode, monitor, type(self).__name__)
        self.min_delta = abs(min_delta)
        self.wait, self.best = 0, None

    def _value(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"{type(self).__name__}: no {self.monitor!r} in the logs (they hold "
                f"{sorted(logs or {})}); it does nothing this epoch",
                stacklevel=3,
            )
        return value

    def _improved(self, value) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def get_state(self):
        return {"wait": self.wait, "best": self.best}


class EarlyStopping(_Monitor):
    """Stop training when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs (and, with ``baseline``, until it has beaten that); with
    ``restore_best_weights``, a model stopped early gets the weights of its best epoch back."""

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0.0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__(monitor, mode, min_delta, patience)
        self.verbose, self.baseline = verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.best_weights, self.best_epoch, self.stopped_epoch = None, 0, 0

    def on_train_begin(self, logs=None):
        self.stopped_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs)
        if value is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(value):
            self.best, self.best_epoch = float(value), epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            baseline, self.best = self.best, self.baseline  # past the baseline too, if any
            if self.baseline is None or self._improved(value):
                self.wait = 0
            self.best = baseline
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping; best epoch {self.best_epoch + 1}")

    def get_state(self):
        return {**super().get_state(), "best_epoch": self.best_epoch}


class ReduceLROnPlateau(_Monitor):
    """Multiply the optimizer's learning rate by ``factor`` (not below ``min_lr``) when
    ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs, then wait
    ``cooldown`` epochs before watching again."""

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
    ):
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1). Received: factor={factor!r}")  # fmt: skip
        super().__init__(monitor, mode, min_delta, patience)
        self.factor, self.verbose, self.cooldown, self.min_lr = factor, verbose, cooldown, min_lr
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._value(logs)
        if value is None:
            return
        if logs is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = float(value), 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                old = opt.learning_rate
                if old > self.min_lr:
                    opt.learning_rate = max(old * self.factor, self.min_lr)
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {opt.learning_rate}.")  # fmt: skip
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self):
        return {**super().get_state(), "cooldown_counter": self.cooldown_counter}


class LearningRateScheduler(Callback):
    """Before each epoch, set the learning rate to ``schedule(epoch, lr)`` (epoch from 0)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = float(self.schedule(epoch, opt.learning_rate))
        if not math.isfinite(lr):
            raise ValueError(f"LearningRateScheduler: the schedule gave learning rate {lr} for epoch {epoch}")  # fmt: skip
        opt.learning_rate = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")


class CSVLogger(Callback):
    """One CSV row per epoch (``epoch`` then the logs in sorted order), the file rewritten
    whole and atomically each epoch; with ``append``, rows already in the file are kept."""

    writes_files = True

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self.rows: list[list[str]] = []

    def on_train_begin(self, logs=None):
        self.rows = []
        if self.append and os.path.isfile(self.filename):
            with open(self.filename, newline="") as f:
                self.rows = list(csv.reader(f, delimiter=self.separator))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = sorted(logs)
        if not self.rows:
            self.rows.append(["epoch", *keys])
        self.rows.append([str(epoch), *(repr(float(logs[k])) for k in keys)])
        text = io.StringIO()
        csv.writer(text, delimiter=self.separator, lineterminator="\n").writerows(self.rows)
        atomic_write(self.filename, lambda f: f.write(text.getvalue().encode()))


class CallbackList:
    def __init__(self, callbacks, model, params, training_state=None):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ValueError(
                    f"callbacks must be minicnn.callbacks.Callback instances. Received: {cb!r}"
                )
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
            cb.training_state = training_state

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call
