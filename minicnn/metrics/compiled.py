"""What ``compile(metrics=..., weighted_metrics=...)`` makes, as Keras 3's ``CompileMetrics``
(``keras/src/trainers/compile_utils.py``) has it:

- one output: every metric given (flattened) applies to it; several: a list of one entry (a
  metric or a list) per output, or a dict by output name;
- "accuracy"/"acc" become BinaryAccuracy for an output of one unit, else
  SparseCategoricalAccuracy when the targets have one axis fewer than the output (or a last
  axis of 1), else CategoricalAccuracy: decided from the targets' shape on the first fit or
  evaluate, as Keras decides at its first batch, and kept;
- a metric given as a string is logged under that string, an object under its ``name``; with
  several outputs as ``<output>_<name>``; a name met again gets ``_1``, ``_2``, ...; a weighted
  metric whose name an unweighted one has is ``weighted_<name>``;
- weighted metrics receive the batch's sample weights, the others none.
"""

from __future__ import annotations

from minicnn import metrics as metrics_module
from minicnn.metrics.accuracy import BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy
from minicnn.metrics.base import Metric


def _flatten(value) -> list:
    if isinstance(value, dict):
        return [m for k in sorted(value) for m in _flatten(value[k])]
    if isinstance(value, (list, tuple)):
        return [m for v in value for m in _flatten(v)]
    return [] if value is None else [value]


class _Slot:
    """One metric of one output: what the user gave, the metric, its log name."""

    def __init__(self, given, output: int):
        self.given, self.output = given, output
        self.auto = isinstance(given, str) and given.lower() in ("accuracy", "acc")
        # "accuracy" is CategoricalAccuracy until the first fit or evaluate sees the targets
        self.metric = CategoricalAccuracy() if self.auto else metrics_module.get(given)
        self.name = given if isinstance(given, str) else self.metric.name
        self.metric.name = self.name
        self.built = False

    def build(self, y_shape: tuple, shape: tuple) -> None:
        """Resolve "accuracy" from the shapes of the targets and the output (once)."""
        if self.auto and not self.built:
            binary = shape[-1] == 1
            sparse = len(y_shape) < len(shape) or (y_shape[-1] == 1 and shape[-1] > 1)
            cls = BinaryAccuracy if binary else SparseCategoricalAccuracy if sparse else CategoricalAccuracy  # fmt: skip
            self.metric = cls(name=self.name)
            self.built = True
        check = getattr(self.metric, "check_target", None)
        if check is not None:
            check(y_shape, shape)
        elif type(self.metric).__module__.startswith("minicnn.metrics."):
            _probe(self.metric, y_shape, shape)


def _probe(metric, y_shape: tuple, shape: tuple) -> None:
    """Run a copy of a built-in metric on two samples of zeros of these shapes, so a pair its
    maths cannot take fails here, naming it, before anything trains."""
    import copy

    import numpy as np

    y = np.zeros((2, *y_shape[1:]), np.float32)  # two: one sample broadcasts against anything
    p = np.full((2, *shape[1:]), 0.5, np.float32)
    try:
        copy.deepcopy(metric).update_state(y, p)
    except (ValueError, IndexError) as e:
        raise ValueError(f'Metric "{metric.name}" ({type(metric).__name__}) cannot read targets of shape {tuple(y_shape)} against an output of shape {tuple(shape)}: {e}') from None  # fmt: skip


