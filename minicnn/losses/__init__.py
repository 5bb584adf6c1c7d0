"""Keras 3's losses: by class, by name (Keras's aliases too: "mse", "mae", "bce", ...) and as
functions that return one value per sample, ``keras.losses.mean_squared_error(y_true, y_pred)``.

Each class is a forward and its gradient written by hand (``minicnn.losses.base`` has the
contract and Keras's reductions): cross-entropies in ``crossentropy``, regression losses in
``regression``, KL divergence and Poisson in ``probabilistic``, the hinges in ``hinge``.
"""

from __future__ import annotations

import inspect

from minicnn._missing import not_implemented
from minicnn.backend import floatx, get_array_module
from minicnn.losses.base import EPSILON, REDUCTIONS, Loss, LossFunctionWrapper, reduce
from minicnn.losses.crossentropy import (
    BinaryCrossentropy,
    BinaryFocalCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
)
from minicnn.losses.hinge import CategoricalHinge, Hinge, SquaredHinge
from minicnn.losses.probabilistic import KLDivergence, Poisson
from minicnn.losses.regression import (
    CosineSimilarity,
    Huber,
    LogCosh,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
)

__all__ = ["EPSILON", "REDUCTIONS", "Loss", "reduce", "get", "serialize", "deserialize"]


def _values(loss: Loss, y_true, y_pred):
    """The per-sample values of ``loss``, computed in y_pred's float type (as Keras's functions)."""
    xp = get_array_module(y_pred)
    y_pred = xp.asarray(y_pred)
    if y_pred.dtype.kind != "f":
        y_pred = y_pred.astype(floatx())
    return loss.forward(xp.asarray(y_true).astype(y_pred.dtype), y_pred, None)[0]


def mean_squared_error(y_true, y_pred):
    return _values(MeanSquaredError(), y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return _values(MeanAbsoluteError(), y_true, y_pred)


def mean_absolute_percentage_error(y_true, y_pred):
    return _values(MeanAbsolutePercentageError(), y_true, y_pred)


def mean_squared_logarithmic_error(y_true, y_pred):
    return _values(MeanSquaredLogarithmicError(), y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    return _values(Huber(delta), y_true, y_pred)


def log_cosh(y_true, y_pred):
    return _values(LogCosh(), y_true, y_pred)


def cosine_similarity(y_true, y_pred, axis=-1):
    return _values(CosineSimilarity(axis), y_true, y_pred)


def kl_divergence(y_true, y_pred):
    return _values(KLDivergence(), y_true, y_pred)


def poisson(y_true, y_pred):
    return _values(Poisson(), y_true, y_pred)


def hinge(y_true, y_pred):
    return _values(Hinge(), y_true, y_pred)


def squared_hinge(y_true, y_pred):
    return _values(SquaredHinge(), y_true, y_pred)


def categorical_hinge(y_true, y_pred):
    return _values(CategoricalHinge(), y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return _values(CategoricalCrossentropy(from_logits, label_smoothing, axis), y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):  # fmt: skip
    loss = SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis)
    return _values(loss, y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    return _values(BinaryCrossentropy(from_logits, label_smoothing, axis), y_true, y_pred)


def binary_focal_crossentropy(
    y_true,
    y_pred,
    apply_class_balancing=False,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
):
    loss = BinaryFocalCrossentropy(apply_class_balancing, alpha, gamma, from_logits, label_smoothing, axis)  # fmt: skip
    return _values(loss, y_true, y_pred)


CLASSES = {
    cls.__name__: cls
    for cls in (
        MeanSquaredError,
        MeanAbsoluteError,
        MeanAbsolutePercentageError,
        MeanSquaredLogarithmicError,
        Huber,
        LogCosh,
        CosineSimilarity,
        KLDivergence,
        Poisson,
        Hinge,
        SquaredHinge,
        CategoricalHinge,
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
        BinaryCrossentropy,
        BinaryFocalCrossentropy,
    )
}
FUNCTIONS = {  # each function and the class it is the values of
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError,
    huber: Huber,
    log_cosh: LogCosh,
    cosine_similarity: CosineSimilarity,
    kl_divergence: KLDivergence,
    poisson: Poisson,
    hinge: Hinge,
    squared_hinge: SquaredHinge,
    categorical_hinge: CategoricalHinge,
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
    binary_focal_crossentropy: BinaryFocalCrossentropy,
}
ALIASES = {"mse": mean_squared_error, "mae": mean_absolute_error, "mape": mean_absolute_percentage_error, "msle": mean_squared_logarithmic_error, "kld": kl_divergence, "bce": binary_crossentropy}  # fmt: skip
NAMES = {  # Keras's ALL_OBJECTS_DICT: class names, function names, aliases in both cases
    **{f.__name__: f for f in FUNCTIONS},
    **ALIASES,
    **{k.upper(): f for k, f in ALIASES.items()},
}


def get(identifier) -> Loss | None:
    """A loss from a name, a class, a Loss, one of the functions above or a serialized dict,
    as ``keras.losses.get`` resolves them; a ValueError names anything else."""
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        if identifier in CLASSES:
            return CLASSES[identifier]()
        fn = NAMES.get(identifier) or NAMES.get(identifier.lower())
        if fn is not None:
            return FUNCTIONS[fn](name=identifier)
        if identifier.lower() in ("crossentropy", "ce"):
            raise ValueError(
                f'loss="{identifier}" lets Keras pick binary, sparse or categorical cross-entropy '
                "from the targets' shapes, which minicnn does not do: name the loss, e.g. "
                "'sparse_categorical_crossentropy'"
            )
    if inspect.isclass(identifier) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and identifier in FUNCTIONS:
        return FUNCTIONS[identifier](name=identifier.__name__)
    if inspect.isclass(identifier):
        raise ValueError(f"A loss class must subclass minicnn.losses.Loss. Received: loss={identifier!r}")  # fmt: skip
    if callable(identifier):  # the user's fn(y_true, y_pred), written with keras.ops
        return LossFunctionWrapper(identifier)
    raise ValueError(f"Unknown loss: expected one of {sorted(NAMES)}, a class of {sorted(CLASSES)} or a Loss. Received: loss={identifier!r}")  # fmt: skip


def serialize(loss: Loss) -> dict:
    """Keras's layout: {"module", "class_name", "config", "registered_name"}."""
    return {"module": "keras.losses", "class_name": type(loss).__name__, "config": loss.get_config(), "registered_name": None}  # fmt: skip


def deserialize(config) -> Loss:
    """A loss from ``serialize``'s dict, a name, or minicnn's first format ({"name": ..., its
    settings}, the class's default name)."""
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict):
        raise ValueError(f"Could not interpret loss config: {config!r}")
    if "class_name" in config:
        cls = CLASSES.get(config["class_name"])
        if cls is None:
            raise ValueError(f"Unknown loss class {config['class_name']!r}: expected one of {sorted(CLASSES)}; a loss of your own (a Loss subclass or a function) is not saved with the model: load it with compile=False and compile it again")  # fmt: skip
        return cls.from_config(dict(config.get("config") or {}))
    config = dict(config)
    name = config.pop("name", None)
    fn = NAMES.get(name)
    if fn is None:
        raise ValueError(f"Unknown loss {name!r}: expected one of {sorted(NAMES)}")
    return FUNCTIONS[fn](**config)


__getattr__ = not_implemented(
    "minicnn.losses",
    f"It has the classes {', '.join(sorted(CLASSES))}, their functions and Loss to subclass",
)
