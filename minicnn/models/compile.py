"""What ``compile`` sets a model to minimise and report: for each output its loss (or None), its
weight in the total and its metrics, and the names the logs use, as Keras 3 has them:

- one loss (a name or an object) is used for every output; a list gives one per output, a dict
  one per output name (every name, None for an output without a loss);
- ``loss_weights``: a number for one output, else a list or dict of the losses' structure;
- the total ``loss`` is the weighted sum; with several losses each is also logged, unweighted,
  as ``<output>_loss``;
- ``metrics`` and ``weighted_metrics``: ``minicnn.metrics.compiled`` (their structure, the
  "accuracy" resolution, the log names ``<output>_<metric>`` and ``weighted_<metric>``).

A loss defined by ``call`` (a Loss subclass, or a function) runs traced (``ops.traced_loss``).
Each loss computes in the model's float type and sees the sample weights of its output (one
array for every output, or one per output).

An output's name is its dict key when the model's outputs are a dict, else the name of the
layer that makes it.
"""

from __future__ import annotations

from minicnn import activations, losses
from minicnn.metrics.compiled import CompileMetrics
from minicnn.metrics.compiled import from_config as metrics_from_config
from minicnn.ops.traced_loss import TracedLoss


class Objectives:
    def __init__(self, output_names: list[str], loss, loss_weights=None, metrics=None, weighted_metrics=None):  # fmt: skip
        n = len(output_names)
        self.output_names = list(output_names)
        self.losses = self._per_output(loss, "loss", losses.get, broadcast=True)
        if all(lo is None for lo in self.losses):
            raise ValueError(f"compile() needs a loss for at least one output. Received: loss={loss!r}")  # fmt: skip
        for lo in self.losses:
            if lo is not None:
                lo.check_trainable()
        # what each output's loss runs: the hand-written pair, or a user's call traced
        self.runners = [TracedLoss(lo) if lo is not None and lo.defines_call else lo for lo in self.losses]  # fmt: skip
        if loss_weights is None:
            self.weights = [1.0] * n
        elif isinstance(loss_weights, (int, float)) and n == 1:
            self.weights = [float(loss_weights)]
        else:
            weights = self._per_output(loss_weights, "loss_weights", float, broadcast=False)
            self.weights = [1.0 if w is None else w for w in weights]
        self.compiled_metrics = CompileMetrics(output_names, metrics, weighted_metrics)
        for i in sorted(self.compiled_metrics.outputs_with_metrics()):
            if self.losses[i] is None:
                raise ValueError(f'compile(): output "{output_names[i]}" has metrics but no loss to read its targets by')  # fmt: skip
        self.several = sum(lo is not None for lo in self.losses) > 1

    def _per_output(self, value, what: str, make, broadcast: bool) -> list:
        names, n = self.output_names, len(self.output_names)
        if isinstance(value, dict):
            extra = sorted(set(value) - set(names))
            missing = [k for k in names if k not in value]
            if extra or missing:
                raise ValueError(
                    f"Expected keys {names} in {what} dict, but found {what}.keys()={sorted(value)}"
                )
            return [None if value[k] is None else make(value[k]) for k in names]
        if isinstance(value, (list, tuple)):
            if len(value) != n:
                raise ValueError(
                    f"compile(): {what} must have one entry per output ({n}: {names}). "
                    f"Received: {what}={value!r}"
                )
            return [None if v is None else make(v) for v in value]
        if not broadcast and n > 1:
            raise ValueError(f"compile(): {what} must be a list or dict for a model with {n} outputs. Received: {what}={value!r}")  # fmt: skip
        return [make(value)] * n if value is not None else [None] * n

    @property
    def metrics(self) -> list:
        """The metric objects compile made (an unresolved "accuracy" once fit or evaluate
        has seen the targets), every output's in order."""
        return self.compiled_metrics.metrics()

    # -- names ---------------------------------------------------------------------------------

    def loss_names(self) -> list[tuple[int, str]]:
        """(output index, log name) of each per-output loss that is logged."""
        if not self.several:
            return []
        return [(i, f"{k}_loss") for i, k in enumerate(self.output_names) if self.losses[i]]

    def metric_names(self) -> list[str]:
        """The log name of every metric, in compile's order (unweighted, then weighted)."""
        return list(self.compiled_metrics.names)

    def heads(self) -> tuple[tuple[int, str], ...]:
        """(output, activation) of each output whose loss may take the logits of that final
        activation (a softmax for the categorical cross-entropies, a sigmoid for the binary)."""
        return tuple((i, lo.logits_of) for i, lo in enumerate(self.losses) if lo is not None and lo.logits_of)  # fmt: skip

    # -- one batch -----------------------------------------------------------------------------

    def targets(self, ys: list, units: list, xp, dtype) -> list:
        """Each output's targets on the device (None for outputs without a loss)."""
        return [
            None if lo is None else lo.target(y, u, xp, dtype)
            for lo, y, u in zip(self.losses, ys, units)
        ]

    def forward_backward(self, outs: list, ts: list, logits: tuple, ws=None):
        """(total loss, per-output losses, gradient of each output or None); ``ws``: each
        output's sample weights (None, or None for an output without)."""
        total, parts, grads = None, [], []
        ws = ws or [None] * len(outs)
        for out, t, lo, w, lg, sw in zip(outs, ts, self.runners, self.weights, logits, ws):
            if lo is None:
                parts.append(None)
                grads.append(None)
                continue
            value, g = lo.forward_backward(out, t, lg or None, sw)
            parts.append(value)
            if w != 1.0:
                g = g * g.dtype.type(w)
            grads.append(g)
            term = value * w if w != 1.0 else value
            total = term if total is None else total + term
        return total, parts, grads

    def build_metrics(self, ys: list, outputs: list) -> None:
        """Before a pass changes anything: resolve "accuracy" from the targets (once, as Keras
                at its first batch) and check that each metric can read them (and trace a loss of the user's own, so that a
        call that cannot be traced fails here); ``outputs``: the model's
                output tensors (their shapes)."""
        shapes = [tuple(t.shape) for t in outputs]
        for runner, y, t in zip(self.runners, ys, outputs):  # a user's loss: traced here, once
            if isinstance(runner, TracedLoss) and y is not None:
                runner.prepare(tuple(y.shape), tuple(t.shape), t.dtype)
        self.compiled_metrics.build([None if t is None else tuple(t.shape) for t in ys], shapes)

    def update_metrics(self, outs: list, ts: list, logits: tuple, ws=None) -> None:
        """Add this batch to every metric's state, on the device; a head that gives logits is
        read through its activation where a metric needs the model's output."""
        self.compiled_metrics.update(outs, ts, ws or [None] * len(outs), logits, probabilities)

    def get_config(self) -> dict:
        return {
            "losses": [None if lo is None else losses.serialize(lo) for lo in self.losses],
            "weights": self.weights,
            **self.compiled_metrics.get_config(),
        }


def probabilities(out, activation: str):
    """A head's output from its logits: the activation the plan left to the loss."""
    return activations.get(activation).forward(out)


def metric_from_config(c):
    """A metrics= entry saved by ``get_config`` (or by minicnn's earlier {"class_name", "name"})."""
    if isinstance(c, dict) and "name" in c and "config" not in c:
        c = {"class_name": c["class_name"], "config": {"name": c["name"]}}
    return metrics_from_config(c)
