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

from minicnn.backend import floatx
from minicnn.callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    History,
    ProgbarLogger,
    TerminateOnNaN,
)
from minicnn.state import TrainingState
from minicnn.training import inputs
from minicnn.training.scoring import Totals, test_loop
from minicnn.training.step import NonFiniteError, TrainStep
from minicnn.training.strategy import Local


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
    strategy = distribute or Local()
    batch_size = inputs.positive(batch_size, "batch_size", "fit()")
    epochs, initial_epoch = _int(epochs, "epochs"), _int(initial_epoch, "initial_epoch")
    steps_per_epoch = inputs.positive(steps_per_epoch, "steps_per_epoch", "fit()")
    validation_steps = inputs.positive(validation_steps, "validation_steps", "fit()")
    validation_batch_size = inputs.positive(validation_batch_size, "validation_batch_size", "fit()")  # fmt: skip
    _check_validation_freq(validation_freq)
    verbose = 1 if verbose == "auto" else verbose
    if epochs < 0:
        raise ValueError(f"epochs must be a non-negative int. Received: epochs={epochs!r}")
    if not 0 <= initial_epoch <= epochs:
        raise ValueError(
            f"initial_epoch must be an int in [0, epochs={epochs}]. "
            f"Received: initial_epoch={initial_epoch!r}"
        )
    for cb in callbacks or []:
        if not isinstance(cb, Callback):
            raise ValueError(f"callbacks must be minicnn.callbacks.Callback instances. Received: {cb!r}")  # fmt: skip
    model.require_compiled("fit")
    source, val_source = inputs.fit_data(model, x, y, batch_size, validation_split, validation_data, shuffle, steps_per_epoch, validation_steps, validation_batch_size, strategy, sample_weight, class_weight)  # fmt: skip
    steps = source.num_batches
    model._metrics_built = True
    callbacks = list(callbacks or [])
    check_finite = terminate_on_nan or any(isinstance(c, TerminateOnNaN) for c in callbacks)
    if distribute is not None and any(isinstance(c, BackupAndRestore) for c in callbacks):
        raise ValueError("BackupAndRestore is not supported with distribute=: each process would have to restore the same backup; use ModelCheckpoint and load_checkpoint")  # fmt: skip
    callbacks = [c for c in callbacks if strategy.keep_callback(c)]
    verbose = verbose if strategy.is_chief else 0
    resumed = model.training_state
    resumed = resumed.resumed if resumed and resumed.resumed and resumed.epoch == initial_epoch else None  # fmt: skip
    run = TrainingState(initial_epoch, {}, [], resumed)
    cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model, training_state=run, verbose=verbose, epochs=epochs, steps=steps)  # fmt: skip
    run.callbacks = cbs.callbacks
    history = cbs.history

    # All checks passed: from here on, the model changes.
    be = model.backend
    strategy.setup(model)
    step_fn = strategy.make_step(model, check_finite)
    model.history = history
    model.training_state = run
    if resumed:  # continuing a checkpoint's run: its History goes on from there
        history.epoch = list(range(initial_epoch))
        run.history = {k: list(v) for k, v in resumed["history"].items()}
        history.history = {k: list(v) for k, v in resumed["history"].items()}
    model.stop_training = False
    training_logs: dict = {}
    cbs.on_train_begin()
    initial_epoch = run.epoch  # BackupAndRestore may have moved it to its backup's
    for cb in run.callbacks if run.resumed else []:
        state = run.callback_state(cb)
        if state:
            cb.set_state(state)
    with _deferred_interrupt() as interrupted:
        step_fn.interrupt = interrupted
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            totals = Totals(be.xp, model.objectives)
            reader = totals.reader(strategy.size)
            for step, (xbs, tbs, wbs) in enumerate(
                source.epoch(epoch)
            ):  # draws this epoch's shuffle
                cbs.on_train_batch_begin(step)
                try:
                    loss, parts = step_fn(xbs, tbs, wbs)
                except NonFiniteError as e:
                    _stop(model, run, "non-finite", f"step {step + 1} of epoch {epoch + 1}: {e}", cbs, training_logs)  # fmt: skip
                    return history
                totals.add(loss, parts, xbs[0].shape[0])
                cbs.on_train_batch_end(step, reader)
                if step + 1 != steps and step_fn.interrupted:
                    where = f"interrupted after step {step + 1}/{steps} of epoch {epoch + 1}"
                    _stop(model, run, "interrupted", where, cbs, training_logs)
                    return history
                if model.stop_training:
                    break
            totals.reduce(strategy)
            logs = totals.logs()
            if val_source is not None and _should_eval(epoch, validation_freq):
                if epoch > initial_epoch:
                    val_source.reset()  # Keras's evaluate starts each pass anew
                val = test_loop(model, val_source.epoch(epoch), cbs, strategy)
                logs.update({f"val_{k}": v for k, v in val.items()})
            strategy.end_epoch(model)
            run.epoch = epoch + 1
            for k, v in logs.items():
                run.history.setdefault(k, []).append(v)
            cbs.on_epoch_end(epoch, logs)
            training_logs = logs
            if strategy.agree(interrupted()):
                _stop(model, run, "interrupted", f"interrupted after epoch {epoch + 1}", cbs, training_logs)  # fmt: skip
                return history
            if model.stop_training:
                break
    model.optimizer.finalize([layer.params[k] for layer, k in model.trainable_params()])
    cbs.on_train_end(training_logs)
    return history


