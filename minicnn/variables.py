"""Keras's variable-like view of one weight: ``layer.weights``, ``model.trainable_weights``
and the rest hand these out.

A ``Variable`` holds no array of its own: it names a layer and one of its weights (``params``
for the trained ones, ``state`` for the rest), so the optimizer and the plans keep working on
the layer's arrays, and ``assign`` writes into them in place. ``path`` is Keras's:
``"dense/kernel"``, or ``"sequential/dense/kernel"`` for a layer built inside a Sequential.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module


class Variable:
    """``.numpy()``, ``.assign(value)``, ``.shape``, ``.dtype``, ``.name``, ``.path``,
    ``.trainable``; ``np.asarray(v)`` gives its values."""

    def __init__(self, layer, name: str):
        self._layer, self.name = layer, name

    @property
    def value(self):
        """The layer's own array (on the layer's device); writing into it changes the weight."""
        layer = self._layer
        return layer.params[self.name] if self.name in layer.params else layer.state[self.name]

    @property
    def path(self) -> str:
        prefix = getattr(self._layer, "path_prefix", "")
        return f"{prefix}{self._layer.name}/{self.name}"

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> str:
        return str(self.value.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def trainable(self) -> bool:
        """Trained by fit: a trained weight of a trainable layer (moving statistics never are)."""
        return self.name in self._layer.params and bool(self._layer.trainable)

    @trainable.setter
    def trainable(self, value) -> None:
        raise NotImplementedError(f"minicnn freezes whole layers: set layer.trainable (layer {self._layer.name!r}) instead of {self.path}.trainable")  # fmt: skip

    def numpy(self) -> np.ndarray:
        """A copy of the values, on the host."""
        a = self.value
        xp = get_array_module(a)
        return (a if xp is np else xp.asnumpy(a)).copy()

    def assign(self, value):
        """Write ``value`` (same shape) into the weight, in place; returns this variable."""
        a = self.value
        value = np.asarray(value.numpy() if isinstance(value, Variable) else value)
        if value.shape != a.shape:
            raise ValueError(f"The shape of the target variable and the shape of the value must match. Variable {self.path} has shape {a.shape}. Received: value.shape={value.shape}")  # fmt: skip
        xp = get_array_module(a)
        a[...] = xp.asarray(value.astype(a.dtype, copy=False))
        return self

    def assign_add(self, value):
        return self.assign(self.numpy() + np.asarray(value))

    def assign_sub(self, value):
        return self.assign(self.numpy() - np.asarray(value))

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype}, value={self.numpy()}>"


def weights_of(layers) -> list[Variable]:
    """Every weight of ``layers`` (leaf layers, each once), in Keras's order."""
    return [Variable(layer, n) for layer in layers for n in layer.weight_names]
