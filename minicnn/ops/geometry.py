"""Window geometry shared by convolution and pooling: output sizes, "same" padding, and the
chunks that keep large batches in cache. Pure arithmetic on shapes, plus ``pad``."""

from __future__ import annotations

import math

from minicnn.backend import get_array_module


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


def conv_output_shape(padded_shape, kh: int, kw: int, strides) -> tuple[int, int]:
    """(oH, oW) of a window op on an input already padded to ``padded_shape`` (N, Hp, Wp, C)."""
    _, hp, wp, _ = padded_shape
    return (hp - kh) // strides[0] + 1, (wp - kw) // strides[1] + 1


CHUNK_BYTES = 4 << 20  # input bytes per chunk of the shifted GEMMs: about what stays in cache


def image_chunks(n: int, per_image: int, itemsize: int, scale: int = 1):
    """Image ranges [n0, n1) of about CHUNK_BYTES * scale each: the same FLOPs, on data still
    in cache (at batch 128 the whole padded input of conv2 is 22 MB and every tap streams it
    again)."""
    step = max(1, scale * CHUNK_BYTES // (per_image * itemsize))
    return [(n0, min(n0 + step, n)) for n0 in range(0, n, step)]
