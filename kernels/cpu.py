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

# numba's threads: OpenMP (libgomp) where it is installed, whose workers start a loop in about
# a microsecond; numba's own "workqueue" pool sleeps between loops and takes 50-90 us to wake, ~20
# times a step. OpenMP's workers spin after a loop, so minicnn/_threads.py caps that with
# GOMP_SPINCOUNT, which libgomp reads when it loads: if something else loaded it already with
# its default spin (300,000), its workers would hold the cores OpenBLAS needs (a step 20x slower,
# measured), so then the workqueue pool is used. A layer the user chose is respected.


def _libgomp_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return "libgomp" in maps.read()
    except OSError:
        return False


if "NUMBA_THREADING_LAYER" not in os.environ:
    spin_set = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    if spin_set and not _libgomp_loaded():
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
        numba.config.THREADING_LAYER = "default"  # the first of those that loads
    else:
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


# Direct convolution for few input channels (a first layer): per output pixel, kh*kw*C taps,
# each a broadcast-multiply-add over the F filters held in a small array that stays in L1.


@njit(cache=True, inline="always")
def _relu(v, on):  # max(v, 0) where on; NaN passes, as np.maximum
    return type(v)(0) if (on and v < 0) else v


@njit(cache=True, inline="always")
def _relu_grad(g, y, on):  # g where ReLU's output y was > 0 (or where off), else 0
    return g if (not on or y > 0) else type(g)(0)


@_pjit
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
                z[im, p, q, f] = _relu(acc[f], relu)


@_jit
def _masked(gz, y, masked, im, p, q, g):  # g = gz at one pixel, ReLU's mask applied if masked
    for f in range(g.size):
        g[f] = _relu_grad(gz[im, p, q, f], y[im, p, q, f], masked)


@_pjit
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


@_pjit
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


def _bias_row(bias, f, dtype):
    """The bias as the kernels take it: (F,) contiguous in the output's dtype, zeros for None."""
    return np.zeros(f, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)


