"""From the arrays a user passes to batches on the device: the input checks, and one epoch's
batches (shuffle, gather, cast, the last partial batch).

A data source has ``num_batches`` (batches in one pass, None when unknown) and
``iterator(epoch)`` (one pass of ``(xbs, tbs, wbs)`` batches: inputs, targets and sample
weights, one per input and per output), with ``on_epoch_begin``/``on_epoch_end``;
``minicnn.data_adapters.Epochs`` walks any of them as Keras's epoch iterator does, and the
training loop asks it only for ``num_batches`` and ``epoch(i)``. ``ArrayData`` is the source for
in-memory arrays (sharded across processes: each rank a slice of the same shuffled order); a
Python generator and a ``PyDataset`` are the others (``minicnn.data_adapters``).
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.backend import Backend, floatx, rng


def batch_ranges(n: int, batch_size) -> list[tuple[int, int]]:
    """[lo, hi) of each batch of ``n`` samples; the last one holds what is left."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:  # fmt: skip
        raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    batch_size = int(batch_size)  # NumPy's integers too, as Keras takes them
    return [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def check_features(x, input_shape: tuple, xp, what: str = "x", owner: str = "the model", empty=False):  # fmt: skip
    """x as an array of ``input_shape`` (no batch axis), floats cast to floatx and checked for
    NaN/inf. Integer images (uint8) stay integer here and are cast batch by batch. ``empty``:
    whether a batch of no samples is accepted (``predict_on_batch``'s, as Keras's)."""
    x = as_real_array(x, what, empty)
    if tuple(x.shape[1:]) != tuple(input_shape):
        hint = ""
        if tuple(x.shape[1:]) + (1,) == tuple(input_shape):
            hint = f"; add a channel axis: {what}[..., None]"
        raise ValueError(
            f'Input to layer "{owner}" has the wrong shape: '
            f"expected {(None, *input_shape)}. Received: {what} shape {tuple(x.shape)}{hint}"
        )
    if np.issubdtype(x.dtype, np.floating):
        x = xp.asarray(x, dtype=floatx())
        # in slices: one flag per value of the whole set would be a copy as large as x/4
        size = max(1, math.prod(x.shape[1:]))
        step = max(1, (1 << 22) // size)
        for lo in range(0, x.shape[0], step):
            finite = xp.isfinite(x[lo : lo + step])
            if not bool(finite.all()):
                bad = lo + int(xp.argmin(finite.reshape(-1))) // size
                raise ValueError(f"{what} contains NaN or inf values (first in sample {bad})")
    return x


def as_real_array(x, what: str = "x", empty=False):
    """``x`` as an array (NumPy unless it is one already) of real numbers with a batch axis,
    of at least one sample unless ``empty``."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.dtype == bool or not (
        np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    ):
        raise ValueError(f"{what} must hold real numbers. Received: dtype {x.dtype}")
    if x.ndim == 0 or (x.shape[0] == 0 and not empty):
        raise ValueError(f"{what} is empty. Received: shape {x.shape}")
    return x


def check_targets(y, n: int, loss, shape: tuple, backend: Backend, what: str = "y"):
    """y, checked against ``n`` inputs and an output of ``shape`` (batch axis first) by ``loss``."""
    y = np.asarray(y) if not hasattr(y, "shape") else y
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):  # fmt: skip
        raise ValueError(f"{what} must hold real numbers (integer labels or float targets). Received: dtype {y.dtype}")  # fmt: skip
    if y.shape[:1] != (n,):
        raise ValueError(
            f"x and {what} must have the same number of samples. Received: {n} inputs and "
            f"{y.shape[0] if y.ndim else 'a scalar'} targets"
        )
    loss.check_target(backend.to_numpy(y), tuple(shape))
    return y


def first(x):
    """The first array of ``x``: itself, or the first of a list or dict of arrays."""
    if isinstance(x, dict):
        return next(iter(x.values()))
    return x[0] if isinstance(x, (list, tuple)) else x


class ArrayData:
    """Checked arrays as a source of training batches.

    xs: one (N, ...) array per model input, moved to the device once; ts: one (N, K) array of
    dense targets per output (already on the device; None where no loss reads it). Each
    epoch draws one permutation from minicnn's generator (so a resumed run draws what the
    unbroken one would) and each batch gathers its rows through it: a copy of the whole shuffled
    set per epoch would cost as much memory as the data (188 MB for MNIST).

    Sharded (``size`` processes, this one ``rank``): each step takes a global batch of
    ``size * batch_size`` rows of the permutation and this process its ``rank``-th share of it
    (the last global batch split as evenly as it goes, so a share may be empty), so every
    process runs the same number of steps. The permutation then comes from ``seed`` and the
    epoch, the same on every process.
    """

    def __init__(self, xs, ts, batch_size, shuffle, backend: Backend, rank=0, size=1, seed=None, ws=None):  # fmt: skip
        self.backend = backend
        self.xs = [backend.asarray(x) for x in xs]
        self.ts = ts
        self.ws = ws or [None] * len(ts)
        self.n = xs[0].shape[0]
        self.shuffle, self.seed = shuffle, seed
        self.ranges = [  # rows [lo, hi) of each global batch that are this process's
            (lo + (hi - lo) * rank // size, lo + (hi - lo) * (rank + 1) // size)
            for lo, hi in batch_ranges(self.n, batch_size * size)
        ]

    def __len__(self) -> int:
        return len(self.ranges)

    @property
    def num_batches(self) -> int:
        return len(self.ranges)

    def on_epoch_begin(self) -> None:
        """Arrays: nothing to do at an epoch's edges (a PyDataset's source calls its hooks)."""

    def on_epoch_end(self) -> None:
        """Arrays: nothing to do at an epoch's edges (a PyDataset's source calls its hooks)."""

    def iterator(self, index: int = 0):
        return self.epoch(index)

    def epoch(self, index: int = 0):
        """The permutation is drawn now, at the start of epoch ``index``; -> an iterator of
        (xbs, tbs, wbs): lists, one batch per input and per output. ``shuffle="batch"`` (Keras's):
        the batches keep their place and each one's rows are drawn in a new order."""
        gen = rng() if self.seed is None else np.random.default_rng([self.seed, 0, index])
        order = None
        if self.shuffle and self.shuffle != "batch":
            order = self.backend.asarray(gen.permutation(self.n))
        return self._batches(order, gen if self.shuffle == "batch" else None)

    def _batches(self, order, within=None):
        dtype = floatx()
        for lo, hi in self.ranges:
            rows = slice(lo, hi) if order is None else order[lo:hi]
            if within is not None:
                rows = self.backend.asarray(lo + within.permutation(hi - lo))
            xbs = [x[rows].astype(dtype, copy=False) for x in self.xs]
            tbs = [None if t is None else t[rows] for t in self.ts]
            yield xbs, tbs, [None if w is None else w[rows] for w in self.ws]
