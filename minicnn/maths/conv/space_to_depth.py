"""Stride-2 convolution as a stride-1 one: each 2x2 block of pixels becomes one pixel of 4C
channels (space to depth), and the kh x kw kernel, padded to even size, a ceil(kh/2) x
ceil(kw/2) kernel over them:

    y[p, q] = sum_{i<2a, j<2b} xpad[2p + i, 2q + j] k[i, j]          (i = 2u + r, j = 2v + s)
            = sum_{u<a, v<b} s2d[p + u, q + v, (r, s, c)] k'[u, v, (r, s, c)]

A 5x5 stride-2 layer (the recipes' replacement for pooling) then runs as a 3x3 stride-1
Winograd convolution over 4C channels, with the padding and the 2x2 blocks read through an
index map inside Winograd's transforms (``winograd.placed_grid``), so x is never copied:
10.5 + 15.0 ms against im2col's 17.7 + 29.5 ms, and 17.9 + 21.9 ms when the blocks were built
as arrays (forward + backward, 128 images of 26x26x32, 32 filters, this 2-core machine).
Other sizes, where forced, run as stride-1 shifted GEMMs over an explicit copy of that grid
(``geometry.block_grid``).
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn.backend import get_array_module
from minicnn.maths.conv import shifted, winograd
from minicnn.maths.geometry import block_grid, block_grid_adjoint


def _half(k: int) -> int:
    return -(-k // 2)


def _inner(kh: int, kw: int):
    """Winograd for the 3x3 that 5x5 and 6x6 become; shifted GEMMs for other sizes (when
    MINICNN_CONV=space_to_depth forces it)."""
    return winograd if (_half(kh), _half(kw)) == (3, 3) else shifted


def _kernel2(kernel, a, b):
    """The kh x kw kernel, zero-padded to 2a x 2b, as an a x b one over 4C channels."""
    xp = get_array_module(kernel)
    kh, kw, c, f = kernel.shape
    k6 = xp.zeros((2 * a, 2 * b, c, f), dtype=kernel.dtype)
    k6[:kh, :kw] = kernel
    k2 = k6.reshape(a, 2, b, 2, c, f).transpose(0, 2, 1, 3, 4, 5)
    return xp.ascontiguousarray(k2).reshape(a, b, 4 * c, f)  # (a, b, (r, s, C), F)


class Ctx(NamedTuple):
    """What the backward needs: the inner stride-1 convolution's own Ctx, and the shapes."""

    inner: object  # the inner algorithm's module (winograd or shifted)
    inner_ctx: object
    kernel_shape: tuple  # (kh, kw, C, F), before padding to even size
    k2_shape: tuple  # (a, b, 4C, F)
    x_shape: tuple
    pads: tuple


def forward(x, kernel, bias, strides, pads, relu=False, keep=True):
    """-> (y (N, oH, oW, F), Ctx or None); see ``conv2d_forward``."""
    h, w = x.shape[1:3]
    kh, kw = kernel.shape[:2]
    a, b = _half(kh), _half(kw)
    top, bottom, left, right = pads
    oh, ow = (h + top + bottom - kh) // 2 + 1, (w + left + right - kw) // 2 + 1
    k2 = _kernel2(kernel, a, b)
    inner = _inner(kh, kw)
    if inner is winograd:  # the map is inside Winograd's transforms: no copy of x at all
        y, inner_ctx = winograd.tiled_forward(x, k2, (top, left, 2), (oh, ow), bias, relu, keep)
    else:
        # a grid of oh + a - 1 rows of 2x2 blocks: every tap of every output inside; rows past
        # the real padding meet zero taps, rows no output reads ("valid") are cut
        s = block_grid(x, (oh + a - 1, ow + b - 1), top, left, 2)  # (N, H', W', (r, s, C))
        y, inner_ctx = inner.forward(s, k2, bias, (1, 1), (0, 0, 0, 0), relu, keep)
    if not keep:
        return y, None
    return y, Ctx(inner, inner_ctx, kernel.shape, k2.shape, x.shape, pads)


def backward(gy, ctx: Ctx, need_gx=True):
    """-> (gx or None, gkernel, gbias or None); see ``conv2d_backward``."""
    xp = get_array_module(gy)
    kh, kw, c, f = ctx.kernel_shape
    a, b = ctx.k2_shape[:2]
    gs, gk2, gbias = ctx.inner.backward(gy, ctx.inner_ctx, need_gx)
    gk6 = gk2.reshape(a, b, 2, 2, c, f).transpose(0, 2, 1, 3, 4, 5).reshape(2 * a, 2 * b, c, f)
    gkernel = xp.ascontiguousarray(gk6[:kh, :kw])
    if not need_gx or ctx.inner is winograd:  # Winograd's gradient is x's already
        return gs, gkernel, gbias
    return block_grid_adjoint(gs, ctx.pads[0], ctx.pads[2], 2, ctx.x_shape), gkernel, gbias
