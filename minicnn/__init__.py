"""minicnn: a convolutional network engine written from scratch on NumPy (CPU) and CuPy (GPU),
with Keras's API: ``import minicnn as keras`` runs keras.io's convnet code.

    from minicnn import Sequential
    from minicnn.layers import Conv2D, Dense, Flatten
"""

from minicnn import (
    _malloc,  # noqa: F401  (first: tunes the C allocator, see _malloc.py)
    _threads,  # noqa: F401  (before numpy: OpenBLAS's worker threads, see _threads.py)
    activations,
    callbacks,
    datasets,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    saving,
    training,
    utils,
)
from minicnn._version import __version__ as __version__
from minicnn.backend import floatx, get_backend, set_backend, set_floatx
from minicnn.layers import Input
from minicnn.models import Sequential
from minicnn.saving import load_checkpoint, load_model

__all__ = [
    "Sequential",
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
    "callbacks",
    "datasets",
    "models",
    "saving",
    "training",
    "utils",
]

_NOT_HERE = {
    "Model": "the functional and subclassing APIs are not implemented: build a keras.Sequential",
    "ops": "keras.ops is not implemented: minicnn's own maths is minicnn.ops, over NumPy/CuPy",
    "applications": "pretrained applications are not implemented",
    "distribution": "use minicnn.distributed (data-parallel over MPI) instead",
}


def __getattr__(name: str):
    """A part of Keras minicnn does not have: say so by name instead of a bare AttributeError."""
    if name.startswith("__") or name in ("distributed", "server", "cli", "preprocessing", "plots"):
        raise AttributeError(f"module 'minicnn' has no attribute {name!r}")
    why = _NOT_HERE.get(name, "it is not implemented")
    raise AttributeError(f"minicnn has no {name}: {why}. Available: {', '.join(__all__)}")
