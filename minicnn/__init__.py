"""minicnn: a convolutional network engine written from scratch on NumPy (CPU) and CuPy (GPU),
with Keras's API: ``import minicnn as keras`` runs keras.io's code with its imports changed.

    import minicnn as keras
    from minicnn import layers

    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    outputs = layers.Dense(10, activation="softmax")(layers.Flatten()(x))
    model = keras.Model(inputs, outputs)

Importing minicnn changes nothing in the process; its allocator and thread settings are applied
when it first trains or predicts (``minicnn.tuning``).
"""

from minicnn import (
    activations,
    callbacks,
    constraints,
    datasets,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    saving,
    training,
    tuning,
    utils,
)
from minicnn._version import __version__ as __version__
from minicnn.backend import floatx, get_backend, set_backend, set_floatx
from minicnn.layers import Input, KerasTensor
from minicnn.models import Model, Sequential
from minicnn.saving import load_checkpoint, load_model

__all__ = [
    "Model",
    "Sequential",
    "KerasTensor",
    "Input",
    "load_model",
    "load_checkpoint",
    "set_backend",
    "get_backend",
    "set_floatx",
    "floatx",
    "layers",
    "optimizers",
    "losses",
    "metrics",
    "activations",
    "regularizers",
    "constraints",
    "callbacks",
    "datasets",
    "models",
    "saving",
    "training",
    "tuning",
    "utils",
]

_NOT_HERE = {
    "ops": "keras.ops is not implemented yet: minicnn's own maths is minicnn.maths, over NumPy/CuPy",
    "applications": "pretrained applications are not implemented",
    "distribution": "use minicnn.distributed (data-parallel over MPI) instead",
}


def __getattr__(name: str):
    """A part of Keras minicnn does not have: say so by name instead of a bare AttributeError."""
    if name.startswith("__") or name in ("distributed", "server", "cli", "preprocessing", "plots"):
        raise AttributeError(f"module 'minicnn' has no attribute {name!r}")
    why = _NOT_HERE.get(name, "it is not implemented")
    raise AttributeError(f"minicnn has no {name}: {why}. Available: {', '.join(__all__)}")
