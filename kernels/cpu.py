"""CPU kernels in numba (``cache=True``: compiled once, then loaded from disk).

Each function mirrors the plain array version in ``minicnn/ops.py``, the reference the tests
compare it with. What they win over NumPy: one pass over memory instead of one per kernel offset
(im2col, col2im, pooling), fused elementwise work (bias + ReLU, Adam), and both cores.
Parallel loops split over independent rows or images, so no two threads write the same element.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange

from . import OP_NAMES

# OpenMP's worker threads spin after each parallel loop, and so do OpenBLAS's after each GEMM:
# on a 2-core machine the two pools then fight (a step took 2.7x longer). numba's own workqueue
# pool sleeps between loops. A layer the user chose (NUMBA_THREADING_LAYER) is respected.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_jit = njit(cache=True, nogil=True)
_pjit = njit(cache=True, nogil=True, parallel=True)


@_pjit
def _im2col(x, col, sy, sx, top, left):
    n, h, w, c = x.shape
    _, oh, ow, kh, kw, _ = col.shape
    for r in prange(n * oh):  # one output row of one image per task
        b, p = r // oh, r % oh
        for q in range(ow):
            for i in range(kh):
                y = p * sy + i - top
                for j in range(kw):
                    xx = q * sx + j - left
                    if 0 <= y < h and 0 <= xx < w:
                        col[b, p, q, i, j, :] = x[b, y, xx, :]
                    else:
                        col[b, p, q, i, j, :] = 0


@_pjit
def _col2im(gcol, gx, sy, sx, top, left):
    n, oh, ow, kh, kw, c = gcol.shape
    _, h, w, _ = gx.shape
    for r in prange(n * h):  # each task owns one input row: it gathers, nobody else writes it
        b, y = r // h, r % h
        gx[b, y, :, :] = 0
        for i in range(kh):
            py = y + top - i
            if py < 0 or py % sy != 0 or py // sy >= oh:
                continue
            p = py // sy
            for xx in range(w):
                for j in range(kw):
                    qx = xx + left - j
                    if qx < 0 or qx % sx != 0 or qx // sx >= ow:
                        continue
                    gx[b, y, xx, :] += gcol[b, p, qx // sx, i, j, :]


@_pjit
def _bias_relu(y, b, has_bias, relu):
    m, f = y.shape
    for r in prange(m):
        for k in range(f):
            v = y[r, k] + b[k] if has_bias else y[r, k]
            y[r, k] = 0 if (relu and v < 0) else v  # NaN passes through, as np.maximum


@_pjit
def _relu_backward(gy, y, gx):
    for k in prange(gy.size):
        gx[k] = gy[k] if y[k] > 0 else 0


@_jit
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


@_pjit
def _maxpool_forward(x, y, arg, ph, pw, sy, sx, top, left):
    n, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    for r in prange(n * oh):
        b, p = r // oh, r % oh
        for q in range(ow):
            for ch in range(c):
                best = -np.inf
                at = 0
                for i in range(ph):
                    yy = p * sy + i - top
                    for j in range(pw):
                        xx = q * sx + j - left
                        if 0 <= yy < h and 0 <= xx < w and x[b, yy, xx, ch] > best:
                            best = x[b, yy, xx, ch]
                            at = i * pw + j
                y[b, p, q, ch] = best
                arg[b, p, q, ch] = at


@_pjit
def _maxpool_backward(gy, arg, gx, ph, pw, sy, sx, top, left):
    n, oh, ow, c = gy.shape
    _, h, w, _ = gx.shape
    for r in prange(n * h):
        b, y = r // h, r % h
        gx[b, y, :, :] = 0
        for i in range(ph):
            py = y + top - i
            if py < 0 or py % sy != 0 or py // sy >= oh:
                continue
            for xx in range(w):
                for j in range(pw):
                    qx = xx + left - j
                    if qx < 0 or qx % sx != 0 or qx // sx >= ow:
                        continue
                    for ch in range(c):
                        if arg[b, py // sy, qx // sx, ch] == i * pw + j:
                            gx[b, y, xx, ch] += gy[b, py // sy, qx // sx, ch]


@_pjit
def _adam_update(p, g, m, v, alpha, b1, b2, eps):
    for k in prange(p.size):
        gk = g[k]
        m[k] += (1 - b1) * (gk - m[k])
        v[k] += (1 - b2) * (gk * gk - v[k])
        p[k] -= alpha * m[k] / (math.sqrt(v[k]) + eps)


# -- the ops' signatures, as in minicnn/ops.py ------------------------------------------------


def im2col(x, kh, kw, sy, sx, pads):
    x = np.ascontiguousarray(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - kh) // sy + 1
    ow = (w + pads[2] + pads[3] - kw) // sx + 1
    col = np.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    _im2col(x, col, sy, sx, pads[0], pads[2])
    return col


def col2im(gcol, x_shape, sy, sx, pads):
    gcol = np.ascontiguousarray(gcol)
    gx = np.empty((x_shape[0], x_shape[1], x_shape[2], gcol.shape[-1]), dtype=gcol.dtype)
    _col2im(gcol, gx, sy, sx, pads[0], pads[2])
    return gx


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


def softmax_cross_entropy(z, t):
    z, t = np.ascontiguousarray(z), np.ascontiguousarray(t, dtype=z.dtype)
    gz = np.empty_like(z)
    return z.dtype.type(_softmax_cross_entropy(z, t, gz)), gz


def maxpool_forward(x, ph, pw, sy, sx, pads):
    x = np.ascontiguousarray(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - ph) // sy + 1
    ow = (w + pads[2] + pads[3] - pw) // sx + 1
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    arg = np.empty((n, oh, ow, c), dtype=np.int8)
    _maxpool_forward(x, y, arg, ph, pw, sy, sx, pads[0], pads[2])
    return y, arg


def maxpool_backward(gy, arg, x_shape, ph, pw, sy, sx, pads):
    gy = np.ascontiguousarray(gy)
    gx = np.empty(tuple(x_shape), dtype=gy.dtype)
    _maxpool_backward(gy, np.ascontiguousarray(arg), gx, ph, pw, sy, sx, pads[0], pads[2])
    return gx


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


OPS = {(name, "any"): globals()[name] for name in OP_NAMES if name in globals()}
