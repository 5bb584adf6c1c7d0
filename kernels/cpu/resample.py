"""Affine resampling of a batch, each image by its own transform, for the augmentation layers:
one pass over the output, each pixel reading its 4 (bilinear) or 1 (nearest) input pixels
through the fill mode's index map. The maths and its reference are minicnn/ops/resample.py."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .jit import pjit

_MODES = {"constant": 0, "nearest": 1, "reflect": 2, "mirror": 3, "wrap": 4}


@njit(cache=True, inline="always")
def _fold(i, n, mode):  # -1 where "constant" reads the fill value
    if mode == 0:
        return i if 0 <= i < n else -1
    if mode == 1:
        return min(max(i, 0), n - 1)
    if mode == 2:
        i %= 2 * n
        return 2 * n - 1 - i if i >= n else i
    if mode == 3:
        if n == 1:
            return 0
        i %= 2 * n - 2
        return 2 * n - 2 - i if i >= n else i
    return i % n


@pjit
def _resample(x, t, bilinear, mode, fill, y):
    n, h, w, c = x.shape
    for task in prange(n * h):  # one output row of one image per task
        b, row = task // h, task % h
        for col in range(w):
            xs = t[b, 0] * col + t[b, 1] * row + t[b, 2]
            ys = t[b, 3] * col + t[b, 4] * row + t[b, 5]
            for k in range(c):
                y[b, row, col, k] = 0
            if bilinear:
                x0, y0 = math.floor(xs), math.floor(ys)
                fx, fy = xs - x0, ys - y0
                for dy in range(2):
                    r = _fold(int(y0) + dy, h, mode)
                    wy = fy if dy else 1 - fy
                    for dx in range(2):
                        q = _fold(int(x0) + dx, w, mode)
                        wgt = y.dtype.type(wy * (fx if dx else 1 - fx))
                        for k in range(c):
                            v = fill if (r < 0 or q < 0) else x[b, r, q, k]
                            y[b, row, col, k] += wgt * v
            else:
                r = _fold(int(math.floor(ys + 0.5)), h, mode)
                q = _fold(int(math.floor(xs + 0.5)), w, mode)
                for k in range(c):
                    y[b, row, col, k] = fill if (r < 0 or q < 0) else x[b, r, q, k]


def affine_resample(x, transforms, interpolation="bilinear", fill_mode="reflect", fill_value=0.0):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    t = np.ascontiguousarray(transforms, dtype=np.float64)
    _resample(x, t, interpolation == "bilinear", _MODES[fill_mode], x.dtype.type(fill_value), y)
    return y
