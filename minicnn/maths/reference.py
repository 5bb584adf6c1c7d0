"""The plain definitions: each op written as loops straight from its formula, in float64, with
no algorithm and no kernel. Slow on purpose; every fast path (the convolution algorithms, the
numba and CUDA kernels, the plan's fused steps) is tested against these."""

from __future__ import annotations

import math

import numpy as np


def pads(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis, (before, after); (0, 0) for "valid"."""
    if padding == "valid":
        return 0, 0
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv2d(x, kernel, bias, strides, padding: str) -> np.ndarray:
    """y[n, p, q, o] = bias[o] + sum_{u, v, c} xpad[n, p*sy + u, q*sx + v, c] kernel[u, v, c, o]
    (cross-correlation, as every framework computes it). x: (N, H, W, C), kernel (kh, kw, C, F)."""
    n, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    sy, sx = strides
    (t, bo), (le, r) = pads(h, kh, sy, padding), pads(w, kw, sx, padding)
    xp = np.zeros((n, h + t + bo, w + le + r, c))
    xp[:, t : t + h, le : le + w] = x
    oh, ow = (h + t + bo - kh) // sy + 1, (w + le + r - kw) // sx + 1
    y = np.zeros((n, oh, ow, f))
    for i in range(n):
        for p in range(oh):
            for q in range(ow):
                for o in range(f):
                    acc = 0.0 if bias is None else bias[o]
                    for u in range(kh):
                        for v in range(kw):
                            for ch in range(c):
                                acc += xp[i, p * sy + u, q * sx + v, ch] * kernel[u, v, ch, o]
                    y[i, p, q, o] = acc
    return y


def maxpool(x, pool, strides, padding: str) -> np.ndarray:
    """The largest value of each window; padded positions never win."""
    return _pool(x, pool, strides, padding, np.max, -np.inf)


def avgpool(x, pool, strides, padding: str) -> np.ndarray:
    """The mean of each window over its real pixels (padding is not counted, as Keras)."""
    return _pool(x, pool, strides, padding, np.nanmean, np.nan)


def _pool(x, pool, strides, padding, reduce, fill) -> np.ndarray:
    n, h, w, c = x.shape
    (ph, pw), (sy, sx) = pool, strides
    (t, bo), (le, r) = pads(h, ph, sy, padding), pads(w, pw, sx, padding)
    xp = np.full((n, h + t + bo, w + le + r, c), fill)
    xp[:, t : t + h, le : le + w] = x
    oh, ow = (h + t + bo - ph) // sy + 1, (w + le + r - pw) // sx + 1
    y = np.zeros((n, oh, ow, c))
    for i in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    y[i, p, q, ch] = reduce(xp[i, p * sy : p * sy + ph, q * sx : q * sx + pw, ch])  # fmt: skip
    return y


def batchnorm(x, gamma, beta, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training's batch normalisation, channel by channel over every other axis:
    y = gamma (x - mean) / sqrt(var + eps) + beta, var the biased variance. -> (y, mean, var)"""
    c = x.shape[-1]
    y = np.zeros(x.shape)
    mean, var = np.zeros(c), np.zeros(c)
    for ch in range(c):
        v = x[..., ch].astype(np.float64).ravel()
        mean[ch] = v.sum() / v.size
        var[ch] = ((v - mean[ch]) ** 2).sum() / v.size
        g = 1.0 if gamma is None else gamma[ch]
        b = 0.0 if beta is None else beta[ch]
        y[..., ch] = g * (x[..., ch] - mean[ch]) / math.sqrt(var[ch] + eps) + b
    return y, mean, var


def affine_resample(x, t, fill_mode: str, fill_value: float, interpolation: str) -> np.ndarray:
    """Each output pixel (row, col) of image b read at the input point (a0 col + a1 row + a2,
    b0 col + b1 row + b2), one pixel at a time, folding coordinates as Keras's fill modes say;
    bilinear or nearest."""
    n, h, w, _ = x.shape

    def fold(i, size):
        if fill_mode == "reflect":
            i %= 2 * size
            return 2 * size - 1 - i if i >= size else i
        if fill_mode == "mirror":
            i %= 2 * size - 2
            return 2 * size - 2 - i if i >= size else i
        if fill_mode == "wrap":
            return i % size
        return min(max(i, 0), size - 1)

    def read(b, r, c):
        if fill_mode == "constant" and not (0 <= r < h and 0 <= c < w):
            return np.full(x.shape[-1], fill_value)
        return x[b, fold(r, h), fold(c, w)]

    y = np.zeros_like(x, dtype=np.float64)
    for b in range(n):
        a0, a1, a2, b0, b1, b2 = t[b]
        for row in range(h):
            for col in range(w):
                xs, ys = a0 * col + a1 * row + a2, b0 * col + b1 * row + b2
                if interpolation == "nearest":
                    y[b, row, col] = read(b, round(ys), round(xs))  # halves to even
                    continue
                x0, y0 = math.floor(xs), math.floor(ys)
                fx, fy = xs - x0, ys - y0
                y[b, row, col] = (
                    (1 - fy) * (1 - fx) * read(b, y0, x0)
                    + (1 - fy) * fx * read(b, y0, x0 + 1)
                    + fy * (1 - fx) * read(b, y0 + 1, x0)
                    + fy * fx * read(b, y0 + 1, x0 + 1)
                )
    return y


def upsample_bilinear(x, fh: int, fw: int) -> np.ndarray:
    """TensorFlow's half-pixel bilinear resize by (fh, fw), one output pixel at a time: output
    row o reads input row s = max((o + 0.5) / fh - 0.5, 0), between floor(s) and
    min(floor(s) + 1, H - 1); the same for columns."""
    n, h, w, c = x.shape

    def taps(o, f, size):
        s = max((o + 0.5) / f - 0.5, 0.0)
        i0 = math.floor(s)
        return i0, min(i0 + 1, size - 1), s - i0

    y = np.zeros((n, h * fh, w * fw, c))
    for p in range(h * fh):
        r0, r1, ty = taps(p, fh, h)
        for q in range(w * fw):
            c0, c1, tx = taps(q, fw, w)
            y[:, p, q] = (
                (1 - ty) * ((1 - tx) * x[:, r0, c0] + tx * x[:, r0, c1])
                + ty * ((1 - tx) * x[:, r1, c0] + tx * x[:, r1, c1])
            )  # fmt: skip
    return y


def depthwise_conv2d(x, kernel, bias, strides, padding: str) -> np.ndarray:
    """y[n, p, q, c*M + m] = bias[c*M + m] + sum_{u, v} xpad[n, p*sy + u, q*sx + v, c]
    kernel[u, v, c, m]: each channel convolved with its own M filters (Keras's layout)."""
    n, h, w, c = x.shape
    kh, kw, _, mult = kernel.shape
    sy, sx = strides
    (t, bo), (le, r) = pads(h, kh, sy, padding), pads(w, kw, sx, padding)
    xp = np.zeros((n, h + t + bo, w + le + r, c))
    xp[:, t : t + h, le : le + w] = x
    oh, ow = (h + t + bo - kh) // sy + 1, (w + le + r - kw) // sx + 1
    y = np.zeros((n, oh, ow, c * mult))
    for i in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    for m in range(mult):
                        acc = 0.0 if bias is None else bias[ch * mult + m]
                        for u in range(kh):
                            for v in range(kw):
                                acc += xp[i, p * sy + u, q * sx + v, ch] * kernel[u, v, ch, m]
                        y[i, p, q, ch * mult + m] = acc
    return y


def conv2d_transpose(x, kernel, bias, strides, out_hw, top_left) -> np.ndarray:
    """The transposed convolution as a scatter: each input pixel (p, q) adds x[n, p, q, c]
    kernel[u, v, f, c] to output pixel (p*sy + u - top, q*sx + v - left) of an (oH, oW)
    image, what falls outside is dropped; kernel (kh, kw, F, C) as in Keras."""
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    sy, sx = strides
    oh, ow = out_hw
    top, left = top_left
    y = np.zeros((n, oh, ow, f)) + (0.0 if bias is None else bias)
    for i in range(n):
        for p in range(h):
            for q in range(w):
                for u in range(kh):
                    for v in range(kw):
                        a, b = p * sy + u - top, q * sx + v - left
                        if 0 <= a < oh and 0 <= b < ow:
                            for ch in range(c):
                                y[i, a, b] += x[i, p, q, ch] * kernel[u, v, :, ch]
    return y


def layer_norm(x, gamma, beta, axes, eps: float) -> np.ndarray:
    """Each sample normalised over ``axes``, one sample at a time: (x - mean) /
    sqrt(var + eps) * gamma + beta, var the biased variance; gamma and beta have the shape of
    those axes (None: 1 and 0)."""
    y = np.zeros(x.shape)
    keep = [a for a in range(1, x.ndim) if a not in axes]
    for i in range(x.shape[0]):
        for rest in np.ndindex(*[x.shape[a] for a in keep]):
            index = [i] + [slice(None)] * (x.ndim - 1)
            for a, r in zip(keep, rest):
                index[a] = r
            v = x[tuple(index)].astype(np.float64)
            z = (v - v.mean()) / math.sqrt(v.var() + eps)
            if gamma is not None:
                z = z * gamma
            y[tuple(index)] = z if beta is None else z + beta
    return y
