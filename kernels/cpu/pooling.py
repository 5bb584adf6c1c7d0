"""Max pooling: each window's max and where it was, and the gradient routed back to it."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import pjit


@pjit
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


@pjit
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
