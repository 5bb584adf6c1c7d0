"""Metrics computed while training and evaluating, with Keras's names and meanings.

Each metric scores one batch of one output as a sum and a count, on the device (reading a value
would sync a GPU every batch); the loop adds them up and logs sum / count under the metric's
name: the string it was given ("acc" is logged as "acc"), or the object's ``name``.

- ``"accuracy"``/``"acc"``: as Keras resolves them for a cross-entropy loss: the fraction of
  samples whose largest output is the label (categorical or sparse alike);
- ``CategoricalAccuracy``, ``SparseCategoricalAccuracy``: the same, by class;
- ``Accuracy``: Keras's exact-match accuracy, the fraction of entries where y_pred == y_true.
"""

from __future__ import annotations

from minicnn._missing import not_implemented


class Metric:
    """A metric of one output: ``batch(out, t, labels) -> (sum, count)`` for one batch, where
    ``t`` are the dense targets and ``labels`` their class indices."""

    default_name = "metric"

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or self.default_name

    def batch(self, out, t, labels):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class CategoricalAccuracy(Metric):
    """The fraction of samples whose largest output is the target's largest entry."""

    default_name = "categorical_accuracy"

    def batch(self, out, t, labels):
        return (out.argmax(axis=-1) == labels).sum(), out.shape[0]


class SparseCategoricalAccuracy(CategoricalAccuracy):
    """The fraction of samples whose largest output is the integer label."""

    default_name = "sparse_categorical_accuracy"


class Accuracy(Metric):
    """Keras's ``Accuracy``: how often predictions equal the targets, entry by entry."""

    default_name = "accuracy"

    def batch(self, out, t, labels):
        per_sample = (out == t).reshape(out.shape[0], -1).mean(axis=-1)
        return per_sample.sum(), out.shape[0]


NAMES = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


def get(identifier) -> Metric:
    """A metric from a name or an instance; a ValueError names anything else."""
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc", "categorical_accuracy"):
        return CategoricalAccuracy(name=identifier)
    if identifier == "sparse_categorical_accuracy":
        return SparseCategoricalAccuracy(name=identifier)
    raise ValueError(
        f"Unknown metric: minicnn computes the accuracies, named one of {NAMES} or given as "
        f"minicnn.metrics.Accuracy(), CategoricalAccuracy(), SparseCategoricalAccuracy(). "
        f"Received: {identifier!r}"
    )


__getattr__ = not_implemented(
    "minicnn.metrics",
    "minicnn computes the accuracies (Accuracy, CategoricalAccuracy, SparseCategoricalAccuracy)",
)
