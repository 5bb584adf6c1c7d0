"""Reshape, and the layers that change an image's size: ZeroPadding2D, Cropping2D, UpSampling2D."""

from __future__ import annotations

import math

import numpy as np

from minicnn import maths
from minicnn.backend import get_array_module
from minicnn.layers.base import Layer, normalize_tuple
from minicnn.layers.options import channels_last


class Reshape(Layer):
    """(N, *input) -> (N, *target_shape), in C order; one entry of target_shape may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        target = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in target) > 1 or any(d == 0 or d < -1 for d in target):
            raise ValueError(
                f'Layer "{self.name}" (Reshape): target_shape must hold positive ints and at most '
                f"one -1. Received: target_shape={target_shape!r}"
            )
        self.target_shape = target

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        if math.prod(shape) != size:
            raise ValueError(
                f'Layer "{self.name}" (Reshape): cannot reshape an input of shape '
                f"{input_shape} ({size} values) to {(None, *self.target_shape)}"
            )
        return (input_shape[0], *shape)

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], *self.compute_output_shape(x.shape)[1:]), x.shape

    def backward(self, gy, ctx, need_gx=True):
        return gy.reshape(ctx), {}

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


def _pairs(value, what: str, owner: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's padding/cropping forms: an int, (symmetric_height, symmetric_width), or
    ((top, bottom), (left, right)), every entry an int >= 0."""

    def pair(v, which):
        t = (v, v) if isinstance(v, (int, np.integer)) else tuple(v) if hasattr(v, "__len__") else None  # fmt: skip
        if t is None or len(t) != 2 or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 0 for a in t):  # fmt: skip
            raise ValueError(
                f"{owner}: the {which} entry of {what} must be an int >= 0 or a pair of them. "
                f"Received: {what}={value!r}"
            )
        return int(t[0]), int(t[1])

    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return pair(value, "1st"), pair(value, "2nd")
    if not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(
            f"{owner}: {what} must be an int, a tuple of 2 ints (symmetric_height, "
            f"symmetric_width), or a tuple of 2 tuples of 2 ints ((top, bottom), (left, right)). "
            f"Received: {what}={value!r}"
        )
    return pair(value[0], "1st"), pair(value[1], "2nd")


class ZeroPadding2D(Layer):
    """Zeros around each image: ``padding`` rows above and below, columns left and right.
    (N, H, W, C) -> (N, H + top + bottom, W + left + right, C); its gradient is the slice."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (ZeroPadding2D)'
        channels_last(data_format, owner)
        self.padding = _pairs(padding, "padding", owner)

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        (t, b), (le, r) = self.padding
        n, h, w, c = input_shape
        return (n, h + t + b, w + le + r, c)

    def forward(self, x, training=False):
        (t, b), (le, r) = self.padding
        return maths.pad(x, (t, b, le, r)), x.shape

    def backward(self, gy, x_shape, need_gx=True):
        (t, _), (le, _) = self.padding
        return get_array_module(gy).ascontiguousarray(
            gy[:, t : t + x_shape[1], le : le + x_shape[2]]
        ), {}

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class Cropping2D(Layer):
    """Rows and columns cut off each image's edges: (N, H, W, C) -> (N, H - top - bottom,
    W - left - right, C); its gradient is zero on what was cut."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (Cropping2D)'
        channels_last(data_format, owner)
        self.cropping = _pairs(cropping, "cropping", owner)

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        (t, b), (le, r) = self.cropping
        n, h, w, c = input_shape
        if t + b >= h or le + r >= w:
            raise ValueError(
                f'Layer "{self.name}" (Cropping2D): values in `cropping` argument should be smaller '
                f"than the corresponding spatial dimension of the input. Received: "
                f"input_shape={input_shape}, cropping={self.cropping}"
            )
        return (n, h - t - b, w - le - r, c)

    def forward(self, x, training=False):
        (t, b), (le, r) = self.cropping
        h, w = x.shape[1:3]
        y = get_array_module(x).ascontiguousarray(x[:, t : h - b, le : w - r])
        return y, x.shape

    def backward(self, gy, x_shape, need_gx=True):
        (t, _), (le, _) = self.cropping
        gx = get_array_module(gy).zeros(x_shape, dtype=gy.dtype)
        gx[:, t : t + gy.shape[1], le : le + gy.shape[2]] = gy
        return gx, {}

    def get_config(self):
        return {**super().get_config(), "cropping": [list(p) for p in self.cropping]}


