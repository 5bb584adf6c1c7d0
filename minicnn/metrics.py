"""Metrics minicnn computes while training: accuracy, under Keras's names. ``compile`` takes a
name ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy") or one of these
classes; each is reported as "accuracy" (the fraction of samples whose argmax is the label)."""

from __future__ import annotations

from minicnn._missing import not_implemented

NAMES = ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy")


class Accuracy:
    name = "accuracy"

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or type(self).name

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CategoricalAccuracy(Accuracy):
    name = "categorical_accuracy"


class SparseCategoricalAccuracy(Accuracy):
    name = "sparse_categorical_accuracy"


def get(identifier) -> str:
    """The name a metric is reported under; ValueError for one minicnn does not compute."""
    if isinstance(identifier, Accuracy) or identifier in NAMES:
        return "accuracy"
    raise ValueError(
        f"Unknown metric: minicnn computes accuracy only, named one of {NAMES} or given as "
        f"minicnn.metrics.CategoricalAccuracy(). Received: {identifier!r}"
    )


__getattr__ = not_implemented(
    "minicnn.metrics",
    "minicnn computes accuracy only (Accuracy, CategoricalAccuracy, SparseCategoricalAccuracy)",
)
