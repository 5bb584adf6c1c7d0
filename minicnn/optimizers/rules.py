"""The update rules, Keras 3's, so the same hyper-parameters train the same way. Each writes its
per-parameter state (``build_slots``) and its step (``update``); everything else (schedules,
clipping, weight decay, EMA) is the base class's."""

from __future__ import annotations

import math

from minicnn import maths
from minicnn.backend import get_array_module
from minicnn.optimizers.base import Optimizer


class SGD(Optimizer):
    """v = momentum * v - lr * g;  p += v  (nesterov: p += momentum * v - lr * g)."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs):  # fmt: skip
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"SGD: momentum must be in [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def build_slots(self, p):
        return {"velocity": get_array_module(p).zeros_like(p)} if self.momentum else {}

    def update(self, p, g, slots, lr):
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
        learning_rate=0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        **kwargs,
    ):
        super().__init__(learning_rate, **kwargs)
        for what, b in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0 <= b < 1:
                raise ValueError(f"{type(self).__name__}: {what} must be in [0, 1). Received: {what}={b!r}")  # fmt: skip
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def build_slots(self, p):
        xp = get_array_module(p)
        return {"m": xp.zeros_like(p), "v": xp.zeros_like(p)}

    def update(self, p, g, slots, lr):
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)  # a Python float
        maths.adam_update(p, g, slots["m"], slots["v"], alpha, b1, b2, self.epsilon)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (w -= w * weight_decay * lr before each step), 0.004 by
    default as in Keras."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a number; use Adam for no decay")
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """v = rho*v + (1-rho)*g^2;  (centered: a = rho*a + (1-rho)*g, v - a^2 below)
    step = lr * g / sqrt(v + eps);  p -= step, or through momentum: m = momentum*m + step."""

    name = "rmsprop"

    def __init__(
        self,
        learning_rate=0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        **kwargs,
    ):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= rho < 1:
            raise ValueError(f"RMSprop: rho must be in [0, 1). Received: rho={rho!r}")
        self.rho, self.momentum = float(rho), float(momentum)
        self.epsilon, self.centered = float(epsilon), bool(centered)

    def build_slots(self, p):
        xp = get_array_module(p)
        slots = {"velocity": xp.zeros_like(p)}
        if self.momentum:
            slots["momentum"] = xp.zeros_like(p)
        if self.centered:
            slots["average_gradient"] = xp.zeros_like(p)
        return slots

    def update(self, p, g, slots, lr):
        xp = get_array_module(p)
        rho = self.rho
        v = slots["velocity"]
        v *= rho
        v += (1 - rho) * (g * g)
        if self.centered:
            a = slots["average_gradient"]
            a *= rho
            a += (1 - rho) * g
            denominator = v - a * a + self.epsilon
        else:
            denominator = v + self.epsilon
        step = lr * g / xp.sqrt(denominator)
        if self.momentum:
            m = slots["momentum"]
            m *= self.momentum
            m += step
            p -= m
        else:
            p -= step

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }
