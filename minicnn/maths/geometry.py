"""Window geometry shared by convolution and pooling: output sizes, "same" padding, and the
chunks that keep large batches in cache. Pure arithmetic on shapes, plus ``pad`` and the
block grid (padding and space to depth as one index map)."""

from __future__ import annotations

import math

from minicnn.backend import get_array_module


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
    """x (N, H, W, C) with ``pads`` (top, bottom, left, right) rows and columns of ``value``
    around it: one copy of x and the border's values, each pixel written once (``numpy.pad``
    took ~75 us a call in its argument handling, a third of a residual CNN's one-image predict;
    filling the whole array first, then copying x in, wrote it twice: 0.13 of 0.32 ms for 128
    maps of 14x14x32)."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    xp = get_array_module(x)
    n, h, w, c = x.shape
    out = xp.empty((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    out[:, :top] = value
    out[:, top + h :] = value
    out[:, top : top + h, :left] = value
    out[:, top : top + h, left + w :] = value
    out[:, top : top + h, left : left + w] = x
    return out


def block_grid(x, size, top: int, left: int, blk: int):
    """x placed on a grid of ``size`` (P, Q) pixels of blk x blk blocks: pixel (p, q) holds
    x's rows blk*p - top.., columns blk*q - left.., channels in (row, column, C) order, zeros
    past x's edges; x's rows past the grid are cut. -> (N, P, Q, blk*blk*C). blk 1 is padding,
    blk 2 space to depth."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    hp, wp = blk * size[0], blk * size[1]
    rows, cols = min(h, hp - top), min(w, wp - left)
    g = xp.zeros((n, hp, wp, c), dtype=x.dtype)
    g[:, top : top + rows, left : left + cols] = x[:, :rows, :cols]
    g = g.reshape(n, size[0], blk, size[1], blk, c).transpose(0, 1, 3, 2, 4, 5)
    return g.reshape(n, size[0], size[1], blk * blk * c)


def block_grid_adjoint(g, top: int, left: int, blk: int, x_shape):
    """The adjoint of ``block_grid``: a gradient on the grid back to x's pixels (those the
    grid cut get none)."""
    xp = get_array_module(g)
    n, p, q, _ = g.shape
    _, h, w, c = x_shape
    hp, wp = blk * p, blk * q
    g = g.reshape(n, p, q, blk, blk, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hp, wp, c)
    rows, cols = min(h, hp - top), min(w, wp - left)
    gx = xp.zeros(x_shape, dtype=g.dtype)
    gx[:, :rows, :cols] = g[:, top : top + rows, left : left + cols]
    return gx


def conv_output_shape(padded_shape, kh: int, kw: int, strides) -> tuple[int, int]:
    """(oH, oW) of a window op on an input already padded to ``padded_shape`` (N, Hp, Wp, C)."""
    _, hp, wp, _ = padded_shape
    return (hp - kh) // strides[0] + 1, (wp - kw) // strides[1] + 1


CHUNK_BYTES = 4 << 20  # input bytes per chunk of the shifted GEMMs: about what stays in cache


def image_chunks(n: int, per_image: int, itemsize: int, scale: int = 1):
    """Image ranges [n0, n1) of about CHUNK_BYTES * scale each: the same FLOPs, on data still
    in cache (at batch 128 the whole padded input of conv2 is 22 MB and every tap streams it
    again)."""
    step = max(1, scale * CHUNK_BYTES // (per_image * itemsize))
    return [(n0, min(n0 + step, n)) for n0 in range(0, n, step)]
