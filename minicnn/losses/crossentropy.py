"""Cross-entropies, each a forward and its gradient, with Keras 3's values.

- categorical and sparse: from probabilities as Keras computes them (q = p / sum(p), clipped to
  [eps, 1 - eps], the clipped entries passing no gradient), or from logits by log-sum-exp (a
  softmax head whose softmax the plan left to the loss, or ``from_logits=True``);
- binary: from probabilities clipped to [eps, 1 - eps] as Keras does; from the logits z of a
  sigmoid head with the same values (those of p = sigmoid(z), clipped) and the gradient
  p - t written for z (zero where p is clipped), which never divides by p (1 - p); from
  ``from_logits=True`` logits exactly, as TensorFlow's and PyTorch's ``*_with_logits`` are
  (Keras's numpy backend clips there too);
- binary focal: Lin et al.'s (1 - p_t)^gamma factor on the clipped binary cross-entropy.

Every value is the mean (binary) or sum (categorical) over the last axis, one per sample.
"""

from __future__ import annotations

import numpy as np

from minicnn import maths
from minicnn.backend import get_array_module
from minicnn.losses.base import EPSILON, Loss, align, batch_shape, check_numbers, sigmoid, softplus


def _check_axis(axis, owner: str) -> None:
    if axis != -1:
        raise ValueError(f"{owner}: minicnn reduces the last axis only (axis=-1). Received: axis={axis!r}")  # fmt: skip


def _check_smoothing(s, owner: str) -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 1:
        raise ValueError(f"{owner}: label_smoothing must be in [0, 1]. Received: label_smoothing={s!r}")  # fmt: skip
    return float(s)


class _Categorical(Loss):
    """The maths shared by the categorical and sparse cross-entropies, on dense targets."""

    def __init__(self, from_logits, name, reduction, dtype):
        super().__init__(name, reduction, dtype)
        self.from_logits = bool(from_logits)

    @property
    def logits_of(self):
        return None if self.from_logits else "softmax"

    def dense(self, y_true, y_pred):
        raise NotImplementedError

    def forward(self, y_true, y_pred, logits):
        xp = get_array_module(y_pred)
        t = self.dense(y_true, y_pred)
        if logits or self.from_logits:
            shifted = y_pred - y_pred.max(axis=-1, keepdims=True)  # row max 0: exp cannot overflow
            e = xp.exp(shifted)
            s = e.sum(axis=-1, keepdims=True)
            values = -(t * (shifted - xp.log(s))).sum(axis=-1)
            return values, ("logits", e / s, t)
        s = y_pred.sum(axis=-1, keepdims=True)
        q = y_pred / s
        c = xp.clip(q, EPSILON, 1 - EPSILON)
        return -(t * xp.log(c)).sum(axis=-1), ("probs", t, q, c, s)

    def backward(self, ctx):
        if ctx[0] == "logits":
            _, p, t = ctx
            return p * t.sum(axis=-1, keepdims=True) - t
        _, t, q, c, s = ctx
        gq = -t / c * ((q >= EPSILON) & (q <= 1 - EPSILON))  # clipped entries pass no gradient
        return (gq - (gq * q).sum(axis=-1, keepdims=True)) / s  # through q = p / s

    def mean_forward_backward(self, y_true, y_pred, logits):
        if not (logits or self.from_logits):
            return None
        k = y_pred.shape[-1]  # log-sum-exp over rows: the fused kernel where there is one
        loss, gz = maths.softmax_cross_entropy(
            y_pred.reshape(-1, k), self.dense(y_true, y_pred).reshape(-1, k)
        )
        return loss, gz.reshape(y_pred.shape)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


class CategoricalCrossentropy(_Categorical):
    """Targets are one-hot rows (or any distributions) of the output's shape, e.g. from
    ``to_categorical``. ``label_smoothing`` s trains on t * (1 - s) + s / K, as Keras does."""

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, name, reduction, dtype)
        self.label_smoothing = _check_smoothing(label_smoothing, "CategoricalCrossentropy")
        _check_axis(axis, "CategoricalCrossentropy")
        self.axis = axis

    def dense(self, y_true, y_pred):
        t = y_true.astype(y_pred.dtype, copy=False)
        if self.label_smoothing:
            s, k = self.label_smoothing, y_pred.shape[-1]
            t = t * y_pred.dtype.type(1 - s) + y_pred.dtype.type(s / k)
        return t

    def check_target(self, y, shape):
        units = shape[-1]
        if tuple(y.shape[1:]) != tuple(shape[1:]):
            raise ValueError(
                f"categorical_crossentropy expects one-hot targets of shape {batch_shape(shape)} "
                f"for a model with {units} outputs. Received: y shape {tuple(y.shape)}; for integer "
                f"labels use loss='sparse_categorical_crossentropy' or minicnn.utils.to_categorical(y)"
            )
        check_numbers(y, "categorical_crossentropy")

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing, "axis": self.axis}


