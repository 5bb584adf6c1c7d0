"""Keras 3's own files, both ways, without pickle: ``.keras`` (``archive``), ``.weights.h5``
(``weights``), the model config JSON (``models``, ``layers``, ``compiled``), and the custom
objects a config may name (``registry``). h5py is imported only when a file is read or written.

    model.save("x.keras")                       # Keras's keras.models.load_model opens it
    minicnn.models.load_model("keras_made.keras")
    model.save_weights("x.weights.h5"); model.load_weights("x.weights.h5")
    model.to_json(); minicnn.models.model_from_json(json_string)
"""

from __future__ import annotations

import json

from minicnn.backend import rng, set_rng_state
from minicnn.keras_format.errors import READ_ERRORS, ModelFileError
from minicnn.keras_format.registry import (
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_keras_serializable,
)

__all__ = [
    "ModelFileError",
    "to_json",
    "model_from_json",
    "clone_model",
    "register_keras_serializable",
    "custom_object_scope",
    "get_custom_objects",
    "get_registered_name",
    "get_registered_object",
]


def keep_rng(read):
    """Run ``read()`` and put minicnn's generator back after: building layers draws initial
    weights that a file then replaces, and loading must not move the program's random stream."""
    state = rng().bit_generator.state
    try:
        return read()
    finally:
        set_rng_state(state)


def to_json(model, **kwargs) -> str:
    """Keras's ``model.to_json()``: the model's config (architecture and compile settings) as
    a JSON string; ``kwargs`` go to ``json.dumps``."""
    from minicnn.keras_format.archive import model_config

    return json.dumps(model_config(model), **kwargs)


def model_from_json(json_string, custom_objects=None, backend=None):
    """Keras's ``keras.models.model_from_json``: a fresh model (new weights) from ``to_json``'s
    string, compiled when the string says how."""
    from minicnn.keras_format import archive, compiled

    data = json_string.encode("utf-8") if isinstance(json_string, str) else bytes(json_string)
    if len(data) > archive.MAX_JSON:
        raise ModelFileError(f"The JSON is {len(data):,} bytes, more than a model config needs")
    config = archive.parse_json(data, "The JSON")
    spec, _ = archive.build(config, "model_from_json", backend, custom_objects)

    def make():
        model = spec.build(backend)
        if isinstance(config, dict) and config.get("compile_config"):
            compiled.compile_from_keras(model, config["compile_config"], custom_objects)
        return model

    return _wrap(make)


def _wrap(make):
    try:
        return make()
    except ModelFileError:
        raise
    except (*READ_ERRORS, ArithmeticError) as e:
        raise ModelFileError(f"The model cannot be rebuilt ({type(e).__name__}: {e})") from None


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False, **kwargs):  # fmt: skip
    """Keras's ``keras.models.clone_model``: the same architecture with new weights (drawn
    afresh by each layer's initializers), not compiled. ``input_tensors``, ``clone_function``
    and ``call_function`` are not supported."""
    given = {"input_tensors": input_tensors, "clone_function": clone_function, "call_function": call_function}  # fmt: skip
    given.update(kwargs)
    unsupported = sorted(k for k, v in given.items() if v is not None)
    if unsupported:
        raise ValueError(f"clone_model: {', '.join(unsupported)} {'is' if len(unsupported) == 1 else 'are'} not supported; clone_model(model) copies the architecture with new weights")  # fmt: skip
    from minicnn.keras_format import archive
    from minicnn.models import Model

    config = archive.model_config(model, include_compile=False)
    own = {type(x).__name__: type(x) for x in model.leaf_layers()}
    own.update({type(x).__name__: type(x) for x in _nested(model, Model)})
    custom = {k: v for k, v in own.items() if k not in _builtin_names()}
    spec, _ = archive.build(config, "clone_model", model.backend.name, custom)
    return _wrap(lambda: spec.build(model.backend.name))


def _nested(model, cls):
    return [x for x in model.layers if isinstance(x, cls)]


def _builtin_names() -> set:
    from minicnn import layers

    return set(layers._REGISTRY) | {"Sequential", "Functional", "Model"}
