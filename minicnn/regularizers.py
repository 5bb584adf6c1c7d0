"""Weight regularizers, Keras's: a penalty on a weight that training adds to the loss, each
written with its gradient beside it.

    L1(l1=0.01):          l1 * sum(|w|)            gradient l1 * sign(w)
    L2(l2=0.01):          l2 * sum(w^2)            gradient 2 * l2 * w
    L1L2(l1=0.0, l2=0.0): the sum of both

A layer takes them as ``kernel_regularizer=`` / ``bias_regularizer=`` (``Layer.add_weight(...,
regularizer=)``): an instance, a name Keras knows ("l1", "l2", "L1", "L2", "l1l2", "L1L2"), or
a config dict. As in Keras, the penalties of the trained weights join the loss that fit,
evaluate and train_on_batch report as "loss" (not the per-output losses), and their gradients
join the weights' (``penalties``).
"""

from __future__ import annotations

import math

from minicnn._missing import not_implemented
from minicnn.backend import get_array_module
from minicnn.configurable import Configurable


def _factor(value, name: str, owner: str) -> float:
    """A finite factor >= 0, as Keras's validate_float_arg requires."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a finite float >= 0. Received: {name}={value!r}")  # fmt: skip
    return float(value)


class Regularizer(Configurable):
    """A penalty ``self(w)`` and its gradient ``self.gradient(w)``."""

    def __call__(self, w):
        return get_array_module(w).zeros((), dtype=w.dtype)

    def gradient(self, w):
        return get_array_module(w).zeros_like(w)


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2); both factors default to 0, as Keras's."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1", type(self).__name__)
        self.l2 = _factor(0.0 if l2 is None else l2, "l2", type(self).__name__)

    def __call__(self, w):
        xp = get_array_module(w)
        total = xp.zeros((), dtype=w.dtype)
        if self.l1:
            total = total + self.l1 * xp.abs(w).sum()
        if self.l2:
            total = total + self.l2 * (w * w).sum()
        return total

    def gradient(self, w):
        xp = get_array_module(w)
        g = xp.zeros_like(w)
        if self.l1:
            g += self.l1 * xp.sign(w)
        if self.l2:
            g += (2 * self.l2) * w
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=0.01 if l2 is None else l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2  # Keras's lowercase aliases of the classes
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
_NAMES = {**_CLASSES, "l1": L1, "l2": L2, "l1l2": L1L2}  # Keras's: class names, snake case


def get(identifier, owner: str = "layer"):
    """A regularizer from None, an instance, a name Keras knows or a config dict
    (``{"class_name": "L2", "config": {"l2": 0.01}}``, as ``serialize`` writes)."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]].from_config(dict(identifier.get("config") or {}))
    if isinstance(identifier, str) and identifier in _NAMES:
        return _NAMES[identifier]()
    hint = ""
    if identifier == "l1_l2":
        hint = (" Keras 3 does not know the name 'l1_l2' (its 'l1l2' is L1L2(l1=0.0, l2=0.0), no "
                "penalty): give regularizers.L1L2(l1=..., l2=...).")  # fmt: skip
    elif callable(identifier):
        hint = " A plain function has no gradient minicnn can take: use L1, L2 or L1L2."
    raise ValueError(
        f"Unknown regularizer for {owner}: expected None, one of {sorted(_NAMES)}, a config "
        f"dict or an instance of L1, L2 or L1L2.{hint} Received: {identifier!r}"
    )


def serialize(regularizer) -> dict | None:
    """Keras's form: ``{"module": "keras.regularizers", "class_name": "L2", "config": {"l2":
    0.01}, "registered_name": None}`` (None stays None)."""
    if regularizer is None:
        return None
    name, config = type(regularizer).__name__, regularizer.get_config()
    return {"module": "keras.regularizers", "class_name": name, "config": config, "registered_name": None}  # fmt: skip


def penalties(weights: list, values: list, loss, grads: list):
    """The loss and gradients of the trained weights ``weights`` ((layer, name) pairs, whose
    arrays are ``values``) with each weight's regularizer added: -> (loss, grads). A weight no
    loss reaches (gradient None) gets its penalty's gradient alone."""
    grads = list(grads)
    for i, ((layer, name), w) in enumerate(zip(weights, values)):
        reg = getattr(layer, "weight_regularizers", {}).get(name)
        if reg is None:
            continue
        loss = loss + reg(w)
        g = reg.gradient(w)
        grads[i] = g if grads[i] is None else grads[i] + g
    return loss, grads


def penalty(weights: list, values: list):
    """The sum of the penalties alone (what evaluate adds to each batch's loss), or None."""
    total = None
    for (layer, name), w in zip(weights, values):
        reg = getattr(layer, "weight_regularizers", {}).get(name)
        if reg is not None:
            total = reg(w) if total is None else total + reg(w)
    return total


__getattr__ = not_implemented(
    "minicnn.regularizers", "Available: L1, L2, L1L2 (and l1, l2, l1_l2)."
)
