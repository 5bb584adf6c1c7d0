"""Models: ``Model`` (a graph of layers from ``keras.Input`` tensors to outputs) and
``Sequential`` (its chain), with Keras's methods (``trainer``), what compile sets
(``compile``), the summary table (``summary``) and configs (``config``)."""

from minicnn._missing import not_implemented
from minicnn.models.model import Functional, Model
from minicnn.models.sequential import Sequential


def load_model(path, backend=None, compile: bool = True):
    """The model saved at ``path`` (Keras's ``keras.models.load_model``): ``minicnn.saving``."""
    from minicnn.saving import load_model as load

    return load(path, backend=backend, compile=compile)


__all__ = ["Model", "Sequential", "Functional", "load_model"]

__getattr__ = not_implemented("minicnn.models", "Available: Model, Sequential, load_model")
