"""The weights, and the optimizer's variables, in Keras 3's HDF5 layout (``model.weights.h5``
inside a ``.keras`` file, or a ``.weights.h5`` file):

    vars                                 the model's own group (no datasets), attrs name
    layers/<class>[_k]/vars/0, 1, ...    each layer's weights in Keras's order; the group is
                                         named by the layer's class in snake case, numbered
                                         _1, _2, ... in the order of model.layers
    layers/sequential/layers/conv2d/...  a nested model, the same walk inside it
    optimizer/vars/0, 1, ...             iterations, the learning rate (unless a schedule),
                                         then the optimizer's variables (``slot_layout``)

Reading checks every dataset (a plain, contiguous float array in the file itself: no links,
no external or virtual storage) against the shape the architecture gives it before reading a
byte of it, and hands back arrays; nothing is assigned here.
"""

from __future__ import annotations

import numpy as np

from minicnn import layers as layers_module
from minicnn.backend import floatx
from minicnn.keras_format.compiled import KERAS_OPTIMIZERS
from minicnn.keras_format.errors import ModelFileError
from minicnn.keras_format.naming import snake_case
from minicnn.models import Model, Sequential

_FLOATS = (np.dtype("<f4"), np.dtype("<f8"))


def layer_groups(model, prefix: str = "", seen=None) -> list[tuple[str, object]]:
    """(h5 group, layer or model) for the model and every layer under it, in Keras's walk
    (a layer reached twice is written once, where it is first reached; its name is used up)."""
    seen = set() if seen is None else seen
    if model.traces_call():  # subclassed: its layers are found by attribute, as a custom layer's
        return _leaf_groups(model, prefix, seen)
    out = [(prefix + "vars", model)]
    seen.add(id(model))
    used: dict[str, int] = {}
    layers = model.layers if isinstance(model, Sequential) else model.layers
    for layer in layers:
        base = snake_case(type(layer).__name__)
        name = base if base not in used else f"{base}_{used[base] + 1}"
        used[base] = used.get(base, -1) + 1
        if id(layer) in seen:
            continue
        path = f"{prefix}layers/{name}/"
        if isinstance(layer, Model):
            out += layer_groups(layer, path, seen)
        else:
            out += _leaf_groups(layer, path, seen)
    return out


# a minicnn layer's own attributes, never a user's sublayer
_INTERNAL = {"inbound_nodes", "params", "state", "backend", "losses", "_traces", "_leaves", "_plans", "graph"}  # fmt: skip


def _leaf_groups(layer, path: str, seen: set) -> list:
    """A layer's own group, then (a custom layer) each sublayer held in an attribute, by the
    attribute's name, as Keras walks them (public attributes first, each in name order); a list
    or dict of layers is a container whose layers are named by class."""
    seen.add(id(layer))
    out = [(path + "vars", layer)]
    if type(layer).__name__ in layers_module._REGISTRY:
        return out
    for attr in sorted(vars(layer), key=lambda a: f"~{a}" if a.startswith("_") else a):
        value = vars(layer)[attr]
        if attr in _INTERNAL:
            continue
        if isinstance(value, layers_module.Layer) and id(value) not in seen:
            out += _any_groups(value, f"{path}{attr}/", seen)
        elif isinstance(value, (list, tuple, dict)):
            used: dict[str, int] = {}
            for item in value.values() if isinstance(value, dict) else value:
                if isinstance(item, layers_module.Layer):
                    base = snake_case(type(item).__name__)
                    name = base if base not in used else f"{base}_{used[base] + 1}"
                    used[base] = used.get(base, -1) + 1
                    if id(item) not in seen:
                        out += _any_groups(item, f"{path}{attr}/{name}/", seen)
    return out


def _any_groups(layer, path: str, seen: set) -> list:
    return layer_groups(layer, path, seen) if isinstance(layer, Model) else _leaf_groups(layer, path, seen)  # fmt: skip


