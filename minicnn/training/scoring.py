"""How a model is scored and run without training: ``evaluate`` (and fit's validation pass)
and ``predict``, each a loop over batches with Keras's callback hooks around it, and
``Totals``, the running sums a pass keeps on the device.

Hooks, as Keras 3's torch trainer calls them (keras/src/backend/torch/trainer.py, v3.15.1:
evaluate lines 378-388, predict lines 438-447): ``on_test_begin``, then per batch
``on_test_batch_begin(step)`` and ``on_test_batch_end(step, running logs)``, then
``on_test_end(logs)``; ``on_predict_begin``, ``on_predict_batch_begin(step)``,
``on_predict_batch_end(step, {"outputs": the batch's outputs})``, ``on_predict_end``.
"""

from __future__ import annotations

import numpy as np

from minicnn import data, regularizers
from minicnn.backend import floatx, get_array_module
from minicnn.callbacks import CallbackList
from minicnn.training.step import added_losses


class Totals:
    """What a pass over batches logs. The loss and each per-output loss are summed on the
    device, weighted by batch size (reading them would sync a GPU every batch); the compiled
    metrics keep their own state there, reset here for this pass. ``logs()`` reads both."""

    def __init__(self, xp, objectives):
        self.loss_names = ["loss", *(n for _, n in objectives.loss_names())]
        self.loss_index = [None, *(i for i, _ in objectives.loss_names())]
        self.sums = xp.zeros(len(self.loss_names), dtype=np.float64)  # float64: no drift
        self.seen = 0
        self.metrics = objectives.compiled_metrics
        self.metrics.reset(xp)

    def add(self, loss, parts, n: int) -> None:
        w = np.float64(n)
        values = [loss * w, *(parts[i] * w for i in self.loss_index[1:])]
        for j, v in enumerate(values):
            self.sums[j] += v
        self.seen += n

    def reduce(self, strategy) -> None:
        """Sum the pass over every process (the metrics' states too, each by its aggregation)."""
        if strategy.size == 1:
            return
        xp, k = get_array_module(self.sums), len(self.loss_names)
        variables = [v for m in self.metrics.metrics() for v in m.variables]
        self.sums = xp.concatenate([self.sums, *(xp.asarray(v.value, np.float64).reshape(-1) for v in variables)])  # fmt: skip
        strategy.reduce_totals(self)
        at = k
        for v in variables:
            part = self.sums[at : at + v.value.size].reshape(v.shape)
            v.assign(part / strategy.size if v.aggregation == "mean" else part)
            at += v.value.size
        self.sums = self.sums[:k]

    def logs(self) -> dict:
        """As Python floats, sorted by name as Keras gives them (this reads the device)."""
        sums = [float(v) for v in self.sums]
        logs = {name: sums[j] / self.seen if self.seen else 0.0 for j, name in enumerate(self.loss_names)}  # fmt: skip
        logs.update(self.metrics.results())
        return dict(sorted(logs.items()))

    def reader(self, processes: int = 1) -> Reader:
        """What a batch-end hook is handed: ``reader()`` reads the logs so far."""
        return Reader(self.logs, lambda: self.seen * processes)


class Reader:
    """A batch's logs, read only when called (a callback that reads them, or the progress bar
    when it redraws); ``samples``: how many samples the pass has seen so far."""

    def __init__(self, read, samples):
        self._read, self._samples = read, samples

    def __call__(self) -> dict:
        return self._read()

    @property
    def samples(self) -> int:
        return self._samples()


def evaluate(model, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None, callbacks=None, return_dict: bool = False, *, distribute=None):  # fmt: skip
    """The loss and metrics over (x, y) (arrays, or a generator or PyDataset of batches, for
    ``steps`` batches if given), in batches; no weight changes. With ``distribute``, each
    process scores its own share of arrays and the sums are added up. ``callbacks`` get the
    test hooks (and a ProgbarLogger draws the bar unless ``verbose=0``)."""
    from minicnn.training import inputs
    from minicnn.training.strategy import Local

    strategy = distribute or Local()
    batch_size = inputs.positive(batch_size, "batch_size", "evaluate()")
    steps = inputs.positive(steps, "steps", "evaluate()")
    model.require_compiled("evaluate")
    source = inputs.eval_data(model, x, y, batch_size, steps, strategy, sample_weight=sample_weight)
    model._metrics_built = True
    verbose = 1 if verbose == "auto" else verbose
    callbacks = [c for c in (callbacks or []) if strategy.keep_callback(c)]
    show = verbose if strategy.is_chief else 0
    cbs = CallbackList(callbacks, add_progbar=show != 0, model=model, verbose=show, epochs=1, steps=source.num_batches)  # fmt: skip
    logs = test_loop(model, source.epoch(0), cbs, strategy)
    return model.result(logs, return_dict)


