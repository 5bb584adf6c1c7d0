"""Regression losses, Keras 3's formulas, each value the mean over the last axis (cosine
similarity: the sum), with the gradient written beside its forward.

With d = y_pred - y_true and K the size of the last axis:

    mean_squared_error              mean(d^2)                        g = 2 d / K
    mean_absolute_error             mean(|d|)                        g = sign(d) / K
    mean_absolute_percentage_error  100 mean(|d| / max(|t|, eps))    g = 100 sign(d) / max(|t|, eps) / K
    mean_squared_logarithmic_error  mean((log(max(p, eps) + 1) - log(max(t, eps) + 1))^2)
    huber                           mean(d^2 / 2 if |d| <= delta else delta |d| - delta^2 / 2)
    log_cosh                        mean(log(cosh(d)))               g = tanh(d) / K
    cosine_similarity               -sum(t / |t| * p / |p|)          (|x| at least eps, as Keras)
"""

from __future__ import annotations

import math

from minicnn.backend import get_array_module
from minicnn.losses.base import EPSILON, Loss, align, softplus


class _Elementwise(Loss):
    """A loss that is the mean over the last axis of a function of (y_true, y_pred) entries:
    subclasses give ``elements(t, p) -> (values, d values / d p)``."""

    def __init__(self, reduction, name, dtype):
        super().__init__(name, reduction, dtype)

    def forward(self, y_true, y_pred, logits):
        values, g = self.elements(align(y_true, y_pred), y_pred)
        return values.mean(axis=-1), (g, y_pred.shape[-1])

    def backward(self, ctx):
        g, k = ctx
        return g / g.dtype.type(k)


class MeanSquaredError(_Elementwise):
    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(reduction, name, dtype)

    def elements(self, t, p):
        d = p - t
        return d * d, 2 * d


class MeanAbsoluteError(_Elementwise):
    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(reduction, name, dtype)

    def elements(self, t, p):
        d = p - t
        return get_array_module(d).abs(d), get_array_module(d).sign(d)


class MeanAbsolutePercentageError(_Elementwise):
    def __init__(
        self, reduction="sum_over_batch_size", name="mean_absolute_percentage_error", dtype=None
    ):
        super().__init__(reduction, name, dtype)

    def elements(self, t, p):
        xp = get_array_module(p)
        scale = p.dtype.type(100) / xp.maximum(xp.abs(t), p.dtype.type(EPSILON))
        d = p - t
        return xp.abs(d) * scale, xp.sign(d) * scale


class MeanSquaredLogarithmicError(_Elementwise):
    def __init__(
        self, reduction="sum_over_batch_size", name="mean_squared_logarithmic_error", dtype=None
    ):
        super().__init__(reduction, name, dtype)

    def elements(self, t, p):
        xp = get_array_module(p)
        eps = p.dtype.type(EPSILON)
        q = xp.maximum(p, eps) + 1
        d = xp.log(q) - xp.log(xp.maximum(t, eps) + 1)
        return d * d, 2 * d / q * (p >= eps)  # max(p, eps) passes the gradient where p >= eps


class Huber(_Elementwise):
    """Quadratic within ``delta`` of the target, linear beyond it."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(reduction, name, dtype)
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta < 0:
            raise ValueError(f"Huber: delta must be a number >= 0. Received: delta={delta!r}")
        self.delta = float(delta)

    def elements(self, t, p):
        xp = get_array_module(p)
        d = p - t
        a, delta, half = xp.abs(d), p.dtype.type(self.delta), p.dtype.type(0.5)
        small = a <= delta
        values = xp.where(small, half * d * d, delta * a - half * delta * delta)
        return values, xp.where(small, d, delta * xp.sign(d))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


class LogCosh(_Elementwise):
    """log(cosh(d)) = d + softplus(-2 d) - log 2, which never overflows."""

    def __init__(self, reduction="sum_over_batch_size", name="log_cosh", dtype=None):
        super().__init__(reduction, name, dtype)

    def elements(self, t, p):
        d = p - t
        values = d + softplus(-2 * d) - p.dtype.type(math.log(2.0))
        return values, get_array_module(d).tanh(d)


class CosineSimilarity(Loss):
    """-cos(y_true, y_pred) over the last axis: -1 where they point the same way."""

    def __init__(self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None):  # fmt: skip
        super().__init__(name, reduction, dtype)
        if axis != -1:
            raise ValueError(f"CosineSimilarity: minicnn reduces the last axis only (axis=-1). Received: axis={axis!r}")  # fmt: skip
        self.axis = axis

    def forward(self, y_true, y_pred, logits):
        t = align(y_true, y_pred)
        th, _ = _normalize(t)
        ph, inv = _normalize(y_pred)
        return -(th * ph).sum(axis=-1), (th, ph, inv, y_pred)

    def backward(self, ctx):
        xp = get_array_module(ctx[0])
        th, ph, inv, p = ctx
        cap = p.dtype.type(1 / EPSILON)
        sq = (p * p).sum(axis=-1, keepdims=True)
        # inside the cap, p / |p| has Jacobian (I - ph ph^T) / |p|; at the cap it is I * cap
        through = -(th - (th * ph).sum(axis=-1, keepdims=True) * ph) * inv
        return xp.where(sq * cap * cap > 1, through, -th * cap)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _normalize(x):
    """Keras's ops.normalize: x * min(1 / |x|, 1 / eps) over the last axis; (x^, the factor)."""
    xp = get_array_module(x)
    sq = (x * x).sum(axis=-1, keepdims=True)
    cap = x.dtype.type(1 / EPSILON)
    inv = xp.where(sq * cap * cap > 1, 1 / xp.sqrt(xp.maximum(sq, x.dtype.type(1e-38))), cap)
    return x * inv, inv
