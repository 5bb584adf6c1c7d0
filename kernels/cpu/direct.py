"""Direct convolution for few input channels (a first layer): per output pixel, kh*kw*C taps,
each a broadcast-multiply-add over the F filters held in a small array that stays in L1.
Bias, ReLU and their gradients are fused into the same passes."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import bias_row, jit, pjit, relu_grad_if, relu_if


@pjit
def _conv_direct(x, k, b, relu, z, sy, sx):
    n, oh, ow, nf = z.shape
    kh, kw, nc, _ = k.shape
    for r in prange(n * oh):  # one output row of one image per task
        im, p = r // oh, r % oh
        acc = np.empty(nf, dtype=z.dtype)
        for q in range(ow):
            acc[:] = b
            for i in range(kh):
                for j in range(kw):
                    for c in range(nc):
                        xv = x[im, p * sy + i, q * sx + j, c]
                        for f in range(nf):
                            acc[f] += xv * k[i, j, c, f]
            for f in range(nf):
                z[im, p, q, f] = relu_if(acc[f], relu)


@jit
def _masked(gz, y, masked, im, p, q, g):  # g = gz at one pixel, ReLU's mask applied if masked
    for f in range(g.size):
        g[f] = relu_grad_if(gz[im, p, q, f], y[im, p, q, f], masked)


@pjit
def _conv_direct_grad(x, gz, y, masked, gk, gb, sy, sx):
    n, oh, ow, nf = gz.shape
    blocks, kh, kw, nc, _ = gk.shape
    for blk in prange(blocks):  # each block of images sums into its own slot: no shared writes
        gk[blk] = 0
        gb[blk] = 0
        g = np.empty(nf, dtype=gz.dtype)
        for im in range(blk * n // blocks, (blk + 1) * n // blocks):
            for p in range(oh):
                for q in range(ow):
                    _masked(gz, y, masked, im, p, q, g)
                    for f in range(nf):
                        gb[blk, f] += g[f]
                    for i in range(kh):
                        for j in range(kw):
                            for c in range(nc):
                                xv = x[im, p * sy + i, q * sx + j, c]
                                for f in range(nf):
                                    gk[blk, i, j, c, f] += xv * g[f]


@pjit
def _conv_direct_grad_input(gz, y, masked, k, gx, sy, sx):
    n, oh, ow, nf = gz.shape
    kh, kw, nc, _ = k.shape
    for im in prange(n):  # one image per task: its windows overlap only each other
        gx[im] = 0
        g = np.empty(nf, dtype=gz.dtype)
        for p in range(oh):
            for q in range(ow):
                _masked(gz, y, masked, im, p, q, g)
                for i in range(kh):
                    for j in range(kw):
                        for c in range(nc):
                            s = gx.dtype.type(0)
                            for f in range(nf):
                                s += g[f] * k[i, j, c, f]
                            gx[im, p * sy + i, q * sx + j, c] += s


def conv_direct(xpad, kernel, bias, relu, strides):
    x, k = np.ascontiguousarray(xpad), np.ascontiguousarray(kernel)
    n, hp, wp, _ = x.shape
    kh, kw, _, f = k.shape
    (sy, sx) = strides
    z = np.empty((n, (hp - kh) // sy + 1, (wp - kw) // sx + 1, f), dtype=x.dtype)
    _conv_direct(x, k, bias_row(bias, f, x.dtype), bool(relu), z, sy, sx)
    return z


_GRAD_BLOCKS = 16  # partial sums of the kernel gradient, added at the end in NumPy


def conv_direct_grad(xpad, gz, y, kernel_shape, strides):
    x, gz = np.ascontiguousarray(xpad), np.ascontiguousarray(gz)
    y = gz if y is None else np.ascontiguousarray(y)
    blocks = min(gz.shape[0], _GRAD_BLOCKS)
    gk = np.empty((blocks, *kernel_shape), dtype=gz.dtype)
    gb = np.empty((blocks, kernel_shape[-1]), dtype=gz.dtype)
    _conv_direct_grad(x, gz, y, y is not gz, gk, gb, *strides)
    return gk.sum(axis=0), gb.sum(axis=0)


def conv_direct_grad_input(gz, y, kernel, padded_shape, strides):
    gz = np.ascontiguousarray(gz)
    y = gz if y is None else np.ascontiguousarray(y)
    gx = np.empty(tuple(padded_shape), dtype=gz.dtype)
    _conv_direct_grad_input(gz, y, y is not gz, np.ascontiguousarray(kernel), gx, *strides)
    return gx
