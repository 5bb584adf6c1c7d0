"""Small helpers with Keras's names."""

from __future__ import annotations

import numpy as np

from minicnn import backend
from minicnn.data_adapters import PyDataset
from minicnn.keras_format.registry import custom_object_scope as custom_object_scope
from minicnn.keras_format.registry import get_custom_objects as get_custom_objects

Sequence = PyDataset  # Keras 3 exports it under both names
__all__ = ["to_categorical", "set_random_seed", "PyDataset", "Sequence", "custom_object_scope", "get_custom_objects"]  # fmt: skip


def to_categorical(y, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """Integer labels (N,) -> one-hot rows (N, num_classes)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"to_categorical expects integer labels of shape (N,). Received: {y.dtype} {y.shape}"
        )
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"Labels must be in [0, {num_classes - 1}]. Received: {y.min()} to {y.max()}"
        )
    out = np.zeros((y.shape[0], num_classes), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out


def set_random_seed(seed: int) -> None:
    """Seed initialisers, shuffling and dropout: two runs with one seed give identical weights."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int. Received: seed={seed!r}")
    backend.seed(int(seed))
