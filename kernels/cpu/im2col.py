"""im2col and its adjoint col2im: one pass over memory instead of one per kernel offset."""

from __future__ import annotations

import numpy as np
from numba import prange

from .jit import pjit


@pjit
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
                    inside = 0 <= y < h and 0 <= xx < w
                    for k in range(c):  # a loop, not a slice: no view per pixel when C is small
                        col[b, p, q, i, j, k] = x[b, y, xx, k] if inside else 0


@pjit
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
            for j in range(kw):  # each element gets its (i, j) terms in the same order as before
                for q in range(ow):  # over the output columns: no division per element
                    xx = q * sx + j - left
                    if 0 <= xx < w:
                        for k in range(c):
                            gx[b, y, xx, k] += gcol[b, p, q, i, j, k]


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
