"""What ``compile`` sets a model to minimise and report: for each output its loss (or None), its
weight in the total and its metrics, and the names the logs use, as Keras 3 has them:

- one loss (a name or an object) is used for every output; a list gives one per output, a dict
  one per output name (every name, None for an output without a loss);
- ``loss_weights``: a number for one output, else a list or dict of the losses' structure;
- the total ``loss`` is the weighted sum; with several losses each is also logged, unweighted,
  as ``<output>_loss``;
- metrics: a list for one output; with several outputs, a list of one entry (a metric or a
  list of them) per output, or a dict by output name; logged as ``<output>_<metric>``.

An output's name is its dict key when the model's outputs are a dict, else the name of the
layer that makes it.
"""

from __future__ import annotations

from minicnn import losses, maths
from minicnn import metrics as metrics_module


class Objectives:
    def __init__(self, output_names: list[str], loss, loss_weights=None, metrics=None):
        n = len(output_names)
        self.output_names = list(output_names)
        self.losses = self._per_output(loss, "loss", losses.get, broadcast=True)
        if all(lo is None for lo in self.losses):
            raise ValueError(f"compile() needs a loss for at least one output. Received: loss={loss!r}")  # fmt: skip
        if loss_weights is None:
            self.weights = [1.0] * n
        elif isinstance(loss_weights, (int, float)) and n == 1:
            self.weights = [float(loss_weights)]
        else:
            weights = self._per_output(loss_weights, "loss_weights", float, broadcast=False)
            self.weights = [1.0 if w is None else w for w in weights]
        self.metrics = self._metrics(metrics)
        for i, ms in enumerate(self.metrics):
            if ms and self.losses[i] is None:
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

    def _metrics(self, metrics) -> list[list]:
        names, n = self.output_names, len(self.output_names)

        def entry(value):
            return [metrics_module.get(m) for m in (value if isinstance(value, (list, tuple)) else [value])]  # fmt: skip

        if metrics is None:
            return [[] for _ in names]
        if isinstance(metrics, dict):
            extra = sorted(set(metrics) - set(names))
            if extra:
                raise ValueError(f"compile(): metrics names outputs {extra}, but the model's outputs are {names}")  # fmt: skip
            return [entry(metrics[k]) if metrics.get(k) is not None else [] for k in names]
        if not isinstance(metrics, (list, tuple)):
            raise ValueError(f"compile(): metrics must be a list or dict. Received: metrics={metrics!r}")  # fmt: skip
        if n == 1:
            one = len(metrics) == 1 and isinstance(metrics[0], (list, tuple))  # [[...]]: per output
            return [entry(list(metrics[0] if one else metrics))]
        if len(metrics) != n:
            raise ValueError(
                "Invalid `metrics`. `metrics` should contain metrics objects and either be a dict "
                f"or a list matching the output names of the functional model {names} or match "
                f"the output structure of the model: {['X'] * n}. Received: metrics={metrics!r}"
            )
        return [entry(m) if m is not None else [] for m in metrics]

    # -- names ---------------------------------------------------------------------------------

    def loss_names(self) -> list[tuple[int, str]]:
        """(output index, log name) of each per-output loss that is logged."""
        if not self.several:
            return []
        return [(i, f"{k}_loss") for i, k in enumerate(self.output_names) if self.losses[i]]

    def metric_names(self) -> list[tuple[int, object, str]]:
        """(output index, metric, log name) of every metric, in compile's order."""
        out, seen = [], set()
        prefix = len(self.output_names) > 1
        for i, ms in enumerate(self.metrics):
            for m in ms:
                name = f"{self.output_names[i]}_{m.name}" if prefix else m.name
                base, k = name, 0
                while name in seen:  # Keras: a repeated name gets _1, _2, ...
                    k += 1
                    name = f"{base}_{k}"
                seen.add(name)
                out.append((i, m, name))
        return out

    def heads(self) -> tuple[int, ...]:
        """The outputs whose loss works from logits when the model ends in softmax."""
        return tuple(i for i, lo in enumerate(self.losses) if lo is not None and lo.takes_logits_of_softmax)  # fmt: skip

    # -- one batch -----------------------------------------------------------------------------

    def targets(self, ys: list, units: list, xp, dtype) -> list:
        """Each output's dense targets on the device (None for outputs without a loss)."""
        return [
            None if lo is None else lo.target(y, u, xp, dtype)
            for lo, y, u in zip(self.losses, ys, units)
        ]

    def forward_backward(self, outs: list, ts: list, logits: tuple):
        """(total loss, per-output losses, gradient of each output or None)."""
        total, parts, grads = None, [], []
        for out, t, lo, w, lg in zip(outs, ts, self.losses, self.weights, logits):
            if lo is None:
                parts.append(None)
                grads.append(None)
                continue
            value, g = lo.forward_backward(out, t, logits=lg)
            parts.append(value)
            if w != 1.0:
                g = g * g.dtype.type(w)
            grads.append(g)
            term = value * w if w != 1.0 else value
            total = term if total is None else total + term
        return total, parts, grads

    def scores(self, outs: list, ts: list, logits: tuple) -> list:
        """(sum, count) of every metric on this batch, in ``metric_names`` order; a head that
        gives logits is read through its softmax's order (argmax) or values."""
        out = []
        for i, m, _ in self.metric_names():
            o = outs[i]
            if logits[i] and isinstance(m, metrics_module.Accuracy):
                o = maths.softmax(o)
            out.append(m.batch(o, ts[i], self.losses[i].labels(ts[i])))
        return out

    def get_config(self) -> dict:
        return {
            "losses": [None if lo is None else lo.get_config() for lo in self.losses],
            "weights": self.weights,
            "metrics": [[_metric_config(m) for m in ms] for ms in self.metrics],
        }


def _metric_config(m) -> object:
    """A metric as compile can take it again: its string, or its class and name."""
    if isinstance(m, metrics_module.CategoricalAccuracy) and m.name in metrics_module.NAMES and type(m) is metrics_module.CategoricalAccuracy:  # fmt: skip
        return m.name
    return {"class_name": type(m).__name__, "name": m.name}


def metric_from_config(c):
    if isinstance(c, str):
        return metrics_module.get(c)
    cls = getattr(metrics_module, c["class_name"], None)
    if not (isinstance(cls, type) and issubclass(cls, metrics_module.Metric)):
        raise ValueError(f"Unknown metric {c!r}")
    return cls(name=c["name"])
