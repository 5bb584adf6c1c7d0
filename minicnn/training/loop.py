"""How a model is trained and scored: ``fit`` (epochs of steps, callbacks, validation, and the
early stops: a callback, Ctrl-C, a non-finite step), ``evaluate`` and ``train_on_batch``.

Each takes the model as its first argument; ``Sequential.fit`` and friends hand their work here.
The data comes from a source (``minicnn.data.ArrayData``) and each step is a ``TrainStep``, so
this file holds only the loop: what happens between steps and between epochs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import numpy as np

from minicnn import data
from minicnn.backend import floatx
from minicnn.callbacks import CallbackList, History, TerminateOnNaN
from minicnn.progbar import Progbar
from minicnn.training.step import NonFiniteError, TrainStep
from minicnn.training.strategy import Local


class Totals:
    """Running sums of a pass over batches: loss weighted by batch size, and correct answers.
    They stay on the device; reading them would sync a GPU every batch."""

    def __init__(self, xp, metrics: bool):
        self.loss = xp.zeros((), dtype=np.float64)  # float64: no overflow, no drift
        self.correct = xp.zeros((), dtype=np.int64)
        self.seen = 0
        self.metrics = metrics

    def add(self, loss, correct, n: int) -> None:
        self.loss += loss * np.float64(n)
        self.correct += correct
        self.seen += n

    def logs(self) -> dict:
        """As Python floats (this reads the device): {"accuracy": ..., "loss": ...}."""
        logs = {"loss": float(self.loss) / self.seen}
        return {"accuracy": float(self.correct) / self.seen, **logs} if self.metrics else logs


def fit(
    model,
    x,
    y,
    batch_size: int = 32,
    epochs: int = 1,
    verbose: int = 1,
    callbacks=None,
    validation_split: float = 0.0,
    validation_data=None,
    shuffle: bool = True,
    initial_epoch: int = 0,
    terminate_on_nan: bool = True,
    distribute=None,
) -> History:
    """Train for ``epochs - initial_epoch`` epochs; returns the History of the epochs run.

    Training ends early, with the History so far, when a callback sets ``stop_training``,
    on Ctrl-C (at the end of the step under way; a second Ctrl-C interrupts at once) and,
    with ``terminate_on_nan``, at the first step whose loss or gradients are not finite: that
    step is not applied, so the model keeps its last finite weights. ``history.stopped`` then
    says why ("interrupted" or "non-finite") and ``history.message`` says where.

    ``distribute``: None (this process alone) or ``minicnn.distributed.DataParallel()``, to
    train one model on every process of an MPI job; ``batch_size`` is then each process's share.
    """
    strategy = distribute or Local()
    model.require_compiled("fit")
    x = model.check_input(x)
    y = model.check_target(y, x.shape[0])
    if not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1). Received: {validation_split!r}")
    if validation_split and validation_data is None:
        cut = int(x.shape[0] * (1 - validation_split))  # Keras takes the last samples
        validation_data, x, y = (x[cut:], y[cut:]), x[:cut], y[:cut]
    if validation_data is not None:
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val)")
        vx = model.check_input(validation_data[0], "validation x")
        vy = model.check_target(validation_data[1], vx.shape[0], "validation y")
    steps = len(data.batch_ranges(x.shape[0], batch_size))
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int. Received: epochs={epochs!r}")
    if not isinstance(initial_epoch, int) or not 0 <= initial_epoch <= epochs:
        raise ValueError(
            f"initial_epoch must be an int in [0, epochs={epochs}]. "
            f"Received: initial_epoch={initial_epoch!r}"
        )
    callbacks = list(callbacks or [])
    check_finite = terminate_on_nan or any(isinstance(c, TerminateOnNaN) for c in callbacks)
    callbacks = [c for c in callbacks if strategy.keep_callback(c)]
    verbose = verbose if strategy.is_chief else 0
    history = History()
    params = {"epochs": epochs, "steps": steps, "verbose": verbose}
    cbs = CallbackList([history, *callbacks], model, params)  # checks each is a Callback

    # All checks passed: from here on, the model changes.
    be = model.backend
    strategy.setup(model)
    step_fn = strategy.make_step(model, model._prepare_head(), check_finite)
    targets = model.loss.target(be.to_numpy(y), model.output_shape[-1], be.xp, floatx())
    source = strategy.source(x, targets, batch_size, shuffle, be)  # the set moves to the device
    model.history = history
    model.fit_callbacks = cbs.callbacks
    resumed, model._resume = model._resume, None
    model.resumed_from = resumed if resumed and resumed["epoch"] == initial_epoch else None
    if model.resumed_from:  # continuing a checkpoint's run: its History goes on from there
        history.epoch = list(range(initial_epoch))
        history.history = {k: list(v) for k, v in resumed["history"].items()}
        _restore_callbacks(cbs.callbacks, resumed.get("callbacks", []))
    model.stop_training = False
    cbs.on_train_begin()
    with _deferred_interrupt() as interrupted:
        step_fn.interrupt = interrupted
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            batches = source.epoch(epoch)  # draws this epoch's shuffle
            bar = _progbar(model, steps, verbose, epoch, epochs, batch_size)
            totals = Totals(be.xp, bool(model.metrics))
            for step, (xb, tb) in enumerate(batches):
                try:
                    loss, correct = step_fn(xb, tb)
                except NonFiniteError as e:
                    where = f"step {step + 1} of epoch {epoch + 1}: {e}"
                    _stop(model, bar, "non-finite", where, cbs)
                    return history
                totals.add(loss, correct, xb.shape[0])
                last = step + 1 == steps  # its line waits for validation; the epoch is done
                if bar and not last:
                    bar.update(step + 1, totals.logs, items=totals.seen * strategy.size)
                cbs.on_train_batch_end(step, None)
                if not last and (step_fn.interrupted or model.stop_training):
                    why = "interrupted" if step_fn.interrupted else "stopped"
                    what = "interrupted" if step_fn.interrupted else "a callback stopped training"
                    _stop(model, bar, why, f"{what} after step {step + 1}/{steps} of epoch {epoch + 1}", cbs)  # fmt: skip
                    return history
            strategy.reduce_totals(totals)
            logs = totals.logs()
            if bar:
                bar.stop_clock()
            if validation_data is not None:
                val = evaluate(model, vx, vy, batch_size, 0, True, distribute=distribute)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if bar:
                bar.update(steps, logs, items=totals.seen, finalize=True)
            strategy.end_epoch(model)
            cbs.on_epoch_end(epoch, logs)
            if strategy.agree(interrupted()):
                _stop(model, None, "interrupted", f"interrupted after epoch {epoch + 1}", cbs)
                return history
            if model.stop_training:
                break
    cbs.on_train_end()
    model.optimizer.finalize([layer.params[k] for layer, k in model.trainable_params()])
    return history


def _restore_callbacks(callbacks, saved: list) -> None:
    """Give each callback the state its namesake had in the checkpoint (in order per class)."""
    pending = {}
    for entry in saved:
        pending.setdefault(entry["class"], []).append(entry["state"])
    for cb in callbacks:
        states = pending.get(type(cb).__name__)
        if states:
            cb.set_state(states.pop(0))


def evaluate(model, x, y, batch_size=32, verbose=1, return_dict: bool = False, distribute=None):
    """Mean loss and accuracy over (x, y), in batches; no weight changes. With ``distribute``,
    each process scores its own share and the sums are added up."""
    strategy = distribute or Local()
    model.require_compiled("evaluate")
    x = model.check_input(x)
    y = model.check_target(y, x.shape[0])
    first, end = strategy.shard(x.shape[0])  # all of it, on one process
    batches = [
        (first + a, first + b) for a, b in data.batch_ranges(max(end - first, 1), batch_size)
    ]
    batches = batches if end > first else []
    logits = model._prepare_head()
    xp, units, dtype = model.backend.xp, model.output_shape[-1], floatx()
    show = verbose and strategy.is_chief
    bar = Progbar(len(batches), items_per_step=batch_size) if show else None
    totals = Totals(xp, metrics=True)
    y_host = model.backend.to_numpy(y)
    for step, (lo, hi) in enumerate(batches):
        out = model.forward(model.as_batch(x, lo, hi), training=False)
        t = model.loss.target(y_host[lo:hi], units, xp, dtype)
        loss, _ = model.loss.forward_backward(out, t, logits=logits)
        totals.add(loss, (out.argmax(axis=-1) == model.loss.labels(t)).sum(), hi - lo)
        if bar:
            bar.update(step + 1, totals.logs, items=totals.seen)
    strategy.reduce_totals(totals)
    logs = totals.logs()
    return model.result({"loss": logs["loss"], "accuracy": logs["accuracy"]}, return_dict)


def train_on_batch(model, x, y):
    """One step on one batch; returns [loss, accuracy] (or loss alone without metrics)."""
    model.require_compiled("train_on_batch")
    x = model.check_input(x)
    y = model.check_target(y, x.shape[0])
    be = model.backend
    t = model.loss.target(be.to_numpy(y), model.output_shape[-1], be.xp, floatx())
    step_fn = TrainStep(model, model._prepare_head())
    loss, correct = step_fn(model.as_batch(x, 0, x.shape[0]), t)
    return model.result({"loss": float(loss), "accuracy": float(correct) / x.shape[0]})


def _stop(model, bar, why: str, message: str, cbs) -> None:
    """End fit early: say why on stderr, with where the last checkpoint is, and record it."""
    saved = [cb.last_saved for cb in cbs.callbacks if getattr(cb, "last_saved", None)]
    if why != "stopped":
        message += (
            f". The last checkpoint is {saved[-1]}" if saved else ". No checkpoint was written"
        )
    if why == "non-finite":
        message += "; the model keeps its weights from before this step"
    model.history.stopped, model.history.message = why, message
    if bar:
        bar.newline()
    if why != "stopped":
        print(f"Training stopped: {message}", file=sys.stderr, flush=True)
    cbs.on_train_end()


def _progbar(model, steps, verbose, epoch, epochs, batch_size):
    if not verbose:
        return None
    print(f"Epoch {epoch + 1}/{epochs}")
    interval = 0.05 if model.backend.name == "numpy" else 0.25  # reading values syncs a GPU
    return Progbar(steps, interval=interval, items_per_step=batch_size)


@contextlib.contextmanager
def _deferred_interrupt():
    """While fit runs, Ctrl-C sets a flag that the loop reads after each step, so a step is
    never cut in half; the handler then steps aside, and a second Ctrl-C interrupts at once."""
    hit = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield lambda: False  # only the main thread may set handlers; None: not set by Python
        return

    def handler(signum, frame):
        hit.append(signum)
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous)
