"""What fit, evaluate and predict train on or score: the user's ``x`` (arrays, a Python
generator of batches, or a ``keras.utils.PyDataset``) as a source of device batches walked by
Keras's epoch rules (``minicnn.data_adapters.Epochs``), with each argument checked first.

Arrays keep minicnn's own path (``minicnn.data.ArrayData``: one shuffle an epoch, the set on
the device); a generator's or a PyDataset's batches are checked and moved one by one, as
they come, by ``prepare``. Dicts of named inputs are taken in both, by input name.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn.backend import floatx
from minicnn.data_adapters import (  # fmt: skip
    Epochs,
    GeneratorData,
    PyDataset,
    PyDatasetData,
    is_generator,
    unpack,
)
from minicnn.training.weights import sample_weights, split, to_device


def is_stream(x) -> bool:
    """A generator or a PyDataset: batches that come one at a time."""
    return is_generator(x) or isinstance(x, PyDataset)


def positive(value, what: str, owner: str):
    """None, or a positive int (NumPy's too); else a ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive int. Received: {what}={value!r}")  # fmt: skip
    return int(value)


def check_shuffle(shuffle):
    if shuffle not in (True, False, "batch") or isinstance(shuffle, (int, float)) and not isinstance(shuffle, bool):  # fmt: skip
        raise ValueError(f'fit(): shuffle must be True, False or "batch". Received: shuffle={shuffle!r}')  # fmt: skip
    return shuffle


def stream(model, x, y, sample_weight, shuffle, what: str, targets: bool, class_weight=None):
    """A generator's or a PyDataset's batches, each checked and moved to the device; y and
    sample weights come inside the batches, as Keras requires (``class_weight`` weighs each
    batch's samples by their labels)."""
    kind = "generator" if is_generator(x) else "PyDataset"
    for name, value, inside in (("y", y, "the targets"), ("sample_weight", sample_weight, "the sample weights")):  # fmt: skip
        if value is not None:
            raise ValueError(f"When providing `x` as a {kind}, `{name}` should not be passed. Instead, {inside} should be included as part of the {kind}.")  # fmt: skip
    prepare = batch_preparer(model, f"{what} ({kind})", targets, class_weight)
    if is_generator(x):
        if shuffle:
            import warnings

            warnings.warn("`shuffle=True` was passed, but will be ignored since the data `x` was provided as a generator. The generator is expected to yield already-shuffled data.", stacklevel=4)  # fmt: skip
        source = GeneratorData(x, prepare)
        first = source.first[0]
    else:
        source = PyDatasetData(x, prepare, shuffle)
        first = x[0] if model.graph is None else None
    if model.graph is None:  # a Sequential without an input shape: built from the first batch
        model.check_inputs(unpack(first, what)[0], f"{what}'s first batch")
    return source


def batch_preparer(model, what: str, targets: bool, class_weight=None):
    """``prepare(batch) -> (xbs, tbs, wbs)`` (or ``xbs`` alone without ``targets``): one raw
    batch checked as fit checks arrays, moved to the device and cast."""

    def prepare(batch):
        x, y, sw = unpack(batch, what)
        be, dtype = model.backend, floatx()
        xs = model.check_inputs(x, f"x (a batch of {what})")
        xbs = [be.asarray(a).astype(dtype, copy=False) for a in xs]
        if not targets:
            return xbs
        if y is None and any(lo is not None for lo in model.objectives.losses):
            raise ValueError(f"{what} gave a batch without targets: fit and evaluate need (x, y) batches. Received: a batch of {type(batch).__name__}")  # fmt: skip
        ys = model.check_targets(y, xs[0].shape[0], f"y (a batch of {what})")
        model.objectives.build_metrics(ys, model.outputs)  # checked at the first batch only
        units = [t.shape[-1] for t in model.outputs]
        host = [None if t is None else be.to_numpy(t) for t in ys]
        ws = sample_weights(model, sw, class_weight, host, xs[0].shape[0], f"sample_weight (a batch of {what})")  # fmt: skip
        return xbs, model.objectives.targets(host, units, be.xp, dtype), to_device(ws, be)

    return prepare


def fit_data(model, x, y, batch_size, validation_split, validation_data, shuffle, steps_per_epoch, validation_steps, validation_batch_size, strategy, sample_weight=None, class_weight=None):  # fmt: skip
    """(training Epochs, validation Epochs or None), every argument checked; arrays are
    split for ``validation_split`` (Keras takes the last samples, and their sample weights;
    class weights weigh the training samples only) and moved to the device."""

    check_shuffle(shuffle)
    if not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1). Received: {validation_split!r}")
    if is_stream(x):
        if validation_split:
            raise ValueError(f"validation_split is only supported for arrays (Keras splits arrays only). Received: x={type(x).__name__}; pass validation_data")  # fmt: skip
        if strategy.size > 1:
            raise ValueError("fit(distribute=...) takes arrays: a generator or PyDataset is not sharded across processes")  # fmt: skip
        train = Epochs(stream(model, x, y, sample_weight, shuffle, "x", True, class_weight), steps_per_epoch)  # fmt: skip
        batch_size = batch_size or 32
    else:
        xs = model.check_inputs(x)
        n = xs[0].shape[0]
        ys = model.check_targets(y, n)
        model.objectives.build_metrics(ys, model.outputs)
        be = model.backend
        host = [None if t is None else be.to_numpy(t) for t in ys]
        ws = sample_weights(model, sample_weight, class_weight, host, n)
        if validation_split and validation_data is None:
            cut = int(n * (1 - validation_split))
            if cut == 0 or cut == n:
                raise ValueError(f"validation_split={validation_split} of {n} samples leaves {cut} to train on and {n - cut} to validate: both need at least one")  # fmt: skip
            ws, vws = split(ws if class_weight is None else None, cut)
            validation_data = CheckedArrays([a[cut:] for a in xs], [None if t is None else t[cut:] for t in ys], vws)  # fmt: skip
            xs, ys, n = [a[:cut] for a in xs], [None if t is None else t[:cut] for t in ys], cut
            host = [None if t is None else t[:cut] for t in host]
            if class_weight is not None:
                ws = sample_weights(model, None, class_weight, host, n)
        if batch_size is None:  # Keras: enough for steps_per_epoch batches, else 32
            batch_size = math.ceil(n / steps_per_epoch) if steps_per_epoch else 32
        units = [t.shape[-1] for t in model.outputs]
        targets = model.objectives.targets(host, units, be.xp, floatx())
        train = Epochs(strategy.source(xs, targets, batch_size, shuffle, be, to_device(ws, be)), steps_per_epoch)  # fmt: skip
    val = None
    if validation_data is not None:
        val = eval_data(model, validation_data, None, validation_batch_size or batch_size, validation_steps, strategy, "validation_data")  # fmt: skip
    return train, val


