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
from minicnn.state import TrainingState
from minicnn.training.step import NonFiniteError, TrainStep, added_losses
from minicnn.training.strategy import Local


class Totals:
    """Running sums of a pass over batches, on the device (reading them would sync a GPU every
    batch): the loss and each per-output loss weighted by batch size, and each metric's sum
    and count. ``names``: the log name of each loss, then of each metric."""

    def __init__(self, xp, objectives):
        self.loss_names = ["loss", *(n for _, n in objectives.loss_names())]
        self.loss_index = [None, *(i for i, _ in objectives.loss_names())]
        self.metric_names = [n for *_, n in objectives.metric_names()]
        k = len(self.loss_names) + 2 * len(self.metric_names)
        self.sums = xp.zeros(k, dtype=np.float64)  # float64: no overflow, no drift
        self.seen = 0

    def add(self, loss, parts, scores, n: int) -> None:
        w = np.float64(n)
        values = [loss * w, *(parts[i] * w for i in self.loss_index[1:])]
        for s, c in scores:
            values += [s, c]
        for j, v in enumerate(values):
            self.sums[j] += v
        self.seen += n

    def logs(self) -> dict:
        """As Python floats, sorted by name as Keras gives them (this reads the device)."""
        sums = [float(v) for v in self.sums]
        k = len(self.loss_names)
        logs = {name: sums[j] / self.seen for j, name in enumerate(self.loss_names)}
        for j, name in enumerate(self.metric_names):
            count = sums[k + 2 * j + 1]
            logs[name] = sums[k + 2 * j] / count if count else 0.0
        return dict(sorted(logs.items()))


def fit(
    model,
    x=None,
    y=None,
    batch_size=None,
    epochs=1,
    verbose="auto",
    callbacks=None,
    validation_split=0.0,
    validation_data=None,
    shuffle=True,
    class_weight=None,
    sample_weight=None,
    initial_epoch=0,
    steps_per_epoch=None,
    validation_steps=None,
    validation_batch_size=None,
    validation_freq=1,
    *,
    terminate_on_nan: bool = True,
    distribute=None,
) -> History:
    """Train for ``epochs - initial_epoch`` epochs; returns the History of the epochs run.
    Keras's signature; x and y are arrays, or lists or dicts of them for several inputs and
    outputs (by input and output name).

    Training ends early, with the History so far, when a callback sets ``stop_training``,
    on Ctrl-C (at the end of the step under way; a second Ctrl-C interrupts at once) and,
    with ``terminate_on_nan``, at the first step whose loss or gradients are not finite: that
    step is not applied, so the model keeps its last finite weights. ``history.stopped`` then
    says why ("interrupted" or "non-finite") and ``history.message`` says where.

    ``distribute``: None (this process alone) or ``minicnn.distributed.DataParallel()``, to
    train one model on every process of an MPI job; ``batch_size`` is then each process's share.
    """
    unsupported = {"class_weight": class_weight, "sample_weight": sample_weight, "steps_per_epoch": steps_per_epoch, "validation_steps": validation_steps, "validation_batch_size": validation_batch_size}  # fmt: skip
    for name, value in unsupported.items():
        if value is not None:
            raise ValueError(f"fit(): {name} is not supported by minicnn yet. Received: {name}={value!r}")  # fmt: skip
    if validation_freq != 1:
        raise ValueError(f"fit(): validation_freq must be 1 (every epoch). Received: validation_freq={validation_freq!r}")  # fmt: skip
    strategy = distribute or Local()
    batch_size = 32 if batch_size is None else _int(batch_size, "batch_size")
    epochs, initial_epoch = _int(epochs, "epochs"), _int(initial_epoch, "initial_epoch")
    verbose = 1 if verbose == "auto" else verbose
    model.require_compiled("fit")
    xs = model.check_inputs(x)
    n = xs[0].shape[0]
    ys = model.check_targets(y, n)
    if not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1). Received: {validation_split!r}")
    if validation_split and validation_data is None:
        cut = int(n * (1 - validation_split))  # Keras takes the last samples
        if cut == 0 or cut == n:
            raise ValueError(
                f"validation_split={validation_split} of {n} samples leaves {cut} to train on "
                f"and {n - cut} to validate: both need at least one"
            )
        validation_data = (_one([a[cut:] for a in xs]), _one([None if t is None else t[cut:] for t in ys]))  # fmt: skip
        xs, ys, n = [a[:cut] for a in xs], [None if t is None else t[:cut] for t in ys], cut
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val)")
        vxs = model.check_inputs(validation_data[0], "validation x")
        vys = model.check_targets(validation_data[1], vxs[0].shape[0], "validation y")
    steps = len(data.batch_ranges(n, batch_size))
    if epochs < 0:
        raise ValueError(f"epochs must be a non-negative int. Received: epochs={epochs!r}")
    if not 0 <= initial_epoch <= epochs:
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
    resumed = model.training_state
    resumed = resumed.resumed if resumed and resumed.resumed and resumed.epoch == initial_epoch else None  # fmt: skip
    run = TrainingState(initial_epoch, {}, [history, *callbacks], resumed)
    cbs = CallbackList(run.callbacks, model, params, run)  # checks each is a Callback

    # All checks passed: from here on, the model changes.
    be = model.backend
    strategy.setup(model)
    step_fn = strategy.make_step(model, check_finite)
    units = [t.shape[-1] for t in model.outputs]
    targets = model.objectives.targets([None if t is None else be.to_numpy(t) for t in ys], units, be.xp, floatx())  # fmt: skip
    source = strategy.source(xs, targets, batch_size, shuffle, be)  # the set moves to the device
    model.history = history
    model.training_state = run
    if resumed:  # continuing a checkpoint's run: its History goes on from there
        history.epoch = list(range(initial_epoch))
        history.history = run.history = {k: list(v) for k, v in resumed["history"].items()}
        for cb in run.callbacks:
            state = run.callback_state(cb)
            if state:
                cb.set_state(state)
    history.history = run.history
    model.stop_training = False
    cbs.on_train_begin()
    with _deferred_interrupt() as interrupted:
        step_fn.interrupt = interrupted
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            batches = source.epoch(epoch)  # draws this epoch's shuffle
            bar = _progbar(model, steps, verbose, epoch, epochs, batch_size)
            totals = Totals(be.xp, model.objectives)
            for step, (xbs, tbs) in enumerate(batches):
                try:
                    loss, parts, scores = step_fn(xbs, tbs)
                except NonFiniteError as e:
                    where = f"step {step + 1} of epoch {epoch + 1}: {e}"
                    _stop(model, bar, "non-finite", where, cbs)
                    return history
                totals.add(loss, parts, scores, xbs[0].shape[0])
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
                val = _score(model, vxs, vys, batch_size, 0, strategy)
                logs.update({f"val_{k}": v for k, v in val.items()})
            if bar:
                bar.update(steps, logs, items=totals.seen, finalize=True)
            strategy.end_epoch(model)
            run.epoch = epoch + 1
            cbs.on_epoch_end(epoch, logs)
            if strategy.agree(interrupted()):
                _stop(model, None, "interrupted", f"interrupted after epoch {epoch + 1}", cbs)
                return history
            if model.stop_training:
                break
    cbs.on_train_end()
    model.optimizer.finalize([layer.params[k] for layer, k in model.trainable_params()])
    return history


