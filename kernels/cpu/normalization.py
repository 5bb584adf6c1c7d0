"""Batch normalisation per channel over (M, C) rows: each pass splits the rows into blocks, one
per task, whose partial sums (float64) are added at the end, so no two threads write the same
element. Forward: sums, squared deviations, output; backward: two sums, input gradient."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import pjit

_BLOCKS = 16


@pjit
def _sums(x, mean, out):  # out[blk, 0, c] = sum(x), out[blk, 1, c] = sum((x - mean)^2)
    m, c = x.shape
    blocks = out.shape[0]
    for blk in prange(blocks):
        out[blk] = 0
        for r in range(blk * m // blocks, (blk + 1) * m // blocks):
            for k in range(c):
                v = x[r, k]
                out[blk, 0, k] += v
                d = v - mean[k]
                out[blk, 1, k] += d * d


@pjit
def _affine(x, scale, shift, y):  # y = x * scale + shift, per channel
    m, c = x.shape
    for r in prange(m):
        for k in range(c):
            y[r, k] = x[r, k] * scale[k] + shift[k]


@pjit
def _grad_sums(gy, x, mean, inv_std, out):  # out[blk, 0] = sum(gy), out[blk, 1] = sum(gy * xhat)
    m, c = x.shape
    blocks = out.shape[0]
    for blk in prange(blocks):
        out[blk] = 0
        for r in range(blk * m // blocks, (blk + 1) * m // blocks):
            for k in range(c):
                g = gy[r, k]
                out[blk, 0, k] += g
                out[blk, 1, k] += g * (x[r, k] - mean[k]) * inv_std[k]


@pjit
def _grad_input(gy, x, mean, inv_std, g_scale, gbeta_m, ggamma_m, gx):
    m, c = x.shape
    for r in prange(m):
        for k in range(c):
            xhat = (x[r, k] - mean[k]) * inv_std[k]
            gx[r, k] = g_scale[k] * (gy[r, k] - gbeta_m[k] - xhat * ggamma_m[k])


def channel_affine(x, scale, shift):
    """x * scale + shift per channel in one pass on every core: BatchNorm at inference."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _affine(x, scale.astype(x.dtype), shift.astype(x.dtype), y)
    return y


def batchnorm_forward(x, gamma, beta, eps):
    x = np.ascontiguousarray(x)
    m, c = x.shape
    t = x.dtype.type
    sums = np.empty((min(_BLOCKS, m), 2, c))
    _sums(x, np.zeros(c), sums)
    mean64 = sums[:, 0].sum(axis=0) / m
    _sums(x, mean64, sums)  # two passes: the variance of deviations, not E[x^2] - mean^2
    var64 = sums[:, 1].sum(axis=0) / m
    inv_std64 = 1 / np.sqrt(var64 + eps)
    scale = inv_std64 if gamma is None else gamma * inv_std64
    shift = -mean64 * scale if beta is None else beta - mean64 * scale
    y = np.empty_like(x)
    _affine(x, scale.astype(x.dtype), shift.astype(x.dtype), y)
    return y, mean64.astype(t), var64.astype(t), inv_std64.astype(t)


def batchnorm_backward(gy, x, mean, inv_std, gamma):
    gy, x = np.ascontiguousarray(gy), np.ascontiguousarray(x)
    m, c = x.shape
    sums = np.empty((min(_BLOCKS, m), 2, c))
    _grad_sums(gy, x, mean, inv_std, sums)
    gbeta, ggamma = sums[:, 0].sum(axis=0), sums[:, 1].sum(axis=0)
    g_scale = inv_std if gamma is None else gamma * inv_std
    gx = np.empty_like(gy)
    dt = gy.dtype
    _grad_input(gy, x, mean, inv_std, g_scale.astype(dt), (gbeta / m).astype(dt), (ggamma / m).astype(dt), gx)  # fmt: skip
    return gx, ggamma.astype(dt), gbeta.astype(dt)