class UpSampling2D(Layer):
    """Each image made ``size`` = (fh, fw) times larger: (N, H, W, C) -> (N, H*fh, W*fw, C),
    by repeating pixels ("nearest", Keras's default) or "bilinear" interpolation as Keras's
    ``ops.image.resize`` computes it (``minicnn.maths.upsample``)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (UpSampling2D)'
        channels_last(data_format, owner)
        self.size = normalize_tuple(size, 2, "size", owner)
        interp = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if interp not in ("nearest", "bilinear"):
            raise ValueError(
                f'{owner}: interpolation must be "nearest" or "bilinear" (minicnn has no bicubic '
                f"or lanczos resizing). Received: interpolation={interpolation!r}"
            )
        self.interpolation = interp

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        n, h, w, c = input_shape
        return (n, h * self.size[0], w * self.size[1], c)

    def forward(self, x, training=False):
        if self.interpolation == "nearest":
            return maths.upsample_nearest(x, *self.size), None
        return maths.upsample_bilinear(x, *self.size), None

    def backward(self, gy, ctx, need_gx=True):
        if self.interpolation == "nearest":
            return maths.upsample_nearest_backward(gy, *self.size), {}
        return maths.upsample_bilinear_backward(gy, *self.size), {}

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "interpolation": self.interpolation}  # fmt: skip


class Permute(Layer):
    """Keras's: the axes after the batch's reordered, ``dims`` numbering them from 1
    (``Permute((2, 1))`` swaps the two axes of (N, a, b)); backward applies the inverse."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else dims
        if not isinstance(dims, tuple) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f'Layer "{self.name}" (Permute): dims must number the axes after the batch\'s from 1, each once (a permutation of 1..k). Received: dims={dims!r}')  # fmt: skip
        self.dims = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        self.check_rank(tuple(input_shape), len(self.dims) + 1)
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def forward(self, x, training=False):
        return x.transpose(0, *self.dims), None

    def backward(self, gy, ctx, need_gx=True):
        return gy.transpose(0, *(1 + i for i in np.argsort(self.dims))), {}

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


class CenterCrop(Layer):
    """Keras's: the central height x width window of each image, starting at (H - height) // 2
    and (W - width) // 2; its gradient is zero outside it. A smaller image, which Keras resizes
    to keep the aspect ratio, is refused when the layer is built."""

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.owner = f'Layer "{self.name}" (CenterCrop)'
        channels_last(data_format, self.owner)
        for what, v in (("height", height), ("width", width)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{self.owner}: {what} must be a positive int. Received: {what}={v!r}")  # fmt: skip
        self.height, self.width = int(height), int(width)

    def compute_output_shape(self, input_shape):
        self.check_rank(tuple(input_shape), 4)
        n, h, w, c = input_shape
        for what, want, have in (("height", self.height, h), ("width", self.width, w)):
            if have is not None and have < want:
                raise ValueError(f"{self.owner}: {what}={want} is larger than the input's {have} (Keras then resizes the image first; minicnn crops only). Received: input shape {tuple(input_shape)}")  # fmt: skip
        return (n, self.height, self.width, c)

    def _start(self, shape):
        return (shape[1] - self.height) // 2, (shape[2] - self.width) // 2

    def forward(self, x, training=False):
        top, left = self._start(x.shape)
        y = x[:, top : top + self.height, left : left + self.width]
        return get_array_module(x).ascontiguousarray(y), x.shape

    def backward(self, gy, x_shape, need_gx=True):
        top, left = self._start(x_shape)
        gx = get_array_module(gy).zeros(x_shape, dtype=gy.dtype)
        gx[:, top : top + self.height, left : left + self.width] = gy
        return gx, {}

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}
