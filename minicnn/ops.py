"""The maths of the layers, written once over an array module ``xp`` (NumPy or CuPy).

Layout is channels-last throughout: images ``(N, H, W, C)``, kernels ``(kh, kw, C, F)``.
Each op that has a hand-written kernel looks it up in ``minicnn.kernels`` through ``_kernel``; the
plain array code here stays as the reference the tests compare those kernels against.
"""

from __future__ import annotations

import math
import os

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
# Convolution: two algorithms behind one interface


def conv_algorithm(x, strides, channels: int) -> str:
    """ "im2col" (the reference, and the GPU's choice) or "shifted" (CPU, stride 1, many input
    channels, where skipping the im2col copy halves the time). MINICNN_CONV forces either."""
    forced = os.environ.get("MINICNN_CONV", "auto").lower()
    if forced in ("im2col", "shifted"):
        return "shifted" if forced == "shifted" and tuple(strides) == (1, 1) else "im2col"
    cpu = get_array_module(x) is np
    return "shifted" if cpu and tuple(strides) == (1, 1) and channels >= 16 else "im2col"


def conv2d_forward(x, kernel, strides, pads):
    """Convolution without bias. x: (N, H, W, C), kernel: (kh, kw, C, F) -> z: (N*oH*oW, F)
    contiguous, and what ``conv2d_backward`` needs."""
    kh, kw, c, f = kernel.shape
    sy, sx = strides
    if conv_algorithm(x, strides, c) == "im2col":
        col = im2col(x, kh, kw, sy, sx, pads)  # (N, oH, oW, kh, kw, C)
        n, oh, ow = col.shape[:3]
        col2d = col.reshape(n * oh * ow, kh * kw * c)  # a view: im2col's result is contiguous
        return col2d @ kernel.reshape(kh * kw * c, f), ("im2col", col2d, (n, oh, ow))
    return _shifted_forward(x, kernel, pads)


def conv2d_backward(gz, saved, kernel, x_shape, strides, pads, need_gx: bool):
    """gz: (N*oH*oW, F) -> (gkernel (kh, kw, C, F), gx (N, H, W, C) or None)."""
    kh, kw, c, f = kernel.shape
    if saved[0] == "shifted":
        return _shifted_backward(gz, saved, kernel, x_shape, pads, need_gx)
    _, col2d, (n, oh, ow) = saved
    gkernel = matmul_tn(col2d, gz).reshape(kh, kw, c, f)
    if not need_gx:
        return gkernel, None
    gcol = (gz @ kernel.reshape(kh * kw * c, f).T).reshape(n, oh, ow, kh, kw, c)
    return gkernel, col2im(gcol, x_shape, *strides, pads)


_CHUNK_BYTES = 4 << 20  # input bytes per chunk of the shifted GEMMs: about what stays in cache


