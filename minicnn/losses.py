"""Cross-entropy losses, mean over the batch, with Keras's names.

A loss sees the model's output ``out`` (N, K) and a dense target ``t`` (N, K): one-hot rows, or any
distribution. With ``logits=True`` (the model ended in softmax and stopped before it, or the loss
was built with ``from_logits=True``) it computes log-softmax by log-sum-exp; otherwise it reads
``out`` as probabilities, normalised and clipped to [eps, 1 - eps] as Keras does.
"""

from __future__ import annotations

import numpy as np

from minicnn import maths
from minicnn.backend import get_array_module

EPSILON = 1e-7  # Keras's backend.epsilon(), the clip of probabilities


def _ce_from_probs(p, t):
    """Keras's cross-entropy on probabilities: q = p / sum(p), clipped; gradient through both."""
    xp = get_array_module(p)
    n = p.shape[0]
    s = p.sum(axis=-1, keepdims=True)
    q = p / s
    c = xp.clip(q, EPSILON, 1 - EPSILON)
    loss = -(t * xp.log(c)).sum() / n
    gq = -t / c * ((q >= EPSILON) & (q <= 1 - EPSILON)) / n  # clipped entries pass no gradient
    gp = (gq - (gq * q).sum(axis=-1, keepdims=True)) / s  # through the normalisation q = p / s
    return loss, gp


class Loss:
    name = "loss"
    sparse = False

    def __init__(self, from_logits: bool = False, reduction="sum_over_batch_size", name=None):
        if reduction != "sum_over_batch_size":
            raise ValueError(
                f"{type(self).__name__}: minicnn averages the loss over the batch only "
                f'(reduction="sum_over_batch_size"). Received: reduction={reduction!r}'
            )
        self.from_logits = bool(from_logits)

    @property
    def takes_logits_of_softmax(self) -> bool:
        """A model ending in softmax may hand this loss its logits instead (log-sum-exp)."""
        return not self.from_logits

    def check_target(self, y: np.ndarray, units: int) -> None:
        """Raise a ValueError if ``y`` cannot be targets for an output of ``units`` classes."""

    def target(self, y, units: int, xp, dtype):
        """The dense (N, K) target on ``xp`` for the checked labels ``y``."""
        return xp.asarray(y, dtype=dtype)

    def labels(self, t):
        """The class index of each target row, for accuracy."""
        return t.argmax(axis=-1)

    def forward_backward(self, out, t, logits: bool):
        """(mean loss as a 0-d array, gradient with respect to ``out``)."""
        if logits or self.from_logits:
            return maths.softmax_cross_entropy(out, t)
        return _ce_from_probs(out, t)

    def __call__(self, y_true, y_pred) -> float:
        """Keras-style direct use: the mean loss of probabilities (or logits) ``y_pred``."""
        y_pred = np.asarray(y_pred)
        self.check_target(np.asarray(y_true), y_pred.shape[-1])
        t = self.target(np.asarray(y_true), y_pred.shape[-1], np, y_pred.dtype)
        return float(self.forward_backward(y_pred, t, logits=False)[0])

    def get_config(self) -> dict:
        return {"name": self.name, "from_logits": self.from_logits}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class CategoricalCrossentropy(Loss):
    """Targets are one-hot rows (N, K), e.g. from ``to_categorical``. ``label_smoothing`` s
    trains on t * (1 - s) + s / K instead, as Keras does."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs):
        super().__init__(from_logits, **kwargs)
        if not 0 <= label_smoothing <= 1:
            raise ValueError(
                f"CategoricalCrossentropy: label_smoothing must be in [0, 1]. "
                f"Received: label_smoothing={label_smoothing!r}"
            )
        self.label_smoothing = float(label_smoothing)

    def target(self, y, units, xp, dtype):
        t = xp.asarray(y, dtype=dtype)
        if self.label_smoothing:
            s = self.label_smoothing
            t = t * dtype_type(dtype)(1 - s) + dtype_type(dtype)(s / units)
        return t

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}

    def check_target(self, y, units):
        if y.ndim != 2 or y.shape[1] != units:
            raise ValueError(
                f"categorical_crossentropy expects one-hot targets of shape (N, {units}) for a "
                f"model with {units} outputs. Received: y shape {y.shape}; for integer labels use "
                f"loss='sparse_categorical_crossentropy' or minicnn.utils.to_categorical(y)"
            )
        if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
            raise ValueError("categorical_crossentropy: targets contain NaN or inf")


class SparseCategoricalCrossentropy(Loss):
    """Targets are integer class labels (N,) or (N, 1)."""

    name = "sparse_categorical_crossentropy"
    sparse = True

    def check_target(self, y, units):
        if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
            raise ValueError(
                f"sparse_categorical_crossentropy expects integer labels of shape (N,). "
                f"Received: y shape {y.shape}; for one-hot targets use loss='categorical_crossentropy'"
            )
        if y.size and (
            not np.issubdtype(y.dtype, np.number)
            or not np.isfinite(y).all()
            or (y != np.round(y)).any()
        ):
            raise ValueError(
                f"sparse_categorical_crossentropy expects integer labels. Received: dtype {y.dtype} with non-integer values"
            )
        if y.size and (y.min() < 0 or y.max() >= units):
            raise ValueError(
                f"Labels out of range: the model has {units} outputs, so labels must be in "
                f"[0, {units - 1}]. Received: labels from {y.min()} to {y.max()}"
            )

    def target(self, y, units, xp, dtype):
        labels = xp.asarray(y).reshape(-1).astype(np.int64)
        t = xp.zeros((labels.shape[0], units), dtype=dtype)
        t[xp.arange(labels.shape[0]), labels] = 1
        return t


_ALL = {cls.name: cls for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy)}


def get(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return _ALL[identifier.lower()]()
    raise ValueError(f"Unknown loss: expected one of {sorted(_ALL)}. Received: loss={identifier!r}")


def deserialize(config: dict) -> Loss:
    """A loss from its get_config()."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in _ALL:
        raise ValueError(f"Unknown loss {name!r}: expected one of {sorted(_ALL)}")
    return _ALL[name](**config)


def dtype_type(dtype):
    return np.dtype(dtype).type


def categorical_crossentropy(y_true, y_pred) -> float:
    return CategoricalCrossentropy()(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred) -> float:
    return SparseCategoricalCrossentropy()(y_true, y_pred)
