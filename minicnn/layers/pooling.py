"""Pooling, channels-last: max and average over windows, and over the whole image."""

from __future__ import annotations

from minicnn import maths
from minicnn.backend import get_array_module
from minicnn.layers.base import Layer, normalize_padding, normalize_tuple
from minicnn.layers.options import channels_last


class _Pooling2D(Layer):
    """A reduction over ``pool_size`` windows moved by ``strides`` (default: pool_size).
    x: (N, H, W, C) -> y: (N, oH, oW, C)."""

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid", data_format=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" ({type(self).__name__})'
        channels_last(data_format, owner)
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", owner)
        self.strides = (
            self.pool_size if strides is None else normalize_tuple(strides, 2, "strides", owner)
        )
        self.padding = normalize_padding(padding, owner)

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        n, h, w, c = input_shape
        (ph, pw), (sy, sx) = self.pool_size, self.strides
        oh = maths.conv_output_length(h, ph, sy, self.padding)
        ow = maths.conv_output_length(w, pw, sx, self.padding)
        if oh <= 0 or ow <= 0 or ph > 2 * h or pw > 2 * w:  # past 2x the map: only padding
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}): pool_size {self.pool_size} does not fit the '
                f"input with padding={self.padding!r} (a window at most twice the map, {h}x{w}). Received: input shape {input_shape}"
            )
        return (n, oh, ow, c)

    def _pads(self, x):
        (ph, pw), (sy, sx) = self.pool_size, self.strides
        return maths.padding_amounts(x.shape[1], x.shape[2], ph, pw, sy, sx, self.padding)

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }


class MaxPooling2D(_Pooling2D):
    """Max over each window; its gradient goes to the pixel that won (the first on ties)."""

    def forward(self, x, training=False):
        pads = self._pads(x)
        if not training:
            return maths.maxpool(x, *self.pool_size, *self.strides, pads), None
        y, arg = maths.maxpool_forward(x, *self.pool_size, *self.strides, pads)
        return y, (arg, pads, x.shape)

    def backward(self, gy, ctx, need_gx=True):
        arg, pads, x_shape = ctx
        return maths.maxpool_backward(gy, arg, x_shape, *self.pool_size, *self.strides, pads), {}


class AveragePooling2D(_Pooling2D):
    """Mean over each window; with padding="same", padded pixels are not counted (as Keras)."""

    def forward(self, x, training=False):
        pads = self._pads(x)
        y = maths.avgpool_forward(x, *self.pool_size, *self.strides, pads)
        return y, ((pads, x.shape) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        pads, x_shape = ctx
        return maths.avgpool_backward(gy, x_shape, *self.pool_size, *self.strides, pads), {}


class _GlobalPooling2D(Layer):
    """A reduction over the whole image: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims."""

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        channels_last(data_format, f'Layer "{self.name}" ({type(self).__name__})')
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        n, c = input_shape[0], input_shape[-1]
        return (n, 1, 1, c) if self.keepdims else (n, c)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    def forward(self, x, training=False):
        return x.mean(axis=(1, 2), keepdims=self.keepdims), x.shape

    def backward(self, gy, ctx, need_gx=True):
        n, h, w, c = ctx
        g = gy.reshape(n, 1, 1, c) / gy.dtype.type(h * w)
        return get_array_module(gy).broadcast_to(g, ctx).copy(), {}


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over the image; its gradient goes to the first pixel that holds it."""

    def forward(self, x, training=False):
        n, h, w, c = x.shape
        flat = x.reshape(n, h * w, c)
        y = flat.max(axis=1)
        y = y.reshape(n, 1, 1, c) if self.keepdims else y
        return y, ((flat.argmax(axis=1), x.shape) if training else None)  # arg: (N, C)

    def backward(self, gy, ctx, need_gx=True):
        arg, (n, h, w, c) = ctx
        xp = get_array_module(gy)
        gx = xp.zeros((n, h * w, c), dtype=gy.dtype)
        gx[xp.arange(n)[:, None], arg, xp.arange(c)[None, :]] = gy.reshape(n, c)
        return gx.reshape(n, h, w, c), {}