class CompileMetrics:
    def __init__(self, output_names: list[str], metrics=None, weighted_metrics=None):
        self.output_names = list(output_names)
        self.unweighted = self._slots(metrics, "metrics")
        self.weighted = self._slots(weighted_metrics, "weighted_metrics")
        self.names = self._names()
        self._checked: set = set()  # the target shapes (past the batch axis) already checked

    def _slots(self, value, what: str) -> list[list[_Slot]]:
        names, n = self.output_names, len(self.output_names)
        if not value:
            return [[] for _ in names]
        if not isinstance(value, (list, tuple, dict)):
            raise ValueError(f"Expected `{what}` argument to be a list, tuple, or dict. Received instead: {what}={value!r} of type {type(value)}")  # fmt: skip
        if isinstance(value, dict):
            extra = sorted(set(value) - set(names))
            if extra:
                raise ValueError(f"compile(): {what} names outputs {extra}, but the model's outputs are {names}")  # fmt: skip
            if n > 1:
                return [[_Slot(m, i) for m in _flatten(value.get(k))] for i, k in enumerate(names)]  # fmt: skip
        if n == 1:
            return [[_Slot(m, 0) for m in _flatten(value)]]
        if len(value) != n:
            raise ValueError(
                f"Invalid `{what}`. `{what}` should contain metrics objects and either be a dict "
                f"or a list matching the output names of the functional model {names} or match "
                f"the output structure of the model: {['X'] * n}. Received: {what}={value!r}"
            )
        return [[_Slot(m, i) for m in _flatten(v)] for i, v in enumerate(value)]

    def _names(self) -> list[str]:
        """Each slot's log name, unweighted then weighted, by Keras's CompileMetrics.result."""
        prefix = len(self.output_names) > 1
        counters: dict[str, int] = {}
        out = []
        for slots in self.unweighted:
            for s in slots:
                name = f"{self.output_names[s.output]}_{s.name}" if prefix else s.name
                if name in counters:
                    counters[name] += 1
                    name = f"{name}_{counters[name] - 1}"
                else:
                    counters[name] = 1
                out.append(name)
        for slots in self.weighted:
            for s in slots:
                name = f"{self.output_names[s.output]}_{s.name}" if prefix else s.name
                if name not in counters:
                    counters[name] = 1
                else:
                    name = f"weighted_{s.name}"
                    name = f"{self.output_names[s.output]}_{name}" if prefix else name
                    if name not in counters:
                        counters[name] = 1
                    else:
                        counters[name] += 1
                        name = f"{name}_{counters[name] - 1}"
                out.append(name)
        return out

    def slots(self) -> list[tuple[_Slot, bool]]:
        """(slot, weighted) in log-name order."""
        return [(s, False) for ss in self.unweighted for s in ss] + [(s, True) for ss in self.weighted for s in ss]  # fmt: skip

    def outputs_with_metrics(self) -> set[int]:
        return {s.output for s, _ in self.slots()}

    def metrics(self) -> list[Metric]:
        """The metric objects, in log-name order."""
        return [s.metric for s, _ in self.slots()]

    # -- a pass over batches ------------------------------------------------------------------

    def build(self, y_shapes: list, shapes: list) -> None:
        """Before a fit or evaluate changes anything: resolve and check against the targets."""
        key = tuple(None if y is None else tuple(y[1:]) for y in y_shapes)
        if key in self._checked:
            return
        for s, _ in self.slots():
            s.build(tuple(y_shapes[s.output]), tuple(shapes[s.output]))
        self._checked.add(key)

    def reset(self, xp) -> None:
        """At the start of each epoch and evaluation: state on ``xp``'s device, at zero."""
        for m in self.metrics():
            m.to(xp)
            m.reset_state()

    def update(self, outs: list, ts: list, ws: list, logits: tuple, probabilities) -> None:
        """One batch: ``probabilities(out, activation)`` turns a head's logits into what the
        model outputs, made once per output and only for a metric that needs it."""
        made: dict[int, object] = {}
        for s, weighted in self.slots():
            i, lg = s.output, logits[s.output]
            y_pred = outs[i]
            if lg and lg not in getattr(s.metric, "same_on_logits", ()):
                if i not in made:
                    made[i] = probabilities(outs[i], lg)
                y_pred = made[i]
            s.metric.update_state(ts[i], y_pred, sample_weight=ws[i] if weighted else None)

    def results(self) -> dict:
        """Each metric's result by log name, as Python floats (a read of the device); a dict
        result is flattened in, an array of several values kept (Keras's pythonify_logs)."""
        import numpy as np

        logs = {}
        for (s, _), name in zip(self.slots(), self.names):
            value = s.metric.result()
            if isinstance(value, dict):
                logs.update({k: _python(v, np) for k, v in value.items()})
            else:
                logs[name] = _python(value, np)
        return logs

    def get_config(self) -> dict:
        """Per output, each kind's entries as compile can take them again."""
        return {
            "metrics": [[_config(s.given) for s in ss] for ss in self.unweighted],
            "weighted_metrics": [[_config(s.given) for s in ss] for ss in self.weighted],
        }


def _python(value, np):
    value = (
        value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else value
    )
    value = (
        value.get()
        if hasattr(value, "get") and not isinstance(value, (np.ndarray, dict))
        else value
    )
    a = np.asarray(value)
    return float(a) if a.size == 1 else a


def _config(value):
    """A metrics= entry as compile can take it again: a string kept, a metric serialized."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Metric):
        return metrics_module.serialize(value)
    return {"class_name": getattr(value, "__name__", type(value).__name__), "config": {}}


def from_config(value):
    """The inverse of ``_config`` for one entry: a string stays one (compile resolves it)."""
    if isinstance(value, dict):
        return metrics_module.deserialize(value)
    return value
