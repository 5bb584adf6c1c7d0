"""The callbacks that write a run to disk: ``ModelCheckpoint`` (a file after each epoch or
every ``save_freq`` batches) and ``BackupAndRestore`` (one backup that a rerun of a broken fit
continues from). Both ask the model to save, as Keras's do: ``model.save(path, training=...)``
with the run's ``TrainingState.record`` (epoch, history, callbacks, random generator), which
``minicnn.load_checkpoint`` reads back."""

from __future__ import annotations

import os
import shutil
import warnings

from minicnn.callbacks.base import Callback
from minicnn.callbacks.monitor import _mode
from minicnn.state import TrainingState


def _save_freq(value, owner: str):
    if value != "epoch" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f'{owner}: save_freq must be "epoch" or a positive int (a number of batches). Received: save_freq={value!r}')  # fmt: skip
    return value


class _BatchCounter:
    """Keras's count of batches since the last save, for ``save_freq=N``."""

    def __init__(self):
        self.since_save, self.last_batch = 0, None

    def due(self, batch: int, every: int) -> bool:
        new_epoch = self.last_batch is None or batch <= self.last_batch
        self.since_save += batch + 1 if new_epoch else batch - self.last_batch
        self.last_batch = batch
        if self.since_save >= every:
            self.since_save = 0
            return True
        return False


