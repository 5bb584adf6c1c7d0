"""Convolution by im2col: gather every receptive field into a row, then one GEMM with the kernel.
The reference algorithm for any geometry, and the GPU's (cuBLAS on one big product).

Its backward is the same GEMM transposed twice: ``col.T @ gz`` for the kernel, and ``gz @ W.T``
scattered back onto the pixels (``col2im``, im2col's adjoint) for the input.
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for
from minicnn.maths.elementwise import bias_relu, matmul_tn, relu_backward, sum_rows
from minicnn.maths.geometry import pad


def im2col(x, kh, kw, sy, sx, pads):
    """Gather every receptive field into a row.

    x: (N, H, W, C) -> col: (N, oH, oW, kh, kw, C), contiguous, so that
    ``col.reshape(N*oH*oW, kh*kw*C) @ W.reshape(kh*kw*C, F)`` is the convolution.
    """
    fast = kernel_for("im2col", x)
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
    fast = kernel_for("col2im", gcol)
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


class Ctx(NamedTuple):
    """What im2col's backward needs."""

    col: object  # (N*oH*oW, kh*kw*C): the gathered receptive fields
    kernel: object  # (kh, kw, C, F)
    x_shape: tuple
    strides: tuple
    pads: tuple
    y: object  # the output, when a ReLU was applied in the forward (its mask), else None
    bias: bool


def forward(x, kernel, bias, strides, pads, relu=False, keep=True):
    """-> (y (N, oH, oW, F), Ctx or None); see ``conv2d_forward``."""
    kh, kw, c, f = kernel.shape
    col = im2col(x, kh, kw, *strides, pads)  # (N, oH, oW, kh, kw, C)
    n, oh, ow = col.shape[:3]
    col2d = col.reshape(n * oh * ow, kh * kw * c)  # a view: im2col's result is contiguous
    z = col2d @ kernel.reshape(kh * kw * c, f)  # (N*oH*oW, F)
    if bias is not None or relu:
        z = bias_relu(z, bias, relu)  # in place, one pass
    y = z.reshape(n, oh, ow, f)
    if not keep:
        return y, None
    return y, Ctx(col2d, kernel, x.shape, strides, pads, y if relu else None, bias is not None)


def backward(gy, ctx: Ctx, need_gx=True):
    """-> (gx or None, gkernel, gbias or None); see ``conv2d_backward``."""
    kh, kw, c, f = ctx.kernel.shape
    n, oh, ow, _ = gy.shape
    gz = gy.reshape(n * oh * ow, f)
    if ctx.y is not None:
        gz = relu_backward(gz, ctx.y.reshape(gz.shape))
    gkernel = matmul_tn(ctx.col, gz).reshape(kh, kw, c, f)
    gx = None
    if need_gx:
        gcol = (gz @ ctx.kernel.reshape(kh * kw * c, f).T).reshape(n, oh, ow, kh, kw, c)
        gx = col2im(gcol, ctx.x_shape, *ctx.strides, ctx.pads)
    return gx, gkernel, sum_rows(gz) if ctx.bias else None
