"""Pooling, channels-last: max and average over windows, and over the whole image."""

from __future__ import annotations

from minicnn import ops
from minicnn.layers.base import Layer, normalize_padding, normalize_tuple


class _Pooling2D(Layer):
    """A reduction over ``pool_size`` windows moved by ``strides`` (default: pool_size).
    x: (N, H, W, C) -> y: (N, oH, oW, C)."""

    def __init__(self, pool_size=(2, 2), strides=None, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" ({type(self).__name__})'
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", owner)
        self.strides = (
            self.pool_size if strides is None else normalize_tuple(strides, 2, "strides", owner)
        )
        self.padding = normalize_padding(padding, owner)

    def build(self, input_shape, backend=None):
        self.check_input_shape(tuple(input_shape), rank=3)
        self.compute_output_shape(input_shape)
        super().build(input_shape, backend)

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        (ph, pw), (sy, sx) = self.pool_size, self.strides
        oh = ops.conv_output_length(h, ph, sy, self.padding)
        ow = ops.conv_output_length(w, pw, sx, self.padding)
        if oh <= 0 or ow <= 0:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}): pool_size {self.pool_size} does not fit the '
                f"input with padding={self.padding!r}. Received: input shape {(None, *input_shape)}"
            )
        return (oh, ow, c)

    def _pads(self, x):
        (ph, pw), (sy, sx) = self.pool_size, self.strides
        return ops.padding_amounts(x.shape[1], x.shape[2], ph, pw, sy, sx, self.padding)

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
        self.check_input_shape(x.shape[1:], rank=3)
        pads = self._pads(x)
        y, arg = ops.maxpool_forward(x, *self.pool_size, *self.strides, pads)
        if training:
            self.arg, self.pads, self.x_shape = arg, pads, x.shape
        return y

    def backward(self, gy):
        return ops.maxpool_backward(
            gy, self.arg, self.x_shape, *self.pool_size, *self.strides, self.pads
        )


class AveragePooling2D(_Pooling2D):
    """Mean over each window; with padding="same", padded pixels are not counted (as Keras)."""

    def forward(self, x, training=False):
        self.check_input_shape(x.shape[1:], rank=3)
        pads = self._pads(x)
        if training:
            self.pads, self.x_shape = pads, x.shape
        return ops.avgpool_forward(x, *self.pool_size, *self.strides, pads)

    def backward(self, gy):
        return ops.avgpool_backward(gy, self.x_shape, *self.pool_size, *self.strides, self.pads)


class _GlobalPooling2D(Layer):
    """A reduction over the whole image: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims."""

    def __init__(self, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)

    def build(self, input_shape, backend=None):
        self.check_input_shape(tuple(input_shape), rank=3)
        super().build(input_shape, backend)

    def compute_output_shape(self, input_shape):
        return (1, 1, input_shape[-1]) if self.keepdims else (input_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    def forward(self, x, training=False):
        self.check_input_shape(x.shape[1:], rank=3)
        self.x_shape = x.shape
        return x.mean(axis=(1, 2), keepdims=self.keepdims)

    def backward(self, gy):
        n, h, w, c = self.x_shape
        g = gy.reshape(n, 1, 1, c) / (h * w)
        return self.xp.broadcast_to(g, self.x_shape).copy()


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over the image; its gradient goes to the first pixel that holds it."""

    def forward(self, x, training=False):
        self.check_input_shape(x.shape[1:], rank=3)
        n, h, w, c = x.shape
        flat = x.reshape(n, h * w, c)
        arg = flat.argmax(axis=1)  # (N, C)
        if training:
            self.arg, self.x_shape = arg, x.shape
        y = flat.max(axis=1)
        return y.reshape(n, 1, 1, c) if self.keepdims else y

    def backward(self, gy):
        n, h, w, c = self.x_shape
        xp = self.xp
        gx = xp.zeros((n, h * w, c), dtype=gy.dtype)
        rows = xp.arange(n)[:, None]
        gx[rows, self.arg, xp.arange(c)[None, :]] = gy.reshape(n, c)
        return gx.reshape(self.x_shape)
