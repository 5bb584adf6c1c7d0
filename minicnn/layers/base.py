"""The Layer contract.

A layer lives in three steps, as in Keras: ``__init__`` stores and validates settings;
``build(input_shape, backend)`` makes the weights once the input shape is known;
``forward(x, training)`` computes, caching what ``backward(gy)`` needs, and ``backward`` returns
the input gradient after filling ``grads``.

Weights live in dicts: ``params`` (trained), with ``grads`` under the same names, and ``state``
(not trained: BatchNormalization's moving statistics, say). Their order is Keras's, so
``get_weights`` / ``set_weights`` exchange arrays with Keras models as they are.
Shapes exclude the batch axis unless they are an array's real shape.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict

import numpy as np

from minicnn import activations
from minicnn.backend import Backend, floatx, get_backend

_counters: dict[str, itertools.count] = defaultdict(itertools.count)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("2_d", "2d")


def normalize_tuple(value, n: int, what: str, owner: str) -> tuple[int, ...]:
    """An int or an n-tuple of positive ints -> n-tuple, as Keras accepts for sizes and strides."""
    t = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(t) != n or not all(isinstance(v, (int, np.integer)) and v > 0 for v in t):
        raise ValueError(
            f"{owner}: {what} must be a positive int or a tuple of {n} positive ints. "
            f"Received: {what}={value!r}"
        )
    return tuple(int(v) for v in t)


def normalize_padding(value, owner: str) -> str:
    if not isinstance(value, str) or value.lower() not in ("valid", "same"):
        raise ValueError(f'{owner}: padding must be "valid" or "same". Received: padding={value!r}')
    return value.lower()


class Layer:
    """Base class: a layer with no weights that passes its input through."""

    def __init__(self, name: str | None = None, input_shape=None, trainable: bool = True):
        cls = _snake(type(self).__name__)
        if name is None:
            k = next(_counters[cls])
            name = cls if k == 0 else f"{cls}_{k}"
        self.name = name
        self.trainable = trainable
        self.input_shape_hint = None if input_shape is None else tuple(input_shape)
        self.built = False
        self.input_shape: tuple | None = None  # without the batch axis, set by build
        self.backend: Backend = get_backend("numpy")
        self.params: dict = {}
        self.grads: dict = {}
        self.state: dict = {}
        # The first layer of a model need not compute its input gradient (nobody reads it)
        self.needs_input_grad = True

    # -- life cycle --------------------------------------------------------------------------

    @property
    def xp(self):
        return self.backend.xp

    @property
    def dtype(self):
        return np.dtype(floatx()) if not self.params else self.params[next(iter(self.params))].dtype

    def build(self, input_shape: tuple, backend: Backend | None = None) -> None:
        """Check ``input_shape`` (no batch axis) and make the weights on ``backend``."""
        self.backend = backend or self.backend
        self.input_shape = tuple(input_shape)
        self.built = True

    def add_weight(self, name: str, shape, initializer, trainable: bool = True):
        value = self.backend.asarray(initializer(tuple(shape), floatx()))
        (self.params if trainable else self.state)[name] = value
        return value

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Output shape for ``input_shape`` (no batch axis); pure, so summary() needs no data."""
        return tuple(input_shape)

    def weight_shapes(self, input_shape: tuple) -> dict[str, tuple]:
        """The shapes ``build`` would give the weights, in Keras order, without making them."""
        return {}

    def forward(self, x, training: bool = False):
        return x

    def backward(self, gy):
        return gy

    def __call__(self, x, training: bool = False):
        """Build on first use from ``x``'s shape, then forward: handy outside a model."""
        if not self.built:
            self.build(x.shape[1:], get_backend(type(x).__module__.split(".")[0]))
        return self.forward(x, training=training)

    # -- shape checks --------------------------------------------------------------------------

    def check_input_shape(self, shape: tuple, rank: int | None = None) -> None:
        """Raise a ValueError naming this layer if ``shape`` (no batch axis) will not do."""
        if rank is not None and len(shape) != rank:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) expects input of rank {rank + 1} '
                f"(batch, {', '.join(['...'] * rank)}). Received: input shape {(None, *shape)}"
            )
        if self.built and tuple(shape) != self.input_shape:
            raise ValueError(
                f'Layer "{self.name}" ({type(self).__name__}) expects input of shape '
                f"{(None, *self.input_shape)}. Received: input shape {(None, *shape)}"
            )

    # -- weights -------------------------------------------------------------------------------

    @property
    def weight_names(self) -> list[str]:
        """Keras order: trained weights, then the rest."""
        return [*self.params, *self.state]

    def _weight(self, name):
        return self.params[name] if name in self.params else self.state[name]

    def get_weights(self) -> list[np.ndarray]:
        return [self.backend.to_numpy(self._weight(n)).copy() for n in self.weight_names]

    def set_weights(self, weights) -> None:
        names = self.weight_names
        if len(weights) != len(names):
            raise ValueError(
                f'Layer "{self.name}" expects {len(names)} weight arrays ({", ".join(names)}). '
                f"Received: {len(weights)} arrays"
            )
        for n, w in zip(names, weights):
            if tuple(np.shape(w)) != self._weight(n).shape:
                raise ValueError(
                    f'Layer "{self.name}": weight "{n}" must have shape {self._weight(n).shape}. '
                    f"Received: shape {tuple(np.shape(w))}"
                )
        for n, w in zip(names, weights):
            self._weight(n)[...] = self.backend.asarray(np.asarray(w, dtype=self._weight(n).dtype))

    def count_params(self) -> int:
        return int(sum(self._weight(n).size for n in self.weight_names))

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g[...] = 0

    # -- serialisation -------------------------------------------------------------------------

    def get_config(self) -> dict:
        config = {"name": self.name, "trainable": self.trainable}
        if self.input_shape_hint is not None:
            config["input_shape"] = list(self.input_shape_hint)
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self) -> str:
        settings = {k: v for k, v in self.get_config().items() if k not in ("name", "trainable")}
        inner = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        return f"{type(self).__name__}({inner}{', ' if inner else ''}name={self.name!r})"


class ActivationMixin:
    """For layers with an ``activation=`` argument (Dense, Conv2D, Activation).

    When the model's loss is a cross-entropy and this layer ends the model with softmax, the model
    sets ``emit_logits``: the layer then stops before the softmax, and the loss works from the
    logits (log-sum-exp), which stays finite for any logits.
    """

    emit_logits = False

    def _init_activation(self, activation):
        self.activation = activations.get(activation, owner=f'layer "{self.name}"')

    @property
    def ends_in_softmax(self) -> bool:
        return isinstance(self.activation, activations.Softmax)

    def _activate(self, z):
        if self.emit_logits and self.ends_in_softmax:
            return z
        return self.activation.forward(z)

    def _activate_backward(self, gy, y):
        if self.emit_logits and self.ends_in_softmax:
            return gy
        return self.activation.backward(gy, y)
