"""Kullback-Leibler divergence and the Poisson loss, Keras 3's formulas with their gradients.

kl_divergence   sum(t log(t / p)), t and p clipped to [eps, 1]     g = -t / p where p is not clipped
poisson         mean(p - t log(p + eps))                           g = (1 - t / (p + eps)) / K
"""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.losses.base import EPSILON, Loss, align


class KLDivergence(Loss):
    """Targets and predictions are distributions over the last axis (clipped to [eps, 1])."""

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None):
        super().__init__(name, reduction, dtype)

    def forward(self, y_true, y_pred, logits):
        xp = get_array_module(y_pred)
        eps = y_pred.dtype.type(EPSILON)
        t = xp.clip(align(y_true, y_pred), eps, 1)
        p = xp.clip(y_pred, eps, 1)
        kept = (y_pred >= eps) & (y_pred <= 1)
        return (t * xp.log(t / p)).sum(axis=-1), (-t / p * kept,)

    def backward(self, ctx):
        return ctx[0]


class Poisson(Loss):
    """For counts: y_pred is the predicted rate (e.g. from an exponential or softplus head)."""

    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None):
        super().__init__(name, reduction, dtype)

    def forward(self, y_true, y_pred, logits):
        xp = get_array_module(y_pred)
        t = align(y_true, y_pred)
        q = y_pred + y_pred.dtype.type(EPSILON)
        values = (y_pred - t * xp.log(q)).mean(axis=-1)
        return values, ((1 - t / q) / y_pred.dtype.type(y_pred.shape[-1]),)

    def backward(self, ctx):
        return ctx[0]
