"""What ``compile`` was given, as Keras 3's ``compile_config``, and back.

Keras keeps compile's arguments as they were given and writes them with
``serialize_keras_object`` (``Trainer.get_compile_config``): the optimizer object (with its
learning-rate schedule), and ``loss``, ``loss_weights``, ``metrics`` and ``weighted_metrics`` in
the structure the user wrote (one for all outputs, a list, a dict by output name), a name kept
a string, an object ``{module, class_name, config, registered_name}``, a function
``{class_name: "function", config: its name}``. Reading makes each object with minicnn's
``losses``/``metrics`` (by Keras's class names) or a custom class registered or named in
``custom_objects``, then calls ``compile``; anything else fails naming it, with the advice to
load with ``compile=False``."""

from __future__ import annotations

import json

from minicnn import losses, optimizers
from minicnn import metrics as metrics_module
from minicnn.keras_format.errors import ModelFileError
from minicnn.keras_format.naming import snake_case
from minicnn.keras_format.registry import get_registered_name, get_registered_object
from minicnn.optimizers import schedules

# minicnn's optimizer name -> Keras's class; every Keras optimizer's base keys and defaults
KERAS_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
_BASE = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None}  # fmt: skip
_NEUTRAL = {"loss_scale_factor": None, "gradient_accumulation_steps": None, "amsgrad": False}
_SCHEDULE_NAMES = {"PiecewiseConstantDecay": "PiecewiseConstant"}


def optimizer_to_keras(opt) -> dict:
    if opt.name not in KERAS_OPTIMIZERS or type(opt) is not getattr(optimizers, KERAS_OPTIMIZERS[opt.name]):  # fmt: skip
        raise ValueError(f"{opt!r} cannot be written in Keras's format (minicnn writes {sorted(KERAS_OPTIMIZERS.values())})")  # fmt: skip
    own = opt.get_config()
    lr = own.pop("learning_rate")
    if isinstance(lr, dict):
        name = lr["class_name"]
        lr = {"module": "keras.optimizers.schedules", "class_name": name, "config": {**lr["config"], "name": _SCHEDULE_NAMES.get(name, name)}, "registered_name": None}  # fmt: skip
    own.pop("name")
    config = {"name": snake_case(KERAS_OPTIMIZERS[opt.name]), "learning_rate": lr, **_BASE, "loss_scale_factor": None, "gradient_accumulation_steps": None}  # fmt: skip
    config.update(own)
    if opt.name in ("adam", "adamw"):
        config["amsgrad"] = False
    return {"module": "keras.optimizers", "class_name": KERAS_OPTIMIZERS[opt.name], "config": config, "registered_name": None}  # fmt: skip


def optimizer_from_keras(entry):
    if isinstance(entry, str):
        return _or_advice(lambda: optimizers.get(entry), f"optimizer {entry!r}")
    kind = entry.get("class_name") if isinstance(entry, dict) else None
    name = {v: k for k, v in KERAS_OPTIMIZERS.items()}.get(kind)
    if name is None or not isinstance(entry.get("config"), dict):
        raise ModelFileError(f"compile_config: optimizer {kind!r} is not one minicnn has ({', '.join(KERAS_OPTIMIZERS.values())}); load with compile=False and compile again")  # fmt: skip
    config = dict(entry["config"])
    config.pop("name", None)
    for key, value in _NEUTRAL.items():
        if config.pop(key, value) not in (value, None if value is False else value):
            raise ModelFileError(f"compile_config: minicnn's {kind} does not support {key}={entry['config'][key]!r}; load with compile=False")  # fmt: skip
    lr = config.get("learning_rate")
    if isinstance(lr, dict):
        sched = {"class_name": lr.get("class_name"), "config": dict(lr.get("config") or {})}
        config["learning_rate"] = _or_advice(lambda: schedules.deserialize(sched), f"learning-rate schedule {lr.get('class_name')!r}")  # fmt: skip
    if not config.get("use_ema"):
        config.pop("ema_momentum", None)
        config.pop("ema_overwrite_frequency", None)
    return _or_advice(lambda: optimizers.deserialize({"name": name, **config}), f"optimizer {kind}")  # fmt: skip


def _or_advice(make, what: str):
    try:
        return make()
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFileError(f"compile_config: {what} cannot be made in minicnn ({e}); load with compile=False and compile again") from None  # fmt: skip


# -- losses and metrics, in the structure compile was given them ---------------------------

_KINDS = {"loss": (losses, losses.Loss), "metric": (metrics_module, metrics_module.Metric)}
_COMPILE_KEYS = ("optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss")  # fmt: skip


