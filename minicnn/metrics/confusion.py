"""Metrics of the confusion matrix at thresholds, Keras 3's (``confusion_metrics.py``,
``metrics_utils.update_confusion_matrix_variables``).

A prediction is positive at threshold t when y_pred > t; a target is positive when nonzero.
Without ``multi_label`` every entry of every sample counts alike (the arrays are flattened);
sample weights weight a sample's entries. Counts are sums on the device, threshold by threshold:

- ``TruePositives``, ``FalsePositives``, ``TrueNegatives``, ``FalseNegatives``;
- ``Precision`` tp / (tp + fp) and ``Recall`` tp / (tp + fn), at 0.5 unless given thresholds,
  optionally of the ``top_k`` largest entries only or of column ``class_id``;
- ``AUC``: the area under the ROC or PR curve over ``num_thresholds`` thresholds evenly spaced
  in [0, 1] (with -eps and 1 + eps at the ends), by Keras's summation: trapezoids for ROC, and
  Davis & Goadrich's interpolation of precision for PR.
"""

from __future__ import annotations

import numpy as np

from minicnn.backend import get_array_module
from minicnn.losses.base import EPSILON, sigmoid
from minicnn.metrics.base import Metric, as_array, squeeze_or_expand

NEG_INF = -1e10
_CHUNK = 1 << 22  # threshold x entry comparisons made at once


def _thresholds(thresholds) -> list[float]:
    values = list(np.atleast_1d(np.asarray(thresholds, dtype=np.float64)))
    for t in values:
        if not 0 <= t <= 1:
            raise ValueError(f"Threshold values must be in [0, 1]. Received: {t}")
    return [float(t) for t in values]


def _evenly(thresholds) -> bool:
    """Keras's is_evenly_distributed_thresholds (there it chooses a bucketed algorithm that
    also clips y_pred to [0, 1]; here it chooses the clip)."""
    n = len(thresholds)
    return n >= 3 and bool(np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1), atol=EPSILON))  # fmt: skip


def on_device(cache: dict, values, like, dtype):
    """``values`` as an array of ``dtype`` on the device of ``like``, made once per device and
    type and kept in ``cache``: a copy from the host each batch would wait for the GPU."""
    xp = get_array_module(like)
    key = (xp.__name__, np.dtype(dtype).name)
    if key not in cache:
        cache[key] = xp.asarray(np.asarray(values, dtype=np.float64).astype(dtype))
    return cache[key]


def _top_k_only(x, k: int):
    """Entries outside each row's k largest become NEG_INF (ties to the lower index)."""
    xp = get_array_module(x)
    stable = {"kind": "stable"} if xp is np else {}  # CuPy's sort is stable already
    order = xp.argsort(-x, axis=-1, **stable)
    ranks = xp.argsort(order, axis=-1, **stable)
    return xp.where(ranks < k, x, x.dtype.type(NEG_INF))


