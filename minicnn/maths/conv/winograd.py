"""Winograd F(4x4, 3x3) convolution: 3x3 kernels at stride 1, with 4x fewer multiplies than the
direct product in all three of training's products. The CPU's choice for 16+ input channels.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from minicnn.backend import get_array_module
from minicnn.maths.batched import batched_matmul, by_columns, can_split, over_cores
from minicnn.maths.dispatch import kernel_for
from minicnn.maths.elementwise import bias_relu, relu_backward, sum_rows
from minicnn.maths.geometry import block_grid, block_grid_adjoint, image_chunks, pad
from minicnn.maths.pooling import maxpool

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


@functools.cache
def _wino_gg(xp, dtype):
    """G (x) G, (36, 9): U = G g G^T for all channel pairs at once is (G (x) G) @ g.reshape(9, -1)
    (row 6i + j, column 3a + b holds G[i, a] * G[j, b]). Made once per device and dtype (the
    Kronecker product cost 60 us, twice a layer and step)."""
    g = np.asarray(_WINO_G, dtype=np.float64)
    return xp.asarray(np.kron(g, g), dtype=dtype)


def placed_grid(x, grid):
    """The input as the tiles see it: ``block_grid`` on the 4*th+2 x 4*tw+2 grid of
    ``grid`` = (th, tw, top, left, blk). The kernels read x through this map without building
    it."""
    th, tw, top, left, blk = grid
    return block_grid(x, (4 * th + 2, 4 * tw + 2), top, left, blk)


def placed_grid_adjoint(g, grid, x_shape):
    """The adjoint of ``placed_grid``: a gradient on the grid back to x's pixels."""
    return block_grid_adjoint(g, *grid[2:], x_shape)


def winograd_input(x, grid, v):
    """V = B^T d B for every 6x6 tile d (stride 4) of the placed grid, written into ``v``.

    x: (N, H, W, C), grid: (th, tw, top, left, blk) -> v: (36, N*th*tw, blk*blk*C), tiles in
    (image, row, column) order
    """
    fast = kernel_for("winograd_input", x)
    if fast is not None:
        return fast(x, grid, v)
    xp = get_array_module(x)
    th, tw = grid[:2]
    x = placed_grid(x, grid)
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


def winograd_output(m, th, tw, z, bias=None, relu: bool = False, pool: bool = False, residual=None):  # fmt: skip
    """y = act(A^T M A + bias) for every tile, written into z; act is ReLU or none. Tiles past
    z's edge (oH or oW not a multiple of 4) are cut. At inference, one of: with ``pool``, z is
    y's 2x2 stride-2 max pooling instead, made tile by tile (y itself is never written); with
    a ``residual`` r of z's shape, y = act(A^T M A + bias + r) (a residual block's Add).

    m: (36, N*th*tw, F) -> z: (N, oH, oW, F), oH <= 4*th, oW <= 4*tw; with pool, the pooled
    (N, P, Q, F), 2P <= 4*th, 2Q <= 4*tw
    """
    if pool and residual is not None:
        raise ValueError("winograd_output pools or adds a residual, not both")
    fast = kernel_for("winograd_output", m)
    if fast is not None:
        return fast(m, th, tw, z, bias, relu, pool, residual)
    xp = get_array_module(m)
    if pool:  # the plain maths: the whole map, then its pooling
        n, ph, pw, f = z.shape
        y = winograd_output(m, th, tw, xp.empty((n, 2 * ph, 2 * pw, f), m.dtype), bias, relu)
        z[...] = maxpool(y, 2, 2, 2, 2, (0, 0, 0, 0))
        return z
    if residual is not None:  # the plain maths: the output, the sum, then the activation
        winograd_output(m, th, tw, z, bias)
        z += residual
        return bias_relu(z.reshape(-1, z.shape[3]), None, True).reshape(z.shape) if relu else z
    n, oh, ow, f = z.shape
    at = xp.asarray(_WINO_AT, dtype=m.dtype)
    y = xp.einsum("ai,ijk,bj->abk", at, m.reshape(6, 6, -1), at)  # (4, 4, N*th*tw*F)
    y = y.reshape(4, 4, n, th, tw, f).transpose(2, 3, 0, 4, 1, 5)  # (N, th, 4, tw, 4, F)
    z[...] = y.reshape(n, 4 * th, 4 * tw, f)[:, :oh, :ow]
    if bias is not None or relu:
        bias_relu(z.reshape(-1, f), bias, relu)
    return z


