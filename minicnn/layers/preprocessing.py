"""Rescaling, and the augmentation layers RandomRotation, RandomTranslation and RandomZoom.

The augmentation layers follow Keras 3's factor conventions and fill modes. They act in training
only (the identity in inference), draw one transform per image from minicnn's seeded generator
(so a resumed run draws what the unbroken one would; ``minicnn.utils.set_random_seed`` fixes the
draws, and a per-layer ``seed`` is refused), and resample the whole batch in
one call of ``maths.affine_resample``.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn import maths
from minicnn.backend import floatx, get_array_module, rng
from minicnn.layers.base import Layer
from minicnn.layers.options import channels_last


class Rescaling(Layer):
    """y = x * scale + offset (``Rescaling(1 / 255)`` maps pixels to [0, 1])."""

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)

    def forward(self, x, training=False):
        t = x.dtype.type
        return x * t(self.scale) + t(self.offset), None

    def backward(self, gy, ctx, need_gx=True):
        return gy * gy.dtype.type(self.scale), {}

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _factor_range(factor, what: str, owner: str, bound: bool = True) -> tuple[float, float]:
    """Keras's convention: a number f means [-f, f]; a pair (lo, hi) means [lo, hi]."""
    if isinstance(factor, (int, float)):
        lo, hi = -abs(float(factor)), abs(float(factor))
    elif isinstance(factor, (tuple, list)) and len(factor) == 2:
        lo, hi = sorted(float(f) for f in factor)
    else:
        raise ValueError(f"{owner}: {what} must be a number or a pair (lower, upper). Received: {what}={factor!r}")  # fmt: skip
    if bound and not (-1 < lo and hi <= 1):
        raise ValueError(f"{owner}: {what} must lie in (-1, 1]. Received: {what}={factor!r}")
    return lo, hi


class _RandomAffine(Layer):
    """An augmentation by a random affine map per image; subclasses draw the maps."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, data_format=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.owner = f'Layer "{self.name}" ({type(self).__name__})'
        channels_last(data_format, self.owner)
        if seed is not None:  # Keras's seed fixes this layer's own draws; minicnn has one generator
            raise ValueError(
                f"{self.owner}: a per-layer seed is not supported; minicnn draws every transform "
                f"from its one generator (minicnn.utils.set_random_seed). Received: seed={seed!r}"
            )
        if fill_mode not in maths.FILL_MODES:
            raise ValueError(f"{self.owner}: fill_mode must be one of {maths.FILL_MODES}. Received: fill_mode={fill_mode!r}")  # fmt: skip
        if interpolation not in maths.INTERPOLATIONS:
            raise ValueError(f"{self.owner}: interpolation must be one of {maths.INTERPOLATIONS}. Received: interpolation={interpolation!r}")  # fmt: skip
        self.fill_mode, self.interpolation = fill_mode, interpolation
        self.seed, self.fill_value = None, float(fill_value)

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        return tuple(input_shape)

    mode_dependent = True

    def transforms(self, n: int, h: int, w: int) -> np.ndarray:
        """(n, 6) float64: each image's map from output pixel to input point."""
        raise NotImplementedError

    def forward(self, x, training=False):
        """Training: each image resampled through its own drawn map; the maps are the ctx."""
        if not training:
            return x, None
        n, h, w, _ = x.shape
        xp = get_array_module(x)
        t = xp.asarray(self.transforms(n, h, w).astype(floatx()))
        return maths.affine_resample(x, t, self.interpolation, self.fill_mode, self.fill_value), t

    def backward(self, gy, ctx, need_gx=True):
        if ctx is None or not need_gx:
            return (gy if ctx is None else None), {}
        return maths.affine_resample_backward(gy, ctx, self.interpolation, self.fill_mode), {}

    def get_config(self):
        return {
            **super().get_config(),
            "fill_mode": self.fill_mode,
            "interpolation": self.interpolation,
            "seed": self.seed,
            "fill_value": self.fill_value,
        }


class RandomRotation(_RandomAffine):
    """Rotate each image about its centre by a random angle of ``factor`` turns: 0.1 means
    up to +-36 degrees, (-0.05, 0.1) from -18 to +36."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = _factor_range(factor, "factor", self.owner, bound=False)

    def transforms(self, n, h, w):
        angle = rng().uniform(self.factor[0] * 2 * math.pi, self.factor[1] * 2 * math.pi, n)
        cos, sin = np.cos(angle), np.sin(angle)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        return np.stack(
            [cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos], axis=1
        )

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


class RandomTranslation(_RandomAffine):
    """Shift each image by a random fraction of its height and width: 0.1 means up to 10%."""

    def __init__(self, height_factor, width_factor, **kwargs):
        super().__init__(**kwargs)
        self.height_factor = _factor_range(height_factor, "height_factor", self.owner)
        self.width_factor = _factor_range(width_factor, "width_factor", self.owner)
        self.given = {"height_factor": height_factor, "width_factor": width_factor}

    def transforms(self, n, h, w):
        dy = rng().uniform(*self.height_factor, n) * h
        dx = rng().uniform(*self.width_factor, n) * w
        one, zero = np.ones(n), np.zeros(n)
        return np.stack([one, zero, -dx, zero, one, -dy], axis=1)

    def get_config(self):
        return {**super().get_config(), **self.given}  # as given, as Keras keeps them


class RandomZoom(_RandomAffine):
    """Zoom each image about its centre: a positive factor zooms out (the image shrinks), a
    negative one zooms in; 0.1 means from 10% in to 10% out. Without ``width_factor`` the
    aspect ratio is kept."""

    def __init__(self, height_factor, width_factor=None, **kwargs):
        super().__init__(**kwargs)
        self.height_factor = _factor_range(height_factor, "height_factor", self.owner)
        self.width_factor = (
            None
            if width_factor is None
            else _factor_range(width_factor, "width_factor", self.owner)
        )
        self.given = {"height_factor": height_factor, "width_factor": width_factor}

    def transforms(self, n, h, w):
        zy = 1 + rng().uniform(*self.height_factor, n)
        zx = zy if self.width_factor is None else 1 + rng().uniform(*self.width_factor, n)
        zero = np.zeros(n)
        return np.stack(
            [zx, zero, (w - 1) / 2 * (1 - zx), zero, zy, (h - 1) / 2 * (1 - zy)], axis=1
        )

    def get_config(self):
        return {**super().get_config(), **self.given}  # as given, as Keras keeps them
