"""Layer normalisation: each sample normalised over ``axes`` (Keras's default: the last one),

    xhat = (x - mean) / sqrt(var + eps),   y = xhat * gamma + beta,

mean and (biased) variance taken over those axes of one sample, gamma and beta broadcast over
the others. Its backward pass, with g = gy * gamma and means over the same axes:

    gx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)
    ggamma = sum of gy * xhat over the other axes,  gbeta = sum of gy over them.
"""

from __future__ import annotations

from minicnn.backend import get_array_module


def layernorm_forward(x, gamma, beta, axes: tuple, eps: float):
    """-> (y, xhat, inv_std); gamma and beta (or None) shaped to broadcast against x."""
    xp = get_array_module(x)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    inv_std = (1 / xp.sqrt(var + eps)).astype(x.dtype)
    xhat = xc * inv_std
    y = xhat if gamma is None else xhat * gamma
    return (y if beta is None else y + beta), xhat, inv_std


def layernorm_backward(gy, xhat, inv_std, gamma, axes: tuple):
    """-> (gx, ggamma, gbeta), the weight gradients in gamma's broadcast shape."""
    g = gy if gamma is None else gy * gamma
    gx = inv_std * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))  # fmt: skip
    others = tuple(a for a in range(gy.ndim) if a not in axes)  # the batch axis among them
    ggamma = (gy * xhat).sum(axis=others, keepdims=True)[0]
    gbeta = gy.sum(axis=others, keepdims=True)[0]
    return gx, ggamma, gbeta