def _chunks(n: int, per_image: int, itemsize: int):
    """Image ranges [n0, n1) of about _CHUNK_BYTES each: the same FLOPs, on data still in cache
    (at batch 128 the whole padded input of conv2 is 22 MB and every tap streams it again)."""
    step = max(1, _CHUNK_BYTES // (per_image * itemsize))
    return [(n0, min(n0 + step, n)) for n0 in range(0, n, step)]


def _shifted_forward(x, kernel, pads):
    """Stride-1 convolution as kh*kw GEMMs over the flattened padded input, with no im2col copy.

    On the padded grid (N, Hp, Wp), flattened to rows r = (n*Hp + p)*Wp + q, the input that
    output row r reads through kernel tap (i, j) is row r + i*Wp + j: for each tap a run of
    images is one contiguous slice, so y[:L] += x[s:s+L] @ kernel[i, j] with s = i*Wp + j.
    Rows whose window runs off the right or bottom edge are computed too (17% more work for a
    3x3 kernel on 26x26) and cropped away.
    """
    xp = get_array_module(x)
    kh, kw, c, f = kernel.shape
    xpad = pad(x, pads)
    n, hp, wp, _ = xpad.shape
    oh, ow = hp - kh + 1, wp - kw + 1
    per = hp * wp
    flat = xp.ascontiguousarray(xpad).reshape(n * per, c)  # (N*Hp*Wp, C)
    z = xp.empty((n, oh, ow, f), dtype=x.dtype)
    chunks = _chunks(n, per * c, x.dtype.itemsize)
    full = xp.empty(((chunks[0][1] - chunks[0][0]) * per, f), dtype=x.dtype)
    tmp = xp.empty_like(full)
    for n0, n1 in chunks:
        rows = (n1 - n0) * per
        length = rows - (kh - 1) * wp - (kw - 1)  # the last valid output row, plus one
        part = flat[n0 * per : n1 * per]
        for i in range(kh):
            for j in range(kw):
                s = i * wp + j
                if i == j == 0:
                    xp.matmul(part[:length], kernel[0, 0], out=full[:length])
                else:
                    xp.matmul(part[s : s + length], kernel[i, j], out=tmp[:length])
                    full[:length] += tmp[:length]
        # rows from `length` on were never written: they fall in the cropped border
        z[n0:n1] = full[:rows].reshape(n1 - n0, hp, wp, f)[:, :oh, :ow, :]
    return z.reshape(n * oh * ow, f), ("shifted", flat, (n, hp, wp, oh, ow))


def _shifted_backward(gz, saved, kernel, x_shape, pads, need_gx):
    """The adjoint of _shifted_forward, chunk by chunk: gkernel[i, j] += x[s:s+L].T @ g and
    gx[s:s+L] += g @ kernel[i, j].T, with g the output gradient placed back on the padded grid
    (zeros where rows were cropped)."""
    xp = get_array_module(gz)
    kh, kw, c, f = kernel.shape
    _, flat, (n, hp, wp, oh, ow) = saved
    per = hp * wp
    gz4 = gz.reshape(n, oh, ow, f)
    gkernel = xp.zeros_like(kernel)
    _, h, w, _ = x_shape
    top, left = pads[0], pads[2]
    gx = xp.empty((n, h, w, c), dtype=gz.dtype) if need_gx else None
    chunks = _chunks(n, per * c, gz.dtype.itemsize)
    size = chunks[0][1] - chunks[0][0]
    gfull = xp.zeros((size, hp, wp, f), dtype=gz.dtype)  # the border stays 0 in every chunk
    gflat = xp.empty((size * per, c), dtype=gz.dtype)
    tmp = xp.empty_like(gflat)
    for n0, n1 in chunks:
        rows = (n1 - n0) * per
        length = rows - (kh - 1) * wp - (kw - 1)
        gfull[: n1 - n0, :oh, :ow, :] = gz4[n0:n1]
        g = gfull.reshape(size * per, f)[:length]  # (L, F)
        part = flat[n0 * per : n1 * per]
        for i in range(kh):
            for j in range(kw):
                s = i * wp + j
                gkernel[i, j] += matmul_tn(part[s : s + length], g)  # (C, F)
        if need_gx:
            gflat[:rows] = 0
            for i in range(kh):
                for j in range(kw):
                    s = i * wp + j
                    xp.matmul(g, kernel[i, j].T, out=tmp[:length])
                    gflat[s : s + length] += tmp[:length]
            grid = gflat[:rows].reshape(n1 - n0, hp, wp, c)
            gx[n0:n1] = grid[:, top : top + h, left : left + w, :]
    return gkernel, gx


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


def matmul_tn(a, b):
    """``a.T @ b`` for a (M, K), b (M, F) -> (K, F): the weight gradient, whose inner dimension M
    (every pixel of the batch) dwarfs its output."""
    fast = _kernel("matmul_tn", a)
    if fast is not None:
        return fast(a, b)
    return a.T @ b


def sum_rows(a):
    """Column sums of a (M, F) matrix -> (F,): the bias gradient."""
    fast = _kernel("sum_rows", a)
    if fast is not None:
        return fast(a)
    return a.sum(axis=0)


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