class ArrayBatches:
    """Checked arrays as evaluate's and predict's source: this process's share in order, each
    batch moved to the device as it is used (an evaluation set stays where it is); batches
    are (xbs, tbs, wbs), or xbs alone without targets (predict)."""

    def __init__(self, model, xs, ys, batch_size, strategy, ws=None):
        self.model, self.xs, self.ws = model, xs, ws or [None] * len(model.outputs)
        be = model.backend
        self.ys = None if ys is None else [None if t is None else be.to_numpy(t) for t in ys]
        first, end = strategy.shard(xs[0].shape[0])  # all of it, on one process
        ranges = data.batch_ranges(end - first, batch_size) if end > first else []
        self.ranges = [(first + a, first + b) for a, b in ranges]
        self.num_batches = len(self.ranges)

    def iterator(self, epoch: int = 0):
        model = self.model
        be, units = model.backend, [t.shape[-1] for t in model.outputs]
        for lo, hi in self.ranges:
            xbs = [model.as_batch(a, lo, hi) for a in self.xs]
            if self.ys is None:
                yield xbs
                continue
            ys = [None if t is None else t[lo:hi] for t in self.ys]
            wbs = [None if w is None else be.asarray(w[lo:hi]) for w in self.ws]
            yield xbs, model.objectives.targets(ys, units, be.xp, floatx()), wbs

    def on_epoch_begin(self):
        """Arrays: nothing to do at an epoch's edges (a PyDataset's source calls its hooks)."""

    def on_epoch_end(self):
        """Arrays: nothing to do at an epoch's edges (a PyDataset's source calls its hooks)."""


def test_loop(model, batches, cbs, strategy) -> dict:
    """One pass over ``batches`` of (xbs, tbs, wbs), with the test hooks; -> the logs."""
    xp, objectives = model.backend.xp, model.objectives
    totals = Totals(xp, objectives)
    reader = totals.reader(strategy.size)
    model.stop_evaluating = False
    weights = model.trainable_params()  # their penalties join each batch's loss, as in Keras
    penalty = regularizers.penalty(weights, [layer.params[k] for layer, k in weights])
    cbs.on_test_begin()
    for step, (xbs, tbs, wbs) in enumerate(batches):
        cbs.on_test_batch_begin(step)
        plan = model.plan(xbs[0].shape[0], False)
        outs, _ = plan.forward(xbs, False)
        n = plan.n_outputs  # the outputs after them are add_loss terms of traced calls
        loss, parts, _ = objectives.forward_backward(outs[:n], tbs, plan.logits, wbs)
        loss, _ = added_losses(loss, outs[n:])
        loss = loss if penalty is None else loss + penalty
        objectives.update_metrics(outs[:n], tbs, plan.logits, wbs)
        totals.add(loss, parts, xbs[0].shape[0])
        cbs.on_test_batch_end(step, reader)
        if model.stop_evaluating:
            break
    totals.reduce(strategy)
    logs = totals.logs()
    cbs.on_test_end(logs)
    return logs


def predict(model, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
    """The outputs (probabilities for a softmax head) as NumPy arrays: one array, or a list or
    dict like the model's outputs; x is arrays, or a generator or PyDataset of batches (their
    x only is read), for ``steps`` batches if given; ``callbacks`` get the predict hooks."""
    from minicnn.training import inputs

    batch_size = inputs.positive(batch_size, "batch_size", "predict()")
    steps = inputs.positive(steps, "steps", "predict()")
    source = inputs.predict_data(model, x, batch_size, steps)
    verbose = 1 if verbose == "auto" else verbose
    cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=model, verbose=verbose, epochs=1, steps=source.num_batches)  # fmt: skip
    be = model.backend
    parts: list[list] = [[] for _ in model.outputs]
    model.stop_predicting = False
    cbs.on_predict_begin()
    seen = 0
    for step, xbs in enumerate(source.epoch(0)):
        cbs.on_predict_batch_begin(step)
        outs = model.run(xbs, training=False)
        for part, out in zip(parts, outs):
            part.append(out)
        seen += xbs[0].shape[0]

        def read(outs=outs):
            return {"outputs": model._restructure([be.to_numpy(o) for o in outs], model._output_struct)}  # fmt: skip

        cbs.on_predict_batch_end(step, Reader(read, lambda seen=seen: seen))
        if model.stop_predicting:
            break
    cbs.on_predict_end()
    if not parts[0]:
        raise ValueError("predict() got no batches: the input gave none")
    flat = [be.to_numpy(be.xp.concatenate(p)) for p in parts]  # one copy to the host
    return model._restructure(flat, model._output_struct)
