"""Sample weights as Keras 3's fit, evaluate and train_on_batch take them
(``keras/src/trainers/data_adapters/array_data_adapter.py``, ``data_adapter_utils.py``):

- ``sample_weight``: one array for a one-output model; with several outputs, one array per
  output (a list, or a dict by output name), or one array of one weight per sample, shape (N,)
  or (N, 1), that every output shares;
- ``class_weight`` {class: weight}, for a one-output model only and never with
  ``sample_weight``: each sample weighs its label's weight (1 for a class not listed); the label
  is the target rounded, or its argmax for one-hot rows.

Each array is checked here, before anything changes: N samples, finite numbers, and a shape
that weights the loss's values (one per sample for an output (N, K); per position, or (N, 1, 1)
per sample, for an output (N, H, W, C), where Keras fails on (N,) too).
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import floatx
from minicnn.data import as_real_array
from minicnn.losses.base import weight_shape


def sample_weights(model, sample_weight, class_weight, ys: list, n: int, what: str = "sample_weight"):  # fmt: skip
    """One checked host array per output (None for an output without), or None for none."""
    keys = model.output_keys()
    if class_weight is not None:
        if sample_weight is not None:
            raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
        if len(keys) > 1:
            raise ValueError(f"`class_weight` is only supported for Models with a single output. Received: a model with outputs {keys}")  # fmt: skip
        per_output = [class_weight_to_sample_weights(ys[0], class_weight)]
    elif sample_weight is None:
        return None
    elif isinstance(sample_weight, dict):
        extra = sorted(set(sample_weight) - set(keys))
        if extra:
            raise ValueError(f"{what}: the model's outputs are {keys}. Received keys {sorted(sample_weight)}")  # fmt: skip
        per_output = [sample_weight.get(k) for k in keys]
    elif isinstance(sample_weight, (list, tuple)) and not _is_numbers(sample_weight):
        if len(sample_weight) != len(keys):
            raise ValueError(f"You should provide one `sample_weight` array per output: the model has {len(keys)} ({keys}). Received: {len(sample_weight)} arrays")  # fmt: skip
        per_output = list(sample_weight)
    else:
        w = as_real_array(sample_weight, what)
        if len(keys) > 1 and not (w.ndim == 1 or (w.ndim == 2 and w.shape[1] == 1)):
            raise ValueError(
                "For a model with multiple outputs, when providing a single `sample_weight` "
                "array, it should only have one scalar score per sample (i.e. shape "
                "`(num_samples,)`). If you want to use non-scalar sample weights, pass a "
                f"`sample_weight` argument with one array per model output. Received: shape {w.shape}"
            )
        per_output = [w] * len(keys)
    out = []
    for k, w, lo, t in zip(keys, per_output, model.objectives.losses, model.outputs):
        if w is None or lo is None:
            out.append(None)
            continue
        name = f"{what}[{k!r}]" if len(keys) > 1 else what
        w = np.asarray(as_real_array(w, name) if not isinstance(w, np.ndarray) else w)
        if w.shape[0] != n:
            raise ValueError(f"{name} must have one entry per sample: {n}. Received: shape {w.shape}")  # fmt: skip
        if not np.isfinite(w).all():
            raise ValueError(f"{name} contains NaN or inf values")
        values = (n, *t.shape[1:-1])  # one loss value per sample (per position)
        try:
            weight_shape(w.shape, values)
        except ValueError as e:
            raise ValueError(f'{name} for output "{k}" of shape {(n, *t.shape[1:])}: {e}') from None  # fmt: skip
        out.append(w.astype(floatx(), copy=False))
    return out


def _is_numbers(value) -> bool:
    return all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value)


def class_weight_to_sample_weights(y, class_weight: dict) -> np.ndarray:
    """Keras's: each sample's weight is its class's (1.0 for a class not in the dict)."""
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be a dict {{class index: weight}}. Received: class_weight={class_weight!r}")  # fmt: skip
    for c, v in class_weight.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v):
            raise ValueError(f"class_weight: each weight must be a finite number. Received: {c!r}: {v!r}")  # fmt: skip
    y = np.asarray(y)
    if y.ndim > 1:
        y = y.argmax(axis=-1) if y.shape[-1] != 1 else y[..., 0]
    if y.ndim != 1:
        raise ValueError(f"class_weight needs one label per sample: targets of shape (N,), (N, 1) or one-hot (N, K). Received: y shape {np.shape(y)}")  # fmt: skip
    labels = np.round(y).astype(np.int64)
    classes, index = np.unique(labels, return_inverse=True)
    weights = np.array([class_weight.get(int(c), 1.0) for c in classes], dtype=floatx())
    return weights[index.reshape(-1)]


def split(weights, cut: int):
    """(the first ``cut`` samples' weights, the rest's), for validation_split."""
    if weights is None:
        return None, None
    return [None if w is None else w[:cut] for w in weights], [None if w is None else w[cut:] for w in weights]  # fmt: skip


def to_device(weights, backend):
    return None if weights is None else [None if w is None else backend.asarray(w) for w in weights]
