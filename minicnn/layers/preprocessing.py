"""Rescaling, and the augmentation layers RandomFlip, RandomRotation, RandomTranslation,
RandomZoom and RandomElasticTransform.

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
from minicnn.layers.options import channels_last, no_seed


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


def _check_sampling(owner: str, data_format, seed, fill_mode, interpolation) -> None:
    """The arguments every resampling augmentation shares, refused by name where minicnn
    cannot do what Keras does."""
    channels_last(data_format, owner)
    no_seed(seed, owner)
    if fill_mode not in maths.FILL_MODES:
        raise ValueError(f"{owner}: fill_mode must be one of {maths.FILL_MODES}. Received: fill_mode={fill_mode!r}")  # fmt: skip
    if interpolation not in maths.INTERPOLATIONS:
        raise ValueError(f"{owner}: interpolation must be one of {maths.INTERPOLATIONS}. Received: interpolation={interpolation!r}")  # fmt: skip


class _RandomAffine(Layer):
    """An augmentation by a random affine map per image; subclasses draw the maps."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, data_format=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.owner = f'Layer "{self.name}" ({type(self).__name__})'
        _check_sampling(self.owner, data_format, seed, fill_mode, interpolation)
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


def keras_range(value, what: str, owner: str, bounds=(0, 1)) -> tuple[float, float]:
    """Keras's factor ranges (its ``_set_factor``) within ``bounds``: a number f means
    [max(-f, low), f]; a pair, sorted, refused only when it lies wholly outside them."""
    low, high = bounds
    msg = f"{owner}: {what} must be a number or a pair of numbers in [{low}, {high}]. Received: {what}={value!r}"  # fmt: skip
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(map(number, value)) or value[0] > high or value[1] < low:
            raise ValueError(msg)
        lo, hi = sorted(float(v) for v in value)
        return lo, hi
    if number(value) and low <= value <= high:
        return max(-abs(float(value)), float(low)), abs(float(value))
    raise ValueError(msg)


_FLIP_AXES = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}


class RandomFlip(Layer):
    """Keras's: in training each image is flipped with probability 1/2, one draw per image:
    left-right ("horizontal"), top-bottom ("vertical"), or both on that one draw (the default,
    "horizontal_and_vertical", as Keras does: an image is kept or turned by half a turn). The
    identity in inference. The flipped images' indices are the ctx; backward flips their
    gradients back."""

    mode_dependent = True

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.owner = f'Layer "{self.name}" (RandomFlip)'
        channels_last(data_format, self.owner)
        no_seed(seed, self.owner)
        if mode not in _FLIP_AXES:
            raise ValueError(f"{self.owner}: mode must be one of {sorted(_FLIP_AXES)}. Received: mode={mode!r}")  # fmt: skip
        self.mode, self.seed = mode, None

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training:
            return x, None
        xp = get_array_module(x)
        idx = xp.asarray(np.flatnonzero(rng().uniform(0.0, 1.0, x.shape[0]) <= 0.5))
        y = x.copy()
        y[idx] = xp.flip(x[idx], axis=_FLIP_AXES[self.mode])
        return y, idx

    def backward(self, gy, ctx, need_gx=True):
        if ctx is None or not need_gx:
            return (gy if ctx is None else None), {}
        g = gy.copy()
        g[ctx] = get_array_module(gy).flip(gy[ctx], axis=_FLIP_AXES[self.mode])
        return g, {}

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "mode": self.mode}


class RandomElasticTransform(Layer):
    """Keras's elastic distortion (Simard et al. 2003): each pixel moved along a smooth random
    field. Per batch, a distortion d is drawn from ``scale``; with it alpha = 0.1 d max(H, W)
    and sigma = 0.05 d min(H, W), and each pixel reads the point alpha * blur_sigma(sigma * N(0,
    1)) away, per axis (``maths.elastic_points``). Each image is distorted with a probability
    drawn from ``factor``, the others pass as they are; the result is clipped to
    ``value_range``. The identity in inference. For a 28x28 digit and d = 1: alpha 2.8, sigma
    1.4, displacements of about 0.8 pixel (standard deviation), smooth over ~3 pixels."""

    mode_dependent = True

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_mode="reflect", fill_value=0.0, value_range=(0, 255), seed=None, data_format=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.owner = f'Layer "{self.name}" (RandomElasticTransform)'
        _check_sampling(self.owner, data_format, seed, fill_mode, interpolation)
        if not (isinstance(value_range, (tuple, list)) and len(value_range) == 2 and value_range[0] <= value_range[1]):  # fmt: skip
            raise ValueError(f"{self.owner}: value_range must be a pair (low, high), low <= high. Received: value_range={value_range!r}")  # fmt: skip
        self.factor = keras_range(factor, "factor", self.owner)
        self.scale = keras_range(scale, "scale", self.owner)
        if self.scale[0] < 0:  # Keras takes it, then builds a blur of negative width from it
            raise ValueError(f"{self.owner}: scale must lie in [0, 1]; a negative distortion has no meaning. Received: scale={scale!r}")  # fmt: skip
        self.interpolation, self.fill_mode = interpolation, fill_mode
        self.fill_value, self.value_range, self.seed = float(fill_value), tuple(float(v) for v in value_range), None  # fmt: skip

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        return tuple(input_shape)

    def draw(self, n: int, h: int, w: int, dtype):
        """-> None (nothing moves) or (the distorted images' indices, alpha, sigma, their
        noise (2, k, H, W))."""
        g = rng()
        chance = g.uniform(*self.factor, n)
        chosen = np.flatnonzero(g.uniform(0.0, 1.0, n) < chance)
        d = g.uniform(*self.scale)
        alpha, sigma = 0.1 * d * max(h, w), 0.05 * d * min(h, w)
        if sigma <= 0 or chosen.size == 0:  # d = 0: nothing moves (Keras's blur would divide by 0)
            return None
        return chosen, alpha, sigma, g.standard_normal((2, chosen.size, h, w), dtype=dtype)

    def forward(self, x, training=False):
        if not training or self.factor[1] == 0 or self.scale[1] == 0:
            return x, None
        xp = get_array_module(x)
        n, h, w, _ = x.shape
        drawn = self.draw(n, h, w, np.dtype(x.dtype))
        y = x.copy()
        points = None
        if drawn is not None:
            chosen, alpha, sigma, noise = drawn
            idx = xp.asarray(chosen)
            ys, xs = maths.elastic_points(xp.asarray(noise), alpha, sigma)
            y[idx] = maths.point_resample(x[idx], ys, xs, self.interpolation, self.fill_mode, self.fill_value)  # fmt: skip
            points = (idx, ys, xs)
        lo, hi = (x.dtype.type(v) for v in self.value_range)
        inside = (y >= lo) & (y <= hi)
        return xp.clip(y, lo, hi, out=y), (points, inside)

    def backward(self, gy, ctx, need_gx=True):
        if ctx is None:
            return gy, {}
        if not need_gx:
            return None, {}
        points, inside = ctx
        g = gy * inside
        if points is not None:
            idx, ys, xs = points
            g[idx] = maths.point_resample_backward(g[idx], ys, xs, self.interpolation, self.fill_mode)  # fmt: skip
        return g, {}

    def get_config(self):
        return {
            **super().get_config(),
            "factor": list(self.factor),
            "scale": list(self.scale),
            "interpolation": self.interpolation,
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "value_range": list(self.value_range),
            "seed": self.seed,
        }
