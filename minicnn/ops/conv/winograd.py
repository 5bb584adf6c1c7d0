"""Winograd F(4x4, 3x3) convolution: 3x3 kernels at stride 1, with 4x fewer multiplies than the
direct product in all three of training's products. The CPU's choice for 16+ input channels.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module
from minicnn.ops.batched import batched_matmul
from minicnn.ops.dispatch import kernel_for
from minicnn.ops.elementwise import bias_relu, relu_backward, sum_rows
from minicnn.ops.geometry import image_chunks, pad

# Winograd F(4x4, 3x3): each 4x4 block of output from a 6x6 tile of input (tiles overlap by 2)
#
#     y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise, per input/output channel pair)
#
# so the sum over input channels becomes 36 independent GEMMs, one per point of the 6x6 tile
# (V[k] @ U[k], (tiles, C) @ (C, F)), with 36 products per 16 outputs instead of 144 (4x fewer).
# Training's other two products fall out of the same transforms: the gradient of U is
# V[k]^T @ gM[k] and the gradient of V is gM[k] @ U[k]^T, where gM = A gy A^T (Lavin & Gray,
# 2016). The matrices use the interpolation points 0, +-1, +-2 and infinity; F(2x2, 3x3) would
# need 16 products per 4 outputs, and its GEMMs measured 1.7x slower on conv2 of the seed model.

_WINO_BT = (  # (6, 6)
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_WINO_G = (  # (6, 3)
    (1 / 4, 0, 0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0, 0, 1),
)
_WINO_AT = (  # (4, 6)
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)


def _wino_gg(xp, dtype):
    """G (x) G, (36, 9): U = G g G^T for all channel pairs at once is (G (x) G) @ g.reshape(9, -1)
    (row 6i + j, column 3a + b holds G[i, a] * G[j, b])."""
    g = np.asarray(_WINO_G, dtype=np.float64)
    return xp.asarray(np.kron(g, g), dtype=dtype)


def winograd_input(x, th, tw, v):
    """V = B^T d B for every 6x6 tile d (stride 4) of every channel, written into ``v``.

    x: (N, 4*th+2, 4*tw+2, C) -> v: (36, N*th*tw, C), tiles in (image, row, column) order
    """
    fast = kernel_for("winograd_input", x)
    if fast is not None:
        return fast(x, th, tw, v)
    xp = get_array_module(x)
    n, c = x.shape[0], x.shape[3]
    d = xp.stack(  # (6, 6, N*th*tw*C): d[a, b] is pixel (a, b) of every tile
        [
            xp.stack(
                [x[:, a : a + 4 * th : 4, b : b + 4 * tw : 4, :].reshape(-1) for b in range(6)]
            )
            for a in range(6)
        ]
    )
    bt = xp.asarray(_WINO_BT, dtype=x.dtype)
    v[...] = xp.einsum("ia,abk,jb->ijk", bt, d, bt).reshape(36, n * th * tw, c)
    return v


def winograd_output(m, th, tw, z, bias=None, relu: bool = False):
    """y = act(A^T M A + bias) for every tile, written into z; act is ReLU or none.

    m: (36, N*th*tw, F) -> z: (N, 4*th, 4*tw, F)
    """
    fast = kernel_for("winograd_output", m)
    if fast is not None:
        return fast(m, th, tw, z, bias, relu)
    xp = get_array_module(m)
    n, _, _, f = z.shape
    at = xp.asarray(_WINO_AT, dtype=m.dtype)
    y = xp.einsum("ai,ijk,bj->abk", at, m.reshape(6, 6, -1), at)  # (4, 4, N*th*tw*F)
    y = y.reshape(4, 4, n, th, tw, f).transpose(2, 3, 0, 4, 1, 5)  # (N, th, 4, tw, 4, F)
    z[...] = y.reshape(n, 4 * th, 4 * tw, f)
    if bias is not None or relu:
        bias_relu(z.reshape(-1, f), bias, relu)
    return z


def winograd_grad_output(gy, th, tw, gm, y=None):
    """gM = A g A^T for every 4x4 block of the output gradient g: gy, masked by ``y > 0`` where
    ``y`` (ReLU's output) is given; and the bias gradient, g's column sums, from the same pass.

    gy: (N, 4*th, 4*tw, F) -> (gm: (36, N*th*tw, F), gbias: (F,))
    """
    fast = kernel_for("winograd_grad_output", gy)
    if fast is not None:
        return fast(gy, th, tw, gm, y)
    xp = get_array_module(gy)
    n, _, _, f = gy.shape
    if y is not None:
        gy = relu_backward(gy, y)
    g = xp.stack(
        [xp.stack([gy[:, a::4, b::4, :].reshape(-1) for b in range(4)]) for a in range(4)]
    )  # (4, 4, N*th*tw*F)
    a_ = xp.asarray(_WINO_AT, dtype=gy.dtype).T  # A: (6, 4)
    gm[...] = xp.einsum("ia,abk,jb->ijk", a_, g, a_).reshape(36, n * th * tw, f)
    return gm, sum_rows(gy.reshape(-1, f))


def winograd_grad_input(gv, th, tw, gx):
    """The adjoint of winograd_input: gd = B gV B^T per tile, summed where tiles overlap.

    gv: (36, N*th*tw, C) -> gx: (N, 4*th+2, 4*tw+2, C), every element written
    """
    fast = kernel_for("winograd_grad_input", gv)
    if fast is not None:
        return fast(gv, th, tw, gx)
    xp = get_array_module(gv)
    n, c = gx.shape[0], gx.shape[3]
    bt = xp.asarray(_WINO_BT, dtype=gv.dtype)
    gd = xp.einsum("ia,ijk,jb->abk", bt, gv.reshape(6, 6, -1), bt).reshape(6, 6, n, th, tw, c)
    gx[...] = 0
    for a in range(6):  # a loop over tile offsets: each add moves a whole strided slice
        for b in range(6):
            gx[:, a : a + 4 * th : 4, b : b + 4 * tw : 4, :] += gd[a, b]
    return gx


def forward(x, kernel, strides, pads, bias, relu):
    """Run in chunks of images, so the transformed input (36 values per tile and channel, 2.25x
    the input) is never one array of hundreds of MB; each chunk's V is kept for the backward
    pass. Outputs that are not a multiple of 4 go through a padded buffer, cropped at the end."""
    xp = get_array_module(x)
    c, f = kernel.shape[2:]
    n, h, w, _ = x.shape
    top, bottom, left, right = pads
    oh, ow = h + top + bottom - 2, w + left + right - 2
    th, tw = -(-oh // 4), -(-ow // 4)
    # zeros below and right up to the tile grid: 4*th + 2 rows, 4*tw + 2 columns
    xpad = pad(x, (top, 4 * th + 2 - h - top, left, 4 * tw + 2 - w - left))
    u = (_wino_gg(xp, kernel.dtype) @ kernel.reshape(9, c * f)).reshape(36, c, f)  # G g G^T
    z = xp.empty((n, 4 * th, 4 * tw, f), dtype=x.dtype)
    vs, m = [], None
    # Large chunks: each costs four kernel launches and three batched GEMMs. Measured on conv2 at
    # batch 32 (forward + backward, F(2x2, 3x3)): 4 MB chunks 15.5 ms, one 19 MB chunk 14.9 ms
    for n0, n1 in image_chunks(n, 36 * th * tw * c, x.dtype.itemsize, scale=6):
        k = (n1 - n0) * th * tw  # tiles in this chunk
        v = winograd_input(xpad[n0:n1], th, tw, xp.empty((36, k, c), dtype=x.dtype))
        if m is None or m.shape[1] != k:
            m = xp.empty((36, k, f), dtype=x.dtype)
        batched_matmul(v, u, out=m)
        winograd_output(m, th, tw, z[n0:n1], bias, relu)
        vs.append(v)
    if (oh, ow) != (4 * th, 4 * tw):
        z = xp.ascontiguousarray(z[:, :oh, :ow, :])
    return z.reshape(n * oh * ow, f), ("winograd", vs, u, (n, oh, ow, th, tw, xpad.shape))


def backward(gz, saved, kernel, x_shape, strides, pads, need_gx, y, bias):
    """-> (gkernel, gbias, gx); gz is masked by y > 0 where y is given, inside the first
    transform. The input gradient goes straight into gx when the tiles cover the input
    exactly (no padding), else through a padded buffer per chunk."""
    xp = get_array_module(gz)
    c, f = kernel.shape[2:]
    _, vs, u, (n, oh, ow, th, tw, padded) = saved
    gz4 = gz.reshape(n, oh, ow, f)
    y4 = None if y is None else y.reshape(n, oh, ow, f)
    if (oh, ow) != (4 * th, 4 * tw):  # zeros past the output's edge, up to the tile grid
        gz4 = pad(gz4, (0, 4 * th - oh, 0, 4 * tw - ow))
        y4 = None if y4 is None else pad(y4, (0, 4 * th - oh, 0, 4 * tw - ow))
    gu = xp.zeros((36, c, f), dtype=gz.dtype)
    gbias = xp.zeros(f, dtype=gz.dtype)
    _, h, w, _ = x_shape
    top, left = pads[0], pads[2]
    exact = tuple(padded) == tuple(x_shape)  # the tiles cover x: then top == left == 0 too
    gx = xp.empty(x_shape, dtype=gz.dtype) if need_gx else None
    ut = u.transpose(0, 2, 1)  # (36, F, C)
    gm = gv = gpad = None
    n0 = 0
    for v in vs:  # the forward's chunks, in order
        k = v.shape[1]
        n1 = n0 + k // (th * tw)
        if gm is None or gm.shape[1] != k:  # buffers for this chunk size (the last may differ)
            gm = xp.empty((36, k, f), dtype=gz.dtype)
            if need_gx:
                gv = xp.empty((36, k, c), dtype=gz.dtype)
                if not exact:
                    gpad = xp.empty((n1 - n0, *padded[1:]), dtype=gz.dtype)
        _, gb = winograd_grad_output(gz4[n0:n1], th, tw, gm, None if y4 is None else y4[n0:n1])
        gbias += gb
        gu += batched_matmul(v.transpose(0, 2, 1), gm)  # (36, C, F)
        if need_gx:
            batched_matmul(gm, ut, out=gv)
            if exact:
                winograd_grad_input(gv, th, tw, gx[n0:n1])
            else:
                winograd_grad_input(gv, th, tw, gpad)
                gx[n0:n1] = gpad[:, top : top + h, left : left + w, :]
        n0 = n1
    gkernel = _wino_gg(xp, gz.dtype).T @ gu.reshape(36, c * f)  # G^T gU G
    return gkernel.reshape(3, 3, c, f), gbias, gx
