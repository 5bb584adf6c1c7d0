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
# Convolution: four algorithms behind one interface


_DIRECT_MAX_C = 4  # input channels up to which the direct kernel beats im2col + GEMM


def conv_algorithm(x, kernel_shape, strides) -> str:
    """Which algorithm convolves ``x`` with a kernel of ``kernel_shape`` (kh, kw, C, F):

    - "im2col": the reference, any geometry, and the GPU's choice (cuBLAS on one big GEMM);
    - "direct": CPU, up to 4 input channels (a first layer), with the numba kernels: each
      output pixel summed over its taps in a cache-resident row of F values, with bias, ReLU
      and their gradients in the same pass (for a 3x3 kernel on one channel, im2col's matrix
      is 9x the input and its GEMM has an inner dimension of 9);
    - "winograd": CPU, 3x3 stride 1, 16+ input channels, with the numba kernels: F(4x4, 3x3),
      4x fewer multiplies than the direct product, in all three of training's products;
    - "shifted": the same cases without numba: 9 GEMMs on the input as it lies, no im2col copy.
    MINICNN_CONV forces one where the geometry allows it (else im2col)."""
    kh, kw, c, _ = kernel_shape
    stride1 = tuple(strides) == (1, 1)
    forced = os.environ.get("MINICNN_CONV", "auto").lower()
    if forced == "winograd":
        return "winograd" if stride1 and (kh, kw) == (3, 3) else "im2col"
    if forced in ("im2col", "shifted", "direct"):
        return "im2col" if forced == "shifted" and not stride1 else forced
    if get_array_module(x) is not np:
        return "im2col"
    numba = kernels.lookup("conv_direct", np, x.dtype) is not None
    if c <= _DIRECT_MAX_C:
        return "direct" if numba else "im2col"
    if not stride1 or c < 16:
        return "im2col"
    return "winograd" if numba and (kh, kw) == (3, 3) else "shifted"


def conv2d_forward(x, kernel, strides, pads, bias=None, relu: bool = False):
    """``act(conv(x, kernel) + bias)`` with act ReLU or none. x: (N, H, W, C), kernel:
    (kh, kw, C, F), bias: (F,) or None -> z: (N*oH*oW, F) contiguous, and what
    ``conv2d_backward`` needs."""
    kh, kw, c, f = kernel.shape
    sy, sx = strides
    algorithm = conv_algorithm(x, kernel.shape, strides)
    if algorithm == "direct":
        xpad = pad(x, pads)
        z = conv_direct(xpad, kernel, bias, relu, strides)
        n, oh, ow, _ = z.shape
        return z.reshape(n * oh * ow, f), ("direct", xpad)
    if algorithm == "winograd":
        return _winograd_forward(x, kernel, pads, bias, relu)
    if algorithm == "shifted":
        z, saved = _shifted_forward(x, kernel, pads)
    else:
        col = im2col(x, kh, kw, sy, sx, pads)  # (N, oH, oW, kh, kw, C)
        n, oh, ow = col.shape[:3]
        col2d = col.reshape(n * oh * ow, kh * kw * c)  # a view: im2col's result is contiguous
        z, saved = col2d @ kernel.reshape(kh * kw * c, f), ("im2col", col2d, (n, oh, ow))
    if bias is not None or relu:
        z = bias_relu(z, bias, relu)  # in place, one pass
    return z, saved


def conv2d_backward(gz, saved, kernel, x_shape, strides, pads, need_gx: bool, y=None, bias=False):
    """The gradients of ``conv2d_forward``. gz: (N*oH*oW, F), the gradient of its output; y: that
    output when it went through ReLU (gz is then masked by y > 0 first), else None.
    -> (gkernel (kh, kw, C, F), gbias (F,) if ``bias`` else None, gx (N, H, W, C) if ``need_gx``
    else None)."""
    kh, kw, c, f = kernel.shape
    if saved[0] == "direct":
        xpad = saved[1]
        gz4 = gz.reshape(-1, *conv_output_shape(xpad.shape, kh, kw, strides), f)
        y4 = None if y is None else y.reshape(gz4.shape)
        gkernel, gbias = conv_direct_grad(xpad, gz4, y4, kernel.shape, strides)
        gx = None
        if need_gx:
            gx = conv_direct_grad_input(gz4, y4, kernel, xpad.shape, strides)
            _, h, w, _ = x_shape
            gx = gx[:, pads[0] : pads[0] + h, pads[2] : pads[2] + w, :]
        return gkernel, gbias if bias else None, gx
    if saved[0] == "winograd":
        gkernel, gbias, gx = _winograd_backward(gz, saved, kernel, x_shape, pads, need_gx, y)
        return gkernel, gbias if bias else None, gx
    if y is not None:
        gz = relu_backward(gz, y.reshape(gz.shape))
    gbias = sum_rows(gz) if bias else None
    if saved[0] == "shifted":
        gkernel, gx = _shifted_backward(gz, saved, kernel, x_shape, pads, need_gx)
    else:
        _, col2d, (n, oh, ow) = saved
        gkernel = matmul_tn(col2d, gz).reshape(kh, kw, c, f)
        gx = None
        if need_gx:
            gcol = (gz @ kernel.reshape(kh * kw * c, f).T).reshape(n, oh, ow, kh, kw, c)
            gx = col2im(gcol, x_shape, *strides, pads)
    return gkernel, gbias, gx


