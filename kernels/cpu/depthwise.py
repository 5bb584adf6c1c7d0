"""Depthwise convolution: each channel with its own filters, output channel j = c*M + m. One
pass per output row (per input row for the input's gradient, which gathers from the output
rows that read it, so no two tasks write one element), the row's sums in L1 and the channel
loop innermost, over contiguous memory. The kernel arrives as kf (kh, kw, C*M): weight j of
tap (u, v) is K[u, v, j // M, j % M]. M = 1, the common case, runs loops without the division."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import bias_row, pjit


@pjit
def _forward(x, kf, b, z, sy, sx, m):
    n, oh, ow, cm = z.shape
    kh, kw, _ = kf.shape
    for r in prange(n * oh):  # one output row of one image per task
        im, p = r // oh, r % oh
        row = np.empty((ow, cm), dtype=z.dtype)
        for q in range(ow):
            row[q] = b
        for u in range(kh):
            xr = x[im, p * sy + u]
            for v in range(kw):
                kk = kf[u, v]
                for q in range(ow):
                    xq = xr[q * sx + v]
                    acc = row[q]
                    if m == 1:
                        for j in range(cm):
                            acc[j] += xq[j] * kk[j]
                    else:
                        for j in range(cm):
                            acc[j] += xq[j // m] * kk[j]
        z[im, p] = row


@pjit
def _grad_input(g, kf, gx, sy, sx, m):
    n, oh, ow, cm = g.shape
    kh, kw, _ = kf.shape
    _, hp, wp, c = gx.shape
    for r in prange(n * hp):  # one padded input row per task, gathered from the rows read it
        im, a = r // hp, r % hp
        row = np.zeros((wp, c), dtype=gx.dtype)
        for u in range(kh):
            t = a - u
            if t < 0 or t % sy != 0 or t // sy >= oh:
                continue
            gr = g[im, t // sy]
            for v in range(kw):
                kk = kf[u, v]
                for q in range(ow):
                    gq = gr[q]
                    out = row[q * sx + v]
                    if m == 1:
                        for j in range(cm):
                            out[j] += gq[j] * kk[j]
                    else:
                        for j in range(cm):
                            out[j // m] += gq[j] * kk[j]
        gx[im, a] = row


@pjit
def _grad(x, g, gk, gb, sy, sx, m):
    n, oh, ow, cm = g.shape
    blocks, kh, kw, _ = gk.shape
    for blk in prange(blocks):  # each block of images sums into its own slot: no shared writes
        gk[blk] = 0
        gb[blk] = 0
        for im in range(blk * n // blocks, (blk + 1) * n // blocks):
            for p in range(oh):
                gr = g[im, p]
                for q in range(ow):
                    for j in range(cm):
                        gb[blk, j] += gr[q, j]
                for u in range(kh):
                    xr = x[im, p * sy + u]
                    for v in range(kw):
                        acc = gk[blk, u, v]
                        for q in range(ow):
                            xq, gq = xr[q * sx + v], gr[q]
                            if m == 1:
                                for j in range(cm):
                                    acc[j] += xq[j] * gq[j]
                            else:
                                for j in range(cm):
                                    acc[j] += xq[j // m] * gq[j]


def depthwise_conv(xpad, kernel, bias, strides):
    x = np.ascontiguousarray(xpad)
    kh, kw, c, m = kernel.shape
    kf = np.ascontiguousarray(kernel, dtype=x.dtype).reshape(kh, kw, c * m)
    n, hp, wp, _ = x.shape
    sy, sx = strides
    z = np.empty((n, (hp - kh) // sy + 1, (wp - kw) // sx + 1, c * m), dtype=x.dtype)
    _forward(x, kf, bias_row(bias, c * m, x.dtype), z, sy, sx, m)
    return z


def depthwise_conv_grad_input(gy, kernel, padded_shape, strides):
    g = np.ascontiguousarray(gy)
    kh, kw, c, m = kernel.shape
    kf = np.ascontiguousarray(kernel, dtype=g.dtype).reshape(kh, kw, c * m)
    gx = np.empty(tuple(padded_shape), dtype=g.dtype)
    _grad_input(g, kf, gx, *strides, m)
    return gx


_GRAD_BLOCKS = 16  # partial sums of the kernel gradient, added at the end in NumPy


def depthwise_conv_grad(xpad, gy, kernel_shape, strides):
    x, g = np.ascontiguousarray(xpad), np.ascontiguousarray(gy)
    kh, kw, c, m = kernel_shape
    blocks = min(g.shape[0], _GRAD_BLOCKS)
    gk = np.empty((blocks, kh, kw, c * m), dtype=g.dtype)
    gb = np.empty((blocks, c * m), dtype=g.dtype)
    _grad(x, g, gk, gb, *strides, m)
    return gk.sum(axis=0).reshape(kernel_shape), gb.sum(axis=0)
