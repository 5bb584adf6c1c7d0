"""Fused elementwise kernels: bias + ReLU, ReLU's gradient (and with the bias gradient),
softmax cross-entropy, Adam and the weights' moving average, Dropout."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .jit import jit, pjit, relu_grad_if


@pjit
def _bias_relu(y, b, has_bias, relu):
    m, f = y.shape
    for r in prange(m):
        for k in range(f):
            v = y[r, k] + b[k] if has_bias else y[r, k]
            y[r, k] = 0 if (relu and v < 0) else v  # NaN passes through, as np.maximum


@pjit
def _relu_backward(gy, y, gx):
    for k in prange(gy.size):
        gx[k] = gy[k] if y[k] > 0 else 0


@pjit
def _relu_backward_sum(gy, y, gx, partial):
    m, f = gy.shape
    blocks = partial.shape[0]
    for blk in prange(blocks):  # each block of rows sums into its own slot
        partial[blk] = 0
        for r in range(blk * m // blocks, (blk + 1) * m // blocks):
            for k in range(f):
                g = relu_grad_if(gy[r, k], y[r, k], True)
                gx[r, k] = g
                partial[blk, k] += g


@pjit
def _ema_update(ema, p, m, one_minus_m):
    for k in prange(ema.size):
        ema[k] = ema[k] * m + p[k] * one_minus_m


@pjit
def _dropout(x, bits, threshold, scale, y, keep):  # keep where the element's 32 bits >= threshold
    for k in prange(x.size):
        keep[k] = bits[k] >= threshold
        y[k] = x[k] * scale if keep[k] else 0


@pjit
def _dropout_backward(gy, keep, scale, gx):
    for k in prange(gy.size):
        gx[k] = gy[k] * scale if keep[k] else 0


@jit
def _softmax_cross_entropy(z, t, gz):
    n, kk = z.shape
    loss = 0.0
    for r in range(n):  # a handful of classes per row: not worth threads
        m = z[r, 0]
        for k in range(1, kk):
            m = max(m, z[r, k])
        s = 0.0
        tsum = 0.0
        for k in range(kk):
            s += math.exp(z[r, k] - m)
            tsum += t[r, k]
        log_s = math.log(s)
        for k in range(kk):
            shifted = z[r, k] - m
            loss -= t[r, k] * (shifted - log_s)
            gz[r, k] = (math.exp(shifted - log_s) * tsum - t[r, k]) / n
    return loss / n


@pjit
def _adam_update(p, g, m, v, alpha, b1, b2, eps):
    for k in prange(p.size):
        gk = g[k]
        m[k] += (1 - b1) * (gk - m[k])
        v[k] += (1 - b2) * (gk * gk - v[k])
        p[k] -= alpha * m[k] / (math.sqrt(v[k]) + eps)


def bias_relu(y, b, relu):
    if not y.flags.c_contiguous:
        raise TypeError("bias_relu works in place on a C-contiguous array")
    y2 = y.reshape(-1, y.shape[-1])
    _bias_relu(y2, y2[0] if b is None else b.astype(y.dtype, copy=False), b is not None, bool(relu))
    return y


def relu_backward(gy, y):
    gy, y = np.ascontiguousarray(gy), np.ascontiguousarray(y)
    gx = np.empty_like(gy)
    _relu_backward(gy.reshape(-1), y.reshape(-1), gx.reshape(-1))
    return gx


def relu_backward_sum(gy, y):
    gy, y = np.ascontiguousarray(gy), np.ascontiguousarray(y)
    gx = np.empty_like(gy)
    partial = np.empty((min(gy.shape[0], 16), gy.shape[1]), dtype=gy.dtype)
    _relu_backward_sum(gy, y, gx, partial)
    return gx, partial.sum(axis=0)


def ema_update(ema, p, momentum):
    if not ema.flags.c_contiguous:
        raise TypeError("ema_update works in place on a C-contiguous array")
    t = ema.dtype.type
    _ema_update(ema.reshape(-1), np.ascontiguousarray(p).reshape(-1), t(momentum), t(1 - momentum))


def dropout(x, bits, threshold, scale):
    x = np.ascontiguousarray(x)
    y, keep = np.empty_like(x), np.empty(x.shape, np.bool_)
    _dropout(x.reshape(-1), bits, threshold, x.dtype.type(scale), y.reshape(-1), keep.reshape(-1))
    return y, keep


def dropout_backward(gy, keep, scale):
    gy = np.ascontiguousarray(gy)
    gx = np.empty_like(gy)
    _dropout_backward(gy.reshape(-1), keep.reshape(-1), gy.dtype.type(scale), gx.reshape(-1))
    return gx


def softmax_cross_entropy(z, t):
    z, t = np.ascontiguousarray(z), np.ascontiguousarray(t, dtype=z.dtype)
    gz = np.empty_like(z)
    return z.dtype.type(_softmax_cross_entropy(z, t, gz)), gz


def adam_update(p, g, m, v, alpha, b1, b2, eps):
    for a in (p, m, v):
        if not a.flags.c_contiguous:
            raise TypeError("adam_update works in place on C-contiguous arrays")
    t = p.dtype.type
    _adam_update(
        p.reshape(-1),
        np.ascontiguousarray(g).reshape(-1),
        m.reshape(-1),
        v.reshape(-1),
        t(alpha),
        t(b1),
        t(b2),
        t(eps),
    )
