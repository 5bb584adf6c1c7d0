"""The callback contract, as Keras 3 runs it: ``Callback`` (every hook a no-op, the train batch
hooks calling their ``on_batch_*`` aliases), ``CallbackList`` (one call per hook for all of a
run's callbacks, the ``logs`` made plain first) and ``History``.

Every hook gets a dict: ``{}`` where Keras passes no logs (``on_train_begin``, the ``*_begin``
hooks), the running means of the epoch so far after each train and test batch, the epoch's
logs (validation included) at its end, the last epoch's at ``on_train_end``, evaluate's at
``on_test_end`` and ``{"outputs": ...}`` after each predict batch. Reading a batch's values
syncs a GPU, so the loop hands ``CallbackList`` a function that reads them, called only when a
callback overrides a batch-end hook (Keras's ``utils.is_default`` check does the same job).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module

BATCH_END = ("on_train_batch_end", "on_test_batch_end", "on_predict_batch_end")


class Callback:
    writes_files = False  # True: runs on rank 0 only when training data-parallel
    lazy_logs = False  # True: batch-end hooks take the loop's reader itself (ProgbarLogger)

    def __init__(self):
        self.model = None
        self.params: dict = {}
        self.training_state = None  # the fit's TrainingState, set by fit

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_batch_begin(self, batch, logs=None):
        """A backwards compatibility alias for ``on_train_batch_begin``."""

    def on_batch_end(self, batch, logs=None):
        """A backwards compatibility alias for ``on_train_batch_end``."""

    def on_epoch_begin(self, epoch: int, logs=None):
        """Called at the start of each epoch (0-based); logs are {}."""

    def on_epoch_end(self, epoch: int, logs=None):
        """Called after each epoch with its logs, validation included (val_ names)."""

    def on_train_batch_begin(self, batch, logs=None):
        """Called before each training step; logs are {}."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """Called after each training step with the running means of the epoch so far."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        """Called before each batch of evaluate (and of fit's validation); logs are {}."""

    def on_test_batch_end(self, batch, logs=None):
        """Called after each evaluate batch with the running means of the pass so far."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Called before each predict batch; logs are {}."""

    def on_predict_batch_end(self, batch, logs=None):
        """Called after each predict batch; logs are {"outputs": the batch's outputs}."""

    def on_train_begin(self, logs=None):
        """Called once at the start of fit; logs are {}."""

    def on_train_end(self, logs=None):
        """Called once at the end of fit (also when it stops early) with the last epoch's logs."""

    def on_test_begin(self, logs=None):
        """Called at the start of evaluate and of each validation pass; logs are {}."""

    def on_test_end(self, logs=None):
        """Called at the end of evaluate (and of each validation pass) with its logs."""

    def on_predict_begin(self, logs=None):
        """Called at the start of predict; logs are {}."""

    def on_predict_end(self, logs=None):
        """Called at the end of predict; logs are {}."""

    def needs_batch_logs(self, hook: str) -> bool:
        """Whether the batch-end ``hook`` reads its logs, so the loop must read the device:
        true where this callback's class or instance overrides it (or, for train batches, the
        ``on_batch_end`` alias)."""
        names = (hook, "on_batch_end") if hook == "on_train_batch_end" else (hook,)
        return any(overrides(self, name) for name in names)

    def get_state(self) -> dict:
        """What a checkpoint keeps of this callback (JSON-able), to resume it where it was."""
        return {}

    def set_state(self, state: dict) -> None:
        """Take up what ``get_state`` returned when the checkpoint was written."""
        for k, v in state.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def overrides(callback, hook: str) -> bool:
    """True if ``callback`` has its own ``hook``: a subclass's method or an instance attribute
    (LambdaCallback's functions)."""
    return hook in vars(callback) or getattr(type(callback), hook) is not getattr(Callback, hook)


def pythonify_logs(logs) -> dict:
    """Keras's ``pythonify_logs``: sorted by name, nested dicts flattened into the top level,
    arrays brought to the host and made Python floats where they hold one value."""
    result = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, dict):
            result.update(pythonify_logs(value))
            continue
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            xp = get_array_module(value)
            value = value if xp is np else xp.asnumpy(value)
        try:
            value = float(np.asarray(value).reshape(())) if np.size(value) == 1 else value
        except (TypeError, ValueError):
            pass
        result[key] = value
    return result


class CallbackList:
    """``CallbackList(callbacks, add_history=False, add_progbar=False, model=None, **params)``:
    calls each hook on every callback in order; a History and a ProgbarLogger are appended
    when asked for and not given, as Keras does (so they run after the user's callbacks)."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, training_state=None, **params):  # fmt: skip
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise ValueError(
                    f"callbacks must be minicnn.callbacks.Callback instances. Received: {cb!r}"
                )
        from minicnn.callbacks.loggers import ProgbarLogger

        self.history = next((c for c in self.callbacks if isinstance(c, History)), None)
        if self.history is None and add_history:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        self.params = params
        self.model = model
        for cb in self.callbacks:
            if model is not None:
                cb.set_model(model)
            if params:
                cb.set_params(params)
            cb.training_state = training_state
        if model is not None and self.history is not None:
            model.history = self.history

    def append(self, callback) -> None:
        self.callbacks.append(callback)

    def needs_batch_logs(self, hook: str) -> bool:
        """Whether any callback reads the logs of ``hook``: if none does, the loop never
        reads the device for them."""
        return any(cb.needs_batch_logs(hook) for cb in self.callbacks if not cb.lazy_logs)

    def _call(self, hook: str, *args, logs=None) -> None:
        logs = pythonify_logs(logs)
        batch = "batch" in hook  # Keras passes a batch hook's logs by keyword
        for cb in self.callbacks:
            if batch:
                getattr(cb, hook)(*args, logs=logs)
            else:
                getattr(cb, hook)(*args, logs)

    def _batch_end(self, hook: str, batch: int, logs) -> None:
        """``logs``: a dict, or a function returning one (read at most once, and only for a
        callback that reads it; a ``lazy_logs`` callback gets the function itself)."""
        if not callable(logs):
            plain = pythonify_logs(logs)
            for cb in self.callbacks:
                getattr(cb, hook)(batch, logs=plain)
            return
        plain = None
        for cb in self.callbacks:
            if cb.lazy_logs:
                getattr(cb, hook)(batch, logs=logs)
            elif cb.needs_batch_logs(hook):
                plain = pythonify_logs(logs()) if plain is None else plain
                getattr(cb, hook)(batch, logs=plain)

    def on_batch_begin(self, batch, logs=None):
        self._call("on_batch_begin", batch, logs=logs)

    def on_batch_end(self, batch, logs=None):
        self._call("on_batch_end", batch, logs=logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self._batch_end("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        self._batch_end("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._batch_end("on_predict_batch_end", batch, logs)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs=logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs=logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs=logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs=logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs=logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs=logs)


class History(Callback):
    """Collects each epoch's logs: ``history.history["loss"]`` is one float per epoch. fit
    makes one and returns it (``model.history``)."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.stopped: str | None = None  # "interrupted" or "non-finite" if cut short
        self.message: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self