def _check_validation_freq(validation_freq) -> None:
    ok = isinstance(validation_freq, (list, tuple)) and all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in validation_freq)  # fmt: skip
    ok = ok or (isinstance(validation_freq, (int, np.integer)) and not isinstance(validation_freq, bool) and validation_freq >= 1)  # fmt: skip
    if not ok:
        raise ValueError(f"Expected `validation_freq` to be a list or int. Received: validation_freq={validation_freq!r} of the type {type(validation_freq)}.")  # fmt: skip


def _should_eval(epoch: int, validation_freq) -> bool:
    """Keras's rule: validate after epoch k (from 1) if k is a multiple of an int
    ``validation_freq``, or if k is in a list of them."""
    if isinstance(validation_freq, (list, tuple)):
        return epoch + 1 in validation_freq
    return (epoch + 1) % validation_freq == 0


def _int(value, what: str) -> int:
    """An int, as Keras accepts them (NumPy integers too); a ValueError names anything else."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an int. Received: {what}={value!r}")
    return int(value)


def train_on_batch(model, x, y, sample_weight=None, class_weight=None, return_dict=False):
    """One step on one batch; returns the loss, or [loss, ...metrics] as evaluate does (the
    metrics of this batch alone: Keras resets them first)."""
    from minicnn.training.weights import sample_weights, to_device

    model.require_compiled("train_on_batch")
    model._metrics_built = True
    xs = model.check_inputs(x)
    ys = model.check_targets(y, xs[0].shape[0])
    model.objectives.build_metrics(ys, model.outputs)
    be = model.backend
    host = [None if t is None else be.to_numpy(t) for t in ys]
    ws = to_device(sample_weights(model, sample_weight, class_weight, host, xs[0].shape[0]), be)
    units = [t.shape[-1] for t in model.outputs]
    ts = model.objectives.targets(host, units, be.xp, floatx())
    totals = Totals(be.xp, model.objectives)
    loss, parts = TrainStep(model)([model.as_batch(a, 0, a.shape[0]) for a in xs], ts, ws)
    totals.add(loss, parts, xs[0].shape[0])
    return model.result(totals.logs(), return_dict)


def _stop(model, run, why: str, message: str, cbs, logs: dict) -> None:
    """End fit early: say why on stderr, with where the last checkpoint is, and record it."""
    saved = [cb.last_saved for cb in cbs.callbacks if getattr(cb, "last_saved", None)]
    message += f". The last checkpoint is {saved[-1]}" if saved else ". No checkpoint was written"
    if why == "non-finite":
        message += "; the model keeps its weights from before this step"
    model.history.stopped, model.history.message = why, message
    run.stopped = why
    for cb in cbs.callbacks:
        if isinstance(cb, ProgbarLogger):
            cb.newline()
    print(f"Training stopped: {message}", file=sys.stderr, flush=True)
    cbs.on_train_end(logs)


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
