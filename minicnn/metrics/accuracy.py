"""Accuracies, Keras 3's (``accuracy_metrics.py``): a per-sample function of (y_true, y_pred)
averaged over the samples seen.

- ``accuracy``: y_pred == y_true, entry by entry;
- ``binary_accuracy``: (y_pred > threshold) == y_true, entry by entry (0/1 targets);
- ``categorical_accuracy``: argmax(y_pred) == argmax(y_true) (one-hot targets);
- ``sparse_categorical_accuracy``: argmax(y_pred) == y_true (integer labels);
- ``top_k_categorical_accuracy``, ``sparse_top_k_categorical_accuracy``: the target is among
  the k largest outputs, ties counted in as TensorFlow's ``in_top_k`` counts them (fewer than k
  outputs are larger than the target's).

``same_on_logits``: the activations whose input gives the same values (argmax and ranks do not
change under a softmax), so a head that leaves its softmax to the loss is read as it is.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import floatx, get_array_module
from minicnn.metrics.base import MeanMetricWrapper, squeeze_or_expand


def _pred(y_pred):
    xp = get_array_module(y_pred)
    y_pred = xp.asarray(y_pred)
    return y_pred if y_pred.dtype.kind == "f" else y_pred.astype(floatx())


def accuracy(y_true, y_pred):
    y_pred = _pred(y_pred)
    y_true, y_pred = squeeze_or_expand(get_array_module(y_pred).asarray(y_true).astype(y_pred.dtype), y_pred)  # fmt: skip
    return (y_true == y_pred).astype(floatx())


def binary_accuracy(y_true, y_pred, threshold=0.5):
    y_pred = _pred(y_pred)
    y_true, y_pred = squeeze_or_expand(get_array_module(y_pred).asarray(y_true), y_pred)
    return (y_true == (y_pred > threshold).astype(y_true.dtype)).astype(floatx())


def categorical_accuracy(y_true, y_pred):
    y_pred = _pred(y_pred)
    y_true = get_array_module(y_pred).asarray(y_true)
    return (y_true.argmax(axis=-1) == y_pred.argmax(axis=-1)).astype(floatx())


def sparse_categorical_accuracy(y_true, y_pred):
    y_pred = _pred(y_pred)
    y_true = get_array_module(y_pred).asarray(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    return (y_true.astype(y_pred.dtype) == y_pred.argmax(axis=-1)).astype(floatx())


def _in_top_k(labels, y_pred, k):
    """Whether each row's label is among its k largest entries (ties counted in)."""
    xp = get_array_module(y_pred)
    idx = labels.astype(np.int64)[..., None]
    target = xp.take_along_axis(y_pred, idx, axis=-1)
    return (y_pred > target).sum(axis=-1) < k


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    y_pred = _pred(y_pred)
    y_true = get_array_module(y_pred).asarray(y_true)
    return _in_top_k(y_true.argmax(axis=-1), y_pred, k).astype(floatx())


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    y_pred = _pred(y_pred)
    y_true = get_array_module(y_pred).asarray(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    if from_sorted_ids:  # y_pred holds class ids, best first
        return (y_true[..., None] == y_pred[..., :k]).any(axis=-1).astype(floatx())
    return _in_top_k(y_true, y_pred, k).astype(floatx())


class _Wrapper(MeanMetricWrapper):
    """A built-in per-sample metric: its function, its settings in its config."""

    fn = None
    same_on_logits: tuple = ()
    target: str | None = None  # "dense" (the output's shape) or "sparse" (labels), for checks

    def __init__(self, name, dtype, **kwargs):
        super().__init__(type(self).fn, name=name, dtype=dtype, **kwargs)

    def check_target(self, y_shape: tuple, shape: tuple) -> None:
        """Raise if targets of ``y_shape`` cannot be read against an output of ``shape``."""
        n, want = y_shape[0], None
        if self.target == "dense" and tuple(y_shape[1:]) != tuple(shape[1:]):
            want = f"one-hot targets of shape {(n, *shape[1:])}"
        if self.target == "sparse" and tuple(y_shape) not in ((n, *shape[1:-1]), (n, *shape[1:-1], 1)):  # fmt: skip
            want = f"integer labels of shape {(n, *shape[1:-1])}"
        if want:
            raise ValueError(f'Metric "{self.name}" ({type(self).__name__}) expects {want}. Received: y shape {tuple(y_shape)}')  # fmt: skip


class Accuracy(_Wrapper):
    fn = staticmethod(accuracy)

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(name, dtype)


class BinaryAccuracy(_Wrapper):
    fn = staticmethod(binary_accuracy)

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        super().__init__(name, dtype, threshold=float(threshold))
        self.threshold = float(threshold)


class CategoricalAccuracy(_Wrapper):
    fn = staticmethod(categorical_accuracy)
    same_on_logits = ("softmax",)
    target = "dense"

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name, dtype)


class SparseCategoricalAccuracy(_Wrapper):
    fn = staticmethod(sparse_categorical_accuracy)
    same_on_logits = ("softmax",)
    target = "sparse"

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name, dtype)


class TopKCategoricalAccuracy(_Wrapper):
    fn = staticmethod(top_k_categorical_accuracy)
    same_on_logits = ("softmax",)
    target = "dense"

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        super().__init__(name, dtype, k=_k(k))
        self.k = _k(k)


class SparseTopKCategoricalAccuracy(_Wrapper):
    fn = staticmethod(sparse_top_k_categorical_accuracy)
    target = "sparse"

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False):  # fmt: skip
        super().__init__(name, dtype, k=_k(k), from_sorted_ids=bool(from_sorted_ids))
        self.k, self.from_sorted_ids = _k(k), bool(from_sorted_ids)
        self.same_on_logits = () if from_sorted_ids else ("softmax",)
        self.target = None if from_sorted_ids else "sparse"


def _k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int. Received: k={k!r}")
    return int(k)
