"""keras.ops' creation and conversion: ones, zeros, full, arange, eye and the ``*_like`` forms;
convert_to_tensor, convert_to_numpy, shape, cast. New arrays are made on the current backend
(NumPy or CuPy) in floatx unless a dtype is given."""

from __future__ import annotations

import numpy as np

from minicnn.backend import floatx, get_backend
from minicnn.layers.node import KerasTensor
from minicnn.ops.core import Operation, default_xp, run, xp_of


def _dtype(dtype):
    return floatx() if dtype is None else str(np.dtype(dtype))


def ones(shape, dtype=None):
    return default_xp().ones(shape, dtype=_dtype(dtype))


def zeros(shape, dtype=None):
    return default_xp().zeros(shape, dtype=_dtype(dtype))


def full(shape, fill_value, dtype=None):
    return default_xp().full(shape, fill_value, dtype=_dtype(dtype))


def eye(N, M=None, k=0, dtype=None):  # noqa: N803  (Keras's names)
    return default_xp().eye(N, M, k=k, dtype=_dtype(dtype))


def arange(start, stop=None, step=1, dtype=None):
    """Keras's ops.arange: ints give int32 unless a dtype is given, floats floatx."""
    ints = all(isinstance(v, (int, np.integer)) for v in (start, stop or 0, step))
    kind = dtype if dtype is not None else ("int32" if ints else floatx())
    return default_xp().arange(start, stop, step, dtype=str(np.dtype(kind)))


class Like(Operation):
    """ones_like, zeros_like, full_like on a symbolic tensor: a constant of its shape."""

    op_name = "full_like"

    def compute(self, x):
        return xp_of(x).full(x.shape, self.settings["value"], dtype=self.settings["dtype"] or x.dtype)  # fmt: skip

    def grads(self, g, xs, y):
        return [None]

    def output_shape(self, shape):
        return tuple(shape)


def full_like(x, fill_value, dtype=None):
    return run(Like(value=fill_value, dtype=None if dtype is None else str(np.dtype(dtype))), x)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


class Cast(Operation):
    op_name = "cast"

    @property
    def out_dtype(self):
        return self.settings["dtype"]

    def compute(self, x):
        return x.astype(self.settings["dtype"])

    def grads(self, g, xs, y):
        x = xs[0]
        return [g.astype(x.dtype) if np.issubdtype(x.dtype, np.floating) else None]

    def output_shape(self, shape):
        return tuple(shape)


def cast(x, dtype):
    return run(Cast(dtype=str(np.dtype(dtype))), x)


def convert_to_tensor(x, dtype=None, sparse=None):
    """x as an array of the current backend (a symbolic tensor passes as it is)."""
    if sparse:
        raise ValueError("ops.convert_to_tensor: sparse tensors are not supported in minicnn")
    if isinstance(x, KerasTensor):
        return x if dtype is None else cast(x, dtype)
    be = get_backend()
    if dtype is None and isinstance(x, (float, list, tuple)) and np.issubdtype(np.asarray(x).dtype, np.floating):  # fmt: skip
        dtype = floatx()  # Python floats become floatx, as in Keras
    return be.asarray(x, dtype=None if dtype is None else str(np.dtype(dtype)))


def convert_to_numpy(x):
    """x as a NumPy array (from the GPU if it lives there)."""
    if isinstance(x, KerasTensor):
        raise TypeError(
            f"ops.convert_to_numpy cannot take {x!r}: it is symbolic, with no values until the "
            "model runs. A custom layer's call() must be written with keras.ops, not NumPy"
        )
    return np.asarray(x) if xp_of(x) is np else xp_of(x).asnumpy(x)


def shape(x) -> tuple:
    """x's shape as a tuple (None for the batch axis of a symbolic tensor)."""
    return tuple(x.shape)
