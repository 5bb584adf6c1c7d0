"""Elementwise and reduction helpers that the layers' forward and backward passes share: the
fused bias + ReLU, ReLU's gradient, the weight gradient's product and the bias gradient's sums."""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.ops.dispatch import kernel_for


def bias_relu(y, b, relu: bool):
    """In place: ``y += b`` then, if ``relu``, ``y = max(y, 0)``. y: (M, F), b: (F,) or None."""
    fast = kernel_for("bias_relu", y)
    if fast is not None:
        return fast(y, b, relu)
    xp = get_array_module(y)
    if b is not None:
        y += b
    if relu:
        xp.maximum(y, 0, out=y)
    return y


def relu_backward(gy, y):
    """Gradient through ReLU given its output ``y`` (y > 0 exactly where the input was > 0)."""
    fast = kernel_for("relu_backward", gy)
    if fast is not None:
        return fast(gy, y)
    return gy * (y > 0)


def matmul_tn(a, b):
    """``a.T @ b`` for a (M, K), b (M, F) -> (K, F): the weight gradient, whose inner dimension M
    (every pixel of the batch) dwarfs its output."""
    fast = kernel_for("matmul_tn", a)
    if fast is not None:
        return fast(a, b)
    return a.T @ b


def sum_rows(a):
    """Column sums of a (M, F) matrix -> (F,): the bias gradient."""
    fast = kernel_for("sum_rows", a)
    if fast is not None:
        return fast(a)
    return a.sum(axis=0)
