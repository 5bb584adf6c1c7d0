"""A whole model as Keras 3's ``serialize_keras_object`` writes it, and back.

- Sequential: ``{"module": "keras", "class_name": "Sequential", "config": {"name",
  "trainable", "dtype", "layers": [the InputLayer, each layer], "build_input_shape"}, ...}``;
- Functional: ``{"module": "keras.src.models.functional", "class_name": "Functional",
  "config": {"name", "trainable", "layers": [... each with "name" and "inbound_nodes"],
  "input_layers", "output_layers"}, "registered_name": "Functional", ...}``;
- a model inside a model is one of its layer entries.

Reading runs in two passes over the same layer objects: shapes only (``cost``: the bytes of
weights the model will hold and its work per image, so a file can be refused before anything is
allocated),
then the symbolic calls that build it. The graph walk is minicnn's own (``models.config``).
"""

from __future__ import annotations

import math

from minicnn import layers as layers_module
from minicnn.backend import floatx
from minicnn.keras_format import layers as keras_layers
from minicnn.keras_format.errors import ModelFileError
from minicnn.models import Model, Sequential
from minicnn.models import config as model_config

MODEL_KINDS = ("Sequential", "Functional", "Model")
MAX_LAYERS = 10_000


def _is_model(layer) -> bool:
    return isinstance(layer, Model)


def model_to_keras(model) -> dict:
    """The model's entry, without compile_config (``Trainer.get_compile_config``)."""
    if model.graph is None:
        raise ValueError(f"Model '{model.name}' has no input shape yet: build it before saving")
    if isinstance(model, Sequential):
        entries = [layer_entry(layer) for layer in model.layers]
        if model._input_layer is not None:
            entries.insert(0, keras_layers.layer_to_keras(model._input_layer))
        config = {"name": model.name, "trainable": model.trainable, "dtype": keras_layers.dtype_policy(), "layers": entries, "build_input_shape": list(model.input_shape)}  # fmt: skip
        return {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None, "build_config": {"input_shape": list(model.input_shape)}}  # fmt: skip
    if type(model).__name__ not in ("Functional", "Model"):
        raise ValueError(f"Model '{model.name}' ({type(model).__name__}) cannot be written in Keras's format: minicnn writes Sequential and functional models")  # fmt: skip
    config = _functional_config(model)
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": config, "registered_name": "Functional", "build_config": {"input_shape": None}}  # fmt: skip


def layer_entry(layer) -> dict:
    """A layer's entry; a nested model's holds its compile_config too ({} when not compiled)."""
    if not _is_model(layer):
        return keras_layers.layer_to_keras(layer)
    return {**model_to_keras(layer), "compile_config": layer.get_compile_config()}


def _functional_config(model) -> dict:
    ops = sorted({n.layer.op_name for n in model.graph.nodes if getattr(n.layer, "is_op", False)})
    if ops:
        raise ValueError(f"Model '{model.name}' calls keras.ops ({', '.join(ops)}) outside a layer: minicnn cannot write such a graph in Keras's format yet; put them in a Layer subclass with get_config")  # fmt: skip
    index = model.graph.node_index()
    nodes = [t.node for t in model.inputs] + model.graph.nodes

    def ref(t) -> dict:
        history = [t.history[0].name, index[id(t.node)], t.node.outputs.index(t)]
        return {"class_name": "__keras_tensor__", "config": {"shape": list(t.shape), "dtype": floatx(), "keras_history": history}}  # fmt: skip

    entries = []
    for layer in model.layers:
        inbound = []
        for node in (n for n in nodes if n.layer is layer and n.inputs):
            args = ref(node.inputs[0]) if node.single else [ref(t) for t in node.inputs]
            inbound.append({"args": [args], "kwargs": keras_layers.call_kwargs(layer, node.training)})  # fmt: skip
        entry = layer_entry(layer)
        entries.append({**entry, "name": layer.name, "inbound_nodes": inbound})

    def struct(tensors, shape):
        refs = [ref(t)["config"]["keras_history"] for t in tensors]
        if shape is None:
            return refs[0]
        return dict(zip(shape, refs)) if isinstance(shape, list) else refs

    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": entries,
        "input_layers": struct(model.inputs, model._input_struct),
        "output_layers": struct(model.outputs, model._output_struct),
    }


