"""Where a training run stands: the one object ``fit``, its callbacks and checkpoints share.

``fit`` makes it and hands it to every callback (``callback.training_state``); a checkpoint
writes its ``record`` (epoch, history, the callbacks' own state, the random generator); and
``load_checkpoint`` puts one back on the model it loads (``model.training_state``), which the
next ``fit(..., initial_epoch=checkpoint.epoch)`` continues: its History goes on from the
checkpoint's and its callbacks take up their saved state.
"""

from __future__ import annotations

import dataclasses

from minicnn.backend import rng


@dataclasses.dataclass
class TrainingState:
    epoch: int = 0  # epochs done
    history: dict = dataclasses.field(default_factory=dict)  # {log name: one value per epoch}
    callbacks: list = dataclasses.field(default_factory=list)  # this run's callback objects
    resumed: dict | None = None  # the checkpoint record this run continues, if any
    stopped: str | None = None  # "interrupted" or "non-finite" when fit was cut short

    def restore(self, record: dict) -> None:
        """Continue the run a checkpoint ``record`` holds (BackupAndRestore, from
        ``on_train_begin``): fit then starts at its epoch, and each callback takes up its state."""
        self.epoch = int(record["epoch"])
        self.history = {k: list(v) for k, v in record["history"].items()}
        self.resumed = record

    def callback_state(self, callback) -> dict:
        """The state the checkpoint saved for ``callback`` (matched by class, in order)."""
        if not self.resumed:
            return {}
        same = [c for c in self.callbacks if type(c) is type(callback)]
        saved = [e["state"] for e in self.resumed.get("callbacks", []) if e["class"] == type(callback).__name__]  # fmt: skip
        k = next((i for i, c in enumerate(same) if c is callback), None)
        return saved[k] if k is not None and k < len(saved) else {}

    def record(self, epoch: int, monitor: str | None = None, best=None, batch=None) -> dict:
        """What a checkpoint after ``epoch`` epochs (and ``batch`` batches of the next, when
        written mid-epoch) keeps of the run (JSON-able)."""
        callbacks = [{"class": type(cb).__name__, "state": cb.get_state()} for cb in self.callbacks]
        return {
            "epoch": int(epoch),
            "history": {k: list(v) for k, v in self.history.items()},
            "rng": rng().bit_generator.state,
            "monitor": monitor,
            "best": best,
            "callbacks": [c for c in callbacks if c["state"]],
            **({} if batch is None else {"batch": int(batch)}),
        }
