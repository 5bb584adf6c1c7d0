"""Optimisers, apart from the layers: ``apply(params, grads)`` updates a list of arrays in place.

A subclass writes only ``build_slots`` (its per-parameter state) and ``update`` (its rule).
The rules are Keras 3's, so the same hyper-parameters train the same way.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn import ops
from minicnn.backend import get_array_module


class Optimizer:
    name = "optimizer"

    def __init__(self, learning_rate: float = 0.01):
        if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
            raise ValueError(
                f"{type(self).__name__}: learning_rate must be a positive number. "
                f"Received: learning_rate={learning_rate!r}"
            )
        self.learning_rate = float(learning_rate)
        self.iterations = 0  # steps taken: Adam's bias correction counts them
        self.slots: list[dict] | None = None

    def build_slots(self, p) -> dict:
        return {}

    def apply(self, params: list, grads: list) -> None:
        if self.slots is None:
            self.slots = [self.build_slots(p) for p in params]
        if (
            params
            and self.slots[0]
            and get_array_module(params[0])
            is not get_array_module(next(iter(self.slots[0].values())))
        ):
            raise ValueError(
                f"This {type(self).__name__} holds state for arrays on another device; "
                "give each model its own optimizer"
            )
        if len(params) != len(self.slots):
            raise ValueError(
                f"{type(self).__name__} was built for {len(self.slots)} parameters. "
                f"Received: {len(params)}"
            )
        self.iterations += 1
        for p, g, slots in zip(params, grads, self.slots):
            self.update(p, g, slots)

    def update(self, p, g, slots: dict) -> None:
        raise NotImplementedError

    def slot_names(self) -> tuple[str, ...]:
        """The keys of the dict ``build_slots`` returns (asked of a one-element stand-in), so a
        saved state can be checked against them."""
        return tuple(self.build_slots(np.zeros(1, dtype=np.float32)))

    def set_state(self, iterations: int, slots: list[dict]) -> None:
        """Take up a saved state: the step count and each parameter's slot arrays."""
        if not isinstance(iterations, int) or iterations < 0:
            raise ValueError(
                f"iterations must be a non-negative int. Received: iterations={iterations!r}"
            )
        self.iterations = iterations
        self.slots = slots

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.learning_rate}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """v = momentum * v - lr * g;  p += v  (nesterov: p += momentum * v - lr * g)."""

    name = "sgd"

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(learning_rate)
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def build_slots(self, p):
        return {"velocity": get_array_module(p).zeros_like(p)} if self.momentum else {}

    def update(self, p, g, slots):
        lr = self.learning_rate
        if not self.momentum:
            p -= lr * g
            return
        v = slots["velocity"]
        v *= self.momentum
        v -= lr * g
        if self.nesterov:
            p += self.momentum * v - lr * g
        else:
            p += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
    p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)   (Keras: eps outside the sqrt,
    applied to the uncorrected v, so the bias correction folds into the step size)."""

    name = "adam"

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
    ):
        super().__init__(learning_rate)
        for what, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= b < 1:
                raise ValueError(f"Adam: {what} must be in [0, 1). Received: {what}={b!r}")
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build_slots(self, p):
        xp = get_array_module(p)
        return {"m": xp.zeros_like(p), "v": xp.zeros_like(p)}

    def update(self, p, g, slots):
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = self.learning_rate * math.sqrt(1 - b2**t) / (1 - b1**t)  # a Python float
        ops.adam_update(p, g, slots["m"], slots["v"], alpha, b1, b2, self.epsilon)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


_ALL = {cls.name: cls for cls in (SGD, Adam)}


def get(identifier) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return _ALL[identifier.lower()]()
    raise ValueError(
        f"Unknown optimizer: expected one of {sorted(_ALL)} or an Optimizer. "
        f"Received: optimizer={identifier!r}"
    )


def deserialize(config: dict) -> Optimizer:
    config = dict(config)
    return _ALL[config.pop("name")](**config)
