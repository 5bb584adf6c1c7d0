"""The losses as metrics, Keras 3's (``regression_metrics.py``, ``probabilistic_metrics.py``,
``hinge_metrics.py``): each loss's per-sample values averaged over the samples seen, with the
metric's own argument order (name first, then dtype) and names.
"""

from __future__ import annotations

from minicnn import losses
from minicnn.backend import get_array_module
from minicnn.losses.regression import _normalize
from minicnn.metrics.base import Mean, MeanMetricWrapper, as_array, squeeze_or_expand


class MeanSquaredError(MeanMetricWrapper):
    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(losses.mean_squared_error, name, dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(losses.mean_absolute_error, name, dtype)


class MeanAbsolutePercentageError(MeanMetricWrapper):
    def __init__(self, name="mean_absolute_percentage_error", dtype=None):
        super().__init__(losses.mean_absolute_percentage_error, name, dtype)


class MeanSquaredLogarithmicError(MeanMetricWrapper):
    def __init__(self, name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(losses.mean_squared_logarithmic_error, name, dtype)


class LogCoshError(MeanMetricWrapper):
    def __init__(self, name="logcosh", dtype=None):
        super().__init__(losses.log_cosh, name, dtype)


def cosine_similarity(y_true, y_pred, axis=-1):
    """The metric's cosine: +1 where they point the same way (the loss is its negative)."""
    xp = get_array_module(y_pred)
    y_pred = xp.asarray(y_pred)
    y_true, y_pred = squeeze_or_expand(xp.asarray(y_true).astype(y_pred.dtype), y_pred)
    return (_normalize(y_true)[0] * _normalize(y_pred)[0]).sum(axis=-1)


class CosineSimilarity(MeanMetricWrapper):
    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        if axis != -1:
            raise ValueError(f"CosineSimilarity: minicnn reduces the last axis only (axis=-1). Received: axis={axis!r}")  # fmt: skip
        super().__init__(cosine_similarity, name, dtype, axis=axis)


class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean of the squared errors."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = as_array(y_pred, self.total.value, self.total.dtype)
        y_true, y_pred = squeeze_or_expand(as_array(y_true, y_pred, y_pred.dtype), y_pred)
        d = y_pred - y_true
        super().update_state(d * d, sample_weight=sample_weight)

    def result(self):
        return get_array_module(self.total.value).sqrt(super().result())


class KLDivergence(MeanMetricWrapper):
    def __init__(self, name="kl_divergence", dtype=None):
        super().__init__(losses.kl_divergence, name, dtype)


class Poisson(MeanMetricWrapper):
    def __init__(self, name="poisson", dtype=None):
        super().__init__(losses.poisson, name, dtype)


class BinaryCrossentropy(MeanMetricWrapper):
    def __init__(self, name="binary_crossentropy", dtype=None, from_logits=False, label_smoothing=0):  # fmt: skip
        super().__init__(losses.binary_crossentropy, name, dtype, from_logits=from_logits, label_smoothing=label_smoothing)  # fmt: skip
        self.from_logits, self.label_smoothing = from_logits, label_smoothing


class CategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name="categorical_crossentropy", dtype=None, from_logits=False, label_smoothing=0, axis=-1):  # fmt: skip
        super().__init__(losses.categorical_crossentropy, name, dtype, from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)  # fmt: skip
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    def __init__(self, name="sparse_categorical_crossentropy", dtype=None, from_logits=False, ignore_class=None, axis=-1):  # fmt: skip
        super().__init__(losses.sparse_categorical_crossentropy, name, dtype, from_logits=from_logits, ignore_class=ignore_class, axis=axis)  # fmt: skip
        self.from_logits, self.ignore_class, self.axis = from_logits, ignore_class, axis
        losses.SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis)  # checks them


class Hinge(MeanMetricWrapper):
    def __init__(self, name="hinge", dtype=None):
        super().__init__(losses.hinge, name, dtype)


class SquaredHinge(MeanMetricWrapper):
    def __init__(self, name="squared_hinge", dtype=None):
        super().__init__(losses.squared_hinge, name, dtype)


class CategoricalHinge(MeanMetricWrapper):
    def __init__(self, name="categorical_hinge", dtype=None):
        super().__init__(losses.categorical_hinge, name, dtype)
