"""What ``compile`` set, as Keras 3's ``compile_config``, and back: the optimizer (with its
learning-rate schedule), the losses, their weights and the metrics, one per output or one for
all, in Keras's layout. Only what minicnn has is read; anything else fails naming it, with the
advice to load with ``compile=False``."""

from __future__ import annotations

from minicnn import losses, optimizers
from minicnn import metrics as metrics_module
from minicnn.keras_format.errors import ModelFileError
from minicnn.keras_format.naming import snake_case
from minicnn.optimizers import schedules

# minicnn's optimizer name -> Keras's class; every Keras optimizer's base keys and defaults
KERAS_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
_BASE = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None}  # fmt: skip
_NEUTRAL = {"loss_scale_factor": None, "gradient_accumulation_steps": None, "amsgrad": False}
_SCHEDULE_NAMES = {"PiecewiseConstantDecay": "PiecewiseConstant"}
_LOSS_NEUTRAL = {"reduction": "sum_over_batch_size", "axis": -1, "ignore_class": None, "dtype": None}  # fmt: skip


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


# -- losses and metrics ------------------------------------------------------------------------


def _loss_to_keras(lo):
    if lo is None:
        return None
    config = lo.get_config()
    if type(losses.get(config["name"])) is type(lo) and config == losses.get(config["name"]).get_config():  # fmt: skip
        return config["name"]
    keras_config = {"name": config.pop("name"), "reduction": "sum_over_batch_size", **config}
    return {"module": "keras.losses", "class_name": type(lo).__name__, "config": keras_config, "registered_name": None}  # fmt: skip


def _loss_from_keras(entry):
    if entry is None:
        return None
    if isinstance(entry, str):
        return _or_advice(lambda: losses.get(entry), f"loss {entry!r}")
    kind = entry.get("class_name") if isinstance(entry, dict) else None
    cls = getattr(losses, kind, None) if isinstance(kind, str) else None
    if not (isinstance(cls, type) and issubclass(cls, losses.Loss)) or not isinstance(entry.get("config"), dict):  # fmt: skip
        raise ModelFileError(f"compile_config: loss {str(entry)[:120]} is not one minicnn has; load with compile=False and compile again")  # fmt: skip
    config = dict(entry["config"])
    for key, value in _LOSS_NEUTRAL.items():
        if key in config and config[key] == value:
            config.pop(key)
    return _or_advice(lambda: cls(**config), f"loss {kind}")


def _metric_to_keras(m):
    if m.name in metrics_module.NAMES and type(metrics_module.get(m.name)) is type(m):
        return m.name
    return {"module": "keras.metrics", "class_name": type(m).__name__, "config": {"name": m.name, "dtype": "float32"}, "registered_name": None}  # fmt: skip


def _metric_from_keras(entry):
    if isinstance(entry, str):
        return _or_advice(lambda: metrics_module.get(entry), f"metric {entry!r}")
    kind = entry.get("class_name") if isinstance(entry, dict) else None
    cls = getattr(metrics_module, kind, None) if isinstance(kind, str) else None
    if not (isinstance(cls, type) and issubclass(cls, metrics_module.Metric)):
        raise ModelFileError(f"compile_config: metric {str(entry)[:120]} is not one minicnn has; load with compile=False and compile again")  # fmt: skip
    config = dict(entry.get("config") or {})
    return _or_advice(lambda: cls(**config), f"metric {kind}")


def compile_to_keras(model) -> dict | None:
    obj = model.objectives
    if obj is None:
        return None
    keys = model.output_keys()  # several outputs: by name, which Keras takes for any model
    single = len(keys) == 1

    def per_output(values):
        return values[0] if single else dict(zip(keys, values))

    loss = per_output([_loss_to_keras(lo) for lo in obj.losses])
    weights = None if all(w == 1.0 for w in obj.weights) else per_output(obj.weights)
    ms = [[_metric_to_keras(m) for m in ms] for ms in obj.metrics]
    metrics = (ms[0] or None) if single else ({k: m for k, m in zip(keys, ms) if m} or None)
    return {
        "optimizer": optimizer_to_keras(model.optimizer),
        "loss": loss,
        "loss_weights": weights,
        "metrics": metrics,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


def compile_from_keras(model, config: dict) -> None:
    """compile() the model as ``config`` says; every part is made before compile is called."""
    if not isinstance(config, dict):
        raise ModelFileError("compile_config must be an object")
    for key, want in (("weighted_metrics", None), ("steps_per_execution", 1)):
        if config.get(key, want) not in (want, [], {}):
            raise ModelFileError(f"compile_config: minicnn does not support {key}={config[key]!r}; load with compile=False")  # fmt: skip
    unknown = sorted(set(config) - {"optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss"})  # fmt: skip
    if unknown:
        raise ModelFileError(f"compile_config: unknown keys {unknown}")
    optimizer = optimizer_from_keras(config.get("optimizer", "rmsprop"))

    def each(value, make):
        if isinstance(value, dict) and "class_name" not in value:
            return {k: make(v) for k, v in value.items()}
        if isinstance(value, list):
            return [make(v) for v in value]
        return make(value)

    loss = each(config.get("loss"), _loss_from_keras)
    metrics = config.get("metrics")
    if metrics is not None:
        metrics = each(metrics, lambda m: each(m, _metric_from_keras) if m is not None else None)  # fmt: skip
    try:
        model.compile(optimizer, loss, loss_weights=config.get("loss_weights"), metrics=metrics)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"compile_config cannot be applied ({e}); load with compile=False") from None  # fmt: skip
