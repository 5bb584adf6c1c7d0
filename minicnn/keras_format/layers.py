"""Each built-in layer's config as Keras 3 writes it, and back.

``KERAS_LAYERS`` (in ``layer_table``) holds, per class, Keras's config keys in Keras's order. A plain key is one that
minicnn's layer takes too (same name, same meaning). A ``(key, value)`` pair is a Keras argument
minicnn has no argument for, with the one value minicnn computes: it is written so, and a file
holding anything else is refused, naming the layer and the argument. When a minicnn layer learns
such an argument (its ``__init__`` takes it), the value is passed through instead. To support a
new layer, add its row (and check it against Keras with ``tests/test_keras_files.py``).

Initializers travel as Keras's ``{"module": "keras.initializers", "class_name": ...}`` dicts,
activations by name, the dtype as a ``DTypePolicy``.
"""

from __future__ import annotations

import inspect

from minicnn import layers as layers_module
from minicnn.backend import floatx
from minicnn.keras_format import registry
from minicnn.keras_format.errors import ModelFileError
from minicnn.keras_format.initializers import initializer_from_keras, initializer_to_keras
from minicnn.keras_format.layer_table import KERAS_LAYERS as KERAS_LAYERS

# Keras writes a regularizer or constraint as {module, class_name, config, registered_name}
_OBJECT_MODULES = {"_regularizer": "keras.regularizers", "_constraint": "keras.constraints"}
# Keras keys read but never passed on (Keras 3 writes them for every layer or input)
_INPUT_NEUTRAL = {"sparse": False, "ragged": False, "optional": False}


def dtype_policy(name: str | None = None) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name or floatx()}, "registered_name": None}  # fmt: skip


def _initializer_of(layer, key: str):
    if hasattr(layer, key):
        return getattr(layer, key)
    own, stem = getattr(layer, "initializers", {}), key.removesuffix("_initializer")
    return own.get(stem, own.get(f"{stem}_kernel"))  # SeparableConv2D's depthwise_kernel


# -- one layer, minicnn -> Keras ---------------------------------------------------------------


def layer_to_keras(layer) -> dict:
    """``{"module", "class_name", "config", "registered_name"[, "build_config"]}`` of a leaf
    layer, as Keras's ``serialize_keras_object`` writes it."""
    kind = type(layer).__name__
    if kind == "Lambda" and isinstance(layer, layers_module.Lambda):
        raise ValueError(f'Lambda layer "{layer.name}" cannot be saved: its function is code, and minicnn files never carry code to run. Write it as a Layer subclass with get_config')  # fmt: skip
    if kind == "InputLayer":
        config = {"batch_shape": [None, *layer.shape], "dtype": floatx(), "sparse": False, "ragged": False, "name": layer.name, "optional": False}  # fmt: skip
        return {"module": "keras.layers", "class_name": "InputLayer", "config": config, "registered_name": None}  # fmt: skip
    if layers_module._REGISTRY.get(kind) is not type(layer):
        return _custom_to_keras(layer)
    spec = KERAS_LAYERS.get(kind)
    if spec is None:
        raise ValueError(f'Layer "{layer.name}" ({kind}) cannot be written in Keras\'s format yet: give it a row in minicnn.keras_format.layers.KERAS_LAYERS')  # fmt: skip
    owner = f'Layer "{layer.name}" ({kind})'
    own = layer.get_config()
    config = {"name": layer.name, "trainable": layer.trainable, "dtype": dtype_policy()}
    for key in spec.keys:
        if isinstance(key, tuple):  # minicnn's get_config leaves out a Keras default
            key, value = key
            config[key] = _object_to_keras(key, own.get(key, value))
        elif key.endswith("_initializer"):
            config[key] = initializer_to_keras(_initializer_of(layer, key), owner, key)
        else:
            config[key] = _as_given(kind, key, own[key])
    for key, value in spec.neutral.items():  # keys Keras writes only when they are set
        if key not in config and own.get(key, value) != value:
            config[key] = _object_to_keras(key, own[key])
    if spec.bare:
        config = {"name": layer.name, "dtype": floatx(), **{k: v for k, v in config.items() if k not in ("name", "trainable", "dtype")}}  # fmt: skip
    entry = {"module": "keras.layers", "class_name": kind, "config": config, "registered_name": None}  # fmt: skip
    if spec.builds and layer.build_shape is not None:
        entry["build_config"] = {"input_shape": _shape_list(layer.build_shape)}
    return entry


def _object_to_keras(key: str, value):
    """A regularizer or constraint (minicnn's {class_name, config}) in Keras's layout."""
    module = next((m for end, m in _OBJECT_MODULES.items() if key.endswith(end)), None)
    if module is None or not isinstance(value, dict):
        return value
    return {"module": module, "class_name": value["class_name"], "config": value.get("config", {}), "registered_name": None}  # fmt: skip


def _as_given(kind: str, key: str, value):
    """Keras keeps a translation's or zoom's factor as it was given: f for [-f, f]."""
    if kind in ("RandomTranslation", "RandomZoom") and key.endswith("_factor") and isinstance(value, (list, tuple)):  # fmt: skip
        lo, hi = value
        return hi if lo == -hi else list(value)
    return value


def _custom_to_keras(layer) -> dict:
    cls = type(layer)
    name = registry.get_registered_name(cls)
    config = layer.get_config()
    if "dtype" not in config:  # Keras's Layer.get_config holds the policy after trainable
        at = list(config).index("trainable") + 1 if "trainable" in config else 0
        items = list(config.items())
        config = dict([*items[:at], ("dtype", dtype_policy()), *items[at:]])
    entry = {"module": cls.__module__, "class_name": cls.__name__, "config": config, "registered_name": name}  # fmt: skip
    if layer.build_shape is not None:
        entry["build_config"] = {"input_shape": _shape_list(layer.build_shape)}
    return entry


