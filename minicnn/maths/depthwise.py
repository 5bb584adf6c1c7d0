"""Depthwise convolution (DepthwiseConv2D, and SeparableConv2D's first half), channels-last:
each input channel c convolved with its own M filters, output channel c*M + m,

    y[n, p, q, c*M + m] = bias[c*M + m] + sum_{u, v} xpad[n, p*sy + u, q*sx + v, c] K[u, v, c, m]

with K (kh, kw, C, M) in Keras's layout. Its gradients, with g = gy as (N, oH, oW, C, M):

    gK[u, v, c, m] = sum_{n, p, q} xpad[n, p*sy + u, q*sx + v, c] g[n, p, q, c, m]
    gxpad[n, p*sy + u, q*sx + v, c] += sum_m g[n, p, q, c, m] K[u, v, c, m]

The array code loops over the kh*kw taps only, each a whole-array multiply-add; the CPU
kernels (``kernels/cpu/depthwise.py``) make one pass per output row instead, with the row's sums
in cache. The plain definition is ``minicnn.maths.reference.depthwise_conv2d``.
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for
from minicnn.maths.geometry import conv_output_shape, pad


class Ctx(NamedTuple):
    xpad: object  # (N, Hp, Wp, C): the input with its padding
    kernel: object  # (kh, kw, C, M)
    x_shape: tuple
    strides: tuple
    pads: tuple
    bias: bool


def depthwise_forward(x, kernel, bias, strides, pads, keep=True):
    """x (N, H, W, C), kernel (kh, kw, C, M), bias (C*M,) or None -> (y (N, oH, oW, C*M),
    Ctx or None)."""
    xpad = pad(x, pads)
    y = depthwise_conv(xpad, kernel, bias, tuple(strides))
    ctx = Ctx(xpad, kernel, x.shape, tuple(strides), tuple(pads), bias is not None)
    return y, (ctx if keep else None)


def depthwise_backward(gy, ctx: Ctx, need_gx: bool = True):
    """-> (gx (N, H, W, C) or None, gkernel (kh, kw, C, M), gbias (C*M,) or None)."""
    gy = get_array_module(gy).ascontiguousarray(gy)
    gkernel, gbias = depthwise_conv_grad(ctx.xpad, gy, ctx.kernel.shape, ctx.strides)
    gx = None
    if need_gx:
        gxpad = depthwise_conv_grad_input(gy, ctx.kernel, ctx.xpad.shape, ctx.strides)
        _, h, w, _ = ctx.x_shape
        top, left = ctx.pads[0], ctx.pads[2]
        gx = gxpad[:, top : top + h, left : left + w, :]
        if any(ctx.pads):
            gx = get_array_module(gx).ascontiguousarray(gx)
    return gx, gkernel, (gbias if ctx.bias else None)


def _tap(a, u, v, oh, ow, sy, sx):
    """The (N, oH, oW, C) window of ``a`` that tap (u, v) reads."""
    return a[:, u : u + sy * (oh - 1) + 1 : sy, v : v + sx * (ow - 1) + 1 : sx, :]


def depthwise_conv(xpad, kernel, bias, strides):
    """The convolution of an already padded input: -> y (N, oH, oW, C*M)."""
    fast = kernel_for("depthwise_conv", xpad)
    if fast is not None:
        return fast(xpad, kernel, bias, strides)
    xp = get_array_module(xpad)
    kh, kw, c, m = kernel.shape
    oh, ow = conv_output_shape(xpad.shape, kh, kw, strides)
    y = xp.zeros((xpad.shape[0], oh, ow, c, m), dtype=xpad.dtype)
    for u in range(kh):  # a loop over the taps only: each one a whole-array multiply-add
        for v in range(kw):
            y += _tap(xpad, u, v, oh, ow, *strides)[..., None] * kernel[u, v]
    y = y.reshape(*y.shape[:3], c * m)
    return y if bias is None else y + bias


def depthwise_conv_grad(xpad, gy, kernel_shape, strides):
    """-> (gkernel (kh, kw, C, M), gbias (C*M,)) from gy (N, oH, oW, C*M)."""
    fast = kernel_for("depthwise_conv_grad", gy)
    if fast is not None:
        return fast(xpad, gy, kernel_shape, strides)
    xp = get_array_module(gy)
    kh, kw, c, m = kernel_shape
    n, oh, ow, _ = gy.shape
    g = gy.reshape(n, oh, ow, c, m)
    gk = xp.empty(kernel_shape, dtype=gy.dtype)
    for u in range(kh):
        for v in range(kw):
            gk[u, v] = xp.einsum("npqc,npqcm->cm", _tap(xpad, u, v, oh, ow, *strides), g)
    return gk, gy.sum(axis=(0, 1, 2))


def depthwise_conv_grad_input(gy, kernel, padded_shape, strides):
    """-> gxpad (N, Hp, Wp, C), the gradient of the padded input, padding included."""
    fast = kernel_for("depthwise_conv_grad_input", gy)
    if fast is not None:
        return fast(gy, kernel, padded_shape, strides)
    xp = get_array_module(gy)
    kh, kw, c, m = kernel.shape
    n, oh, ow, _ = gy.shape
    g = gy.reshape(n, oh, ow, c, m)
    gxpad = xp.zeros(padded_shape, dtype=gy.dtype)
    for u in range(kh):
        for v in range(kw):
            _tap(gxpad, u, v, oh, ow, *strides)[...] += (g * kernel[u, v]).sum(axis=-1)
    return gxpad
