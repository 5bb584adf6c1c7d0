"""Initializers as Keras 3 writes them, ``{"module": "keras.initializers", "class_name":
"GlorotUniform", "config": {...}, "registered_name": null}``, and back: minicnn's initializer
functions (Keras's VarianceScaling family, zeros, ones) by name, its classes (RandomNormal,
RandomUniform, TruncatedNormal, Constant) with their arguments."""

from __future__ import annotations

from minicnn import initializers
from minicnn.keras_format.errors import ModelFileError
from minicnn.keras_format.naming import snake_case

_SCALED = {"seed": None, "input_axes": None, "output_axes": None}  # Keras's VarianceScaling family
_FUNCTIONS = {"glorot_uniform": _SCALED, "glorot_normal": _SCALED, "he_normal": _SCALED, "he_uniform": _SCALED, "lecun_normal": _SCALED, "lecun_uniform": _SCALED, "zeros": {}, "ones": {}}  # fmt: skip
# minicnn's initializer classes and the attributes Keras's config holds, in Keras's order
_CLASSES = {"RandomNormal": ("seed", "mean", "stddev"), "RandomUniform": ("seed", "minval", "maxval"), "TruncatedNormal": ("seed", "mean", "stddev"), "Constant": ("value",), "VarianceScaling": ("seed", "scale", "mode", "distribution", "input_axes", "output_axes"), "Zeros": (), "Ones": ()}  # fmt: skip
_CLASSES.update({_keras_name: ("seed", "input_axes", "output_axes") for _keras_name in ("GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform")})  # instances: their seed  # fmt: skip


def _keras_class(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def initializer_to_keras(fn, owner: str, key: str) -> dict:
    name, kind = getattr(fn, "__name__", None), type(fn).__name__
    if name in _FUNCTIONS and initializers._ALL.get(name) is fn:
        class_name, config = _keras_class(name), dict(_FUNCTIONS[name])
    elif kind in _CLASSES and getattr(initializers, kind, None) is type(fn):
        class_name, config = kind, {k: getattr(fn, k) for k in _CLASSES[kind]}
    else:
        raise ValueError(f"{owner}: {key}={fn!r} cannot be written in Keras's format (minicnn writes its built-in initializers: {sorted([*_FUNCTIONS, *_CLASSES])})")  # fmt: skip
    return {"module": "keras.initializers", "class_name": class_name, "config": config, "registered_name": None}  # fmt: skip


def initializer_from_keras(value, owner: str, key: str):
    """A minicnn initializer (a name, or an instance of its classes) from Keras's config."""
    if isinstance(value, str) and value.lower() in _FUNCTIONS:
        return value.lower()
    if isinstance(value, str) and _keras_class(value.lower()) in _CLASSES:
        return getattr(initializers, _keras_class(value.lower()))()
    if not (isinstance(value, dict) and isinstance(value.get("class_name"), str) and isinstance(value.get("config", {}), dict)):  # fmt: skip
        raise ModelFileError(f"{owner}: {key} {str(value)[:100]} is not one minicnn has ({', '.join(sorted([*_FUNCTIONS, *_CLASSES]))})")  # fmt: skip
    kind, config = value["class_name"], dict(value.get("config") or {})
    if snake_case(kind) in _FUNCTIONS:
        extra = {k: v for k, v in config.items() if v is not None}
        if extra and kind in _CLASSES and set(config) <= set(_CLASSES[kind]):  # an instance
            try:
                return getattr(initializers, kind)(**config)
            except (TypeError, ValueError) as e:
                raise ModelFileError(f"{owner}: {key} {kind}: {e}") from None
        if extra:
            raise ModelFileError(f"{owner}: {key} {kind} with {extra} is not supported (minicnn draws initial weights from its own seeded generator: minicnn.utils.set_random_seed)")  # fmt: skip
        return snake_case(kind)
    if kind in _CLASSES and not set(config) - set(_CLASSES[kind]):
        try:
            return getattr(initializers, kind)(**config)
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{owner}: {key} {kind}: {e}") from None
    raise ModelFileError(f"{owner}: {key} {kind} with {config} is not one minicnn has ({', '.join(sorted([*_FUNCTIONS, *_CLASSES]))})")  # fmt: skip
