"""The colour augmentations RandomContrast and RandomBrightness, as Keras 3's: one draw per
image from minicnn's seeded generator, in training only (the identity in inference), the
result clipped to ``value_range``; each backward by hand."""

from __future__ import annotations

from minicnn.backend import get_array_module, rng
from minicnn.layers.base import Layer
from minicnn.layers.options import channels_last, no_seed
from minicnn.layers.preprocessing import keras_range


def _checked(layer, factor, bounds, value_range, seed, data_format) -> None:
    """Keras's factor within ``bounds`` (``keras_range``), value_range (a pair, sorted) and
    the refusals shared with the other augmentations (a per-layer seed, channels first)."""
    owner = layer.owner = f'Layer "{layer.name}" ({type(layer).__name__})'
    channels_last(data_format, owner)
    no_seed(seed, owner)
    lo, hi = keras_range(factor, "factor", owner, bounds)
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if not (isinstance(value_range, (tuple, list)) and len(value_range) == 2 and all(map(number, value_range))):  # fmt: skip
        raise ValueError(f"{owner}: value_range must be a pair of numbers (low, high). Received: value_range={value_range!r}")  # fmt: skip
    layer.factor, layer.value_range, layer.seed = (lo, hi), tuple(sorted(float(v) for v in value_range)), None  # fmt: skip


class _ColourAugmentation(Layer):
    mode_dependent = True

    def compute_output_shape(self, input_shape):
        self.check_rank(tuple(input_shape), 4)
        return tuple(input_shape)

    def _clip(self, y):
        lo, hi = (y.dtype.type(v) for v in self.value_range)
        inside = (y >= lo) & (y <= hi)
        return get_array_module(y).clip(y, lo, hi, out=y), inside

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor), "value_range": list(self.value_range), "seed": self.seed}  # fmt: skip


class RandomContrast(_ColourAugmentation):
    """Keras's: each image's contrast scaled by c drawn from [1 - lower, 1 + upper], per
    channel about the image's mean, y = clip((x - m) c + m). As in Keras 3, a number f gives
    [1, 1 + f] (its factor range is (0, f)); a pair (a, b) gives [1 - a, 1 + b]. Backward:
    gx = inside * g c + (1 - c) * mean over the pixels of (inside * g), per channel."""

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _checked(self, factor, (0, 1), value_range, seed, data_format)

    def forward(self, x, training=False):
        if not training:
            return x, None
        xp = get_array_module(x)
        c = xp.asarray(rng().uniform(1.0 - self.factor[0], 1.0 + self.factor[1], (x.shape[0], 1, 1, 1)).astype(x.dtype))  # fmt: skip
        m = x.mean(axis=(1, 2), keepdims=True)
        y, inside = self._clip((x - m) * c + m)
        return y, (c, inside)

    def backward(self, gy, ctx, need_gx=True):
        if ctx is None or not need_gx:
            return (gy if ctx is None else None), {}
        c, inside = ctx
        g = gy * inside
        return g * c + (1 - c) * g.mean(axis=(1, 2), keepdims=True), {}


class RandomBrightness(_ColourAugmentation):
    """Keras's: each image shifted by d * (high - low) of ``value_range``, d drawn from the
    factor range (a number f: [-f, f]), then clipped to it. Backward: the gradient where the
    value was not clipped."""

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        _checked(self, factor, (-1, 1), value_range, seed, data_format)

    def forward(self, x, training=False):
        if not training:
            return x, None
        xp = get_array_module(x)
        span = self.value_range[1] - self.value_range[0]
        d = rng().uniform(self.factor[0], self.factor[1], (x.shape[0], 1, 1, 1)) * span
        y, inside = self._clip(x + xp.asarray(d.astype(x.dtype)))
        return y, inside

    def backward(self, gy, ctx, need_gx=True):
        if ctx is None or not need_gx:
            return (gy if ctx is None else None), {}
        return gy * ctx, {}


__all__ = ["RandomBrightness", "RandomContrast"]
