"""Keras 3's metrics: by class, by name (class names, their snake_case, Keras's aliases "mse",
"mae", ...) and as per-sample functions. Each metric object holds its own state on the device
(``minicnn.metrics.base``); ``compile`` resolves "accuracy"/"acc" from the shapes of the targets
and outputs as Keras does, and logs each metric under the name it was given
(``minicnn.metrics.compiled``).

- accuracies (``accuracy``): Accuracy, BinaryAccuracy, CategoricalAccuracy,
  SparseCategoricalAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy;
- the losses as metrics (``regression``): MeanSquaredError, MeanAbsoluteError,
  RootMeanSquaredError, MeanAbsolutePercentageError, MeanSquaredLogarithmicError, LogCoshError,
  CosineSimilarity, the cross-entropies, KLDivergence, Poisson and the hinges;
- the confusion matrix (``confusion``): Precision, Recall, AUC, True/False Positives/Negatives;
- ``Mean``, ``Sum``, ``MeanMetricWrapper`` and ``Metric`` to subclass (``base``).
"""

from __future__ import annotations

import inspect

from minicnn import losses as _losses
from minicnn._missing import not_implemented
from minicnn.losses.base import snake_case
from minicnn.metrics.accuracy import (
    Accuracy,
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from minicnn.metrics.base import Mean, MeanMetricWrapper, Metric, Sum, Variable
from minicnn.metrics.confusion import (
    AUC,
    FalseNegatives,
    FalsePositives,
    Precision,
    Recall,
    TrueNegatives,
    TruePositives,
)
from minicnn.metrics.regression import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    CosineSimilarity,
    Hinge,
    KLDivergence,
    LogCoshError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    Poisson,
    RootMeanSquaredError,
    SparseCategoricalCrossentropy,
    SquaredHinge,
    cosine_similarity,
)

mean_squared_error = _losses.mean_squared_error
mean_absolute_error = _losses.mean_absolute_error
mean_absolute_percentage_error = _losses.mean_absolute_percentage_error
mean_squared_logarithmic_error = _losses.mean_squared_logarithmic_error
log_cosh = _losses.log_cosh
kl_divergence = _losses.kl_divergence
poisson = _losses.poisson
hinge = _losses.hinge
squared_hinge = _losses.squared_hinge
categorical_hinge = _losses.categorical_hinge
binary_crossentropy = _losses.binary_crossentropy
categorical_crossentropy = _losses.categorical_crossentropy
sparse_categorical_crossentropy = _losses.sparse_categorical_crossentropy

CLASSES = {
    cls.__name__: cls
    for cls in (
        Mean,
        Sum,
        Accuracy,
        BinaryAccuracy,
        CategoricalAccuracy,
        SparseCategoricalAccuracy,
        TopKCategoricalAccuracy,
        SparseTopKCategoricalAccuracy,
        MeanSquaredError,
        MeanAbsoluteError,
        RootMeanSquaredError,
        MeanAbsolutePercentageError,
        MeanSquaredLogarithmicError,
        LogCoshError,
        CosineSimilarity,
        BinaryCrossentropy,
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
        KLDivergence,
        Poisson,
        Hinge,
        SquaredHinge,
        CategoricalHinge,
        Precision,
        Recall,
        AUC,
        TruePositives,
        FalsePositives,
        TrueNegatives,
        FalseNegatives,
    )  # fmt: skip
}
ALIASES = {"mse": MeanSquaredError, "mae": MeanAbsoluteError, "mape": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError, "bce": BinaryCrossentropy}  # fmt: skip
NAMES = {  # Keras's ALL_OBJECTS_DICT: class names, their snake_case, the aliases in both cases
    **CLASSES,
    **{snake_case(k): c for k, c in CLASSES.items()},
    **ALIASES,
    **{k.upper(): c for k, c in ALIASES.items()},
}
FUNCTIONS = {  # each function and the metric class that averages it
    accuracy: Accuracy,
    binary_accuracy: BinaryAccuracy,
    categorical_accuracy: CategoricalAccuracy,
    sparse_categorical_accuracy: SparseCategoricalAccuracy,
    top_k_categorical_accuracy: TopKCategoricalAccuracy,
    sparse_top_k_categorical_accuracy: SparseTopKCategoricalAccuracy,
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError,
    log_cosh: LogCoshError,
    cosine_similarity: CosineSimilarity,
    kl_divergence: KLDivergence,
    poisson: Poisson,
    hinge: Hinge,
    squared_hinge: SquaredHinge,
    categorical_hinge: CategoricalHinge,
    binary_crossentropy: BinaryCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
}


def get(identifier) -> Metric | None:
    """A metric from a name, a class, a Metric, a function or a serialized dict, as
    ``keras.metrics.get`` resolves them; any other function fn(y_true, y_pred) of arrays is
    averaged over samples (Keras's MeanMetricWrapper). A ValueError names anything else."""
    if identifier is None or isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = NAMES.get(identifier)
        if cls is None:
            raise ValueError(f"Unknown metric: expected one of {sorted(NAMES)}, or 'accuracy'/'acc' in compile. Received: metric={identifier!r}")  # fmt: skip
        return cls()
    if inspect.isclass(identifier) and issubclass(identifier, Metric):
        return identifier()
    if callable(identifier):
        if identifier in FUNCTIONS:
            return FUNCTIONS[identifier](name=identifier.__name__)
        return MeanMetricWrapper(identifier, name=snake_case(identifier.__name__) if hasattr(identifier, "__name__") else None)  # fmt: skip
    raise ValueError(f"Could not interpret metric identifier: {identifier!r}")


def serialize(metric: Metric) -> dict:
    """Keras's layout: {"module", "class_name", "config", "registered_name"}."""
    return {"module": "keras.metrics", "class_name": type(metric).__name__, "config": metric.get_config(), "registered_name": None}  # fmt: skip


def deserialize(config) -> Metric:
    """A metric from ``serialize``'s dict or a name."""
    if isinstance(config, str):
        return get(config)
    cls = CLASSES.get(config.get("class_name")) if isinstance(config, dict) else None
    if cls is None:
        raise ValueError(f"Unknown metric {config!r}: expected one of {sorted(CLASSES)}")
    settings = dict(config.get("config") or {})
    n = settings.get("num_thresholds", 0)
    if cls is AUC and isinstance(n, int) and n > MAX_THRESHOLDS:  # a config read from a file
        raise ValueError(f"AUC: num_thresholds={n} is more than a saved model may ask for ({MAX_THRESHOLDS})")  # fmt: skip
    return cls.from_config(settings)


MAX_THRESHOLDS = 1_000_000  # the state a saved AUC may allocate: 4 x 10^6 numbers


__getattr__ = not_implemented(
    "minicnn.metrics",
    f"It has {', '.join(sorted(CLASSES))}, their functions, and Metric to subclass",
)

__all__ = [*CLASSES, "Metric", "MeanMetricWrapper", "Variable", "get", "serialize", "deserialize"]
