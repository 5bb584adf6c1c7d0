"""Activation functions by Keras name (``activation="gelu"``), as Keras's functions
(``activation=keras.activations.gelu``) or as instances with settings: the classic ones in
``base``, Keras 3's newer ones in ``more``; each a forward and its backward side by side.
This module is the registry: names, functions, ``get`` and ``serialize``.
"""

from __future__ import annotations

from minicnn.activations import more
from minicnn.activations.base import (
    ELU,
    GELU,
    SELU,
    Activation,
    AxisSoftmax,
    Exponential,
    HardSigmoid,
    KerasReLU,
    LeakyReLU,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Softsign,
    Tanh,
    _fresh,
)
from minicnn.activations.more import (
    CELU,
    HardShrink,
    HardSiLU,
    HardTanh,
    LogSigmoid,
    LogSoftmax,
    Mish,
    SoftShrink,
    SparsePlus,
    SparseSigmoid,
    Squareplus,
    TanhShrink,
)

_CLASSES = (Activation, ReLU, Sigmoid, Tanh, Softmax, ELU, SELU, GELU, SiLU, Softplus, Softsign,
            HardSigmoid, Exponential, LeakyReLU, ReLU6, *more.CLASSES)  # fmt: skip
_ALL = {cls.name: cls for cls in _CLASSES}
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}  # Keras's own aliases


def _function(cls, doc: str):
    """Keras's function ``keras.activations.<name>(x)`` on an array (NumPy or CuPy)."""

    def fn(x, **settings):
        return cls(**settings).forward(_fresh(x))

    fn.__name__ = fn.__qualname__ = cls.name
    fn.__doc__ = doc
    return fn


linear = _function(Activation, "The identity.")


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0); with Keras's settings, ``KerasReLU``'s formula."""
    if negative_slope or max_value is not None or threshold:
        return KerasReLU(negative_slope, max_value, threshold).forward(_fresh(x))
    return ReLU().forward(_fresh(x))


sigmoid = _function(Sigmoid, "1 / (1 + exp(-x)).")
tanh = _function(Tanh, "tanh(x).")
softmax = _function(Softmax, "Softmax over the last axis.")
elu = _function(ELU, "x for x >= 0, else alpha (exp(x) - 1); elu(x, alpha=1.0).")
selu = _function(SELU, "Keras's scaled ELU.")
gelu = _function(GELU, "x Phi(x); gelu(x, approximate=False).")
silu = _function(SiLU, "x sigmoid(x).")
swish = silu
softplus = _function(Softplus, "log(1 + exp(x)).")
softsign = _function(Softsign, "x / (1 + |x|).")
hard_sigmoid = _function(HardSigmoid, "relu6(x + 3) / 6.")
exponential = _function(Exponential, "exp(x).")
leaky_relu = _function(LeakyReLU, "x for x >= 0, else negative_slope x; leaky_relu(x, negative_slope=0.2).")  # fmt: skip
relu6 = _function(ReLU6, "min(max(x, 0), 6).")
celu = _function(CELU, "max(x, 0) + alpha expm1(min(x, 0) / alpha); celu(x, alpha=1.0).")
hard_silu = _function(HardSiLU, "x * hard_sigmoid(x).")
hard_swish = hard_silu
hard_tanh = _function(HardTanh, "clip(x, -1, 1).")
log_sigmoid = _function(LogSigmoid, "-softplus(-x).")
mish = _function(Mish, "x tanh(softplus(x)).")
soft_shrink = _function(SoftShrink, "x -+ threshold beyond +-threshold, else 0; soft_shrink(x, threshold=0.5).")  # fmt: skip
hard_shrink = _function(HardShrink, "x where |x| > threshold, else 0; hard_shrink(x, threshold=0.5).")  # fmt: skip
tanh_shrink = _function(TanhShrink, "x - tanh(x).")
squareplus = _function(Squareplus, "(x + sqrt(x^2 + b)) / 2; squareplus(x, b=4).")
sparse_plus = _function(SparsePlus, "0, (x + 1)^2 / 4 or x.")
sparse_sigmoid = _function(SparseSigmoid, "0, (x + 1) / 2 or 1.")
log_softmax = _function(LogSoftmax, "x - logsumexp(x) over the last axis.")
_FUNCTIONS = {fn: fn.__name__ for fn in (linear, relu, sigmoid, tanh, softmax, elu, selu, gelu,
              silu, softplus, softsign, hard_sigmoid, exponential, leaky_relu, relu6, celu,
              hard_silu, hard_tanh, log_sigmoid, mish, soft_shrink, hard_shrink, tanh_shrink,
              squareplus, sparse_plus, sparse_sigmoid, log_softmax)}  # fmt: skip


def serialize(activation: Activation):
    """Its Keras name, or ``{"class_name": name, "config": settings}`` for an instance whose
    settings are not the name's defaults (``GELU(approximate=True)``), so a saved model keeps
    them."""
    config = activation.get_config()
    return {"class_name": activation.name, "config": config} if config else activation.name


def get(identifier, owner: str = "layer") -> Activation:
    """An activation from its Keras name ("relu", "gelu", "swish", ...), Keras's function
    (``keras.activations.gelu``), None (linear), an instance, or what ``serialize`` wrote."""
    if identifier is None:
        return Activation()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, dict) and identifier.get("class_name") in _ALL:
        try:
            return _ALL[identifier["class_name"]](**dict(identifier.get("config") or {}))
        except TypeError as e:
            raise ValueError(f"Unknown activation settings for {owner}: {e}. Received: activation={identifier!r}") from None  # fmt: skip
    if callable(identifier) and identifier in _FUNCTIONS:
        return _ALL[_FUNCTIONS[identifier]]()
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier.lower(), identifier.lower())
        if name in _ALL:
            return _ALL[name]()
    names = sorted([*_ALL, *_ALIASES])
    raise ValueError(
        f"Unknown activation for {owner}: expected one of {names}. Received: "
        f"activation={identifier!r} (Keras's functions, minicnn.activations.gelu say, work too)"
    )


__all__ = [cls.__name__ for cls in _CLASSES] + ["AxisSoftmax", "KerasReLU", "get", "serialize", *(fn.__name__ for fn in _FUNCTIONS), "swish", "hard_swish"]  # fmt: skip
