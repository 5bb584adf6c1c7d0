"""A model as JSON-able config and back, in Keras 3's layout:

- Functional: ``{"name", "trainable", "layers": [{"class_name", "config", "name",
  "inbound_nodes": [{"args": [...], "kwargs": {...}}]}], "input_layers", "output_layers"}``,
  where a tensor in ``args`` is ``{"class_name": "__keras_tensor__", "config": {"shape",
  "dtype", "keras_history": [layer name, node index, tensor index]}}``;
- Sequential: ``{"name", "trainable", "layers": [the InputLayer, then each layer],
  "build_input_shape"}``;
- a model inside a model is a layer entry whose class is "Functional" or "Sequential".

Rebuilding walks the same structure twice: once with shapes only (``cost``: how many
weight bytes the model will hold, so a file can be refused before anything is allocated), then
for real, calling each layer on symbolic tensors in an order where its inputs exist.
"""

from __future__ import annotations

import math

from minicnn import layers as layers_module
from minicnn.layers import InputLayer

MODEL_CLASSES = ("Functional", "Model", "Sequential")


def _entry(layer) -> dict:
    kind = type(layer).__name__
    if kind == "Lambda":
        raise ValueError(
            f'Lambda layer "{layer.name}" cannot be saved: its function is code, and minicnn '
            "files never carry code to run. Write it as a Layer subclass with get_config"
        )
    if kind not in MODEL_CLASSES and kind not in layers_module._REGISTRY:
        raise ValueError(f'Layer "{layer.name}" ({kind}) cannot be saved: minicnn knows its built-in layers only')  # fmt: skip
    kind = kind if kind == "Sequential" or kind not in MODEL_CLASSES else "Functional"
    return {"class_name": kind, "config": layer.get_config()}


def functional_config(model) -> dict:
    ops = sorted({n.layer.op_name for n in model.graph.nodes if getattr(n.layer, "is_op", False)})
    if ops:
        raise ValueError(f"Model '{model.name}' calls keras.ops ({', '.join(ops)}) outside a layer: minicnn cannot save such a graph yet; put them in a Layer subclass with get_config")  # fmt: skip
    index = model.graph.node_index()
    nodes = [t.node for t in model.inputs] + model.graph.nodes

    def ref(t) -> dict:
        history = [t.history[0].name, index[id(t.node)], t.node.outputs.index(t)]
        return {"class_name": "__keras_tensor__", "config": {"shape": list(t.shape), "dtype": t.dtype, "keras_history": history}}  # fmt: skip

    entries = []
    for layer in model.layers:
        inbound = []
        for node in (n for n in nodes if n.layer is layer and not isinstance(n.layer, InputLayer)):
            args = ref(node.inputs[0]) if node.single else [ref(t) for t in node.inputs]
            kwargs = {} if node.training is None else {"training": node.training}
            inbound.append({"args": [args], "kwargs": kwargs})
        entries.append({**_entry(layer), "name": layer.name, "inbound_nodes": inbound})

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


def sequential_config(model) -> dict:
    entries = [_entry(layer) for layer in model.layers]
    if model._input_layer is not None:
        entries.insert(0, _entry(model._input_layer))
    config = {"name": model.name, "trainable": model.trainable, "layers": entries}
    if model.graph is not None:
        config["build_input_shape"] = list(model.input_shape)
    return config


# -- back from a config ------------------------------------------------------------------------


def from_config(config: dict, backend=None):
    """The model a ``{"class_name", "config"}`` entry (or a legacy Sequential config) holds."""
    if "class_name" not in config:  # format version 1: a Sequential's own config
        return _sequential(_legacy(config), backend)
    kind = config["class_name"]
    if kind == "Sequential":
        return _sequential(config["config"], backend)
    if kind in ("Functional", "Model"):
        return _functional(config["config"], backend)
    raise ValueError(f"Unknown model class {kind!r}: expected one of {MODEL_CLASSES}")


def _legacy(config: dict) -> dict:
    layers = list(config["layers"])
    if config.get("input_shape") is not None:
        layers.insert(0, {"class_name": "InputLayer", "config": {"shape": config["input_shape"], "name": None}})  # fmt: skip
    return {"name": config.get("name", "sequential"), "layers": layers}


def _layer(entry: dict, backend):
    if entry.get("class_name") in MODEL_CLASSES:
        return from_config(entry, backend)
    return layers_module.deserialize(entry)


def _sequential(config: dict, backend):
    from minicnn.models.sequential import Sequential

    model = Sequential(name=config.get("name"), backend=backend, trainable=config.get("trainable", True))  # fmt: skip
    for entry in config["layers"]:
        model.add(_layer(entry, backend), rebuild=False)
    if config.get("build_input_shape") is not None and model._input_layer is None:
        model.build(tuple(config["build_input_shape"]))
    else:
        model._maybe_rebuild()
    return model