class SparseCategoricalCrossentropy(_Categorical):
    """Targets are integer class labels: shape (N,) or (N, 1) for an output (N, K)."""

    sparse = True

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, name, reduction, dtype)
        if ignore_class is not None:
            raise ValueError(f"SparseCategoricalCrossentropy: ignore_class (a masked class) is not supported by minicnn. Received: ignore_class={ignore_class!r}")  # fmt: skip
        _check_axis(axis, "SparseCategoricalCrossentropy")
        self.ignore_class, self.axis = None, axis

    def dense(self, y_true, y_pred):
        xp = get_array_module(y_pred)
        labels = y_true.reshape(y_pred.shape[:-1]).astype(np.int64, copy=False)
        return (labels[..., None] == xp.arange(y_pred.shape[-1])).astype(y_pred.dtype)

    def check_target(self, y, shape):
        want = (y.shape[0], *shape[1:-1])
        if tuple(y.shape) not in (want, (*want, 1)):
            raise ValueError(
                f"sparse_categorical_crossentropy expects integer labels of shape {batch_shape(shape[:-1])}. "
                f"Received: y shape {tuple(y.shape)}; for one-hot targets use loss='categorical_crossentropy'"
            )
        if y.size and (
            not np.issubdtype(y.dtype, np.number)
            or not np.isfinite(y).all()
            or (y != np.round(y)).any()
        ):
            raise ValueError(
                f"sparse_categorical_crossentropy expects integer labels. Received: dtype {y.dtype} with non-integer values"
            )
        units = shape[-1]
        if y.size and (y.min() < 0 or y.max() >= units):
            raise ValueError(
                f"Labels out of range: the model has {units} outputs, so labels must be in "
                f"[0, {units - 1}]. Received: labels from {y.min()} to {y.max()}"
            )

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}


class BinaryCrossentropy(Loss):
    """-(t log p + (1 - t) log(1 - p)), the mean over the last axis; targets of the output's
    shape (0/1 or any values in [0, 1]). ``label_smoothing`` s: t * (1 - s) + s / 2."""

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_crossentropy",
        dtype=None,
    ):
        super().__init__(name, reduction, dtype)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing, type(self).__name__)
        _check_axis(axis, type(self).__name__)
        self.axis = axis

    @property
    def logits_of(self):
        return None if self.from_logits else "sigmoid"

    def targets(self, y_true, y_pred):
        t = align(y_true, y_pred)
        if self.label_smoothing:
            s = self.label_smoothing
            t = t * y_pred.dtype.type(1 - s) + y_pred.dtype.type(0.5 * s)
        return t

    def forward(self, y_true, y_pred, logits):
        xp = get_array_module(y_pred)
        t, k = self.targets(y_true, y_pred), y_pred.shape[-1]
        if self.from_logits:  # exact: softplus(z) - z t
            values = (softplus(y_pred) - y_pred * t).mean(axis=-1)
            return values, (sigmoid(y_pred) - t, k)
        lo, hi = y_pred.dtype.type(EPSILON), y_pred.dtype.type(1 - EPSILON)
        if logits:  # a sigmoid head's logits z: Keras's values on sigmoid(z), clipped
            p = sigmoid(y_pred)
            kept = (p >= lo) & (p <= hi)
            c = xp.clip(p, lo, hi)
            values = -(t * xp.log(c) + (1 - t) * xp.log(1 - c)).mean(axis=-1)
            return values, ((p - t) * kept, k)  # d/dz of it, without dividing by p (1 - p)
        kept = (y_pred >= lo) & (y_pred <= hi)
        c = xp.clip(y_pred, lo, hi)
        values = -(t * xp.log(c) + (1 - t) * xp.log(1 - c)).mean(axis=-1)
        return values, ((-t / c + (1 - t) / (1 - c)) * kept, k)

    def backward(self, ctx):
        g, k = ctx
        return g / g.dtype.type(k)

    def get_config(self):
        return {
            **super().get_config(),
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


class BinaryFocalCrossentropy(BinaryCrossentropy):
    """Lin et al.'s focal loss: (1 - p_t)^gamma * bce, p_t = t p + (1 - t)(1 - p), with
    ``apply_class_balancing`` weighting class 1 by alpha and class 0 by 1 - alpha."""

    logits_of = None  # Keras takes sigmoid(z) first: nothing to gain from a head's logits

    def __init__(
        self,
        apply_class_balancing=False,
        alpha=0.25,
        gamma=2.0,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_focal_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)
        self.apply_class_balancing = bool(apply_class_balancing)
        self.alpha, self.gamma = float(alpha), float(gamma)
        if self.gamma < 0:
            raise ValueError(f"BinaryFocalCrossentropy: gamma must be >= 0. Received: gamma={gamma!r}")  # fmt: skip

    def forward(self, y_true, y_pred, logits):
        xp = get_array_module(y_pred)
        dt = y_pred.dtype.type
        t, k = self.targets(y_true, y_pred), y_pred.shape[-1]
        p = sigmoid(y_pred) if self.from_logits else y_pred
        lo, hi = dt(EPSILON), dt(1 - EPSILON)
        c = xp.clip(p, lo, hi)
        bce = -(t * xp.log(c) + (1 - t) * xp.log(1 - c))
        m = 1 - (t * p + (1 - t) * (1 - p))  # 1 - p_t
        focal = m ** dt(self.gamma)
        w = (
            t * dt(self.alpha) + (1 - t) * dt(1 - self.alpha)
            if self.apply_class_balancing
            else None
        )
        values = focal * bce if w is None else w * focal * bce
        gbce = (-t / c + (1 - t) / (1 - c)) * ((p >= lo) & (p <= hi))
        gfocal = -dt(self.gamma) * m ** dt(self.gamma - 1) * (2 * t - 1) if self.gamma else 0
        g = gfocal * bce + focal * gbce
        g = g if w is None else w * g
        if self.from_logits:
            g = g * p * (1 - p)
        return values.mean(axis=-1), (g, k)

    def get_config(self):
        return {
            **super().get_config(),
            "apply_class_balancing": self.apply_class_balancing,
            "alpha": self.alpha,
            "gamma": self.gamma,
        }
