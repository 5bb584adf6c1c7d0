"""Direct convolution, for few input channels (a first layer), and at inference for layers the
GEMM paths serve poorly (``choose_algorithm``): each output pixel summed over its kh*kw*C taps
in registers or a cache-resident row of F values, with bias, ReLU and their gradients in the
same pass. For a 3x3 kernel on one channel, im2col's matrix would be 9x the input and its GEMM
would have an inner dimension of 9. The array versions below (through im2col) are the
references the numba kernels are tested against.
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn.backend import get_array_module
from minicnn.maths.conv.im2col import col2im, im2col
from minicnn.maths.dispatch import kernel_for
from minicnn.maths.elementwise import matmul_tn, relu_backward, sum_rows
from minicnn.maths.geometry import pad
from minicnn.maths.pooling import maxpool


class Ctx(NamedTuple):
    """What the direct convolution's backward needs."""

    xpad: object  # (N, Hp, Wp, C): the input with its padding
    kernel: object  # (kh, kw, C, F)
    x_shape: tuple
    strides: tuple
    pads: tuple
    y: object  # the output when a ReLU was applied (its mask), else None
    bias: bool


def forward(x, kernel, bias, strides, pads, relu=False, keep=True):
    """-> (y (N, oH, oW, F), Ctx or None); see ``conv2d_forward``."""
    xpad = pad(x, pads)
    y = conv_direct(xpad, kernel, bias, relu, strides)
    if not keep:
        return y, None
    return y, Ctx(xpad, kernel, x.shape, strides, pads, y if relu else None, bias is not None)


def pooled_forward(x, kernel, bias, strides, pads, relu=False):
    """Inference: ``forward``'s output max-pooled 2x2, stride 2 ("valid"); the kernel does both
    in one pass, so the full map is never written. -> y (N, oH // 2, oW // 2, F)"""
    xpad = pad(x, pads)
    fast = kernel_for("conv_direct_pool", xpad)
    if fast is not None:
        return fast(xpad, kernel, bias, relu, strides)
    return maxpool(conv_direct(xpad, kernel, bias, relu, strides), 2, 2, 2, 2, (0, 0, 0, 0))


def backward(gy, ctx: Ctx, need_gx=True):
    """-> (gx or None, gkernel, gbias or None); see ``conv2d_backward``."""
    gkernel, gbias = conv_direct_grad(ctx.xpad, gy, ctx.y, ctx.kernel.shape, ctx.strides)
    gx = None
    if need_gx:
        gx = conv_direct_grad_input(gy, ctx.y, ctx.kernel, ctx.xpad.shape, ctx.strides)
        _, h, w, _ = ctx.x_shape
        top, left = ctx.pads[0], ctx.pads[2]
        gx = gx[:, top : top + h, left : left + w, :]
    return gx, gkernel, gbias if ctx.bias else None


def conv_direct(xpad, kernel, bias, relu: bool, strides):
    """``act(conv(xpad, kernel) + bias)`` in one pass over the output, act ReLU or none.

    xpad: (N, Hp, Wp, C), padded already; kernel: (kh, kw, C, F); bias: (F,) or None
    -> z: (N, oH, oW, F)
    """
    fast = kernel_for("conv_direct", xpad)
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
    fast = kernel_for("conv_direct_grad", gz)
    if fast is not None:
        return fast(xpad, gz, y, kernel_shape, strides)
    kh, kw, c, f = kernel_shape
    g = (gz if y is None else relu_backward(gz, y)).reshape(-1, f)
    col = im2col(xpad, kh, kw, *strides, (0, 0, 0, 0)).reshape(-1, kh * kw * c)
    return matmul_tn(col, g).reshape(kernel_shape), sum_rows(g)


def conv_direct_grad_input(gz, y, kernel, padded_shape, strides):
    """The gradient of conv_direct's padded input: gz (N, oH, oW, F), masked by ``y > 0`` when
    ``y`` is given -> gx: (N, Hp, Wp, C), padding included."""
    fast = kernel_for("conv_direct_grad_input", gz)
    if fast is not None:
        return fast(gz, y, kernel, padded_shape, strides)
    kh, kw, c, f = kernel.shape
    n, oh, ow, _ = gz.shape
    g = (gz if y is None else relu_backward(gz, y)).reshape(-1, f)
    gcol = (g @ kernel.reshape(-1, f).T).reshape(n, oh, ow, kh, kw, c)
    return col2im(gcol, padded_shape, *strides, (0, 0, 0, 0))
