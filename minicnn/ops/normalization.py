"""Batch normalisation over the last axis (channels-last): each channel scaled to zero mean and
unit variance over every other axis, then ``gamma * xhat + beta``.

Training uses the batch's own mean and (biased) variance, and its backward pass goes through
them; inference uses the moving statistics, a fixed affine map per channel.
"""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.ops.dispatch import kernel_for


def batchnorm_forward(x, gamma, beta, eps: float):
    """Training: x (M, C) -> (y (M, C), mean (C,), var (C,), inv_std (C,)); the variance is the
    biased one (divided by M), as Keras uses for both the output and the moving statistics."""
    fast = kernel_for("batchnorm_forward", x)
    if fast is not None:
        return fast(x, gamma, beta, eps)
    xp = get_array_module(x)
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1 / xp.sqrt(var + eps)
    scale = inv_std if gamma is None else gamma * inv_std
    shift = -mean * scale if beta is None else beta - mean * scale
    return x * scale + shift, mean, var, inv_std


def batchnorm_backward(gy, x, mean, inv_std, gamma):
    """The gradients of batchnorm_forward: gy (M, C) -> (gx, ggamma, gbeta):

    xhat = (x - mean) * inv_std,  g = gy * gamma
    gx = inv_std * (g - mean(g) - xhat * mean(g * xhat))
    """
    fast = kernel_for("batchnorm_backward", gy)
    if fast is not None:
        return fast(gy, x, mean, inv_std, gamma)
    xhat = (x - mean) * inv_std
    gbeta = gy.sum(axis=0)
    ggamma = (gy * xhat).sum(axis=0)
    g_scale = inv_std if gamma is None else gamma * inv_std
    m = x.shape[0]
    gx = g_scale * (gy - gbeta / m - xhat * (ggamma / m))
    return gx, ggamma, gbeta


def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, eps: float):
    """y = gamma * (x - moving_mean) / sqrt(moving_var + eps) + beta, as one scale and shift."""
    xp = get_array_module(x)
    scale = 1 / xp.sqrt(moving_var + eps)
    if gamma is not None:
        scale = gamma * scale
    shift = -moving_mean * scale if beta is None else beta - moving_mean * scale
    return channel_affine(x, scale, shift), scale


def channel_affine(x, scale, shift):
    """x (M, C) * scale (C,) + shift (C,)."""
    fast = kernel_for("channel_affine", x)
    if fast is not None:
        return fast(x, scale, shift)
    return x * scale + shift