def slot_layout(opt, n: int) -> list[tuple[int, str]]:
    """(parameter index, minicnn slot name) of each optimizer variable after iterations and
    the learning rate, in Keras's order: the EMA's averages first (use_ema), then the rule's:
    Adam interleaves (momentum, velocity) per weight, SGD has its momentums, RMSprop its
    velocities, momentums and average gradients, each block in turn."""
    if opt.name not in KERAS_OPTIMIZERS:
        raise ValueError(f"{opt!r}: its variables cannot be written in Keras's layout")
    blocks = [["ema"]] if opt.use_ema else []
    if opt.name in ("adam", "adamw"):
        blocks.append(["m", "v"])
    elif opt.name == "sgd" and opt.momentum:
        blocks.append(["velocity"])
    elif opt.name == "rmsprop":
        blocks += [["velocity"]] + [["momentum"]] * bool(opt.momentum) + [["average_gradient"]] * opt.centered  # fmt: skip
    return [(i, name) for names in blocks for i in range(n) for name in names]


def _has_lr_variable(opt) -> bool:
    return not callable(opt._learning_rate)


# -- writing -----------------------------------------------------------------------------------


def write(model, h5file, include_optimizer: bool = True) -> None:
    """Every layer's weights (and the optimizer's variables) into an open h5py File."""
    for path, layer in layer_groups(model):
        group = h5file.create_group(path)
        group.attrs["name"] = layer.name
        for i, w in enumerate(layer.own_weights()):  # a model's: its own add_weight's
            group[str(i)] = w
    opt = model.optimizer
    if include_optimizer and opt is not None and model.objectives is not None:
        group = h5file.create_group("optimizer/vars")
        group.attrs["name"] = snake_case(KERAS_OPTIMIZERS.get(opt.name, opt.name))
        values = [np.asarray(opt.iterations, dtype=np.int64)]
        if _has_lr_variable(opt):
            values.append(np.asarray(opt.learning_rate, dtype=np.float32))
        if opt.slots is None:  # never stepped: what a built Keras optimizer starts from
            params = model.trainable_params()
            zeros = [np.zeros(layer.params[k].shape, layer.params[k].dtype) for layer, k in params]  # fmt: skip
            values += [zeros[i] for i, _ in slot_layout(opt, len(params))]
        else:  # the weights it was built for, as Keras's optimizer keeps them after a freeze
            values += [model.backend.to_numpy(opt.slots[i][slot]) for i, slot in slot_layout(opt, len(opt.slots))]  # fmt: skip
        for i, v in enumerate(values):
            group[str(i)] = v


# -- reading -----------------------------------------------------------------------------------


def _dataset(h5py, group, key: str, where: str):
    kind = group.get(key, getclass=True, getlink=True)
    if kind is not h5py.HardLink:
        raise ModelFileError(f"{where}/{key} is a {getattr(kind, '__name__', kind)}, not a dataset in the file itself")  # fmt: skip
    ds = group[key]
    if not isinstance(ds, h5py.Dataset) or ds.external or ds.is_virtual or ds.chunks is not None:
        raise ModelFileError(f"{where}/{key} must be a contiguous dataset stored in the file")
    return ds


def _group(h5py, root, path: str):
    node = root
    for part in path.split("/"):
        if part not in node:
            return None
        if node.get(part, getclass=True, getlink=True) is not h5py.HardLink:
            raise ModelFileError(f"{path}: links are not allowed in a weights file")
        node = node[part]
        if not isinstance(node, h5py.Group):
            raise ModelFileError(f"{path} must be a group")
    return node


def read_array(h5py, group, key: str, shape: tuple, where: str, floats: bool = True):
    ds = _dataset(h5py, group, key, where)
    if tuple(ds.shape) != tuple(shape) or (floats and ds.dtype not in _FLOATS) or (not floats and ds.dtype.kind not in "iuf"):  # fmt: skip
        raise ModelFileError(f"{where}/{key} should be a {'float32 or float64 ' if floats else ''}array of shape {tuple(shape)}. Received: {ds.dtype} {tuple(ds.shape)}")  # fmt: skip
    if ds.id.get_storage_size() != ds.size * ds.dtype.itemsize:
        raise ModelFileError(f"{where}/{key} stores {ds.id.get_storage_size()} bytes for {ds.size} values of {ds.dtype}")  # fmt: skip
    out = np.empty(ds.shape, dtype=ds.dtype)
    if ds.size:
        ds.read_direct(out)
    if floats and not np.isfinite(out).all():  # a model that answers NaN to every image is broken
        raise ModelFileError(f"{where}/{key} holds {int(out.size - np.isfinite(out).sum())} NaN or infinite values: the weights are broken")  # fmt: skip
    return out