_CHUNK_BYTES = 4 << 20  # input bytes per chunk of the shifted GEMMs: about what stays in cache


def _chunks(n: int, per_image: int, itemsize: int, scale: int = 1):
    """Image ranges [n0, n1) of about _CHUNK_BYTES * scale each: the same FLOPs, on data still
    in cache (at batch 128 the whole padded input of conv2 is 22 MB and every tap streams it
    again)."""
    step = max(1, scale * _CHUNK_BYTES // (per_image * itemsize))
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
# Direct convolution, for few input channels: below, the references (through im2col) that the
# numba kernels are tested against


def conv_output_shape(padded_shape, kh: int, kw: int, strides) -> tuple[int, int]:
    """(oH, oW) of a window op on an input already padded to ``padded_shape`` (N, Hp, Wp, C)."""
    _, hp, wp, _ = padded_shape
    return (hp - kh) // strides[0] + 1, (wp - kw) // strides[1] + 1


def conv_direct(xpad, kernel, bias, relu: bool, strides):
    """``act(conv(xpad, kernel) + bias)`` in one pass over the output, act ReLU or none.

    xpad: (N, Hp, Wp, C), padded already; kernel: (kh, kw, C, F); bias: (F,) or None
    -> z: (N, oH, oW, F)
    """
    fast = _kernel("conv_direct", xpad)
    if fast is not None:
        return fast(xpad, kernel, bias, relu, strides)
    kh, kw, c, f = kernel.shape
    col = im2col(xpad, kh, kw, *strides, (0, 0, 0, 0))
    z = col.reshape(-1, kh * kw * c) @ kernel.reshape(-1, f)
    if bias is not None:
        z += bias
    if relu:
        get_array_module(z).maximum(z, 0, out=z)
    return z.reshape(*col.shape[:3], f)


def conv_direct_grad(xpad, gz, y, kernel_shape, strides):
    """The kernel and bias gradients of conv_direct from the gradient of its output ``gz``
    (N, oH, oW, F), masked by ``y > 0`` first when ``y`` (the ReLU output) is given.
    -> (gkernel (kh, kw, C, F), gbias (F,))"""
    fast = _kernel("conv_direct_grad", gz)
    if fast is not None:
        return fast(xpad, gz, y, kernel_shape, strides)
    kh, kw, c, f = kernel_shape
    g = (gz if y is None else relu_backward(gz, y)).reshape(-1, f)
    col = im2col(xpad, kh, kw, *strides, (0, 0, 0, 0)).reshape(-1, kh * kw * c)
    return matmul_tn(col, g).reshape(kernel_shape), sum_rows(g)


def conv_direct_grad_input(gz, y, kernel, padded_shape, strides):
    """The gradient of conv_direct's padded input: gz (N, oH, oW, F), masked by ``y > 0`` when
    ``y`` is given -> gx: (N, Hp, Wp, C), padding included."""
    fast = _kernel("conv_direct_grad_input", gz)
    if fast is not None:
        return fast(gz, y, kernel, padded_shape, strides)
    kh, kw, c, f = kernel.shape
    n, oh, ow, _ = gz.shape
    g = (gz if y is None else relu_backward(gz, y)).reshape(-1, f)
    gcol = (g @ kernel.reshape(-1, f).T).reshape(n, oh, ow, kh, kw, c)
    return col2im(gcol, padded_shape, *strides, (0, 0, 0, 0))


# ---------------------------------------------------------------------------------------------
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
    fast = _kernel("winograd_input", x)
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
    fast = _kernel("winograd_output", m)
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
    fast = _kernel("winograd_grad_output", gy)
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
    fast = _kernel("winograd_grad_input", gv)
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


def _winograd_forward(x, kernel, pads, bias, relu):
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
    for n0, n1 in _chunks(n, 36 * th * tw * c, x.dtype.itemsize, scale=6):
        k = (n1 - n0) * th * tw  # tiles in this chunk
        v = winograd_input(xpad[n0:n1], th, tw, xp.empty((36, k, c), dtype=x.dtype))
        if m is None or m.shape[1] != k:
            m = xp.empty((36, k, f), dtype=x.dtype)
        xp.matmul(v, u, out=m)
        winograd_output(m, th, tw, z[n0:n1], bias, relu)
        vs.append(v)
    if (oh, ow) != (4 * th, 4 * tw):
        z = xp.ascontiguousarray(z[:, :oh, :ow, :])
    return z.reshape(n * oh * ow, f), ("winograd", vs, u, (n, oh, ow, th, tw, xpad.shape))


def _winograd_backward(gz, saved, kernel, x_shape, pads, need_gx, y):
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
        gu += xp.matmul(v.transpose(0, 2, 1), gm)  # (36, C, F)
        if need_gx:
            xp.matmul(gm, ut, out=gv)
            if exact:
                winograd_grad_input(gv, th, tw, gx[n0:n1])
            else:
                winograd_grad_input(gv, th, tw, gpad)
                gx[n0:n1] = gpad[:, top : top + h, left : left + w, :]
        n0 = n1
    gkernel = _wino_gg(xp, gz.dtype).T @ gu.reshape(36, c * f)  # G^T gU G
    return gkernel.reshape(3, 3, c, f), gbias, gx


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
