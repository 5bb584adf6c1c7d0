"""The maths of the layers, written once over an array module ``xp`` (NumPy or CuPy).

Layout is channels-last throughout: images ``(N, H, W, C)``, kernels ``(kh, kw, C, F)``.
Each op that has a hand-written kernel looks it up in ``minicnn.kernels`` through ``_kernel``; the
plain array code here stays as the reference the tests compare those kernels against.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn import kernels
from minicnn.backend import get_array_module


def _kernel(name: str, x):
    """The fast version of op ``name`` for ``x``'s device, or None to use the code below."""
    return kernels.lookup(name, get_array_module(x), x.dtype)


# ---------------------------------------------------------------------------------------------
# Geometry


def conv_output_length(size: int, k: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - k) // stride + 1


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same": pad so out = ceil(size / stride), the odd pixel going after."""
    total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def padding_amounts(h, w, kh, kw, sy, sx, padding) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` padding for a window op."""
    if padding == "valid":
        return 0, 0, 0, 0
    return (*same_padding(h, kh, sy), *same_padding(w, kw, sx))


def pad(x, pads, value=0.0):
    top, bottom, left, right = pads
    if not any(pads):
        return x
    xp = get_array_module(x)
    return xp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


# ---------------------------------------------------------------------------------------------
# Convolution by im2col


def im2col(x, kh, kw, sy, sx, pads):
    """Gather every receptive field into a row.

    x: (N, H, W, C) -> col: (N, oH, oW, kh, kw, C), contiguous, so that
    ``col.reshape(N*oH*oW, kh*kw*C) @ W.reshape(kh*kw*C, F)`` is the convolution.
    """
    fast = _kernel("im2col", x)
    if fast is not None:
        return fast(x, kh, kw, sy, sx, pads)
    xp = get_array_module(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - kh) // sy + 1
    ow = (w + pads[2] + pads[3] - kw) // sx + 1
    xpad = pad(x, pads)
    col = xp.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):  # a loop over kernel offsets only: each copy moves a whole image slice
        for j in range(kw):
            col[:, :, :, i, j, :] = xpad[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :]
    return col


def col2im(gcol, x_shape, sy, sx, pads):
    """Adjoint of im2col: add each row's gradient back onto the pixels it came from.

    gcol: (N, oH, oW, kh, kw, C) -> gx: (N, H, W, C)
    """
    fast = _kernel("col2im", gcol)
    if fast is not None:
        return fast(gcol, x_shape, sy, sx, pads)
    xp = get_array_module(gcol)
    n, oh, ow, kh, kw, c = gcol.shape
    _, h, w, _ = x_shape
    top, bottom, left, right = pads
    gxpad = xp.zeros((n, h + top + bottom, w + left + right, c), dtype=gcol.dtype)
    for i in range(kh):
        for j in range(kw):
            gxpad[:, i : i + sy * oh : sy, j : j + sx * ow : sx, :] += gcol[:, :, :, i, j, :]
    return gxpad[:, top : top + h, left : left + w, :]


# ---------------------------------------------------------------------------------------------
# Elementwise


def bias_relu(y, b, relu: bool):
    """In place: ``y += b`` then, if ``relu``, ``y = max(y, 0)``. y: (M, F), b: (F,) or None."""
    fast = _kernel("bias_relu", y)
    if fast is not None:
        return fast(y, b, relu)
    xp = get_array_module(y)
    if b is not None:
        y += b
    if relu:
        xp.maximum(y, 0, out=y)
    return y


def relu_backward(gy, y):
    """Gradient through ReLU given its output ``y`` (y > 0 exactly where the input was > 0)."""
    fast = _kernel("relu_backward", gy)
    if fast is not None:
        return fast(gy, y)
    return gy * (y > 0)


# ---------------------------------------------------------------------------------------------
# Softmax and its cross-entropy


def softmax(z):
    """Row-wise softmax over the last axis, shifted by the row max so exp never overflows."""
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(z, t):
    """Mean cross-entropy of softmax(z) against target rows ``t``, and its gradient in z.

    z: (N, K) logits; t: (N, K) one-hot rows or any distributions. Works from log-sum-exp, so any
    finite logits give a finite loss. Returns ``(loss, gz)``, gz = (softmax(z) * sum(t) - t) / N.
    """
    fast = _kernel("softmax_cross_entropy", z)
    if fast is not None:
        return fast(z, t)
    xp = get_array_module(z)
    n = z.shape[0]
    shifted = z - z.max(axis=-1, keepdims=True)  # (N, K), row max 0: exp cannot overflow
    e = xp.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    loss = -(t * (shifted - xp.log(s))).sum() / n
    gz = (e / s) * t.sum(axis=-1, keepdims=True)
    gz -= t
    gz /= n
    return loss, gz


# ---------------------------------------------------------------------------------------------
# Max pooling


def maxpool_forward(x, ph, pw, sy, sx, pads):
    """x: (N, H, W, C) -> y: (N, oH, oW, C) and ``arg``: (N, oH, oW, C), the winning offset
    ``i * pw + j`` inside each window (the first one on ties, as the naive loop would pick)."""
    fast = _kernel("maxpool_forward", x)
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
            better = window > y
            y = xp.where(better, window, y)
            arg[better] = i * pw + j
    return y, arg


def maxpool_backward(gy, arg, x_shape, ph, pw, sy, sx, pads):
    """Route each output gradient to the input that won its window. -> gx: (N, H, W, C)"""
    fast = _kernel("maxpool_backward", gy)
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


# ---------------------------------------------------------------------------------------------
# Optimiser updates


def adam_update(p, g, m, v, alpha: float, b1: float, b2: float, eps: float) -> None:
    """In place: m, v <- moving averages of g and g^2; p <- p - alpha * m / (sqrt(v) + eps)."""
    fast = _kernel("adam_update", p)
    if fast is not None:
        return fast(p, g, m, v, alpha, b1, b2, eps)
    xp = get_array_module(p)
    m += (1 - b1) * (g - m)
    v += (1 - b2) * (g * g - v)
    p -= alpha * m / (xp.sqrt(v) + eps)
