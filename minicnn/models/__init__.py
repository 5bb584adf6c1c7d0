"""Models: ``Model`` (a graph of layers from ``keras.Input`` tensors to outputs) and
``Sequential`` (its chain), with Keras's methods (``trainer``), what compile sets
(``compile``), the summary table (``summary``) and configs (``config``)."""

from minicnn._missing import not_implemented
from minicnn.models.model import Functional, Model
from minicnn.models.sequential import Sequential


def load_model(path, custom_objects=None, compile: bool = True, safe_mode=True, backend=None):
    """The model saved at ``path`` (Keras's ``keras.models.load_model``): ``minicnn.saving``."""
    from minicnn.saving import load_model as load

    return load(path, backend=backend, compile=compile, custom_objects=custom_objects)


def model_from_json(json_string, custom_objects=None):
    """Keras's ``keras.models.model_from_json``: ``minicnn.keras_format``."""
    from minicnn.keras_format import model_from_json as read

    return read(json_string, custom_objects)


def clone_model(model, input_tensors=None, clone_function=None, call_function=None, recursive=False, **kwargs):  # fmt: skip
    """Keras's ``keras.models.clone_model``: same architecture, new weights."""
    from minicnn.keras_format import clone_model as clone

    return clone(model, input_tensors, clone_function, call_function, recursive, **kwargs)


__all__ = ["Model", "Sequential", "Functional", "load_model", "model_from_json", "clone_model"]

__getattr__ = not_implemented("minicnn.models", "Available: Model, Sequential, load_model, model_from_json, clone_model")  # fmt: skip
