"""The hinge losses, Keras 3's formulas with their gradients (a kink passes no gradient).

hinge              mean(max(1 - t p, 0))          t in {-1, 1}; a batch of 0/1 targets becomes 2t - 1
squared_hinge      mean(max(1 - t p, 0)^2)
categorical_hinge  max(max((1 - t) p) - sum(t p) + 1, 0)     t one-hot rows
"""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.losses.base import Loss, align


def _signed(t):
    """Keras's convert_binary_labels_to_hinge: 0/1 targets (the whole batch) become -1/1."""
    xp = get_array_module(t)
    binary = xp.all((t == 0) | (t == 1))
    return xp.where(binary, 2 * t - 1, t)


class Hinge(Loss):
    def __init__(self, reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(name, reduction, dtype)

    squared = False

    def forward(self, y_true, y_pred, logits):
        xp = get_array_module(y_pred)
        t = _signed(align(y_true, y_pred))
        m = xp.maximum(1 - t * y_pred, 0)
        k = y_pred.dtype.type(y_pred.shape[-1])
        if self.squared:
            return (m * m).mean(axis=-1), (-2 * t * m / k,)
        return m.mean(axis=-1), (-t * (m > 0) / k,)

    def backward(self, ctx):
        return ctx[0]


class SquaredHinge(Hinge):
    squared = True

    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge", dtype=None):
        super().__init__(reduction, name, dtype)


class CategoricalHinge(Loss):
    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge", dtype=None):
        super().__init__(name, reduction, dtype)

    def forward(self, y_true, y_pred, logits):
        xp = get_array_module(y_pred)
        t = align(y_true, y_pred)
        pos = (t * y_pred).sum(axis=-1)
        other = (1 - t) * y_pred
        neg = other.max(axis=-1)
        margin = neg - pos + 1
        # the max's gradient shared among ties, as TensorFlow's and PyTorch's amax share it
        at_max = (other == neg[..., None]).astype(y_pred.dtype)
        at_max = at_max / at_max.sum(axis=-1, keepdims=True)
        g = ((1 - t) * at_max - t) * (margin > 0)[..., None]
        return xp.maximum(margin, 0), (g,)

    def backward(self, ctx):
        return ctx[0]