def _shape_list(shape):
    return [_shape_list(s) for s in shape] if isinstance(shape, list) else list(shape)


def call_kwargs(layer, training) -> dict:
    """The keyword arguments Keras records on a node of ``layer``."""
    spec = KERAS_LAYERS.get(type(layer).__name__)
    kwargs = dict(spec.call) if spec is not None else {}
    if type(layer).__name__ in ("Sequential", "Functional"):
        kwargs["mask"] = None
    if training is not None:
        kwargs = {"training": bool(training), **{k: v for k, v in kwargs.items() if k != "training"}}  # fmt: skip
    return kwargs


# -- one layer, Keras -> minicnn ---------------------------------------------------------------


def _accepted(cls) -> set:
    """The argument names a minicnn layer's constructors take explicitly."""
    names = set()
    for c in cls.__mro__:
        init = c.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self":
                names.add(p.name)
    return names


def _same(key: str, got, want) -> bool:
    if key == "renorm_momentum":  # read by Keras only with renorm=True, which is refused
        return isinstance(got, (int, float))
    if key == "data_format":
        return got in (None, "channels_last")
    if isinstance(want, list) and isinstance(got, int) and not isinstance(got, bool):
        return [got] * len(want) == want
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return float(got) == want
    return type(got) is type(want) and got == want


def layer_from_keras(entry: dict, custom_objects=None):
    """A minicnn layer (unbuilt) from a Keras layer entry; a ModelFileError names the layer and
    the argument minicnn does not have."""
    kind, config = entry.get("class_name"), entry.get("config")
    if not isinstance(kind, str) or not isinstance(config, dict):
        raise ModelFileError(f"A layer entry needs a class_name and a config. Received: {str(entry)[:200]}")  # fmt: skip
    name = config.get("name", entry.get("name"))
    owner = f'Layer "{name}" ({kind})'
    custom = _custom_class(entry, custom_objects)
    if custom is not None:
        config = dict(config)
        if isinstance(config.get("dtype"), dict):  # Keras's DTypePolicy: minicnn takes its name
            config["dtype"] = (config["dtype"].get("config") or {}).get("name")
        try:
            return custom.from_config(config)
        except (TypeError, ValueError, KeyError) as e:
            raise ModelFileError(f"{owner}: {type(e).__name__}: {e}") from None
    if kind == "InputLayer":
        return _input_from_keras(config, owner)
    spec, cls = KERAS_LAYERS.get(kind), layers_module._REGISTRY.get(kind)
    if spec is None or cls is None or not _is_keras_module(entry):
        known = sorted(k for k in KERAS_LAYERS if k in layers_module._REGISTRY)
        raise ModelFileError(f"{owner}: minicnn has no such layer (it has InputLayer, {', '.join(known)}); a custom layer loads when its class is registered (minicnn.saving.register_keras_serializable) or passed in custom_objects")  # fmt: skip
    accepted = _accepted(cls)
    kwargs = {"name": name, "trainable": config.get("trainable", True)}
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name")
    if dtype is not None:
        kwargs["dtype"] = dtype
    keys = {k if isinstance(k, str) else k[0] for k in spec.keys} | set(spec.neutral)
    for key, value in config.items():
        if key in ("name", "trainable", "dtype"):
            continue
        if key in accepted:
            kwargs[key] = initializer_from_keras(value, owner, key) if key.endswith("_initializer") else value  # fmt: skip
        elif key in spec.neutral:
            if not _same(key, value, spec.neutral[key]):
                raise ModelFileError(f"{owner}: minicnn does not support {key}={value!r} (it computes {key}={spec.neutral[key]!r} only)")  # fmt: skip
        elif key not in keys:
            raise ModelFileError(f"{owner}: unknown argument {key}={value!r}")
        else:
            raise ModelFileError(f"{owner}: minicnn does not support the argument {key}={value!r}")  # fmt: skip
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # the layer's own message may name it already
        raise ModelFileError(str(e) if str(e).startswith(owner) else f"{owner}: {e}") from None


def _input_from_keras(config: dict, owner: str):
    for key, value in config.items():
        if key in _INPUT_NEUTRAL and value != _INPUT_NEUTRAL[key]:
            raise ModelFileError(f"{owner}: minicnn does not support {key}={value!r}")
        if key not in (*_INPUT_NEUTRAL, "batch_shape", "shape", "batch_size", "dtype", "name"):
            raise ModelFileError(f"{owner}: unknown argument {key}={value!r}")
    shape = config.get("batch_shape")
    if not isinstance(shape, list) or not shape or shape[0] is not None:
        raise ModelFileError(f"{owner}: batch_shape must be a list whose batch size is None. Received: batch_shape={shape!r}")  # fmt: skip
    try:
        return layers_module.InputLayer(shape=tuple(shape[1:]), dtype=config.get("dtype"), name=config.get("name"))  # fmt: skip
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{owner}: {e}") from None


def _is_keras_module(entry: dict) -> bool:
    module = entry.get("module", "keras.layers")
    return module is None or module == "keras" or (isinstance(module, str) and module.startswith("keras."))  # fmt: skip


def _custom_class(entry: dict, custom_objects):
    """A class from custom_objects, a scope or the registry that the entry names; None for a
    built-in; never anything a file names alone."""
    for key in (entry.get("registered_name"), entry.get("class_name")):
        if isinstance(key, str):
            cls = registry.get_registered_object(key, custom_objects)
            if cls is not None:
                if not (isinstance(cls, type) and issubclass(cls, layers_module.Layer)):
                    raise ModelFileError(f'Layer "{key}": custom object {cls!r} is not a minicnn Layer subclass')  # fmt: skip
                return cls
    return None