def winograd_grad_output(gy, th, tw, gm, y=None):
    """gM = A g A^T for every 4x4 block of the output gradient g: gy, masked by ``y > 0`` where
    ``y`` (ReLU's output) is given, and zero past its edge; and the bias gradient, g's column
    sums, from the same pass.

    gy: (N, oH, oW, F) -> (gm: (36, N*th*tw, F), gbias: (F,))
    """
    fast = kernel_for("winograd_grad_output", gy)
    if fast is not None:
        return fast(gy, th, tw, gm, y)
    xp = get_array_module(gy)
    n, oh, ow, f = gy.shape
    if y is not None:
        gy = relu_backward(gy, y)
    gbias = sum_rows(xp.ascontiguousarray(gy).reshape(-1, f))
    gy = pad(gy, (0, 4 * th - oh, 0, 4 * tw - ow))
    g = xp.stack(
        [xp.stack([gy[:, a::4, b::4, :].reshape(-1) for b in range(4)]) for a in range(4)]
    )  # (4, 4, N*th*tw*F)
    a_ = xp.asarray(_WINO_AT, dtype=gy.dtype).T  # A: (6, 4)
    gm[...] = xp.einsum("ia,abk,jb->ijk", a_, g, a_).reshape(36, n * th * tw, f)
    return gm, gbias


def winograd_grad_input(gv, grid, gx):
    """The adjoint of winograd_input: gd = B gV B^T per tile, summed where tiles overlap, and
    taken back through the grid's map to x's pixels.

    gv: (36, N*th*tw, blk*blk*C) -> gx: (N, H, W, C), every element written
    """
    fast = kernel_for("winograd_grad_input", gv)
    if fast is not None:
        return fast(gv, grid, gx)
    xp = get_array_module(gv)
    th, tw = grid[:2]
    n, c = gx.shape[0], gv.shape[2]
    bt = xp.asarray(_WINO_BT, dtype=gv.dtype)
    gd = xp.einsum("ia,ijk,jb->abk", bt, gv.reshape(6, 6, -1), bt).reshape(6, 6, n, th, tw, c)
    g = xp.zeros((n, 4 * th + 2, 4 * tw + 2, c), dtype=gv.dtype)
    for a in range(6):  # a loop over tile offsets: each add moves a whole strided slice
        for b in range(6):
            g[:, a : a + 4 * th : 4, b : b + 4 * tw : 4, :] += gd[a, b]
    gx[...] = placed_grid_adjoint(g, grid, gx.shape)
    return gx


class Ctx(NamedTuple):
    """What Winograd's backward needs."""

    vs: list  # each chunk's transformed input V, (36, tiles, C)
    u: object  # the transformed kernel U = G g G^T, (36, C, F)
    grid: tuple  # (th, tw, top, left, blk): the tiles and how they read x
    out: tuple  # (N, oH, oW)
    x_shape: tuple
    y: object  # the output when a ReLU was applied (its mask), else None
    bias: bool


def _placed(x, pads):  # tiled_forward's place and out for a 3x3 stride-1 convolution of x
    top, bottom, left, right = pads
    return (top, left, 1), (x.shape[1] + top + bottom - 2, x.shape[2] + left + right - 2)


def forward(x, kernel, bias, strides, pads, relu=False, keep=True):
    """-> (y (N, oH, oW, F), Ctx or None); see ``conv2d_forward``."""
    return tiled_forward(x, kernel, *_placed(x, pads), bias, relu, keep)


