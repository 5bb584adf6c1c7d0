"""Softmax and its cross-entropy over the last axis: the maths of the losses."""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for


def softmax(z):
    """Row-wise softmax over the last axis, shifted by the row max so exp never overflows."""
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(z, t):
    """Mean cross-entropy of softmax(z) against target rows ``t``, and its gradient in z.

    z: (N, K) logits; t: (N, K) one-hot rows or any distributions. Works from log-sum-exp, so any
    finite logits give a finite loss. Returns ``(loss, gz)``, gz = (softmax(z) * sum(t) - t) / N.
    """
    fast = kernel_for("softmax_cross_entropy", z)
    if fast is not None:
        return fast(z, t)
    xp = get_array_module(z)
    n = z.shape[0]
    shifted = z - z.max(axis=-1, keepdims=True)  # (N, K), row max 0: exp cannot overflow
    e = xp.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    loss = -(t * (shifted - xp.log(s))).sum() / n
    gz = (e / s) * t.sum(axis=-1, keepdims=True)
    gz -= t
    gz /= n
    return loss, gz
