"""Callbacks: hooks that ``fit`` calls around epochs and batches, as in Keras.

``logs`` hold Python floats (loss, accuracy, val_loss, val_accuracy). A callback may set
``model.stop_training = True`` to end training after the current epoch.
"""

from __future__ import annotations


class Callback:
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
        """Called after each training step with the running logs."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class History(Callback):
    """Collects each epoch's logs: ``history.history["loss"]`` is one float per epoch."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))


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
