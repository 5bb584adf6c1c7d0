"""Weight constraints, Keras's: a map applied to a weight after each optimizer update (as Keras's
optimizer does, after the update and its moving average), ``w <- constraint(w)``.

    MaxNorm(max_value=2, axis=0):   w * clip(n, 0, max_value) / (eps + n)
    MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0, axis=0):
                                    w * (rate clip(n, min, max) + (1 - rate) n) / (eps + n)
    UnitNorm(axis=0):               w / (eps + n)
    NonNeg():                       max(w, 0)

with n = sqrt(sum(w^2 over ``axis``)) kept for broadcasting and eps = 1e-7 (Keras's
``backend.epsilon()``). For a Conv2D kernel (kh, kw, C, F) Keras's advice is ``axis=[0, 1, 2]``,
one norm per filter. Layers take them as ``kernel_constraint=`` / ``bias_constraint=``: an
instance, a name Keras knows ("max_norm", "MaxNorm", "non_neg", ...) or a config dict.
"""

from __future__ import annotations

from minicnn._missing import not_implemented
from minicnn.backend import get_array_module
from minicnn.configurable import Configurable

EPSILON = 1e-7


class Constraint(Configurable):
    def __call__(self, w):
        return w


def _axis(axis, owner: str):
    ok = isinstance(axis, int) or (isinstance(axis, (list, tuple)) and all(isinstance(a, int) for a in axis))  # fmt: skip
    if not ok or isinstance(axis, bool):
        raise ValueError(f"{owner}: axis must be an int or a list of ints. Received: axis={axis!r}")
    return axis if isinstance(axis, int) else list(axis)


def _norms(w, axis):
    xp = get_array_module(w)
    return xp.sqrt((w * w).sum(axis=axis if isinstance(axis, int) else tuple(axis), keepdims=True))


class MaxNorm(Constraint):
    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = max_value, _axis(axis, "MaxNorm")

    def __call__(self, w):
        n = _norms(w, self.axis)
        return w * (get_array_module(w).clip(n, 0, self.max_value) / (EPSILON + n))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate = min_value, max_value, rate
        self.axis = _axis(axis, "MinMaxNorm")

    def __call__(self, w):
        n = _norms(w, self.axis)
        desired = self.rate * get_array_module(w).clip(n, self.min_value, self.max_value) + (1 - self.rate) * n  # fmt: skip
        return w * (desired / (EPSILON + n))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}  # fmt: skip


class UnitNorm(Constraint):
    def __init__(self, axis=0):
        self.axis = _axis(axis, "UnitNorm")

    def __call__(self, w):
        return w / (EPSILON + _norms(w, self.axis))

    def get_config(self):
        return {"axis": self.axis}


class NonNeg(Constraint):
    def __call__(self, w):
        return get_array_module(w).maximum(w, 0)


max_norm, min_max_norm, unit_norm, non_neg = (
    MaxNorm,
    MinMaxNorm,
    UnitNorm,
    NonNeg,
)  # Keras's aliases
_CLASSES = {cls.__name__: cls for cls in (MaxNorm, MinMaxNorm, UnitNorm, NonNeg)}
_NAMES = {**_CLASSES, "max_norm": MaxNorm, "min_max_norm": MinMaxNorm, "unit_norm": UnitNorm, "non_neg": NonNeg}  # fmt: skip


def get(identifier, owner: str = "layer"):
    """A constraint from None, an instance, a name Keras knows or a config dict."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]].from_config(dict(identifier.get("config") or {}))
    if isinstance(identifier, str) and identifier in _NAMES:
        return _NAMES[identifier]()
    raise ValueError(
        f"Unknown constraint for {owner}: expected None, one of {sorted(_NAMES)}, a config "
        f"dict or an instance of {', '.join(_CLASSES)}. Received: {identifier!r}"
    )


def serialize(constraint) -> dict | None:
    if constraint is None:
        return None
    name, config = type(constraint).__name__, constraint.get_config()  # Keras's serialized form
    return {"module": "keras.constraints", "class_name": name, "config": config, "registered_name": None}  # fmt: skip


def apply(weights: list, values: list, grads: list) -> None:
    """``w[...] = constraint(w)`` in place for each (layer, name) of ``weights`` that has one
    and was updated (``values``: their arrays; ``grads``: None where no loss reached it), as
    Keras's optimizer does after each update."""
    for (layer, name), w, g in zip(weights, values, grads):
        c = getattr(layer, "weight_constraints", {}).get(name)
        if c is not None and g is not None:
            w[...] = c(w)


__getattr__ = not_implemented("minicnn.constraints", f"Available: {', '.join(_NAMES)}.")
