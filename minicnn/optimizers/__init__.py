"""Optimisers, apart from the layers: ``apply(params, grads)`` updates a list of arrays in place.

``base.py`` holds what every optimizer shares (schedules, clipping, weight decay, EMA),
``rules.py`` the update rules, ``schedules.py`` the learning-rate schedules.
"""

from minicnn._missing import not_implemented
from minicnn.optimizers import schedules
from minicnn.optimizers.base import Optimizer
from minicnn.optimizers.rules import SGD, Adam, AdamW, RMSprop

_ALL = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "schedules", "get", "deserialize"]


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
    name = config.pop("name")
    if name not in _ALL:
        raise ValueError(f"Unknown optimizer {name!r}: expected one of {sorted(_ALL)}")
    return _ALL[name](**config)


__getattr__ = not_implemented(
    "minicnn.optimizers", f"Optimizers available: {', '.join(c.__name__ for c in _ALL.values())}"
)
