"""The callbacks that watch a value or steer the optimizer: ``EarlyStopping``,
``ReduceLROnPlateau``, ``LearningRateScheduler``, and ``TerminateOnNaN``."""

from __future__ import annotations

import math
import warnings

from minicnn.callbacks.base import Callback


class TerminateOnNaN(Callback):
    """Keras's name for what ``fit`` does by default (``terminate_on_nan=True``): stop at the
    first step whose loss or gradients are not finite, before that step changes any weight.
    Passing it turns the check on even with ``terminate_on_nan=False``."""


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