def pooled_forward(x, kernel, bias, strides, pads, relu=False):
    """Inference: ``forward``'s output max-pooled 2x2, stride 2 ("valid"), in the output
    transform's pass, so the full map is never written. -> y (N, oH // 2, oW // 2, F)"""
    return tiled_forward(x, kernel, *_placed(x, pads), bias, relu, False, True)[0]


def residual_forward(x, kernel, bias, strides, pads, residual, relu=False):
    """Inference: act(conv(x) + bias + residual), the residual added in the output transform's
    pass (a residual block's Add, and its ReLU). -> y (N, oH, oW, F), residual's shape"""
    return tiled_forward(x, kernel, *_placed(x, pads), bias, relu, False, False, residual)[0]


def tiled_forward(x, kernel, place, out, bias, relu=False, keep=True, pool=False, residual=None):  # fmt: skip
    """The 3x3 ``kernel`` (3, 3, blk*blk*C, F) over x's placed grid (``place``: top, left,
    blk), to an output of ``out`` (oH, oW). Inference: one fused kernel a core where U fits
    (FUSED_U_BYTES). Else in chunks of images (V, 2.25x the input, is never one array of
    hundreds of MB), each chunk's V kept for backward (``keep``; else one V buffer serves
    them). Padding, space to depth and the tiles past the output are index maps inside the
    transforms. With ``pool`` (inference: no ``keep``), the output is max-pooled 2x2 / 2 in its
    transform; with a ``residual`` (inference), it is act(conv + bias + residual)."""
    xp = get_array_module(x)
    c, f = kernel.shape[2:]
    n = x.shape[0]
    (oh, ow), (top, left, blk) = out, place
    if (pool or residual is not None) and keep:
        raise ValueError("A pooled convolution, or one that adds a residual, is for inference: it keeps nothing for backward")  # fmt: skip
    th, tw = -(-oh // 4), -(-ow // 4)
    grid = (th, tw, top, left, blk)
    u = by_columns(_wino_gg(xp, kernel.dtype), kernel.reshape(9, c * f))  # G g G^T
    u = u.reshape(36, c, f)
    z = xp.empty((n, oh // 2, ow // 2, f) if pool else (n, oh, ow, f), dtype=x.dtype)
    fused = None if keep or u.nbytes > FUSED_U_BYTES else kernel_for("winograd_fused", x)
    if fused is not None:  # inference: transforms and products in one kernel, V and M on the stack
        return fused(x, u, grid, z, bias, relu, pool, residual), None
    pipelined = kernel_for("winograd_input_serial", x) is not None and can_split()
    if pipelined and not keep:  # inference: nothing kept, each core's chunks stay in L2
        _pipeline(x, u, grid, z, bias, relu, None, pool, residual)
        return z, None
    vs, m, v = [], None, None
    # Large chunks: each costs four kernel launches and three batched GEMMs. Measured on conv2 at
    # batch 32 (forward + backward, F(2x2, 3x3)): 4 MB chunks 15.5 ms, one 19 MB chunk 14.9 ms
    for n0, n1 in image_chunks(n, 36 * th * tw * c, x.dtype.itemsize, scale=6):
        k = (n1 - n0) * th * tw  # tiles in this chunk
        if keep or v is None or v.shape[1] != k:
            v = xp.empty((36, k, c), dtype=x.dtype)
        if pipelined:  # V written for backward, M left in L2
            _pipeline(x[n0:n1], u, grid, z[n0:n1], bias, relu, v)
            vs.append(v)
            continue
        winograd_input(x[n0:n1], grid, v)
        if m is None or m.shape[1] != k:
            m = xp.empty((36, k, f), dtype=x.dtype)
        batched_matmul(v, u, out=m)
        r = None if residual is None else residual[n0:n1]
        winograd_output(m, th, tw, z[n0:n1], bias, relu, pool, r)
        if keep:
            vs.append(v)
    if not keep:
        return z, None
    return z, Ctx(vs, u, grid, (n, oh, ow), x.shape, z if relu else None, bias is not None)


# Bytes of V and M a pipeline chunk holds: about a core's L2 (1 MB on an AMD EPYC, 2 MB on a
# Sapphire Rapids). Per-core chunks against the batch's V streamed through memory, inference at
# batch 128 / 1000, ms (2-core AMD EPYC): 3x3 64->32 on 26x26 15.4 -> 10.1 / 159 -> 81; 32->64
# on 13x13 4.4 -> 3.4 / 36.7 -> 22.5; 32->32 on 28x28 21.0 -> 9.4 / 189 -> 71.
PIPELINE_BYTES = 1 << 20
# Bytes of U (36 C F values) up to which inference runs kernels/cpu/winograd_fused.py (each task
# reads all of U from L2). Fused / pipeline, batch 128, ms: 3x3 64->32 on 26x26 6.3 / 12.1, 64->64
# on 11x11 2.5 / 3.2, but 256->128 on 14x14 38.9 / 29.4, 256->256 on 7x7 34.8 / 19.8 (AMD EPYC).
FUSED_U_BYTES = 36 * 64 * 64 * 4


def _pipeline(x, u, grid, z, bias, relu, v, pool=False, residual=None):
    """The forward with each core taking its own images, a few at a time: input transform, the
    36 GEMMs and the output transform of a chunk, one after the other, while the chunk's V and M
    are still in that core's cache (the GEMMs single-threaded). ``v``: where V is kept for
    backward (36, N*th*tw, C), or None to reuse one buffer per core."""
    th, tw = grid[:2]
    tiles, (c, f) = th * tw, u.shape[1:]
    per = max(1, PIPELINE_BYTES // (36 * tiles * (c + f) * x.dtype.itemsize))  # images a chunk

    def work(n0, n1):
        size = min(per, n1 - n0) * tiles
        vb = np.empty((36, size, c), dtype=x.dtype) if v is None else None
        mb = np.empty((36, size, f), dtype=x.dtype)
        for a in range(n0, n1, per):
            b = min(a + per, n1)
            k = (b - a) * tiles
            vc = vb[:, :k] if v is None else v[:, a * tiles : b * tiles]
            winograd_input_serial(x[a:b], grid, vc)
            np.matmul(vc, u, out=mb[:, :k])
            r = None if residual is None else residual[a:b]
            winograd_output_serial(mb[:, :k], th, tw, z[a:b], bias, relu, pool, r)

    over_cores(work, x.shape[0])


def winograd_input_serial(x, grid, v):
    """``winograd_input`` on the calling thread alone (the pipeline's)."""
    return (kernel_for("winograd_input_serial", x) or winograd_input)(x, grid, v)


def winograd_output_serial(m, th, tw, z, bias=None, relu: bool = False, pool: bool = False, residual=None):  # fmt: skip
    """``winograd_output`` on the calling thread alone (the pipeline's)."""
    fast = kernel_for("winograd_output_serial", m) or winograd_output
    return fast(m, th, tw, z, bias, relu, pool, residual)


def winograd_grad_output_serial(gy, th, tw, gm, y=None):
    """``winograd_grad_output`` on the calling thread alone (the backward's pipeline)."""
    fast = kernel_for("winograd_grad_output_serial", gy) or winograd_grad_output
    return fast(gy, th, tw, gm, y)


def winograd_grad_input_serial(gv, grid, gx):
    """``winograd_grad_input`` on the calling thread alone (the backward's pipeline)."""
    return (kernel_for("winograd_grad_input_serial", gv) or winograd_grad_input)(gv, grid, gx)


def backward(gy, ctx: Ctx, need_gx=True):
    """-> (gx or None, gkernel (3, 3, blk*blk*C, F), gbias or None); gy is masked by y > 0
    where a ReLU was applied, inside the first transform; the input gradient goes straight into
    gx (x's own shape, whatever the grid's map), chunk by chunk."""
    xp = get_array_module(gy)
    th, tw = ctx.grid[:2]
    c, f = ctx.u.shape[1:]
    gu = gbias = None  # sums over the chunks (most batches are one chunk: no adds)
    gx = xp.empty(ctx.x_shape, dtype=gy.dtype) if need_gx else None
    ut = ctx.u.transpose(0, 2, 1)  # (36, F, C)
    y = ctx.y
    gm = gv = None
    n0 = 0
    serial = ("winograd_grad_output_serial", "winograd_grad_input_serial")
    pipelined = all(kernel_for(op, gy) is not None for op in serial) and can_split()
    for v in ctx.vs:  # the forward's chunks, in order
        k = v.shape[1]
        n1 = n0 + k // (th * tw)
        if pipelined:
            part, gb = _backward_pipeline(gy[n0:n1], None if y is None else y[n0:n1], v, ut, ctx.grid, None if gx is None else gx[n0:n1])  # fmt: skip
            gu, gbias = (part, gb) if gu is None else (gu + part, gbias + gb)
            n0 = n1
            continue
        if gm is None or gm.shape[1] != k:  # buffers for this chunk size (the last may differ)
            gm = xp.empty((36, k, f), dtype=gy.dtype)
            gv = xp.empty((36, k, c), dtype=gy.dtype) if need_gx else None
        _, gb = winograd_grad_output(gy[n0:n1], th, tw, gm, None if y is None else y[n0:n1])
        part = batched_matmul(v.transpose(0, 2, 1), gm)  # (36, C, F)
        if gu is None:
            gu, gbias = part, gb
        else:
            gu += part
            gbias += gb
        if need_gx:
            batched_matmul(gm, ut, out=gv)
            winograd_grad_input(gv, ctx.grid, gx[n0:n1])
        n0 = n1
    gkernel = by_columns(_wino_gg(xp, gy.dtype).T, gu.reshape(36, c * f))  # G^T gU G
    return gx, gkernel.reshape(3, 3, c, f), gbias if ctx.bias else None


def _backward_pipeline(gy, y, v, ut, grid, gx):
    """The backward of one forward chunk with each core taking its own images, a few at a
    time: gM = A gy A^T, gU += V^T gM, gV = gM U^T and gV back to gx's pixels, while the few
    images' gM and gV are still in that core's cache (the GEMMs single-threaded), instead of
    each written whole to memory and read back. -> (gU (36, C, F), gbias (F,)), summed over
    the cores' shares in image order (the same bits for the same core count)."""
    th, tw = grid[:2]
    tiles, (f, c) = th * tw, ut.shape[1:]
    per = max(1, PIPELINE_BYTES // (36 * tiles * (c + f) * gy.dtype.itemsize))  # images a chunk
    parts = {}

    def work(n0, n1):
        size = min(per, n1 - n0) * tiles
        gmb = np.empty((36, size, f), dtype=gy.dtype)
        gvb = np.empty((36, size, c), dtype=gy.dtype) if gx is not None else None
        gu, tmp, gbias = np.zeros((36, c, f), dtype=gy.dtype), np.empty((36, c, f), dtype=gy.dtype), 0  # fmt: skip
        for a in range(n0, n1, per):
            b = min(a + per, n1)
            k = (b - a) * tiles
            _, gb = winograd_grad_output_serial(gy[a:b], th, tw, gmb[:, :k], None if y is None else y[a:b])  # fmt: skip
            gbias = gbias + gb
            np.matmul(v[:, a * tiles : b * tiles].transpose(0, 2, 1), gmb[:, :k], out=tmp)
            gu += tmp
            if gx is not None:
                np.matmul(gmb[:, :k], ut, out=gvb[:, :k])
                winograd_grad_input_serial(gvb[:, :k], grid, gx[a:b])
        parts[n0] = gu, gbias

    over_cores(work, gy.shape[0])
    shares = [parts[n0] for n0 in sorted(parts)]
    gu, gbias = shares[0]
    for part, gb in shares[1:]:
        gu, gbias = gu + part, gbias + gb
    return gu, gbias
