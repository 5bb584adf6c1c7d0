"""Reshape."""

from __future__ import annotations

import math

from minicnn.layers.base import Layer


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
