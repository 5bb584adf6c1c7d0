"""Convolution from the output side, for few filters (a decoder's last layer, 32 -> 1 channel):
one GEMM gives every pixel's share of each of the kh*kw outputs it reaches, and col2im adds the
shares up. im2col gathers kh*kw*C columns per output pixel; this gathers kh*kw*F, so it is
the cheaper side when F is much smaller than C. Stride 1 only.

With T = x @ Kf, Kf (C, kh*kw*F) the kernel flipped in both spatial axes,

    T[n, i, j, a, b, f] = sum_c x[n, i, j, c] K[kh-1-a, kw-1-b, c, f]
    y[n, p, q, f]       = sum_{a, b} T[n, p - top + kh-1-a, q - left + kw-1-b, a, b, f]

which is col2im of T onto the (oH, oW) output with pads (kh-1-top, kh-1-bottom, kw-1-left,
kw-1-right): the convolution as the transposed convolution of its flipped kernel. Its backward
is the same two matrices transposed: im2col of gy gives gT (col2im's adjoint), then
gx = gT @ Kf^T and gKf^T = gT^T x.
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn.backend import get_array_module
from minicnn.maths.conv.im2col import col2im, im2col
from minicnn.maths.elementwise import bias_relu, matmul_tn, relu_backward, sum_rows


class Ctx(NamedTuple):
    x2: object  # (N*H*W, C): the input as rows
    taps: object  # (C, kh*kw*F): the flipped kernel as one matrix
    kernel_shape: tuple
    x_shape: tuple
    pads: tuple  # the flipped pads col2im and im2col take
    y: object  # the output, when a ReLU was applied in the forward (its mask), else None
    bias: bool


def fits(kernel_shape, strides, pads) -> bool:
    """Stride 1, and no side padded by more than kernel size - 1 (else a flipped pad is < 0)."""
    kh, kw = kernel_shape[:2]
    top, bottom, left, right = pads
    return tuple(strides) == (1, 1) and max(top, bottom) < kh and max(left, right) < kw


def _flip(kernel_shape, pads):
    kh, kw = kernel_shape[:2]
    top, bottom, left, right = pads
    return (kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right)


def forward(x, kernel, bias, strides, pads, relu=False, keep=True):
    """-> (y (N, oH, oW, F), Ctx or None); see ``conv2d_forward``."""
    if not fits(kernel.shape, strides, pads):
        raise ValueError(f"the taps algorithm takes stride 1 and pads under the kernel size. Received: strides={strides}, pads={pads}, kernel {kernel.shape}")  # fmt: skip
    xp = get_array_module(x)
    kh, kw, c, f = kernel.shape
    n, h, w, _ = x.shape
    top, bottom, left, right = pads
    oh, ow = h + top + bottom - kh + 1, w + left + right - kw + 1
    taps = xp.ascontiguousarray(kernel[::-1, ::-1].transpose(2, 0, 1, 3)).reshape(c, kh * kw * f)
    x2 = x.reshape(n * h * w, c)
    t = (x2 @ taps).reshape(n, h, w, kh, kw, f)  # each pixel's share of each output it reaches
    flipped = _flip(kernel.shape, pads)
    z = col2im(t, (n, oh, ow, f), 1, 1, flipped).reshape(n * oh * ow, f)
    if bias is not None or relu:
        z = bias_relu(z, bias, relu)
    y = z.reshape(n, oh, ow, f)
    if not keep:
        return y, None
    return y, Ctx(x2, taps, kernel.shape, x.shape, flipped, y if relu else None, bias is not None)


def backward(gy, ctx: Ctx, need_gx=True):
    """-> (gx or None, gkernel, gbias or None); see ``conv2d_backward``."""
    xp = get_array_module(gy)
    kh, kw, c, f = ctx.kernel_shape
    if ctx.y is not None:
        gy = relu_backward(gy, ctx.y)
    gt = im2col(gy, kh, kw, 1, 1, ctx.pads)  # (N, H, W, kh, kw, F): im2col is col2im's adjoint
    gt2 = gt.reshape(ctx.x2.shape[0], kh * kw * f)
    gtaps = matmul_tn(gt2, ctx.x2).reshape(kh, kw, f, c)  # gKf^T: the short side outermost
    gkernel = xp.ascontiguousarray(gtaps.transpose(0, 1, 3, 2)[::-1, ::-1])  # (kh, kw, C, F)
    gx = (gt2 @ ctx.taps.T).reshape(ctx.x_shape) if need_gx else None
    return gx, gkernel, sum_rows(gy.reshape(-1, f)) if ctx.bias else None
