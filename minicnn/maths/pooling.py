"""Max pooling, forward and backward, channels-last."""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for
from minicnn.maths.geometry import pad


def maxpool_forward(x, ph, pw, sy, sx, pads):
    """x: (N, H, W, C) -> y: (N, oH, oW, C) and ``arg``: (N, oH, oW, C), the winning offset
    ``i * pw + j`` inside each window (the first one on ties, as the naive loop would pick).
    A NaN is its window's maximum (the first NaN, where its gradient goes), as NumPy's max and
    Keras on PyTorch and JAX give: a NaN is never hidden from the loss and the non-finite guard."""
    fast = kernel_for("maxpool_forward", x)
    if fast is not None:
        return fast(x, ph, pw, sy, sx, pads)
    xp = get_array_module(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - ph) // sy + 1
    ow = (w + pads[2] + pads[3] - pw) // sx + 1
    xpad = pad(x, pads, value=-np.inf)
    y = xpad[:, 0 : sy * oh : sy, 0 : sx * ow : sx, :].copy()
    arg = xp.zeros(y.shape, dtype=np.int8)
    for i in range(ph):
        for j in range(pw):
            if i == j == 0:
                continue
            window = xpad[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :]
            better = (window > y) | (xp.isnan(window) & ~xp.isnan(y))  # a NaN wins
            y = xp.where(better, window, y)
            arg[better] = i * pw + j
    return y, arg


def maxpool(x, ph, pw, sy, sx, pads):
    """The max of each window alone, for inference: ``maxpool_forward``'s y without recording
    the winners (on a few images, the array code's per-window compare-and-record was most of
    a convnet's batch-1 predict)."""
    fast = kernel_for("maxpool", x)
    if fast is not None:
        return fast(x, ph, pw, sy, sx, pads)
    fast = kernel_for("maxpool_forward", x)  # a device with no maxima-only kernel (CUDA)
    if fast is not None:
        return fast(x, ph, pw, sy, sx, pads)[0]
    xp = get_array_module(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - ph) // sy + 1
    ow = (w + pads[2] + pads[3] - pw) // sx + 1
    xpad = pad(x, pads, value=-np.inf)
    y = xpad[:, 0 : sy * oh : sy, 0 : sx * ow : sx, :].copy()
    for i in range(ph):
        for j in range(pw):
            if i or j:
                xp.maximum(y, xpad[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :], out=y)
    return y


def maxpool_backward(gy, arg, x_shape, ph, pw, sy, sx, pads):
    """Route each output gradient to the input that won its window. -> gx: (N, H, W, C)"""
    fast = kernel_for("maxpool_backward", gy)
    if fast is not None:
        return fast(gy, arg, x_shape, ph, pw, sy, sx, pads)
    xp = get_array_module(gy)
    n, h, w, c = x_shape
    _, oh, ow, _ = gy.shape
    top, bottom, left, right = pads
    gxpad = xp.zeros((n, h + top + bottom, w + left + right, c), dtype=gy.dtype)
    for i in range(ph):
        for j in range(pw):
            gxpad[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :] += gy * (arg == i * pw + j)
    return gxpad[:, top : top + h, left : left + w, :]


def _window_counts(xp, h, w, ph, pw, sy, sx, pads, oh, ow, dtype):
    """(oH, oW, 1): how many real (not padding) pixels each window covers."""
    ones = pad(xp.ones((1, h, w, 1), dtype=dtype), pads)
    counts = xp.zeros((1, oh, ow, 1), dtype=dtype)
    for i in range(ph):
        for j in range(pw):
            counts += ones[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :]
    return counts[0]


def avgpool_forward(x, ph, pw, sy, sx, pads):
    """Mean over each window, padding not counted (as Keras): x (N, H, W, C) -> (N, oH, oW, C)."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - ph) // sy + 1
    ow = (w + pads[2] + pads[3] - pw) // sx + 1
    xpad = pad(x, pads)
    y = xp.zeros((n, oh, ow, c), dtype=x.dtype)
    for i in range(ph):  # a loop over window offsets: each add moves a whole strided slice
        for j in range(pw):
            y += xpad[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :]
    y /= _window_counts(xp, h, w, ph, pw, sy, sx, pads, oh, ow, x.dtype)
    return y


def avgpool_backward(gy, x_shape, ph, pw, sy, sx, pads):
    """Each output's gradient shared equally among the real pixels of its window."""
    xp = get_array_module(gy)
    n, h, w, c = x_shape
    _, oh, ow, _ = gy.shape
    top, bottom, left, right = pads
    g = gy / _window_counts(xp, h, w, ph, pw, sy, sx, pads, oh, ow, gy.dtype)
    gxpad = xp.zeros((n, h + top + bottom, w + left + right, c), dtype=gy.dtype)
    for i in range(ph):
        for j in range(pw):
            gxpad[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :] += g
    return gxpad[:, top : top + h, left : left + w, :]
