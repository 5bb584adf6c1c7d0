"""Depthwise convolution: each channel with its own filters, output channel j = c*M + m.

Forward: one pass per output row, the row's sums in L1, bias and ReLU in the same pass.
Backward: one pass over gy for both gradients, per block of images (each block sums its own
kernel gradient, added at the end; an image's input gradient is written by its block alone):
each output row's gradient, masked by ReLU's output where the forward applied one, is read
once for the bias, the kernel and the input. The kernel arrives as kf (kh, kw, C*M): weight j
of tap (u, v) is K[u, v, j // M, j % M]. M = 1, the common case, runs loops without the
division. Channels are innermost, over contiguous memory."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import bias_row, pjit, relu_grad_if, relu_if


@pjit
def _forward(x, kf, b, relu, z, sy, sx, m):
    n, oh, ow, cm = z.shape
    kh, kw, _ = kf.shape
    for r in prange(n * oh):  # one output row of one image per task
        im, p = r // oh, r % oh
        row = np.empty((ow, cm), dtype=z.dtype)
        for q in range(ow):
            for j in range(cm):
                row[q, j] = b[j]
        for u in range(kh):
            a = p * sy + u
            for v in range(kw):
                for q in range(ow):
                    c = q * sx + v
                    if m == 1:
                        for j in range(cm):
                            row[q, j] += x[im, a, c, j] * kf[u, v, j]
                    else:
                        for j in range(cm):
                            row[q, j] += x[im, a, c, j // m] * kf[u, v, j]
        for q in range(ow):
            for j in range(cm):
                z[im, p, q, j] = relu_if(row[q, j], relu)


@pjit
def _backward(x, gz, y, masked, kf, gk, gb, gx, need_gx, sy, sx, m):
    n, oh, ow, cm = gz.shape
    blocks, kh, kw, _ = gk.shape
    for blk in prange(blocks):  # each block of images sums into its own slot: no shared writes
        gk[blk] = 0
        gb[blk] = 0
        g = np.empty((ow, cm), dtype=gz.dtype)  # one output row's gradient, masked
        for im in range(blk * n // blocks, (blk + 1) * n // blocks):
            if need_gx:
                gx[im] = 0
            for p in range(oh):
                for q in range(ow):
                    for j in range(cm):
                        g[q, j] = relu_grad_if(gz[im, p, q, j], y[im, p, q, j], masked)
                        gb[blk, j] += g[q, j]
                for u in range(kh):
                    a = p * sy + u
                    for v in range(kw):
                        for q in range(ow):  # indices, not row views: no view per pixel
                            c = q * sx + v
                            if m == 1:
                                for j in range(cm):
                                    gk[blk, u, v, j] += x[im, a, c, j] * g[q, j]
                            else:
                                for j in range(cm):
                                    gk[blk, u, v, j] += x[im, a, c, j // m] * g[q, j]
                        if need_gx:
                            for q in range(ow):
                                c = q * sx + v
                                if m == 1:
                                    for j in range(cm):
                                        gx[im, a, c, j] += g[q, j] * kf[u, v, j]
                                else:
                                    for j in range(cm):
                                        gx[im, a, c, j // m] += g[q, j] * kf[u, v, j]


def _flat(kernel, dtype):
    kh, kw, c, m = kernel.shape
    return np.ascontiguousarray(kernel, dtype=dtype).reshape(kh, kw, c * m), m


def depthwise_conv(xpad, kernel, bias, relu, strides):
    x = np.ascontiguousarray(xpad)
    kf, m = _flat(kernel, x.dtype)
    kh, kw, cm = kf.shape
    n, hp, wp, _ = x.shape
    sy, sx = strides
    z = np.empty((n, (hp - kh) // sy + 1, (wp - kw) // sx + 1, cm), dtype=x.dtype)
    _forward(x, kf, bias_row(bias, cm, x.dtype), bool(relu), z, sy, sx, m)
    return z


_GRAD_BLOCKS = 16  # partial sums of the kernel gradient, added at the end in NumPy


def depthwise_conv_backward(xpad, gy, y, kernel, need_gx, strides):
    x, g = np.ascontiguousarray(xpad), np.ascontiguousarray(gy)
    y = g if y is None else np.ascontiguousarray(y)
    kf, m = _flat(kernel, g.dtype)
    blocks = min(g.shape[0], _GRAD_BLOCKS)
    gk = np.empty((blocks, *kf.shape), dtype=g.dtype)
    gb = np.empty((blocks, kf.shape[-1]), dtype=g.dtype)
    gx = np.empty(x.shape if need_gx else (1, 1, 1, 1), dtype=g.dtype)
    _backward(x, g, y, y is not g, kf, gk, gb, gx, bool(need_gx), *strides, m)
    return gk.sum(axis=0).reshape(kernel.shape), gb.sum(axis=0), (gx if need_gx else None)