def _int(value, what: str) -> int:
    """An int, as Keras accepts them (NumPy integers too); a ValueError names anything else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an int. Received: {what}={value!r}")
    return int(value)


def _one(arrays: list):
    """One array for one input or output, else the list (as a user gives them)."""
    return arrays[0] if len(arrays) == 1 else arrays


def evaluate(
    model,
    x=None,
    y=None,
    batch_size=None,
    verbose="auto",
    sample_weight=None,
    steps=None,
    callbacks=None,
    return_dict: bool = False,
    *,
    distribute=None,
):
    """The loss and metrics over (x, y), in batches; no weight changes. With ``distribute``,
    each process scores its own share and the sums are added up."""
    for name, value in (("sample_weight", sample_weight), ("steps", steps), ("callbacks", callbacks)):  # fmt: skip
        if value is not None:
            raise ValueError(f"evaluate(): {name} is not supported by minicnn yet. Received: {name}={value!r}")  # fmt: skip
    strategy = distribute or Local()
    batch_size = 32 if batch_size is None else _int(batch_size, "batch_size")
    model.require_compiled("evaluate")
    xs = model.check_inputs(x)
    ys = model.check_targets(y, xs[0].shape[0])
    logs = _score(model, xs, ys, batch_size, 1 if verbose == "auto" else verbose, strategy)
    return model.result(logs, return_dict)


def _score(model, xs, ys, batch_size, verbose, strategy) -> dict:
    """The logs of one pass over checked (xs, ys): loss, per-output losses, metrics."""
    first, end = strategy.shard(xs[0].shape[0])  # all of it, on one process
    batches = [(first + a, first + b) for a, b in data.batch_ranges(max(end - first, 1), batch_size)]  # fmt: skip
    batches = batches if end > first else []
    be = model.backend
    xp, dtype, objectives = be.xp, floatx(), model.objectives
    units = [t.shape[-1] for t in model.outputs]
    show = verbose and strategy.is_chief
    bar = Progbar(len(batches), items_per_step=batch_size) if show else None
    totals = Totals(xp, objectives)
    ys_host = [None if t is None else be.to_numpy(t) for t in ys]
    for step, (lo, hi) in enumerate(batches):
        plan = model.plan(hi - lo, False)
        outs, _ = plan.forward([model.as_batch(a, lo, hi) for a in xs], False)
        ts = objectives.targets([None if t is None else t[lo:hi] for t in ys_host], units, xp, dtype)  # fmt: skip
        n = plan.n_outputs
        loss, parts, _ = objectives.forward_backward(outs[:n], ts, plan.logits)
        loss, _ = added_losses(loss, outs[n:])
        totals.add(loss, parts, objectives.scores(outs[:n], ts, plan.logits), hi - lo)
        if bar:
            bar.update(step + 1, totals.logs, items=totals.seen)
    strategy.reduce_totals(totals)
    return totals.logs()


def train_on_batch(model, x, y):
    """One step on one batch; returns the loss, or [loss, ...metrics] as evaluate does."""
    model.require_compiled("train_on_batch")
    xs = model.check_inputs(x)
    ys = model.check_targets(y, xs[0].shape[0])
    be = model.backend
    units = [t.shape[-1] for t in model.outputs]
    ts = model.objectives.targets([None if t is None else be.to_numpy(t) for t in ys], units, be.xp, floatx())  # fmt: skip
    totals = Totals(be.xp, model.objectives)
    loss, parts, scores = TrainStep(model)([model.as_batch(a, 0, a.shape[0]) for a in xs], ts)
    totals.add(loss, parts, scores, xs[0].shape[0])
    return model.result(totals.logs())


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