def _functional(config: dict, backend):
    from minicnn.models.model import Model

    made = {}
    for entry in config["layers"]:
        if entry["name"] in made:
            raise ValueError(f"The layer name {entry['name']!r} appears twice in the config")
        made[entry["name"]] = _layer(entry, backend)
    outputs = {(n, 0): [x.output] for n, x in made.items() if isinstance(x, InputLayer)}
    _walk(config, made, lambda layer, args, kwargs: layer(args, **kwargs), outputs)
    model = Model(_rebuild(config["input_layers"], outputs), _rebuild(config["output_layers"], outputs), name=config.get("name"), backend=backend)  # fmt: skip
    model.trainable = config.get("trainable", True)
    return model


def _walk(config: dict, made: dict, call, outputs: dict) -> dict:
    """Every node of the config, each once its inputs exist, into ``outputs`` ({(layer name,
    node index): its outputs}, the InputLayers' given); ``call(layer, args, kwargs)`` makes a
    node's outputs."""
    pending = [
        (e["name"], k, node)
        for e in config["layers"]
        for k, node in enumerate(e.get("inbound_nodes", []))
    ]
    while pending:
        left = []
        for name, k, node in pending:
            args = node["args"][0] if node["args"] else None
            refs = args if isinstance(args, list) else [args]
            keys = [tuple(r["config"]["keras_history"][:2]) for r in refs]
            if not all(key in outputs for key in keys) or (k and (name, k - 1) not in outputs):
                left.append((name, k, node))
                continue
            tensors = [outputs[key][r["config"]["keras_history"][2]] for key, r in zip(keys, refs)]
            out = call(made[name], tensors if isinstance(args, list) else tensors[0], dict(node.get("kwargs", {})))  # fmt: skip
            outputs[(name, k)] = out if isinstance(out, list) else [out]
        if len(left) == len(pending):
            raise ValueError(f"The config's graph cannot be rebuilt: the inputs of {[n for n, *_ in left]} are never made")  # fmt: skip
        pending = left
    return outputs


def _rebuild(struct, outputs: dict):
    def one(h):
        return outputs[(h[0], h[1])][h[2]]

    if isinstance(struct, dict):
        return {k: one(h) for k, h in struct.items()}
    if struct and isinstance(struct[0], list):
        return [one(h) for h in struct]
    return one(struct)


# -- the weights a config asks for, without making any ----------------------------------------


def _flops(layer, shapes, out) -> float:
    """What one image costs in one call of ``layer``, from shapes alone: 2 x multiply-adds for
    convolutions and Dense, window reads for pools, one pass per value otherwise."""
    per = lambda s: math.prod(d for d in s[1:] if d is not None)  # noqa: E731
    ins = shapes if isinstance(shapes, list) else [shapes]
    outs = out if isinstance(out, list) else [out]
    kind = type(layer).__name__
    if kind == "Conv2D":
        return 2.0 * per(outs[0]) * math.prod(layer.kernel_size) * ins[0][-1]
    if kind == "Dense":
        return 2.0 * per(ins[0]) * layer.units
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return float(per(outs[0]) * math.prod(layer.pool_size))
    return float(sum(per(s) for s in ins) + sum(per(s) for s in outs))


def cost(entry: dict, input_shapes=None, itemsize: int = 4) -> tuple[int, float, object]:
    """(bytes of every weight the model in ``entry`` holds, the work of one image through it,
    its output shapes), found by propagating shapes through fresh, unbuilt layers: nothing
    is allocated, and every layer checks its input as it does when built."""
    if "class_name" not in entry:
        entry = {"class_name": "Sequential", "config": _legacy(entry)}
    kind, config = entry["class_name"], entry["config"]
    total, flops = 0, 0.0
    counted: dict = {}  # id -> the layer itself, kept alive: a freed layer's id is reused

    def weigh(layer, shapes):
        nonlocal total, flops
        if isinstance(layer, dict):  # a nested model: its bytes counted once, its work per call
            size, work, out = cost(layer, shapes, itemsize)
            flops += work
            if id(layer) not in counted:
                counted[id(layer)] = layer
                total += size
            return out
        if id(layer) not in counted:
            counted[id(layer)] = layer
            total += sum(math.prod(s) for s in layer.weight_shapes(shapes).values()) * itemsize
        out = layer.compute_output_shape(shapes)
        flops += _flops(layer, shapes, out)
        return out

    if kind == "Sequential":
        shape = (
            tuple(config["build_input_shape"]) if config.get("build_input_shape") else input_shapes
        )
        for e in config["layers"]:
            if e.get("class_name") == "InputLayer":
                shape = (None, *e["config"]["shape"])
                continue
            if shape is None:
                return 0, 0.0, None  # never built: no weights yet
            shape = weigh(e if e.get("class_name") in MODEL_CLASSES else layers_module.deserialize(e), tuple(shape))  # fmt: skip
        return total, flops, shape
    made = {e["name"]: (e if e.get("class_name") in MODEL_CLASSES else layers_module.deserialize(e)) for e in config["layers"]}  # fmt: skip
    shapes = {}
    for name, layer in made.items():
        if isinstance(layer, InputLayer):
            shapes[(name, 0)] = [layer.build_shape]

    def call(layer, args, kwargs):
        arg_shapes = [tuple(a) for a in args] if isinstance(args, list) else tuple(args)
        out = weigh(layer, arg_shapes)
        return out if isinstance(out, list) else [out]

    outputs = _walk(config, made, call, shapes)
    return total, flops, _rebuild(config["output_layers"], outputs)
