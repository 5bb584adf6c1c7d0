"""The optimizers' update rules over whole arrays, in place (fused into one kernel where one
exists); the optimizers themselves (``minicnn/optimizers/``) keep the hyper-parameters."""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for


def adam_update(p, g, m, v, alpha: float, b1: float, b2: float, eps: float) -> None:
    """In place: m, v <- moving averages of g and g^2; p <- p - alpha * m / (sqrt(v) + eps)."""
    fast = kernel_for("adam_update", p)
    if fast is not None:
        return fast(p, g, m, v, alpha, b1, b2, eps)
    xp = get_array_module(p)
    m += (1 - b1) * (g - m)
    v += (1 - b2) * (g * g - v)
    p -= alpha * m / (xp.sqrt(v) + eps)


def ema_update(ema, p, momentum: float) -> None:
    """In place: ema <- momentum * ema + (1 - momentum) * p, the weights' moving average."""
    fast = kernel_for("ema_update", ema)
    if fast is not None:
        return fast(ema, p, momentum)
    ema *= ema.dtype.type(momentum)
    ema += p * p.dtype.type(1 - momentum)
