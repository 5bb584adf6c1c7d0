"""Direct convolution, for few input channels (a first layer): each output pixel summed over its
kh*kw*C taps in a cache-resident row of F values, with bias, ReLU and their gradients in the same
pass. For a 3x3 kernel on one channel, im2col's matrix would be 9x the input and its GEMM would
have an inner dimension of 9. The array versions below (through im2col) are the references the
numba kernels are tested against.
"""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.ops.conv.im2col import col2im, im2col
from minicnn.ops.dispatch import kernel_for
from minicnn.ops.elementwise import matmul_tn, relu_backward, sum_rows
from minicnn.ops.geometry import conv_output_shape, pad


def forward(x, kernel, strides, pads, bias, relu, keep=True):
    """-> (z (N*oH*oW, F), saved); see ``conv2d_forward``."""
    xpad = pad(x, pads)
    z = conv_direct(xpad, kernel, bias, relu, strides)
    n, oh, ow, f = z.shape
    return z.reshape(n * oh * ow, f), ("direct", xpad)


def backward(gz, saved, kernel, x_shape, strides, pads, need_gx, y, bias):
    """-> (gkernel, gbias, gx or None); see ``conv2d_backward``."""
    kh, kw, _, f = kernel.shape
    xpad = saved[1]
    gz4 = gz.reshape(-1, *conv_output_shape(xpad.shape, kh, kw, strides), f)
    y4 = None if y is None else y.reshape(gz4.shape)
    gkernel, gbias = conv_direct_grad(xpad, gz4, y4, kernel.shape, strides)
    gx = None
    if need_gx:
        gx = conv_direct_grad_input(gz4, y4, kernel, xpad.shape, strides)
        _, h, w, _ = x_shape
        gx = gx[:, pads[0] : pads[0] + h, pads[2] : pads[2] + w, :]
    return gkernel, gbias, gx


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
