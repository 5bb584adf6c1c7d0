"""Sequential: the chain case of a model, as in Keras, where a Sequential is a functional model
whose graph is built from its layers once the input shape is known (an ``Input`` first, an
``input_shape=`` on the first layer, ``build(input_shape)``, or the first data it sees)."""

from __future__ import annotations

from minicnn.layers import InputLayer, Layer
from minicnn.layers.base import name_scope
from minicnn.layers.node import KerasTensor
from minicnn.models.model import Model


class Sequential(Model):
    """``Sequential(layers=None, name=None, backend=None)``: backend "numpy" or "cupy" (default:
    the one set by ``minicnn.set_backend`` or MINICNN_BACKEND, else "numpy")."""

    default_name = "sequential"

    def __init__(self, layers=None, backend=None, name: str | None = None, trainable=True):
        self._layers: list[Layer] = []
        self._input_layer: InputLayer | None = None
        self._own_nodes: list = []
        super().__init__(name=name, backend=backend, trainable=trainable)
        for layer in layers or []:
            self.add(layer, rebuild=False)
        self._maybe_rebuild()

    @property
    def layers(self) -> list[Layer]:
        """The layers added, without the InputLayer (as Keras's Sequential.layers)."""
        return list(self._layers)

    def add(self, layer, rebuild: bool = True) -> None:
        """Append a layer (or a model, kept as one layer); an ``Input`` (or an InputLayer) may
        come first."""
        if isinstance(layer, KerasTensor) and isinstance(layer.history[0], InputLayer):
            layer = layer.history[0]
        if not isinstance(layer, Layer):
            raise TypeError(f"Only instances of `keras.Layer` can be added to a Sequential model. Received: {layer!r}")  # fmt: skip
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._layers:
                raise ValueError(
                    f"Sequential model '{self.name}' has already been configured to use input "
                    f"shape {self._input_shape_known()}. You cannot add a different Input layer to it"
                )
            self._input_layer = layer
            return
        if any(layer.name == other.name for other in self._layers):
            raise ValueError(
                f"All layers added to a Sequential model should have unique names. Name "
                f"'{layer.name}' is already the name of a layer in this model. Update the `name` "
                "argument to pass a unique name"
            )
        if not self._layers and self._input_layer is None and _input_shape_of(layer) is not None:
            self._input_layer = InputLayer(shape=_input_shape_of(layer))
        self._layers.append(layer)
        if rebuild:
            self._maybe_rebuild()

    def pop(self, rebuild: bool = True) -> Layer:
        """Remove the last layer and return it."""
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        layer = self._layers.pop()
        if rebuild:
            self._maybe_rebuild()
        return layer

    def _input_shape_known(self):
        return None if self._input_layer is None else self._input_layer.build_shape

    def _maybe_rebuild(self) -> None:
        if self._input_layer is not None and self._layers:
            self._build_graph()

    def build(self, input_shape=None) -> None:
        """Build for inputs of ``input_shape`` ((None, H, W, C), or (H, W, C))."""
        if input_shape is None:
            if self._input_layer is None:
                raise ValueError(f"Sequential model '{self.name}' has no input shape: give build(input_shape) or an Input")  # fmt: skip
        else:
            shape = tuple(input_shape)
            shape = shape[1:] if shape and shape[0] is None else shape
            known = self._input_shape_known()
            if known is not None and tuple(known[1:]) != shape:
                raise ValueError(
                    f"Sequential model '{self.name}' has already been configured to use input "
                    f"shape {known}. You cannot build it with input_shape {(None, *shape)}"
                )
            if known is None:
                self._input_layer = InputLayer(shape=shape)
        if not self._layers:
            raise ValueError(f"Sequential model {self.name} cannot be built because it has no layers. Call `model.add(layer)`.")  # fmt: skip
        self._build_graph()

    def _build_graph(self) -> None:
        """The chain called on the input, each layer built on this model's device."""
        for node in self._own_nodes:  # the calls of an earlier build are not this graph's
            if node in node.layer.inbound_nodes:
                node.layer.inbound_nodes.remove(node)
        self._own_nodes = []
        x = self._input_layer.output
        with name_scope(self.name):  # Keras: "sequential/dense/kernel"
            for layer in self._layers:
                if layer.backend is None:
                    layer.backend = self.backend
                x = layer(x)
                node = x.node
                self._own_nodes.append(node)
        self.set_graph(self._input_layer.output, x)

    def get_config(self) -> dict:
        from minicnn.models.config import sequential_config

        return sequential_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """The Sequential ``get_config`` describes, with new weights (Keras's from_config)."""
        return _from_config("Sequential", config, custom_objects)


def _input_shape_of(layer):
    """The input shape a first layer declares (``input_shape=``, or a built model's)."""
    if isinstance(layer, Model):
        return tuple(layer.input_shape[1:]) if layer.graph is not None and len(layer.inputs) == 1 else None  # fmt: skip
    return layer.input_shape_arg


def _from_config(kind: str, config: dict, custom_objects):
    import contextlib

    from minicnn.models.config import from_config
    from minicnn.saving import custom_object_scope

    if not isinstance(config, dict):
        raise TypeError(f"{kind}.from_config takes the dict get_config gives. Received: {type(config).__name__}")  # fmt: skip
    scope = custom_object_scope(custom_objects) if custom_objects else contextlib.nullcontext()
    with scope:
        return from_config({"class_name": kind, "config": config})