def confusion_counts(y_true, y_pred, thresholds, sample_weight=None, top_k=None, class_id=None,
                     multi_label=False, label_weights=None, clip=False):  # fmt: skip
    """{"tp", "fp", "tn", "fn"}: weighted counts, shape (T,) or (T, labels) for multi_label.
    ``thresholds`` and ``label_weights`` are arrays on y_pred's device (``on_device``)."""
    xp = get_array_module(y_pred)
    dtype = y_pred.dtype if y_pred.dtype.kind == "f" else np.dtype("float32")
    y_pred = xp.asarray(y_pred).astype(dtype, copy=False)
    y_true = xp.asarray(y_true).astype(dtype, copy=False)
    y_pred, y_true = squeeze_or_expand(y_pred, y_true)
    w = None
    if sample_weight is not None:
        w = as_array(sample_weight, y_pred, dtype)[..., None]
        _, w = squeeze_or_expand(y_true, w, expand_rank_1=False)
    if top_k is not None:
        y_pred = _top_k_only(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError(f"When class_id is provided, y_pred must be a 2D array with shape (num_samples, num_classes), found shape: {y_pred.shape}")  # fmt: skip
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    if clip:
        y_pred = xp.clip(y_pred, 0, 1)
    w = xp.ones_like(y_pred) if w is None else xp.broadcast_to(w, y_pred.shape)
    if label_weights is not None:
        w = w * xp.broadcast_to(label_weights, y_pred.shape)
    if multi_label:
        y_pred, y_true, w = (a.reshape(a.shape[0], -1) for a in (y_pred, y_true, w))
    else:
        y_pred, y_true, w = (a.reshape(-1) for a in (y_pred, y_true, w))
    t = thresholds.reshape((-1,) + (1,) * y_pred.ndim)  # (T, 1) or (T, 1, 1)
    positive = (y_true != 0).astype(dtype) * w
    negative = (y_true == 0).astype(dtype) * w
    tp = fp = None
    step = max(1, _CHUNK // max(1, t.shape[0] * (y_pred[0].size if multi_label else 1)))
    for lo in range(0, max(y_pred.shape[0], 1), step):  # chunks of samples, never per sample
        above = (y_pred[lo : lo + step] > t).astype(dtype)  # (T, n) or (T, n, labels)
        a = (above * positive[lo : lo + step]).sum(axis=1)
        b = (above * negative[lo : lo + step]).sum(axis=1)
        tp, fp = (a, b) if tp is None else (tp + a, fp + b)
    return {"tp": tp, "fp": fp, "tn": negative.sum(axis=0) - fp, "fn": positive.sum(axis=0) - tp}


class _Confusion(Metric):
    """State: one count per threshold for each of ``kinds``."""

    kinds: tuple = ()

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds, self.top_k, self.class_id = thresholds, top_k, class_id
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):  # fmt: skip
            raise ValueError(f"top_k must be a positive int. Received: top_k={top_k!r}")
        default = 0.5 if top_k is None else NEG_INF  # top_k alone: every one of the k counts
        self.thresholds = [default] if thresholds is None else _thresholds(thresholds)
        self._clip = _evenly(self.thresholds)
        self._cache: dict = {}
        names = {"tp": "true_positives", "fp": "false_positives", "tn": "true_negatives", "fn": "false_negatives"}  # fmt: skip
        self.counts = {k: self.add_variable((len(self.thresholds),), "zeros", name=names[k]) for k in self.kinds}  # fmt: skip

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = on_device(self._cache, self.thresholds, y_pred, _float(y_pred))
        got = confusion_counts(y_true, y_pred, t, sample_weight, self.top_k, self.class_id, clip=self._clip)  # fmt: skip
        for k, v in self.counts.items():
            v.assign_add(got[k])

    def _one(self, a):
        return a[0] if len(self.thresholds) == 1 else a

    def get_config(self):
        return {**super().get_config(), "thresholds": self.init_thresholds, "top_k": self.top_k, "class_id": self.class_id}  # fmt: skip


def _float(y_pred):
    return y_pred.dtype if y_pred.dtype.kind == "f" else np.dtype("float32")


def _ratio(a, b):
    """a / b, 0 where b is 0 (Keras's divide_no_nan)."""
    xp = get_array_module(a)
    return xp.where(b == 0, 0, a / xp.where(b == 0, 1, b))


class _Count(_Confusion):
    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds, None, None, name, dtype)

    def result(self):
        return self._one(self.counts[self.kinds[0]].value)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds}


class TruePositives(_Count):
    kinds = ("tp",)


class FalsePositives(_Count):
    kinds = ("fp",)


class TrueNegatives(_Count):
    kinds = ("tn",)


class FalseNegatives(_Count):
    kinds = ("fn",)


class Precision(_Confusion):
    kinds = ("tp", "fp")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)
        self.true_positives, self.false_positives = self.counts["tp"], self.counts["fp"]

    def result(self):
        tp, fp = self.counts["tp"].value, self.counts["fp"].value
        return self._one(_ratio(tp, tp + fp))


class Recall(_Confusion):
    kinds = ("tp", "fn")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)
        self.true_positives, self.false_negatives = self.counts["tp"], self.counts["fn"]

    def result(self):
        tp, fn = self.counts["tp"].value, self.counts["fn"].value
        return self._one(_ratio(tp, tp + fn))


_CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
_SUMMATIONS = {"interpolation": "interpolation", "minoring": "minoring", "majoring": "majoring"}