def conv_direct(xpad, kernel, bias, relu, strides):
    x, k = np.ascontiguousarray(xpad), np.ascontiguousarray(kernel)
    n, hp, wp, _ = x.shape
    kh, kw, _, f = k.shape
    (sy, sx) = strides
    z = np.empty((n, (hp - kh) // sy + 1, (wp - kw) // sx + 1, f), dtype=x.dtype)
    _conv_direct(x, k, _bias_row(bias, f, x.dtype), bool(relu), z, sy, sx)
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


# fmt: off
# Winograd F(4x4, 3x3) transforms (the maths is in minicnn/ops.py). Each 2-D transform is two
# passes of a 1-D one: down the columns of a tile into a small scratch array, then along its
# rows. The inner loops run over channels, so every read or write is a contiguous run of C (or F)
# values. The 1-D transforms are written out once each; constants take the operands' type
# (``type(d0)(4)``), so float32 stays float32.


@njit(cache=True, inline="always")
def _bt6(d0, d1, d2, d3, d4, d5):  # B^T d for a column d of 6
    k2, k4, k5 = type(d0)(2), type(d0)(4), type(d0)(5)
    return (
        k4 * d0 - k5 * d2 + d4,
        d3 + d4 - k4 * (d1 + d2),
        d4 - d3 + k4 * (d1 - d2),
        d4 - d2 + k2 * (d3 - d1),
        d4 - d2 + k2 * (d1 - d3),
        k4 * d1 - k5 * d3 + d5,
    )


@njit(cache=True, inline="always")
def _b6(v0, v1, v2, v3, v4, v5):  # B v: the adjoint of _bt6
    k2, k4, k5 = type(v0)(2), type(v0)(4), type(v0)(5)
    return (
        k4 * v0,
        k4 * (v2 - v1 + v5) + k2 * (v4 - v3),
        -k5 * v0 - k4 * (v1 + v2) - v3 - v4,
        v1 - v2 + k2 * (v3 - v4) - k5 * v5,
        v0 + v1 + v2 + v3 + v4,
        v5,
    )


@njit(cache=True, inline="always")
def _at6(m0, m1, m2, m3, m4, m5):  # A^T m: 6 points to 4 outputs
    k2, k4, k8 = type(m0)(2), type(m0)(4), type(m0)(8)
    return (
        m0 + m1 + m2 + m3 + m4,
        m1 - m2 + k2 * (m3 - m4),
        m1 + m2 + k4 * (m3 + m4),
        m1 - m2 + k8 * (m3 - m4) + m5,
    )


@njit(cache=True, inline="always")
def _a6(g0, g1, g2, g3):  # A g: the adjoint of _at6
    k2, k4, k8 = type(g0)(2), type(g0)(4), type(g0)(8)
    return (
        g0,
        g0 + g1 + g2 + g3,
        g0 - g1 + g2 - g3,
        g0 + k2 * g1 + k4 * g2 + k8 * g3,
        g0 - k2 * g1 + k4 * g2 - k8 * g3,
        g3,
    )


@_pjit
def winograd_input(x, th, tw, v):  # V = B^T d B
    nc = x.shape[3]
    for task in prange(x.shape[0] * th):  # one row of tiles of one image per task
        b, y = task // th, 4 * (task % th)
        s = np.empty((6, 6, nc), dtype=x.dtype)  # s[i, j] = (B^T d)[i, j]
        for col in range(tw):
            t, q = task * tw + col, 4 * col
            for j in range(6):
                for c in range(nc):
                    s[0, j, c], s[1, j, c], s[2, j, c], s[3, j, c], s[4, j, c], s[5, j, c] = _bt6(
                        x[b, y, q + j, c], x[b, y + 1, q + j, c], x[b, y + 2, q + j, c],
                        x[b, y + 3, q + j, c], x[b, y + 4, q + j, c], x[b, y + 5, q + j, c],
                    )
            for i in range(6):
                k = 6 * i
                for c in range(nc):
                    v[k, t, c], v[k + 1, t, c], v[k + 2, t, c], v[k + 3, t, c], v[k + 4, t, c], v[k + 5, t, c] = _bt6(
                        s[i, 0, c], s[i, 1, c], s[i, 2, c], s[i, 3, c], s[i, 4, c], s[i, 5, c]
                    )
    return v


@_pjit
def _winograd_output(m, th, tw, z, bias, relu):  # y = act(A^T M A + bias)
    nf = z.shape[3]
    for task in prange(z.shape[0] * th):  # one row of tiles of one image per task
        b, y = task // th, 4 * (task % th)
        s = np.empty((6, 4, nf), dtype=z.dtype)  # s[i, q] = (M A)[i, q]
        for col in range(tw):
            t, q = task * tw + col, 4 * col
            for i in range(6):
                k = 6 * i
                for f in range(nf):
                    s[i, 0, f], s[i, 1, f], s[i, 2, f], s[i, 3, f] = _at6(
                        m[k, t, f], m[k + 1, t, f], m[k + 2, t, f],
                        m[k + 3, t, f], m[k + 4, t, f], m[k + 5, t, f],
                    )
            for j in range(4):
                for f in range(nf):
                    y0, y1, y2, y3 = _at6(s[0, j, f], s[1, j, f], s[2, j, f], s[3, j, f], s[4, j, f], s[5, j, f])
                    z[b, y, q + j, f] = _relu(y0 + bias[f], relu)
                    z[b, y + 1, q + j, f] = _relu(y1 + bias[f], relu)
                    z[b, y + 2, q + j, f] = _relu(y2 + bias[f], relu)
                    z[b, y + 3, q + j, f] = _relu(y3 + bias[f], relu)


@_pjit
def _winograd_grad_output(gy, yr, masked, th, tw, gm, gb):  # gM = A gy A^T; gb: column sums
    nf = gy.shape[3]
    for task in prange(gy.shape[0] * th):
        b, y = task // th, 4 * (task % th)
        gb[task] = 0  # this task's share of the bias gradient
        s = np.empty((4, 6, nf), dtype=gy.dtype)  # s[p, j] = (gy A^T)[p, j]
        for col in range(tw):
            t, q = task * tw + col, 4 * col
            for p in range(4):
                r = y + p
                for f in range(nf):
                    g0 = _relu_grad(gy[b, r, q, f], yr[b, r, q, f], masked)
                    g1 = _relu_grad(gy[b, r, q + 1, f], yr[b, r, q + 1, f], masked)
                    g2 = _relu_grad(gy[b, r, q + 2, f], yr[b, r, q + 2, f], masked)
                    g3 = _relu_grad(gy[b, r, q + 3, f], yr[b, r, q + 3, f], masked)
                    gb[task, f] += g0 + g1 + g2 + g3
                    s[p, 0, f], s[p, 1, f], s[p, 2, f], s[p, 3, f], s[p, 4, f], s[p, 5, f] = _a6(g0, g1, g2, g3)
            for j in range(6):
                for f in range(nf):
                    gm[j, t, f], gm[6 + j, t, f], gm[12 + j, t, f], gm[18 + j, t, f], gm[24 + j, t, f], gm[30 + j, t, f] = _a6(
                        s[0, j, f], s[1, j, f], s[2, j, f], s[3, j, f]
                    )


@_pjit
def winograd_grad_input(gv, th, tw, gx):  # gd = B gV B^T, added where tiles overlap
    nc = gx.shape[3]
    for b in prange(gx.shape[0]):  # one image per task: its tiles overlap only each other
        gx[b] = 0
        s = np.empty((6, 6, nc), dtype=gx.dtype)  # s[i, a] = (gV B^T)[i, a]
        for r in range(th * tw):
            t, y, q = b * th * tw + r, 4 * (r // tw), 4 * (r % tw)
            for i in range(6):
                k = 6 * i
                for c in range(nc):
                    s[i, 0, c], s[i, 1, c], s[i, 2, c], s[i, 3, c], s[i, 4, c], s[i, 5, c] = _b6(
                        gv[k, t, c], gv[k + 1, t, c], gv[k + 2, t, c],
                        gv[k + 3, t, c], gv[k + 4, t, c], gv[k + 5, t, c],
                    )
            for j in range(6):
                for c in range(nc):
                    g0, g1, g2, g3, g4, g5 = _b6(s[0, j, c], s[1, j, c], s[2, j, c], s[3, j, c], s[4, j, c], s[5, j, c])
                    gx[b, y, q + j, c] += g0
                    gx[b, y + 1, q + j, c] += g1
                    gx[b, y + 2, q + j, c] += g2
                    gx[b, y + 3, q + j, c] += g3
                    gx[b, y + 4, q + j, c] += g4
                    gx[b, y + 5, q + j, c] += g5
    return gx


# fmt: on


def winograd_output(m, th, tw, z, bias=None, relu=False):
    _winograd_output(m, th, tw, z, _bias_row(bias, z.shape[3], z.dtype), bool(relu))
    return z


def winograd_grad_output(gy, th, tw, gm, y=None):
    gy = np.ascontiguousarray(gy)
    y = gy if y is None else np.ascontiguousarray(y)
    gb = np.empty((gy.shape[0] * th, gy.shape[3]), dtype=gy.dtype)
    _winograd_grad_output(gy, y, y is not gy, th, tw, gm, gb)
    return gm, gb.sum(axis=0)


OPS = {(name, "any"): globals()[name] for name in OP_NAMES if name in globals()}
