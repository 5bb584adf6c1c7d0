"""Batch normalisation per channel over (M, C) rows: each pass splits the rows into blocks, one
per task, whose partial sums (float64) are added at the end, so no two threads write the same
element. Forward: both moments in one pass, then the output (ReLU fused in where a ReLU layer
follows); backward: two sums, input gradient (through ReLU's mask where it was fused, which
is recomputed from x by the forward's own float32 expression: y is not read again)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .jit import pjit, relu_grad_if, relu_if

_BLOCKS = 16


@pjit
def _sums(x, shift, out):  # out[blk, 0, c] = sum(x - shift), out[blk, 1, c] = sum((x - shift)^2)
    m, c = x.shape
    blocks = out.shape[0]
    for blk in prange(blocks):
        out[blk] = 0
        for r in range(blk * m // blocks, (blk + 1) * m // blocks):
            for k in range(c):
                d = x[r, k] - shift[k]
                out[blk, 0, k] += d
                out[blk, 1, k] += d * d


@pjit
def _affine(x, scale, shift, relu, y):  # y = act(x * scale + shift) per channel, act ReLU or none
    m, c = x.shape
    for r in prange(m):
        for k in range(c):
            y[r, k] = relu_if(x[r, k] * scale[k] + shift[k], relu)


@njit(cache=True, inline="always")
def _normalized(x, mean, inv_std, gamma, beta, r, k):  # (xhat, xhat * gamma + beta)
    xhat = (x[r, k] - mean[k]) * inv_std[k]
    return xhat, xhat * gamma[k] + beta[k]


@pjit
def _normalize(x, mean, inv_std, gamma, beta, relu, y):  # y = act(xhat * gamma + beta)
    m, c = x.shape
    for r in prange(m):
        for k in range(c):
            y[r, k] = relu_if(_normalized(x, mean, inv_std, gamma, beta, r, k)[1], relu)


@pjit
def _grad_sums(gy, x, mean, inv_std, gamma, beta, relu, out):  # out[blk] = sum(g), sum(g * xhat)
    m, c = x.shape
    blocks = out.shape[0]
    for blk in prange(blocks):
        out[blk] = 0
        for r in range(blk * m // blocks, (blk + 1) * m // blocks):
            for k in range(c):
                xhat, pre = _normalized(x, mean, inv_std, gamma, beta, r, k)
                g = relu_grad_if(gy[r, k], pre, relu)  # the forward's ReLU, from x itself
                out[blk, 0, k] += g
                out[blk, 1, k] += g * xhat


@pjit
def _grad_input(gy, x, mean, inv_std, gamma, beta, relu, g_scale, gbeta_m, ggamma_m, gx):
    m, c = x.shape
    for r in prange(m):
        for k in range(c):
            xhat, pre = _normalized(x, mean, inv_std, gamma, beta, r, k)
            g = relu_grad_if(gy[r, k], pre, relu)
            gx[r, k] = g_scale[k] * (g - gbeta_m[k] - xhat * ggamma_m[k])


def channel_affine(x, scale, shift, relu=False):
    """act(x * scale + shift) per channel in one pass on every core: BatchNorm at inference."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _affine(x, scale.astype(x.dtype), shift.astype(x.dtype), bool(relu), y)
    return y


def _gamma_beta(gamma, beta, c, dtype):
    one = np.ones(c, dtype) if gamma is None else np.ascontiguousarray(gamma, dtype=dtype)
    return one, np.zeros(c, dtype) if beta is None else np.ascontiguousarray(beta, dtype=dtype)


def batchnorm_forward(x, gamma, beta, eps, relu=False):
    x = np.ascontiguousarray(x)
    m, c = x.shape
    t = x.dtype.type
    sums = np.empty((min(_BLOCKS, m), 2, c))
    # one pass for both moments, of deviations from the first row (a value of each channel's
    # own distribution, so the float64 sums do not cancel the way raw E[x^2] - mean^2 can)
    ref = x[0].astype(np.float64) if m else np.zeros(c)
    _sums(x, ref, sums)
    d_mean = sums[:, 0].sum(axis=0) / m
    var64 = np.maximum(sums[:, 1].sum(axis=0) / m - d_mean * d_mean, 0)
    mean, var = (ref + d_mean).astype(t), var64.astype(t)
    inv_std = (1 / np.sqrt(var64 + eps)).astype(t)
    y = np.empty_like(x)
    _normalize(x, mean, inv_std, *_gamma_beta(gamma, beta, c, x.dtype), bool(relu), y)
    return y, mean, var, inv_std


def batchnorm_backward(gy, x, mean, inv_std, gamma, beta=None, relu=False):
    gy, x = np.ascontiguousarray(gy), np.ascontiguousarray(x)
    m, c = x.shape
    dt = gy.dtype
    gamma_, beta_ = _gamma_beta(gamma, beta, c, dt)
    sums = np.empty((min(_BLOCKS, m), 2, c))
    _grad_sums(gy, x, mean, inv_std, gamma_, beta_, bool(relu), sums)
    gbeta, ggamma = sums[:, 0].sum(axis=0), sums[:, 1].sum(axis=0)
    g_scale = inv_std if gamma is None else gamma * inv_std
    gx = np.empty_like(gy)
    _grad_input(gy, x, mean, inv_std, gamma_, beta_, bool(relu), g_scale.astype(dt), (gbeta / m).astype(dt), (ggamma / m).astype(dt), gx)  # fmt: skip
    return gx, ggamma.astype(dt), gbeta.astype(dt)