def read(h5py, h5file, model, with_optimizer: bool = False):
    """(every weight in ``model.get_weights()``'s order, the optimizer state or None). A layer
    whose group is missing, a count or a shape that differs, or weights for a layer the model
    does not have: a ModelFileError naming the group."""
    arrays, expected = [], set()
    for path, layer in layer_groups(model):
        expected.add(path.rsplit("/vars", 1)[0])
        names = layer.weight_names  # a model's: its own add_weight's
        group = _group(h5py, h5file, path)
        keys = sorted(group.keys()) if group is not None else []
        if keys != sorted(str(i) for i in range(len(names))):
            raise ModelFileError(f'{path}: layer "{layer.name}" ({type(layer).__name__}) has {len(names)} weights ({", ".join(names)}); the file holds {len(keys)} ({keys[:8]})')  # fmt: skip
        arrays.append([read_array(h5py, group, str(i), layer._weight(n).shape, path) for i, n in enumerate(names)])  # fmt: skip
    _no_extra(h5py, h5file, expected)
    by_layer = dict(zip((id(x) for p, x in layer_groups(model)), arrays))
    flat = [a for layer in model.leaf_layers() for a in by_layer[id(layer)]]
    state = read_optimizer(h5py, h5file, model) if with_optimizer else None
    return flat, state


def _no_extra(h5py, h5file, expected: set) -> None:
    """Groups holding weights that no layer of the model reads: another architecture's file."""
    extra = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer/"):
            owner = name.rsplit("/vars/", 1)[0] if "/vars/" in name else name
            if owner not in expected and not (owner.startswith("vars/") or owner == "vars"):
                extra.append(name)

    h5file.visititems(visit)
    if extra:
        raise ModelFileError(f"The file holds weights the model has no layer for: {extra[:5]} (a file of another architecture?)")  # fmt: skip


def read_optimizer(h5py, h5file, model):
    """(iterations, learning rate or None, slots as the optimizer keeps them) from
    optimizer/vars; None when the file has no optimizer variables."""
    group = _group(h5py, h5file, "optimizer/vars")
    opt = model.optimizer
    if group is None or opt is None:
        return None
    params = model.trainable_params()
    layout = slot_layout(opt, len(params))
    lr_var = _has_lr_variable(opt)
    head = 1 + lr_var
    n = len(group.keys())
    if n == head and not layout:
        pass
    elif n == head:  # Keras saved an optimizer that had not been built yet: steps only
        layout = []
    elif n != head + len(layout):
        raise ModelFileError(f"optimizer/vars: {opt!r} keeps {head + len(layout)} variables for this model, the file {n}; load with compile=False to skip them")  # fmt: skip
    if sorted(group.keys()) != sorted(str(i) for i in range(n)):
        raise ModelFileError(f"optimizer/vars must hold datasets 0 to {n - 1}")
    iterations = read_array(h5py, group, "0", (), "optimizer/vars", floats=False)
    if iterations.dtype.kind == "f" or not 0 <= int(iterations) < 2**62:
        raise ModelFileError(f"optimizer/vars/0: the step count {iterations!r} is invalid")
    lr = float(read_array(h5py, group, "1", (), "optimizer/vars")) if lr_var else None
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ModelFileError(f"optimizer/vars/1: the learning rate {lr!r} is invalid")
    slots = None
    if layout:
        slots = [{} for _ in params]
        for j, (i, name) in enumerate(layout):
            layer, k = params[i]
            a = read_array(h5py, group, str(head + j), layer.params[k].shape, "optimizer/vars")
            slots[i][name] = a.astype(floatx(), copy=False)
        order = opt.slot_names()
        slots = [{k: s[k] for k in order} for s in slots]
    return int(iterations), lr, slots


def apply_optimizer_state(model, state) -> None:
    if state is None:
        return
    iterations, lr, slots = state
    opt = model.optimizer
    if lr is not None:
        opt.learning_rate = lr
    if slots is not None:
        slots = [{k: model.backend.asarray(a).copy() for k, a in s.items()} for s in slots]
    opt.set_state(iterations, slots)
