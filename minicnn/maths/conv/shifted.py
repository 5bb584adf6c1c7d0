"""Stride-1 convolution as kh*kw shifted GEMMs over the input as it lies: no im2col copy. The
CPU's choice for 16+ input channels where Winograd does not serve (kernels other than 3x3, more
channels than its tiles hold, or no numba); with numba and up to 128 filters its forward is the
register-blocked direct kernel's.
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn import kernels
from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for
from minicnn.maths.elementwise import bias_relu, matmul_tn, relu_backward, sum_rows
from minicnn.maths.geometry import image_chunks, pad
from minicnn.maths.pooling import maxpool


class Ctx(NamedTuple):
    """What the shifted GEMMs' backward needs."""

    flat: object  # (N*Hp*Wp, C): the padded input, flattened
    kernel: object  # (kh, kw, C, F)
    grid: tuple  # (N, Hp, Wp, oH, oW)
    x_shape: tuple
    pads: tuple
    y: object  # the output when a ReLU was applied (its mask), else None
    bias: bool


def forward(x, kernel, bias, strides, pads, relu=False, keep=True):
    """-> (y (N, oH, oW, F), Ctx or None); see ``conv2d_forward``. With numba, up to
    BLOCKED_MAX_FILTERS filters, the forward is the register-blocked direct kernel's (the same
    sums, 3.7-4.3x faster: 5x5 32 -> 32 on 14x14, 128 images, 24.1 -> 6.5 ms); the backward
    stays the shifted GEMMs."""
    _stride1(strides)
    kh, kw, c, f = kernel.shape
    fast = kernel_for("conv_direct", x) if f <= kernels.BLOCKED_MAX_FILTERS else None
    if fast is not None:
        xpad = get_array_module(x).ascontiguousarray(pad(x, pads))
        y = fast(xpad, kernel, bias, relu, (1, 1))
        n, hp, wp, _ = xpad.shape
        flat, grid = xpad.reshape(n * hp * wp, c), (n, hp, wp, y.shape[1], y.shape[2])
    else:
        z, flat, grid = _forward(x, kernel, pads)
        if bias is not None or relu:
            z = bias_relu(z, bias, relu)  # in place, one pass
        y = z.reshape(grid[0], grid[3], grid[4], -1)
    if not keep:
        return y, None
    return y, Ctx(flat, kernel, grid, x.shape, pads, y if relu else None, bias is not None)


def pooled_forward(x, kernel, bias, strides, pads, relu=False):
    """Inference: ``forward``'s output max-pooled 2x2, stride 2 ("valid"); with numba and up to
    BLOCKED_MAX_FILTERS filters in the direct kernel's one pass, so the full map is never
    written. -> y (N, oH // 2, oW // 2, F)"""
    _stride1(strides)
    fast = kernel_for("conv_direct_pool", x) if kernel.shape[3] <= kernels.BLOCKED_MAX_FILTERS else None  # fmt: skip
    if fast is not None:
        return fast(pad(x, pads), kernel, bias, relu, (1, 1))
    return maxpool(forward(x, kernel, bias, strides, pads, relu, keep=False)[0], 2, 2, 2, 2, (0, 0, 0, 0))  # fmt: skip


def _stride1(strides) -> None:
    if tuple(strides) != (1, 1):
        raise ValueError(f"The shifted GEMMs convolve at stride 1 only. Received: strides={tuple(strides)}")  # fmt: skip


def backward(gy, ctx: Ctx, need_gx=True):
    """-> (gx or None, gkernel, gbias or None); see ``conv2d_backward``."""
    f = gy.shape[-1]
    gz = gy.reshape(-1, f)
    if ctx.y is not None:
        gz = relu_backward(gz, ctx.y.reshape(gz.shape))
    gkernel, gx = _backward(gz, ctx, need_gx)
    return gx, gkernel, sum_rows(gz) if ctx.bias else None


def _forward(x, kernel, pads):
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
    chunks = image_chunks(n, per * c, x.dtype.itemsize)
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
    return z.reshape(n * oh * ow, f), flat, (n, hp, wp, oh, ow)


def _backward(gz, ctx: Ctx, need_gx):
    """The adjoint of _forward, chunk by chunk: gkernel[i, j] += x[s:s+L].T @ g and
    gx[s:s+L] += g @ kernel[i, j].T, with g the output gradient placed back on the padded grid
    (zeros where rows were cropped)."""
    xp = get_array_module(gz)
    kernel, flat, x_shape, pads = ctx.kernel, ctx.flat, ctx.x_shape, ctx.pads
    kh, kw, c, f = kernel.shape
    n, hp, wp, oh, ow = ctx.grid
    per = hp * wp
    gz4 = gz.reshape(n, oh, ow, f)
    gkernel = xp.zeros_like(kernel)
    _, h, w, _ = x_shape
    top, left = pads[0], pads[2]
    gx = xp.empty((n, h, w, c), dtype=gz.dtype) if need_gx else None
    chunks = image_chunks(n, per * c, gz.dtype.itemsize)
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
