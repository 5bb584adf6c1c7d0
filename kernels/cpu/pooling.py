"""Max pooling: each window's max and where it was, and the gradient routed back to it (written
straight, window by window, where the windows tile the input)."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import pjit


@pjit
def _maxpool_forward(x, y, arg, ph, pw, sy, sx, top, left):
    n, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    for r in prange(n * oh):  # one output row of one image per task
        b, p = r // oh, r % oh
        best = np.empty(c, dtype=x.dtype)
        at = np.empty(c, dtype=arg.dtype)
        for q in range(ow):
            best[:] = -np.inf
            at[:] = 0
            for i in range(ph):
                yy = p * sy + i - top
                if yy < 0 or yy >= h:
                    continue
                for j in range(pw):
                    xx = q * sx + j - left
                    if xx < 0 or xx >= w:
                        continue
                    for ch in range(c):  # contiguous over channels
                        v = x[b, yy, xx, ch]
                        if v > best[ch] or (v != v and best[ch] == best[ch]):  # a NaN wins
                            best[ch] = v
                            at[ch] = i * pw + j
            y[b, p, q, :] = best
            arg[b, p, q, :] = at


# Kept apart from _maxpool_forward: one kernel with arg=None for this case (numba compiles
# each apart) took the training forward from 0.75 to 0.94 ms (128 maps of 26x26x32, interleaved).
@pjit
def _maxpool(x, y, ph, pw, sy, sx, top, left):  # the forward's maxima alone: no branch, vectorised
    n, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    for r in prange(n * oh):  # one output row of one image per task
        b, p = r // oh, r % oh
        best = np.empty(c, dtype=x.dtype)
        for q in range(ow):
            best[:] = -np.inf
            for i in range(ph):
                yy = p * sy + i - top
                if yy < 0 or yy >= h:
                    continue
                for j in range(pw):
                    xx = q * sx + j - left
                    if xx < 0 or xx >= w:
                        continue
                    for ch in range(c):  # the forward's maxima: a NaN wins and stays
                        v = x[b, yy, xx, ch]
                        best[ch] = v if (v > best[ch]) | (v != v) else best[ch]
            y[b, p, q, :] = best


@pjit
def _maxpool_backward(gy, arg, gx, ph, pw, sy, sx, top, left):
    n, oh, ow, c = gy.shape
    _, h, w, _ = gx.shape
    for b in prange(n):  # one image per task: its windows overlap only each other
        gx[b] = 0
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):  # each output's gradient goes to its window's winner
                    a = arg[b, p, q, ch]
                    yy = p * sy + a // pw - top
                    xx = q * sx + a % pw - left
                    if 0 <= yy < h and 0 <= xx < w:
                        gx[b, yy, xx, ch] += gy[b, p, q, ch]


@pjit
def _maxpool_backward_tiled(gy, arg, gx, ph, pw):  # windows tile x: each element written once
    n, oh, ow, c = gy.shape
    for r in prange(n * oh):  # one row of windows of one image per task
        b, p = r // oh, r % oh
        for i in range(ph):
            for q in range(ow):
                for j in range(pw):
                    a = i * pw + j
                    for ch in range(c):
                        gx[b, p * ph + i, q * pw + j, ch] = (
                            gy[b, p, q, ch] if arg[b, p, q, ch] == a else 0
                        )


def maxpool_forward(x, ph, pw, sy, sx, pads):
    x = np.ascontiguousarray(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - ph) // sy + 1
    ow = (w + pads[2] + pads[3] - pw) // sx + 1
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    arg = np.empty((n, oh, ow, c), dtype=np.int8)
    _maxpool_forward(x, y, arg, ph, pw, sy, sx, pads[0], pads[2])
    return y, arg


def maxpool(x, ph, pw, sy, sx, pads):
    x = np.ascontiguousarray(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - ph) // sy + 1
    ow = (w + pads[2] + pads[3] - pw) // sx + 1
    y = np.empty((n, oh, ow, c), dtype=x.dtype)
    _maxpool(x, y, ph, pw, sy, sx, pads[0], pads[2])
    return y


def maxpool_backward(gy, arg, x_shape, ph, pw, sy, sx, pads):
    gy, arg = np.ascontiguousarray(gy), np.ascontiguousarray(arg)
    gx = np.empty(tuple(x_shape), dtype=gy.dtype)
    if (sy, sx) != (ph, pw) or any(pads):  # windows overlap or reach past x: scatter-add
        _maxpool_backward(gy, arg, gx, ph, pw, sy, sx, pads[0], pads[2])
        return gx
    # the usual pool (stride = size, "valid"): every element of the windows written once,
    # no zeroing pass and no read-modify-write (1.55 -> 0.7 ms, 128 maps of 26x26x32)
    _, oh, ow, _ = gy.shape
    _maxpool_backward_tiled(gy, arg, gx, ph, pw)
    gx[:, oh * ph :] = 0  # rows and columns no window reaches
    gx[:, :, ow * pw :] = 0
    return gx
