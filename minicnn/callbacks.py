"""Callbacks: hooks that ``fit`` calls around epochs and batches, as in Keras.

``logs`` hold Python floats (loss, accuracy, val_loss, val_accuracy). A callback may set
``model.stop_training = True`` to end training after the current epoch.
"""

from __future__ import annotations

import os
import warnings

from minicnn.saving import save_checkpoint


class Callback:
    writes_files = False  # True: runs on rank 0 only when training data-parallel

    def __init__(self):
        self.model = None
        self.params: dict = {}

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
        resumed = self.model.resumed_from or {}
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
        save_checkpoint(self.model, path, epoch + 1, monitor=self.monitor, best=self.best)
        self.last_saved = path
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved a checkpoint to {path}")

    def __repr__(self) -> str:
        return f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, save_best_only={self.save_best_only})"


class CallbackList:
    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ValueError(
                    f"callbacks must be minicnn.callbacks.Callback instances. Received: {cb!r}"
                )
            cb.set_model(model)
            cb.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)

        return call
