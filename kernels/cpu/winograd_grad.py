"""Winograd F(4x4, 3x3)'s backward transforms, the adjoints of winograd.py's: the output
gradient into gM = A gy A^T (with the bias gradient and ReLU's mask), and gV back through
B gV B^T to the input's pixels; each also on the calling thread alone, for the backward's
per-core pipeline (minicnn/maths/conv/winograd.py)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .jit import jit, pjit, relu_grad_if, scratch
from .winograd import _a6, _b6, _fits, _shape, _tiles


# fmt: off
@njit(cache=True, inline="always")
def _grad_output_row(gy, yr, masked, th, tw, gm, gb, task):  # one row of tiles of one image
    oh, ow, nf = gy.shape[1], gy.shape[2], gy.shape[3]
    b, y = task // th, 4 * (task % th)
    gb[task] = 0  # this task's share of the bias gradient
    g = scratch((4, 4, nf), gy.dtype)  # the tile's 4x4 gradients, 0 past the edge
    s = scratch((4, 6, nf), gy.dtype)  # s[p, j] = (g A^T)[p, j]
    for col in range(tw):
        t, q = task * tw + col, 4 * col
        for p in range(4):
            for j in range(4):
                r, c = y + p, q + j
                if r < oh and c < ow:
                    for f in range(nf):
                        g[p, j, f] = relu_grad_if(gy[b, r, c, f], yr[b, r, c, f], masked)
                        gb[task, f] += g[p, j, f]
                else:
                    for f in range(nf):
                        g[p, j, f] = 0
        for p in range(4):
            for f in range(nf):
                s[p, 0, f], s[p, 1, f], s[p, 2, f], s[p, 3, f], s[p, 4, f], s[p, 5, f] = _a6(
                    g[p, 0, f], g[p, 1, f], g[p, 2, f], g[p, 3, f]
                )
        for j in range(6):
            for f in range(nf):
                gm[j, t, f], gm[6 + j, t, f], gm[12 + j, t, f], gm[18 + j, t, f], gm[24 + j, t, f], gm[30 + j, t, f] = _a6(
                    s[0, j, f], s[1, j, f], s[2, j, f], s[3, j, f]
                )


@pjit
def _winograd_grad_output(gy, yr, masked, th, tw, gm, gb):  # gM = A gy A^T; gb: column sums
    for task in prange(gy.shape[0] * th):  # one row of tiles of one image per task
        _grad_output_row(gy, yr, masked, th, tw, gm, gb, task)


@jit
def _winograd_grad_output_serial(gy, yr, masked, th, tw, gm, gb):  # the same, this thread only
    for task in range(gy.shape[0] * th):
        _grad_output_row(gy, yr, masked, th, tw, gm, gb, task)


@njit(cache=True, inline="always")
def _grad_input_tile(gv, t, s, dst, b, y0, x0):  # dst[b, y0:y0+6, x0:x0+6] += B gV B^T; s: scratch
    nc = gv.shape[2]
    for i in range(6):
        k = 6 * i
        for c in range(nc):
            s[i, 0, c], s[i, 1, c], s[i, 2, c], s[i, 3, c], s[i, 4, c], s[i, 5, c] = _b6(
                gv[k, t, c], gv[k + 1, t, c], gv[k + 2, t, c],
                gv[k + 3, t, c], gv[k + 4, t, c], gv[k + 5, t, c],
            )
    for j in range(6):
        q = x0 + j
        for c in range(nc):
            g0, g1, g2, g3, g4, g5 = _b6(s[0, j, c], s[1, j, c], s[2, j, c], s[3, j, c], s[4, j, c], s[5, j, c])
            dst[b, y0, q, c] += g0
            dst[b, y0 + 1, q, c] += g1
            dst[b, y0 + 2, q, c] += g2
            dst[b, y0 + 3, q, c] += g3
            dst[b, y0 + 4, q, c] += g4
            dst[b, y0 + 5, q, c] += g5


@njit(cache=True, inline="always")
def _grad_input_image(gv, th, tw, top, left, blk, gx, b):  # one image: its tiles overlap only each other
    h, w, nc = gx.shape[1], gx.shape[2], gx.shape[3]
    vc = gv.shape[2]
    gx[b] = 0
    s = scratch((6, 6, vc), gx.dtype)  # s[i, a] = (gV B^T)[i, a]
    gd = scratch((1, 6, 6, vc), gx.dtype)  # a tile that is not a plain window of x
    for r in range(th * tw):
        t, y, q = b * th * tw + r, 4 * (r // tw), 4 * (r % tw)
        y0, x0 = blk * y - top, blk * q - left
        if blk == 1 and y0 >= 0 and x0 >= 0 and y0 + 6 <= h and x0 + 6 <= w:
            _grad_input_tile(gv, t, s, gx, b, y0, x0)
            continue
        gd[...] = 0
        _grad_input_tile(gv, t, s, gd, 0, 0, 0)
        for i in range(6):
            for rr in range(blk):
                row = blk * i + rr + y0
                if 0 <= row < h:
                    for j in range(6):
                        for ss in range(blk):
                            col, o = blk * j + ss + x0, (rr * blk + ss) * nc
                            if 0 <= col < w:
                                for c in range(nc):
                                    gx[b, row, col, c] += gd[0, i, j, o + c]


@pjit
def _winograd_grad_input(gv, th, tw, top, left, blk, gx):  # gd = B gV B^T, added back to x's pixels
    for b in prange(gx.shape[0]):  # one image per task
        _grad_input_image(gv, th, tw, top, left, blk, gx, b)
    return gx


@jit
def _winograd_grad_input_serial(gv, th, tw, top, left, blk, gx):  # the same, this thread only
    for b in range(gx.shape[0]):
        _grad_input_image(gv, th, tw, top, left, blk, gx, b)
    return gx


# fmt: on


def _grad_output_args(gy, th, tw, gm, y):  # the output-gradient kernels' arguments, checked
    _fits(gy.shape[3], "filters")
    _shape("output gradient's gM", gm.shape, (36, gy.shape[0] * th * tw, gy.shape[3]))
    _tiles("output gradient", gy, th, tw)
    if y is not None:
        _shape("ReLU's output", y.shape, gy.shape)
    gy = np.ascontiguousarray(gy)
    y = gy if y is None else np.ascontiguousarray(y)
    gb = np.empty((gy.shape[0] * th, gy.shape[3]), dtype=gy.dtype)
    return gy, y, y is not gy, th, tw, gm, gb


def _grad_input_args(gv, grid, gx):  # the input-gradient kernels' arguments, checked
    th, tw, top, left, blk = grid
    _fits(gv.shape[2], "input channels")
    _shape("input gradient's gV", gv.shape, (36, gx.shape[0] * th * tw, blk * blk * gx.shape[3]))
    return gv, th, tw, top, left, blk, gx


def _grad_output(kernel, gy, th, tw, gm, y):  # -> (gM, the bias gradient), by either kernel
    args = _grad_output_args(gy, th, tw, gm, y)
    kernel(*args)
    return gm, args[-1].sum(axis=0)


def winograd_grad_output(gy, th, tw, gm, y=None):
    return _grad_output(_winograd_grad_output, gy, th, tw, gm, y)


def winograd_grad_input(gv, grid, gx):
    return _winograd_grad_input(*_grad_input_args(gv, grid, gx))


# And on the calling thread alone, for the backward's pipeline.


def winograd_grad_output_serial(gy, th, tw, gm, y=None):
    return _grad_output(_winograd_grad_output_serial, gy, th, tw, gm, y)


def winograd_grad_input_serial(gv, grid, gx):
    return _winograd_grad_input_serial(*_grad_input_args(gv, grid, gx))
