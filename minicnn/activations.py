"""Activation functions by Keras name. Each backward works from the forward's *output* ``y``, so a
layer caches one array whatever its activation."""

from __future__ import annotations

from minicnn import maths
from minicnn.backend import get_array_module


class Activation:
    name = "linear"

    def forward(self, z):
        return z

    def backward(self, gy, y):
        return gy

    def __repr__(self) -> str:
        return f"activations.get({self.name!r})"


class ReLU(Activation):
    name = "relu"

    def forward(self, z):
        xp = get_array_module(z)
        return xp.maximum(z, 0, out=z)  # in place: z is a fresh product nobody else holds

    def backward(self, gy, y):
        return maths.relu_backward(gy, y)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z):
        xp = get_array_module(z)
        # 1 / (1 + exp(-z)) overflows exp for z << 0; tanh form is exact and never overflows
        return 0.5 * (xp.tanh(0.5 * z) + 1)

    def backward(self, gy, y):
        return gy * y * (1 - y)


class Tanh(Activation):
    name = "tanh"

    def forward(self, z):
        return get_array_module(z).tanh(z)

    def backward(self, gy, y):
        return gy * (1 - y * y)


class Softmax(Activation):
    name = "softmax"

    def forward(self, z):
        return maths.softmax(z)

    def backward(self, gy, y):
        # Jacobian-vector product of softmax: y * (gy - <gy, y>) row by row
        return y * (gy - (gy * y).sum(axis=-1, keepdims=True))


_ALL = {cls.name: cls for cls in (Activation, ReLU, Sigmoid, Tanh, Softmax)}


def get(identifier, owner: str = "layer") -> Activation:
    """An activation from its Keras name ("relu", "softmax", ...), None (linear) or an instance."""
    if identifier is None:
        return Activation()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return _ALL[identifier.lower()]()
    raise ValueError(
        f"Unknown activation for {owner}: expected one of {sorted(_ALL)}. "
        f"Received: activation={identifier!r}"
    )
