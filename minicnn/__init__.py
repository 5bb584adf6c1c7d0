"""minicnn: a convolutional network engine written from scratch on NumPy (CPU) and CuPy (GPU),
with Keras's API.

    from minicnn import Sequential
    from minicnn.layers import Conv2D, Dense, Flatten
"""

from minicnn import (
    _malloc,  # noqa: F401  (first: tunes the C allocator, see _malloc.py)
    _threads,  # noqa: F401  (before numpy: OpenBLAS's worker threads, see _threads.py)
    activations,
    callbacks,
    layers,
    losses,
    optimizers,
    training,
    utils,
)
from minicnn.backend import floatx, get_backend, set_backend, set_floatx
from minicnn.models import Sequential
from minicnn.saving import load_checkpoint, load_model

__version__ = "0.1.0"

__all__ = [
    "Sequential",
    "load_model",
    "load_checkpoint",
    "set_backend",
    "get_backend",
    "set_floatx",
    "floatx",
    "layers",
    "optimizers",
    "losses",
    "activations",
    "callbacks",
    "training",
    "utils",
]