class AUC(Metric):
    """The area under the ROC (default) or PR curve of (y_true, y_pred) in [0, 1]."""

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None,
                 dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):  # fmt: skip
        if str(curve).lower() not in _CURVES:
            raise ValueError(f'Invalid AUC curve value: "{curve}". Expected values are ["PR", "ROC", "PRGAIN"]')  # fmt: skip
        if str(summation_method).lower() not in _SUMMATIONS:
            raise ValueError(f'Invalid AUC summation method value: "{summation_method}". Expected values are ["interpolation", "majoring", "minoring"]')  # fmt: skip
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_thresholds(thresholds))
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, (int, np.integer)) or num_thresholds <= 1:  # fmt: skip
                raise ValueError(f"Argument `num_thresholds` must be an integer > 1. Received: num_thresholds={num_thresholds}")  # fmt: skip
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self._thresholds = np.array([0.0 - EPSILON, *inner, 1.0 + EPSILON])
        self._clip = thresholds is None or _evenly([0.0, *inner, 1.0])
        self.curve = _CURVES[str(curve).lower()]
        self.summation_method = _SUMMATIONS[str(summation_method).lower()]
        super().__init__(name=name, dtype=dtype)
        self.multi_label, self.num_labels = bool(multi_label), num_labels
        self.label_weights = None if label_weights is None else np.asarray(label_weights, dtype=self.dtype)  # fmt: skip
        self._from_logits = bool(from_logits)
        self._built = False
        self._cache: dict = {}
        self._weights_cache: dict = {}
        if not self.multi_label and num_labels:
            raise ValueError("`num_labels` is needed only when `multi_label` is True.")
        if not self.multi_label or num_labels:
            self._build(None if not self.multi_label else [None, num_labels])

    @property
    def thresholds(self) -> list:
        return list(self._thresholds)

    def _build(self, shape, xp=np):
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError(f"`y_pred` must have rank 2 when `multi_label=True`. Found rank {len(shape)}. Full shape received for `y_pred`: {shape}")  # fmt: skip
            self._num_labels = shape[1]
            vshape = (self.num_thresholds, self._num_labels)
        else:
            vshape = (self.num_thresholds,)
        for k in ("true_positives", "false_positives", "true_negatives", "false_negatives"):
            setattr(self, k, self.add_variable(vshape, "zeros", name=k))
            getattr(self, k).to(xp)
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        if not self._built:
            self._build(y_pred.shape, get_array_module(y_pred))
        if self._from_logits:
            y_pred = sigmoid(y_pred)
        dtype = _float(y_pred)
        t = on_device(self._cache, self._thresholds, y_pred, dtype)
        lw = None
        if self.label_weights is not None and not self.multi_label:
            lw = on_device(self._weights_cache, self.label_weights, y_pred, dtype)
        got = confusion_counts(y_true, y_pred, t, sample_weight, multi_label=self.multi_label, label_weights=lw, clip=self._clip)  # fmt: skip
        self.true_positives.assign_add(got["tp"])
        self.false_positives.assign_add(got["fp"])
        self.true_negatives.assign_add(got["tn"])
        self.false_negatives.assign_add(got["fn"])

    def _by_label(self, per_label):
        if not self.multi_label:
            return per_label.sum()
        by_label = per_label.sum(axis=0)
        if self.label_weights is None:
            return by_label.mean()
        lw = on_device(self._weights_cache, self.label_weights, per_label, per_label.dtype)
        return _ratio((by_label * lw).sum(), lw.sum())

    def interpolate_pr_auc(self):
        """Davis & Goadrich (2006): precision interpolated between thresholds."""
        xp = get_array_module(self.true_positives.value)
        tp, fp, fn = (v.value for v in (self.true_positives, self.false_positives, self.false_negatives))  # fmt: skip
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _ratio(dtp, xp.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = xp.where(both, _ratio(p[:-1], xp.maximum(p[1:], 0)), 1)
        inc = _ratio(slope * (dtp + intercept * xp.log(ratio)), xp.maximum(tp[1:] + fn[1:], 0))
        return self._by_label(inc)

    def result(self):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        xp = get_array_module(self.true_positives.value)
        tp, fp, tn, fn = (v.value for v in (self.true_positives, self.false_positives, self.true_negatives, self.false_negatives))  # fmt: skip
        recall = _ratio(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _ratio(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _ratio(tp, tp + fp)
        else:  # PR gain
            scale = _ratio(tp + fn, tn + fp)
            x = xp.maximum(xp.where(tp == 0, 0, 1 - scale * _ratio(fn, tp)), 0)
            y = xp.where(tp == 0, 1, 1 - scale * _ratio(fp, tp))
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = xp.minimum(y[:-1], y[1:])
        else:
            heights = xp.maximum(y[:-1], y[1:])
        return self._by_label((x[:-1] - x[1:]) * heights)

    def reset_state(self):
        if self._built:
            super().reset_state()

    def get_config(self):
        config = {
            **super().get_config(),
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config