def _to_keras(value, kind: str):
    """One compile argument as ``serialize_keras_object`` writes it."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()  # a NumPy number, as Keras writes one
    if isinstance(value, (list, tuple)):
        return [_to_keras(v, kind) for v in value]
    if isinstance(value, dict):
        return {k: _to_keras(v, kind) for k, v in value.items()}
    module, base = _KINDS[kind]
    if isinstance(value, type) and issubclass(value, base) and module.CLASSES.get(value.__name__) is value:  # fmt: skip
        value = value()  # a built-in class given for its defaults: the same as an instance
    if isinstance(value, base):
        cls = type(value)
        if module.CLASSES.get(cls.__name__) is cls:
            return module.serialize(value)
        config = value.get_config()
        try:
            json.dumps(config)
        except (TypeError, ValueError):
            raise ValueError(f"The {kind} {value!r} cannot be written in Keras's format: its get_config() holds values JSON cannot hold ({config!r})") from None  # fmt: skip
        return {"module": cls.__module__, "class_name": cls.__name__, "config": config, "registered_name": get_registered_name(cls)}  # fmt: skip
    if callable(value) and getattr(value, "__name__", "<lambda>") != "<lambda>":
        if value in module.FUNCTIONS:  # Keras's own functions, as Keras writes them
            return {"module": "builtins", "class_name": "function", "config": value.__name__, "registered_name": "function"}  # fmt: skip
        return {"module": value.__module__, "class_name": "function", "config": value.__name__, "registered_name": get_registered_name(value)}  # fmt: skip
    raise ValueError(f"The {kind} {value!r} cannot be written in Keras's format (a name, a {base.__name__}, or a named function can)")  # fmt: skip


def compile_to_keras(optimizer, loss, loss_weights, metrics, weighted_metrics) -> dict:
    """Keras's ``get_compile_config()`` of a model compiled with these arguments."""
    return {
        "optimizer": optimizer_to_keras(optimizer),
        "loss": _to_keras(loss, "loss"),
        "loss_weights": _to_keras(loss_weights, "loss"),
        "metrics": _to_keras(metrics, "metric"),
        "weighted_metrics": _to_keras(weighted_metrics, "metric"),
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


def _from_keras(value, kind: str, custom_objects):
    """The inverse of ``_to_keras``: names stay names (compile resolves them), each object
    entry is made, lists and dicts by output name keep their structure."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list):
        return [_from_keras(v, kind, custom_objects) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _from_keras(v, kind, custom_objects) for k, v in value.items()}
    if isinstance(value, dict):
        return _object_from_keras(value, kind, custom_objects)
    raise ModelFileError(f"compile_config: {kind} {value!r} is not a name, a list, or an object")


def _object_from_keras(entry: dict, kind: str, custom_objects):
    module, base = _KINDS[kind]
    name, config, registered = entry.get("class_name"), entry.get("config"), entry.get("registered_name")  # fmt: skip
    shown = json.dumps(entry)[:160]
    if not isinstance(name, str) or not isinstance(registered, (str, type(None))):
        raise ModelFileError(f"compile_config: the {kind} {shown} has no class_name")
    custom = None
    for key in (registered, name if not str(entry.get("module", "")).startswith("keras") else None):  # fmt: skip
        if key not in (None, "function") and custom is None:
            custom = get_registered_object(key, custom_objects)
    if name == "function":
        if not isinstance(config, str):
            raise ModelFileError(f"compile_config: the {kind} function {shown} has no name")
        found = custom or get_registered_object(config, custom_objects) or {f.__name__: f for f in module.FUNCTIONS}.get(config)  # fmt: skip
        if found is None or not callable(found):
            raise ModelFileError(f"compile_config: the {kind} function {config!r} is not one minicnn has; name it in custom_objects, or load with compile=False and compile again")  # fmt: skip
        return found
    if not isinstance(config, dict):
        raise ModelFileError(f"compile_config: the {kind} {shown} has no config object")
    if custom is not None:
        if not (isinstance(custom, type) and issubclass(custom, base)):
            raise ModelFileError(f"compile_config: the {kind} {name!r} names {custom!r}, which is not a {base.__name__} subclass")  # fmt: skip
        return _or_advice(lambda: custom.from_config(dict(config)), f"{kind} {name}")
    if name not in module.CLASSES:
        raise ModelFileError(f"compile_config: the {kind} {name!r} is not one minicnn has ({', '.join(sorted(module.CLASSES))}), nor named in custom_objects; load with compile=False and compile again")  # fmt: skip
    return _or_advice(lambda: module.deserialize({"class_name": name, "config": dict(config)}), f"{kind} {name}")  # fmt: skip


def compile_from_keras(model, config: dict, custom_objects=None) -> None:
    """compile() the model as ``config`` says; every part is made before compile is called."""
    if not isinstance(config, dict):
        raise ModelFileError("compile_config must be an object")
    unknown = sorted(set(config) - set(_COMPILE_KEYS))
    if unknown:
        raise ModelFileError(f"compile_config: unknown keys {unknown}")
    if config.get("steps_per_execution", 1) != 1:
        raise ModelFileError(f"compile_config: minicnn does not support steps_per_execution={config['steps_per_execution']!r}; load with compile=False")  # fmt: skip
    optimizer = optimizer_from_keras(config.get("optimizer", "rmsprop"))
    loss = _from_keras(config.get("loss"), "loss", custom_objects)
    weights = config.get("loss_weights")
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in _leaves(weights)):  # fmt: skip
        raise ModelFileError(f"compile_config: loss_weights must be numbers. Received: {json.dumps(weights)[:160]}")  # fmt: skip
    metrics = _from_keras(config.get("metrics"), "metric", custom_objects)
    weighted = _from_keras(config.get("weighted_metrics"), "metric", custom_objects)
    try:
        model.compile(optimizer, loss, loss_weights=weights, metrics=metrics, weighted_metrics=weighted)  # fmt: skip
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"compile_config cannot be applied ({e}); load with compile=False") from None  # fmt: skip


def _leaves(value) -> list:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [] if value is None else [value]