# -- back: a Keras entry -> layer objects, then a model -----------------------------------------


class _Node(dict):
    """A node of a Keras config with its kwargs made minicnn's: {"args": [...], "kwargs": {}}."""


def _model_kind(entry: dict):
    kind = entry.get("class_name")
    return kind if kind in MODEL_KINDS and entry.get("module", "keras") in (None, "keras", "keras.src.models.functional", "keras.models", "keras.src.models.sequential", "keras.src.models.model") else None  # fmt: skip


class Spec:
    """A model read from a Keras entry: its kind, config and unbuilt layers by name (nested
    models as Specs), before anything is built."""

    def __init__(self, entry: dict, custom_objects, depth: int = 0):
        if depth > 32:
            raise ModelFileError("Models are nested more than 32 deep")
        self.kind = _model_kind(entry)
        config = entry.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ModelFileError(f"A {self.kind} entry needs a config with a list of layers")
        if len(config["layers"]) > MAX_LAYERS:
            raise ModelFileError(f"The model has {len(config['layers'])} layers, more than {MAX_LAYERS}")  # fmt: skip
        self.name, self.config = config.get("name"), config
        self.trainable = config.get("trainable", True)
        if not isinstance(self.trainable, bool) or not (self.name is None or isinstance(self.name, str)):  # fmt: skip
            raise ModelFileError(f"Model {self.name!r}: name must be a string and trainable a bool")
        self.entries = [e for e in config["layers"] if isinstance(e, dict) or _bad(e)]
        self.layers = {}  # name -> layer or Spec, in the config's order
        for e in self.entries:
            if _model_kind(e):
                made = Spec(e, custom_objects, depth + 1)
            else:
                made = keras_layers.layer_from_keras(e, custom_objects)
            name = made.name if self.kind == "Sequential" else e.get("name")
            if not isinstance(name, str) or name in self.layers:
                raise ModelFileError(f"Model {self.name!r}: the layer name {name!r} is missing or appears twice")  # fmt: skip
            self.layers[name] = made
            if self.kind != "Sequential":
                e["inbound_nodes"] = [self._node(name, made, n) for n in _list(e.get("inbound_nodes", []), name)]  # fmt: skip

    def _node(self, name: str, layer, node) -> dict:
        if not isinstance(node, dict) or not isinstance(node.get("args"), list) or len(node["args"]) != 1:  # fmt: skip
            raise ModelFileError(f'Layer "{name}": each inbound node needs "args" holding one tensor or one list of tensors')  # fmt: skip
        kwargs = dict(node.get("kwargs") or {})
        kind = layer.kind if isinstance(layer, Spec) else type(layer).__name__
        spec = keras_layers.KERAS_LAYERS.get(kind)
        default = spec.call.get("training") if spec is not None else None
        out = {}
        for k, v in kwargs.items():
            if k == "mask" and v is None:
                continue
            if k == "training" and isinstance(v, bool):
                if v != default:  # Keras records a call's default; anything else the user fixed
                    out[k] = v
                continue
            raise ModelFileError(f'Layer "{name}": minicnn does not support the call argument {k}={v!r}')  # fmt: skip
        for arg in _flat_refs(node["args"][0], name):
            h = arg.get("config", {}).get("keras_history")
            if not (isinstance(h, list) and len(h) == 3 and isinstance(h[0], str) and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < MAX_LAYERS for i in h[1:])):  # fmt: skip
                raise ModelFileError(f'Layer "{name}": an input tensor has no valid keras_history. Received: {str(arg)[:200]}')  # fmt: skip
        return {"args": node["args"], "kwargs": out}

    def count(self) -> int:
        """How many layers, nested ones included."""
        return sum(x.count() + 1 if isinstance(x, Spec) else 1 for x in self.layers.values())

    # -- shapes only -----------------------------------------------------------------------------

    def cost(self, input_shapes=None, itemsize: int = 4, counted=None) -> tuple[int, float, object]:
        """(bytes of every weight this model will hold, the work of one image through it, its
        output shapes), from unbuilt layers as ``models.config.cost`` counts them."""
        counted = set() if counted is None else counted
        total, flops = 0, 0.0

        def weigh(layer, shapes):
            nonlocal total, flops
            if isinstance(layer, Spec):
                size, work, out = layer.cost(shapes, itemsize, counted)
                total, flops = total + size, flops + work
                return out
            if id(layer) not in counted:
                counted.add(id(layer))
                total += sum(math.prod(s) for s in layer.weight_shapes(shapes).values()) * itemsize
            out = layer.compute_output_shape(shapes)
            flops += model_config._flops(layer, shapes, out)
            return out

        if self.kind == "Sequential":
            shape = tuple(self.config["build_input_shape"]) if self.config.get("build_input_shape") else input_shapes  # fmt: skip
            for layer in self.layers.values():
                if isinstance(layer, layers_module.InputLayer):
                    shape = layer.build_shape
                    continue
                if shape is None:
                    raise ModelFileError(f"Sequential {self.name!r} has no input shape")
                shape = weigh(layer, tuple(shape))
            return total, flops, shape
        shapes = {(n, 0): [x.build_shape] for n, x in self.layers.items() if isinstance(x, layers_module.InputLayer)}  # fmt: skip

        def call(layer, args, kwargs):
            arg_shapes = [tuple(a) for a in args] if isinstance(args, list) else tuple(args)
            out = weigh(layer, arg_shapes)
            return out if isinstance(out, list) else [out]

        outputs = model_config._walk(self.config, self.layers, call, shapes)
        return total, flops, model_config._rebuild(self.config["output_layers"], outputs)

    # -- for real ---------------------------------------------------------------------------------

    def build(self, backend=None):
        """The model, every layer built on symbolic inputs (weights drawn, not yet loaded)."""
        made = {n: (x.build(backend) if isinstance(x, Spec) else x) for n, x in self.layers.items()}  # fmt: skip
        if self.kind == "Sequential":
            model = Sequential(name=self.name, backend=backend, trainable=self.trainable)
            for layer in made.values():
                model.add(layer, rebuild=False)
            if self.config.get("build_input_shape") is not None and model._input_layer is None:
                model.build(tuple(self.config["build_input_shape"]))
            else:
                model._maybe_rebuild()
            if model.graph is None:
                raise ModelFileError(f"Sequential {self.name!r} has no input shape")
            return model
        outputs = {(n, 0): [x.output] for n, x in made.items() if isinstance(x, layers_module.InputLayer)}  # fmt: skip
        model_config._walk(self.config, made, lambda layer, args, kwargs: layer(args, **kwargs), outputs)  # fmt: skip
        inputs = model_config._rebuild(self.config["input_layers"], outputs)
        model = Model(inputs, model_config._rebuild(self.config["output_layers"], outputs), name=self.name, backend=backend)  # fmt: skip
        model.trainable = self.trainable
        return model


def _bad(e):
    raise ModelFileError(f"Each layer entry must be an object. Received: {str(e)[:200]}")


def _list(value, name: str) -> list:
    if not isinstance(value, list):
        raise ModelFileError(f'Layer "{name}": inbound_nodes must be a list')
    return value


def _flat_refs(args, name: str) -> list:
    refs = args if isinstance(args, list) else [args]
    if not refs or not all(isinstance(r, dict) and r.get("class_name") == "__keras_tensor__" and isinstance(r.get("config"), dict) for r in refs):  # fmt: skip
        raise ModelFileError(f'Layer "{name}": a node\'s args must be Keras tensors')
    return refs


def read_spec(entry: dict, custom_objects=None) -> Spec:
    """The model an entry describes, checked and unbuilt: only a Sequential or a functional
    model, named by Keras's class names (a subclassed model's own class is refused)."""
    if not isinstance(entry, dict) or not _model_kind(entry):
        kind = entry.get("class_name") if isinstance(entry, dict) else type(entry).__name__
        raise ModelFileError(f"minicnn reads Sequential and functional models. Received: class_name={kind!r} (module {entry.get('module') if isinstance(entry, dict) else None!r})")  # fmt: skip
    return Spec(entry, custom_objects)