def eval_data(model, x, y, batch_size, steps, strategy, what: str = "x", sample_weight=None) -> Epochs:  # fmt: skip
    """evaluate's (and fit's validation) batches of (xbs, tbs, wbs), in order, this process's
    share; validation_data may be (x, y, sample_weight)."""
    from minicnn.training.scoring import ArrayBatches

    ws = None
    if isinstance(x, CheckedArrays):
        xs, ys, ws = x.xs, x.ys, x.ws
    elif what == "validation_data" and not is_stream(x):
        if not isinstance(x, (tuple, list)) or len(x) not in (2, 3):
            raise ValueError(f"validation_data must be a tuple (x_val, y_val), a generator or a PyDataset. Received: {type(x).__name__}")  # fmt: skip
        xs = model.check_inputs(x[0], "validation x")
        ys = model.check_targets(x[1], xs[0].shape[0], "validation y")
        model.objectives.build_metrics(ys, model.outputs)
        vsw = x[2] if len(x) == 3 else None
        ws = sample_weights(model, vsw, None, ys, xs[0].shape[0], "val_sample_weight")
    elif is_stream(x):
        if strategy.size > 1:
            raise ValueError(f"{what}: a generator or PyDataset is not sharded across processes; pass arrays")  # fmt: skip
        return Epochs(stream(model, x, y, sample_weight, False, what, True), steps)
    else:
        xs = model.check_inputs(x)
        ys = model.check_targets(y, xs[0].shape[0])
        model.objectives.build_metrics(ys, model.outputs)
        ws = sample_weights(model, sample_weight, None, ys, xs[0].shape[0])
    if batch_size is None:
        batch_size = math.ceil(xs[0].shape[0] / steps) if steps else 32
    return Epochs(ArrayBatches(model, xs, ys, batch_size, strategy, ws), steps)


def predict_data(model, x, batch_size, steps) -> Epochs:
    """predict's batches of inputs (device arrays), in order."""
    from minicnn.training.scoring import ArrayBatches
    from minicnn.training.strategy import Local

    if is_stream(x):
        return Epochs(stream(model, x, None, None, False, "x", False), steps, reset=False)
    xs = model.check_inputs(x)
    if batch_size is None:
        batch_size = math.ceil(xs[0].shape[0] / steps) if steps else 32
    return Epochs(ArrayBatches(model, xs, None, batch_size, Local()), steps, reset=False)


class CheckedArrays:
    """Arrays already checked (the validation split's), with their sample weights."""

    def __init__(self, xs: list, ys: list, ws=None):
        self.xs, self.ys, self.ws = xs, ys, ws
