"""Depthwise convolution (DepthwiseConv2D, and SeparableConv2D's first half), channels-last:
each input channel c convolved with its own M filters, output channel c*M + m,

    y[n, p, q, c*M + m] = bias[c*M + m] + sum_{u, v} xpad[n, p*sy + u, q*sx + v, c] K[u, v, c, m]

with K (kh, kw, C, M) in Keras's layout, then max(y, 0) where ``relu`` (in the same pass; the
backward masks gy by it). Its gradients, with g = gy as (N, oH, oW, C, M):

    gK[u, v, c, m] = sum_{n, p, q} xpad[n, p*sy + u, q*sx + v, c] g[n, p, q, c, m]
    gxpad[n, p*sy + u, q*sx + v, c] += sum_m g[n, p, q, c, m] K[u, v, c, m]

The array code loops over the kh*kw taps only, each a whole-array multiply-add; the CPU
kernels (``kernels/cpu/depthwise.py``) make one pass per output row for the forward, and one
pass over gy for every gradient. The plain definition is
``minicnn.maths.reference.depthwise_conv2d``.
"""

from __future__ import annotations

from typing import NamedTuple

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for
from minicnn.maths.elementwise import relu_backward
from minicnn.maths.geometry import conv_output_shape, pad


class Ctx(NamedTuple):
    xpad: object  # (N, Hp, Wp, C): the input with its padding
    kernel: object  # (kh, kw, C, M)
    x_shape: tuple
    strides: tuple
    pads: tuple
    y: object  # the output when a ReLU was applied (its mask), else None
    bias: bool


def depthwise_forward(x, kernel, bias, strides, pads, relu=False, keep=True):
    """x (N, H, W, C), kernel (kh, kw, C, M), bias (C*M,) or None -> (y (N, oH, oW, C*M),
    Ctx or None)."""
    xpad = pad(x, pads)
    y = depthwise_conv(xpad, kernel, bias, relu, tuple(strides))
    ctx = Ctx(xpad, kernel, x.shape, tuple(strides), tuple(pads), y if relu else None, bias is not None)  # fmt: skip
    return y, (ctx if keep else None)


def depthwise_backward(gy, ctx: Ctx, need_gx: bool = True):
    """-> (gx (N, H, W, C) or None, gkernel (kh, kw, C, M), gbias (C*M,) or None)."""
    gkernel, gbias, gxpad = depthwise_conv_backward(ctx.xpad, gy, ctx.y, ctx.kernel, need_gx, ctx.strides)  # fmt: skip
    gx = None
    if need_gx:
        _, h, w, _ = ctx.x_shape
        top, left = ctx.pads[0], ctx.pads[2]
        gx = gxpad[:, top : top + h, left : left + w, :]
        if any(ctx.pads):
            gx = get_array_module(gx).ascontiguousarray(gx)
    return gx, gkernel, (gbias if ctx.bias else None)


def _tap(a, u, v, oh, ow, sy, sx):
    """The (N, oH, oW, C) window of ``a`` that tap (u, v) reads."""
    return a[:, u : u + sy * (oh - 1) + 1 : sy, v : v + sx * (ow - 1) + 1 : sx, :]


def depthwise_conv(xpad, kernel, bias, relu, strides):
    """The convolution of an already padded input (then ReLU): -> y (N, oH, oW, C*M)."""
    fast = kernel_for("depthwise_conv", xpad)
    if fast is not None:
        return fast(xpad, kernel, bias, relu, strides)
    xp = get_array_module(xpad)
    kh, kw, c, m = kernel.shape
    oh, ow = conv_output_shape(xpad.shape, kh, kw, strides)
    y = xp.zeros((xpad.shape[0], oh, ow, c, m), dtype=xpad.dtype)
    for u in range(kh):  # a loop over the taps only: each one a whole-array multiply-add
        for v in range(kw):
            y += _tap(xpad, u, v, oh, ow, *strides)[..., None] * kernel[u, v]
    y = y.reshape(*y.shape[:3], c * m)
    if bias is not None:
        y += bias
    return xp.maximum(y, 0, out=y) if relu else y


def depthwise_conv_backward(xpad, gy, y, kernel, need_gx, strides):
    """From gy (N, oH, oW, C*M), masked by ``y > 0`` first when ``y`` (the ReLU output) is
    given: -> (gkernel (kh, kw, C, M), gbias (C*M,), gxpad (N, Hp, Wp, C) or None, the padded
    input's gradient, padding included)."""
    xp = get_array_module(gy)
    gy = xp.ascontiguousarray(gy)  # a slice of a concatenation's gradient
    fast = kernel_for("depthwise_conv_backward", gy)
    if fast is not None:
        return fast(xpad, gy, y, kernel, need_gx, strides)
    kh, kw, c, m = kernel.shape
    n, oh, ow, _ = gy.shape
    gy = gy if y is None else relu_backward(gy, y)
    g = gy.reshape(n, oh, ow, c, m)
    gk = xp.empty(kernel.shape, dtype=gy.dtype)
    gxpad = xp.zeros(xpad.shape, dtype=gy.dtype) if need_gx else None
    for u in range(kh):
        for v in range(kw):
            gk[u, v] = xp.einsum("npqc,npqcm->cm", _tap(xpad, u, v, oh, ow, *strides), g)
            if need_gx:
                _tap(gxpad, u, v, oh, ow, *strides)[...] += (g * kernel[u, v]).sum(axis=-1)
    return gk, gy.sum(axis=(0, 1, 2)), gxpad
