"""Batch normalisation over the last axis (channels-last): each channel scaled to zero mean and
unit variance over every other axis, then ``gamma * xhat + beta``.

Training uses the batch's own mean and (biased) variance, and its backward pass goes through
them; inference uses the moving statistics, a fixed affine map per channel.
"""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for


def batchnorm_forward(x, gamma, beta, eps: float, relu: bool = False):
    """Training: x (M, C) -> (y (M, C), mean (C,), var (C,), inv_std (C,)); the variance is the
    biased one (divided by M), as Keras uses for both the output and the moving statistics.
    y = xhat * gamma + beta with xhat = (x - mean) * inv_std, in x's dtype from the returned
    mean and inv_std; ``relu``: y = max(y, 0) in the same pass (a ReLU layer that follows,
    fused in), and ``batchnorm_backward`` recomputes its mask by the same expression."""
    fast = kernel_for("batchnorm_forward", x)
    if fast is not None:
        return fast(x, gamma, beta, eps, relu)
    xp = get_array_module(x)
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = (1 / xp.sqrt(var + eps)).astype(x.dtype)
    y = _affine_output(x, mean, inv_std, gamma, beta)
    return (xp.maximum(y, 0, out=y) if relu else y), mean, var, inv_std


def _affine_output(x, mean, inv_std, gamma, beta):
    y = (x - mean) * inv_std
    if gamma is not None:
        y = y * gamma
    return y if beta is None else y + beta


def batchnorm_backward(gy, x, mean, inv_std, gamma, beta=None, relu: bool = False):
    """The gradients of batchnorm_forward: gy (M, C) -> (gx, ggamma, gbeta):

    xhat = (x - mean) * inv_std,  g = gy * gamma
    gx = inv_std * (g - mean(g) - xhat * mean(g * xhat))

    ``relu``: the forward fused a ReLU in; gy is masked by its output > 0 first.
    """
    fast = kernel_for("batchnorm_backward", gy)
    if fast is not None:
        return fast(gy, x, mean, inv_std, gamma, beta, relu)
    if relu:
        gy = gy * (_affine_output(x, mean, inv_std, gamma, beta) > 0)
    xhat = (x - mean) * inv_std
    gbeta = gy.sum(axis=0)
    ggamma = (gy * xhat).sum(axis=0)
    g_scale = inv_std if gamma is None else gamma * inv_std
    m = x.shape[0]
    gx = g_scale * (gy - gbeta / m - xhat * (ggamma / m))
    return gx, ggamma, gbeta


def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, eps: float, relu: bool = False):
    """y = gamma * (x - moving_mean) / sqrt(moving_var + eps) + beta, as one scale and shift
    (then ReLU where ``relu``). -> (y, scale)"""
    scale, shift = batchnorm_affine(gamma, beta, moving_mean, moving_var, eps)
    return channel_affine(x, scale, shift, relu), scale


def batchnorm_affine(gamma, beta, moving_mean, moving_var, eps: float):
    """Inference's map as (scale (C,), shift (C,)): y = x * scale + shift."""
    xp = get_array_module(moving_var)
    scale = 1 / xp.sqrt(moving_var + eps)
    if gamma is not None:
        scale = gamma * scale
    shift = -moving_mean * scale if beta is None else beta - moving_mean * scale
    return scale, shift


def channel_affine(x, scale, shift, relu: bool = False):
    """x (M, C) * scale (C,) + shift (C,), then ReLU where ``relu``."""
    fast = kernel_for("channel_affine", x)
    if fast is not None:
        return fast(x, scale, shift, relu)
    y = x * scale + shift
    return get_array_module(y).maximum(y, 0, out=y) if relu else y
