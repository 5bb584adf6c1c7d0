"""Elementwise and reduction helpers that the layers' forward and backward passes share: the
fused bias + ReLU, ReLU's gradient, Dropout, the weight gradient's product and the bias
gradient's sums."""

from __future__ import annotations

import numpy as np

from minicnn.backend import device_rng, get_array_module
from minicnn.maths.dispatch import kernel_for


def bias_relu(y, b, relu: bool):
    """In place: ``y += b`` then, if ``relu``, ``y = max(y, 0)``. y: (M, F), b: (F,) or None."""
    fast = kernel_for("bias_relu", y)
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
    fast = kernel_for("relu_backward", gy)
    if fast is not None:
        return fast(gy, y)
    return gy * (y > 0)


def relu_backward_sum(gy, y):
    """ReLU's gradient and its column sums (the bias gradient) in one pass: gy and y (the ReLU
    output) (M, F) -> (g (M, F), g.sum(axis=0) (F,))."""
    fast = kernel_for("relu_backward_sum", gy)
    if fast is not None:
        return fast(gy, y)
    g = relu_backward(gy, y)
    return g, sum_rows(g)


def dropout(x, rate: float):
    """Inverted dropout: -> (y, keep), keep (bool, x's shape) true with probability 1 - rate,
    drawn from minicnn's seeded generator, and y = x * keep / (1 - rate).

    The CPU kernel takes 32 raw bits per element from the generator (kept where they are >=
    rate * 2^32, a probability within 2^-33 of 1 - rate), which draw faster than uniform floats
    (0.6 against 1.1 ms for 692k), and keeps, scales and masks in one pass: 2.7 -> 1.3 ms for
    128 images of 13x13x32. The array code (and the GPU) compares uniform floats with the rate."""
    scale = 1 / (1 - rate)
    fast = kernel_for("dropout", x)
    if fast is not None:
        xp = get_array_module(x)  # the bits are drawn where x lies: no copy to the GPU
        gen = device_rng(xp)
        if xp is np:
            bits = gen.bit_generator.random_raw((x.size + 1) // 2).view(np.uint32)[: x.size]
        else:
            bits = gen.integers(0, 2**32, size=x.size, dtype=np.uint64).astype(np.uint32)
        return fast(x, bits, min(round(rate * 2**32), 2**32 - 1), scale)
    xp = get_array_module(x)
    keep = device_rng(xp).random(x.shape, dtype=x.dtype) >= rate
    return x * (keep * x.dtype.type(scale)), keep


def dropout_backward(gy, keep, rate: float):
    """The gradient of ``dropout``: gy * keep / (1 - rate)."""
    scale = 1 / (1 - rate)
    fast = kernel_for("dropout_backward", gy)
    if fast is not None:
        return fast(gy, keep, scale)
    return gy * (keep * gy.dtype.type(scale))


def matmul_tn(a, b):
    """``a.T @ b`` for a (M, K), b (M, F) -> (K, F): the weight gradient, whose inner dimension M
    (every pixel of the batch) dwarfs its output."""
    fast = kernel_for("matmul_tn", a)
    if fast is not None:
        return fast(a, b)
    return a.T @ b


def sum_rows(a):
    """Column sums of a (M, F) matrix -> (F,): the bias gradient."""
    fast = kernel_for("sum_rows", a)
    if fast is not None:
        return fast(a)
    return a.sum(axis=0)


def shaped_dropout(x, rate: float, mask_shape: tuple):
    """Dropout with one draw per entry of ``mask_shape`` (x's shape with 1s where the mask is
    shared: Keras's ``noise_shape``) -> (y, keep), keep of ``mask_shape`` true with probability
    1 - rate (minicnn's seeded generator), y = x * keep / (1 - rate), keep broadcast."""
    xp = get_array_module(x)
    keep = device_rng(xp).random(tuple(mask_shape), dtype=x.dtype) >= rate
    return x * (keep * x.dtype.type(1 / (1 - rate))), keep


def spatial_dropout(x, rate: float):
    """Dropout of whole channels: x (N, H, W, C) -> (y, keep), keep (N, 1, 1, C)."""
    return shaped_dropout(x, rate, (x.shape[0], 1, 1, x.shape[-1]))


def spatial_dropout_backward(gy, keep, rate: float):
    """The gradient of ``spatial_dropout`` and ``shaped_dropout``: gy * keep / (1 - rate),
    keep broadcast."""
    return gy * (keep * gy.dtype.type(1 / (1 - rate)))
