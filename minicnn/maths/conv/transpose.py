"""The transposed convolution (Conv2DTranspose) as Conv2D's adjoint, as TensorFlow defines it.

For a convolution C of an (oH, oW, F) image with kernel K (kh, kw, F, C) — Keras's transposed
kernel layout — strides s and pads p, giving (H, W, C), the transposed convolution of x (N, H,
W, C) is C's input gradient for output gradient x:

    y = C^T x:   y[n, a, b, f] = bias[f] + sum over (p, q, u, v) with p*sy + u - top = a and
                 q*sx + v - left = b of x[n, p, q, c] K[u, v, f, c]

(a scatter; ``minicnn.maths.reference.conv2d_transpose``). So its forward is C's backward for
the input (one GEMM, x @ K^T, then col2im), and its backward is C itself: gx = C gy, a plain
convolution (any of ``minicnn.maths.conv``'s algorithms), whose kernel gradient with "output
gradient" x is gK.
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn.maths import conv
from minicnn.maths.conv.im2col import col2im
from minicnn.maths.elementwise import bias_relu, relu_backward, sum_rows


class Ctx(NamedTuple):
    x: object  # (N, H, W, C): the input, C's "output gradient" for the kernel's gradient
    kernel: object  # (kh, kw, F, C)
    strides: tuple
    pads: tuple
    y: object  # the output when a ReLU was applied (its mask), else None
    bias: bool


def transpose_forward(x, kernel, bias, strides, pads, out_hw, relu=False, keep=True):
    """x (N, H, W, C), kernel (kh, kw, F, C), bias (F,) or None -> (y (N, oH, oW, F), Ctx or
    None); ``pads`` (top, bottom, left, right) are C's over the (oH, oW) output."""
    kh, kw, f, c = kernel.shape
    n, h, w, _ = x.shape
    gcol = (x.reshape(n * h * w, c) @ kernel.reshape(kh * kw * f, c).T).reshape(n, h, w, kh, kw, f)
    y = col2im(gcol, (n, *out_hw, f), *strides, pads)  # (N, oH, oW, F)
    if bias is not None or relu:
        y = bias_relu(y.reshape(-1, f), bias, relu).reshape(y.shape)
    if not keep:
        return y, None
    return y, Ctx(x, kernel, tuple(strides), tuple(pads), y if relu else None, bias is not None)


def transpose_backward(gy, ctx: Ctx, need_gx: bool = True):
    """-> (gx (N, H, W, C) or None, gkernel (kh, kw, F, C), gbias (F,) or None)."""
    f = gy.shape[-1]
    if ctx.y is not None:
        gy = relu_backward(gy, ctx.y)
    gbias = sum_rows(gy.reshape(-1, f)) if ctx.bias else None
    gx, cctx = conv.conv2d_forward(gy, ctx.kernel, None, ctx.strides, ctx.pads)  # C gy
    _, gkernel, _ = conv.conv2d_backward(ctx.x, cctx, need_gx=False)  # (kh, kw, F, C)
    return (gx if need_gx else None), gkernel, gbias
