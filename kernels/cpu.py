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


# fmt: off
# Winograd F(2x2, 3x3) transforms (the maths is in minicnn/ops.py). One task per tile (or per
# image, where tiles overlap on output), the inner loop over channels, so each of the 16 reads or
# writes of a tile is a contiguous run of C values. Written out element by element: d<row><col>
# is the input tile, t the tile after its first (row) transform.


@_pjit
def winograd_input(x, th, tw, v):  # V = B^T d B
    per = th * tw
    for t in prange(x.shape[0] * per):
        b, r = t // per, t % per
        y, q = 2 * (r // tw), 2 * (r % tw)
        for c in range(x.shape[3]):
            d00, d01, d02, d03 = x[b, y, q, c], x[b, y, q + 1, c], x[b, y, q + 2, c], x[b, y, q + 3, c]
            d10, d11, d12, d13 = x[b, y + 1, q, c], x[b, y + 1, q + 1, c], x[b, y + 1, q + 2, c], x[b, y + 1, q + 3, c]
            d20, d21, d22, d23 = x[b, y + 2, q, c], x[b, y + 2, q + 1, c], x[b, y + 2, q + 2, c], x[b, y + 2, q + 3, c]
            d30, d31, d32, d33 = x[b, y + 3, q, c], x[b, y + 3, q + 1, c], x[b, y + 3, q + 2, c], x[b, y + 3, q + 3, c]
            t00, t01, t02, t03 = d00 - d20, d01 - d21, d02 - d22, d03 - d23  # B^T d
            t10, t11, t12, t13 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
            t20, t21, t22, t23 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
            t30, t31, t32, t33 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
            v[0, t, c], v[1, t, c], v[2, t, c], v[3, t, c] = t00 - t02, t01 + t02, t02 - t01, t01 - t03
            v[4, t, c], v[5, t, c], v[6, t, c], v[7, t, c] = t10 - t12, t11 + t12, t12 - t11, t11 - t13
            v[8, t, c], v[9, t, c], v[10, t, c], v[11, t, c] = t20 - t22, t21 + t22, t22 - t21, t21 - t23
            v[12, t, c], v[13, t, c], v[14, t, c], v[15, t, c] = t30 - t32, t31 + t32, t32 - t31, t31 - t33
    return v


@_pjit
def winograd_output(m, th, tw, z):  # y = A^T M A, cropped at an odd edge
    _, oh, ow, _ = z.shape
    per = th * tw
    for t in prange(z.shape[0] * per):
        b, r = t // per, t % per
        y, q = 2 * (r // tw), 2 * (r % tw)
        for f in range(z.shape[3]):
            u00 = m[0, t, f] + m[4, t, f] + m[8, t, f]  # A^T M: row 0
            u01 = m[1, t, f] + m[5, t, f] + m[9, t, f]
            u02 = m[2, t, f] + m[6, t, f] + m[10, t, f]
            u03 = m[3, t, f] + m[7, t, f] + m[11, t, f]
            u10 = m[4, t, f] - m[8, t, f] - m[12, t, f]  # row 1
            u11 = m[5, t, f] - m[9, t, f] - m[13, t, f]
            u12 = m[6, t, f] - m[10, t, f] - m[14, t, f]
            u13 = m[7, t, f] - m[11, t, f] - m[15, t, f]
            z[b, y, q, f] = u00 + u01 + u02
            if q + 1 < ow:
                z[b, y, q + 1, f] = u01 - u02 - u03
            if y + 1 < oh:
                z[b, y + 1, q, f] = u10 + u11 + u12
                if q + 1 < ow:
                    z[b, y + 1, q + 1, f] = u11 - u12 - u13
    return z


@_pjit
def winograd_grad_output(gy, th, tw, gm):  # gM = A gy A^T, zeros past an odd edge
    _, oh, ow, _ = gy.shape
    per = th * tw
    for t in prange(gy.shape[0] * per):
        b, r = t // per, t % per
        y, q = 2 * (r // tw), 2 * (r % tw)
        right, down = q + 1 < ow, y + 1 < oh
        for f in range(gy.shape[3]):
            g00 = gy[b, y, q, f]
            g01 = gy[b, y, q + 1, f] if right else 0.0
            g10 = gy[b, y + 1, q, f] if down else 0.0
            g11 = gy[b, y + 1, q + 1, f] if right and down else 0.0
            h00, h01, h02, h03 = g00, g00 + g01, g00 - g01, -g01  # g A^T, row 0
            h10, h11, h12, h13 = g10, g10 + g11, g10 - g11, -g11  # row 1
            gm[0, t, f], gm[1, t, f], gm[2, t, f], gm[3, t, f] = h00, h01, h02, h03
            gm[4, t, f], gm[5, t, f] = h00 + h10, h01 + h11
            gm[6, t, f], gm[7, t, f] = h02 + h12, h03 + h13
            gm[8, t, f], gm[9, t, f] = h00 - h10, h01 - h11
            gm[10, t, f], gm[11, t, f] = h02 - h12, h03 - h13
            gm[12, t, f], gm[13, t, f], gm[14, t, f], gm[15, t, f] = -h10, -h11, -h12, -h13
    return gm


@njit(cache=True, inline="always")
def _bt_row(v0, v1, v2, v3):  # one row of gV times B^T
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@_pjit
def winograd_grad_input(gv, th, tw, gx):  # gd = B gV B^T, added where tiles overlap
    per = th * tw
    for b in prange(gx.shape[0]):  # one image per task: its tiles overlap only each other
        gx[b] = 0
        for r in range(per):
            t = b * per + r
            y, q = 2 * (r // tw), 2 * (r % tw)
            for c in range(gx.shape[3]):
                # gV B^T, row by row: s<i><b>
                s00, s01, s02, s03 = _bt_row(gv[0, t, c], gv[1, t, c], gv[2, t, c], gv[3, t, c])
                s10, s11, s12, s13 = _bt_row(gv[4, t, c], gv[5, t, c], gv[6, t, c], gv[7, t, c])
                s20, s21, s22, s23 = _bt_row(gv[8, t, c], gv[9, t, c], gv[10, t, c], gv[11, t, c])
                s30, s31, s32, s33 = _bt_row(gv[12, t, c], gv[13, t, c], gv[14, t, c], gv[15, t, c])
                # B (.) on the columns: row a of the tile gradient from s0*, s1*, s2*, s3*
                gx[b, y, q, c] += s00
                gx[b, y, q + 1, c] += s01
                gx[b, y, q + 2, c] += s02
                gx[b, y, q + 3, c] += s03
                gx[b, y + 1, q, c] += s10 - s20 + s30
                gx[b, y + 1, q + 1, c] += s11 - s21 + s31
                gx[b, y + 1, q + 2, c] += s12 - s22 + s32
                gx[b, y + 1, q + 3, c] += s13 - s23 + s33
                gx[b, y + 2, q, c] += s10 + s20 - s00
                gx[b, y + 2, q + 1, c] += s11 + s21 - s01
                gx[b, y + 2, q + 2, c] += s12 + s22 - s02
                gx[b, y + 2, q + 3, c] += s13 + s23 - s03
                gx[b, y + 3, q, c] -= s30
                gx[b, y + 3, q + 1, c] -= s31
                gx[b, y + 3, q + 2, c] -= s32
                gx[b, y + 3, q + 3, c] -= s33
    return gx


# fmt: on


OPS = {(name, "any"): globals()[name] for name in OP_NAMES if name in globals()}