class ModelCheckpoint(Callback):
    """Save a checkpoint at the end of each epoch (``save_freq="epoch"``) or every ``save_freq``
    batches: the model, the optimizer's state (Adam's moments and step count), the epochs done,
    the history so far and the random generator's state, in one file written atomically.
    ``minicnn.load_checkpoint(path)`` takes a run up where its last finished epoch left it: a
    file written mid-epoch holds that epoch's weights so far, and the run it resumes repeats the
    rest of the epoch from its start (as Keras's BackupAndRestore does), so it is not bit-exact.

    ``filepath`` may hold ``{epoch}``, ``{batch}`` (with an int ``save_freq``) and log names:
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.minicnn"``. With ``save_best_only``, a file is written
    only when ``monitor`` improves on the best so far (at first ``initial_value_threshold``)
    (``mode``: "min", "max", or "auto": "max" for accuracies, else "min"); when the logs lack
    ``monitor`` it warns and saves, as Keras does. ``save_weights_only``: ``model.save_weights``
    to a ``.weights.h5`` name instead (Keras's layout: weights and the optimizer's variables).
    """

    writes_files = True

    def __init__(
        self,
        filepath,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq="epoch",
        initial_value_threshold: float | None = None,
    ):
        super().__init__()
        if save_weights_only and not os.fspath(filepath).endswith(".weights.h5"):
            raise ValueError(f"When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must end in `.weights.h5` (Keras weights format). Received: filepath={filepath}")  # fmt: skip
        self.filepath = os.fspath(filepath)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.mode = _mode(mode, monitor, "ModelCheckpoint")
        self.save_freq = _save_freq(save_freq, "ModelCheckpoint")
        self.best = initial_value_threshold
        self.last_saved: str | None = None
        self._counter, self._current_epoch = _BatchCounter(), 0

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def needs_batch_logs(self, hook: str) -> bool:
        return hook == "on_train_batch_end" and self.save_freq != "epoch"

    def on_train_begin(self, logs=None):
        state = self.training_state
        resumed = (state.resumed if state is not None else None) or {}
        if self.best is None and resumed.get("monitor") == self.monitor:
            self.best = resumed.get("best")  # a resumed run keeps the best value it had

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch" and self._counter.due(batch, self.save_freq):
            self._save(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _save(self, epoch: int, batch: int | None, logs: dict) -> None:
        fields = {**logs} if batch is None or "batch" in logs else {**logs, "batch": batch + 1}
        path = self.filepath.format(epoch=epoch + 1, **fields)
        value = logs.get(self.monitor)
        if self.save_best_only:
            if value is None:
                warnings.warn(f"Can save best model only with {self.monitor} available (the logs hold {sorted(logs)}); saving anyway, as Keras does", stacklevel=3)  # fmt: skip
            elif not self._improved(value):
                if self.verbose:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")  # fmt: skip
                return
            elif self.verbose:
                best = "None" if self.best is None else f"{self.best:.5f}"
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {best} to {value:.5f}, saving model to {path}")  # fmt: skip
        elif self.verbose:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if value is not None and self._improved(value):
            self.best = float(value)
        done = epoch + 1 if batch is None else epoch  # epochs finished when this file is written
        state = self.training_state or TrainingState(done, callbacks=[self])  # used by hand
        record = state.record(done, self.monitor, self.best, batch=None if batch is None else batch + 1)  # fmt: skip
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if self.save_weights_only:  # Keras's .weights.h5: weights and optimizer, no run record
            self.model.save_weights(path)
        else:
            self.model.save(path, training=record)  # the model writes the file, as in Keras
        self.last_saved = path

    def __repr__(self) -> str:
        return f"ModelCheckpoint({self.filepath!r}, monitor={self.monitor!r}, save_best_only={self.save_best_only}, save_freq={self.save_freq!r})"  # fmt: skip


class BackupAndRestore(Callback):
    """Back a run up in ``backup_dir`` (at each epoch's end, or every ``save_freq`` batches) so
    that a fit that breaks (a crash, a killed process) continues where the backup left it when
    the same fit is run again with this callback, as Keras's does (an epoch's backup is written
    once every callback has ended that epoch): the new fit starts at the
    backed-up epoch, with the model's weights, the optimizer's state, the random generator and
    the other callbacks' state (EarlyStopping's patience, say) put back, so a run backed up at
    each epoch's end ends bit-for-bit where the unbroken run ends (on the CPU). Its History
    holds the epochs it ran, as Keras's does. A backup written mid-epoch (``save_freq=N``) holds
    that epoch's weights so far and the epoch is run again from its start, as in Keras.

    ``double_checkpoint``: keep the previous backup too, and fall back to it when the latest
    cannot be read. ``delete_checkpoint``: remove ``backup_dir`` when fit ends normally (a fit
    stopped by Ctrl-C or a non-finite step keeps it). The backup is a minicnn checkpoint
    (``latest.minicnn``); the folder is this callback's alone.
    """

    writes_files = True
    FILE = "latest.minicnn"

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):  # fmt: skip
        super().__init__()
        if not backup_dir:
            raise ValueError(f"BackupAndRestore: backup_dir must be a folder's path. Received: backup_dir={backup_dir!r}")  # fmt: skip
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = _save_freq(save_freq, "BackupAndRestore")
        self.double_checkpoint, self.delete_checkpoint = (
            bool(double_checkpoint),
            bool(delete_checkpoint),
        )
        self.path = os.path.join(self.backup_dir, self.FILE)
        self._counter, self._current_epoch = _BatchCounter(), 0

    def needs_batch_logs(self, hook: str) -> bool:
        return hook == "on_train_batch_end" and self.save_freq != "epoch"

    def on_train_begin(self, logs=None):
        from minicnn.saving import ModelFileError

        for path in (self.path, self.path + ".bkp"):
            if not os.path.isfile(path):
                continue
            try:
                self._restore(path)
                return
            except (ModelFileError, OSError):
                if not self.double_checkpoint or path.endswith(".bkp"):
                    raise
                warnings.warn(f"BackupAndRestore: {path} cannot be read; restoring the previous backup", stacklevel=2)  # fmt: skip

    def _restore(self, path) -> None:
        """Put the backup's weights, optimizer state and generator on this model, and its record
        on the run (which then starts at the backed-up epoch)."""
        from minicnn.saving import load_checkpoint

        model = self.model
        checkpoint = load_checkpoint(path, backend=model.backend.name)  # sets the generator
        saved = checkpoint.model
        model.set_weights(saved.get_weights())  # every shape checked before any changes
        opt, theirs = model.optimizer, saved.optimizer
        if theirs.slots is not None:
            be = model.backend
            slots = [{k: be.asarray(v).copy() for k, v in s.items()} for s in theirs.slots]
            opt.set_state(theirs.iterations, slots)
        if not callable(opt._learning_rate):
            opt.learning_rate = theirs.learning_rate  # as ReduceLROnPlateau left it
        self.training_state.restore(saved.training_state.resumed)

    def on_epoch_begin(self, epoch, logs=None):
        self._write_pending()
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch" and self._counter.due(batch, self.save_freq):
            self._save(self._current_epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        # written once every callback has ended this epoch (at the next epoch's start, or at the
        # end of fit), so the backup holds their state after it, EarlyStopping's count included
        self._pending = epoch + 1 if self.save_freq == "epoch" else None

    def _write_pending(self) -> None:
        if getattr(self, "_pending", None) is not None:
            self._save(self._pending, None)
        self._pending = None

    def _save(self, epochs_done: int, batch: int | None) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.isfile(self.path):
            shutil.copyfile(self.path, self.path + ".bkp")
        record = self.training_state.record(epochs_done, batch=batch)
        self.model.save(self.path, training=record)

    def on_train_end(self, logs=None):
        self._write_pending()
        stopped = self.training_state is not None and self.training_state.stopped
        if self.delete_checkpoint and not stopped and os.path.isdir(self.backup_dir):
            shutil.rmtree(self.backup_dir)

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.backup_dir!r}, save_freq={self.save_freq!r})"
