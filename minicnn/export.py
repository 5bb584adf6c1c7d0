"""ONNX export: ``model.export("digits.onnx", format="onnx")`` or ``minicnn export MODEL OUT``.

The graph takes what the model takes, (N, H, W, C) float32 with a dynamic batch, one input
each, and gives its outputs (probabilities for a softmax head). Any graph exports: the model's
calls are walked in the plan's order (nested models opened up), each value carried in a layout:
"nhwc" (minicnn's), "nchw" (ONNX's for images) or "flat" (N, features). ONNX's convolutions and
pools are channels-first, so a value is transposed to (N, C, H, W) where one of them needs it
and back to channels-last before a Flatten or Reshape, which then see the values in the order
minicnn's do; elementwise merges and Concatenate take their inputs in the first one's layout
(Concatenate's axis mapped to it). Weights are permuted to ONNX's layouts (a kernel (kh, kw,
C, F) becomes (F, C, kh, kw)). "same" padding is written out as explicit, possibly uneven
pads, as TensorFlow computes them. BatchNormalization becomes ONNX's inference
BatchNormalization with the moving statistics; Dropout and the augmentation layers vanish, as
they do in inference. The activations and the newer layers' exporters are in
``minicnn.export_layers``. Opset 17; the file passes ``onnx.checker`` with a full check before it
is written, atomically.
"""

from __future__ import annotations

import numpy as np

from minicnn import export_layers, maths
from minicnn._version import __version__
from minicnn.fileio import atomic_write
from minicnn.plan import flatten

OPSET = 17
_IDENTITY = (
    "Dropout",
    "GaussianNoise",
    "Identity",
    "RandomFlip",
    "RandomContrast",
    "RandomBrightness",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "RandomElasticTransform",
    *export_layers.IDENTITY,
)
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


class ExportError(ValueError):
    """A model that cannot be written as ONNX; raised before any file is written."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install -e '.[onnx]'") from None
    return onnx


class _Graph:
    """The nodes and weights built so far; a value is (ONNX name, layout)."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, what: str) -> str:
        self.count += 1
        return f"{what}_{self.count}"

    def const(self, what: str, value) -> str:
        name = self.name(what)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.h.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def to(self, value, layout: str):
        """``value`` in ``layout`` ("flat" values stay as they are)."""
        name, have = value
        if have == layout or have == "flat":
            return value
        return self.node("Transpose", [name], perm=_TO_NCHW if layout == "nchw" else _TO_NHWC), layout  # fmt: skip

    def activation(self, value, act):
        """``value`` through the activation object ``act`` (``export_layers.activation``)."""
        return export_layers.activation(self, value, act)

    def refuse(self, message: str):
        raise ExportError(message)


def _needed(flat) -> list:
    """The calls the outputs need: not the loss terms (activity penalties, add_loss)."""
    needed, calls = set(flat.outputs), []
    for call in reversed(flat.calls):
        if any(v in needed for v in call.outputs):
            calls.append(call)
            needed.update(call.inputs)
    return calls[::-1]


def to_onnx(model):
    """The model as an ``onnx.ModelProto`` (checked), for inference."""
    onnx = _onnx()
    if model.graph is None:
        raise ExportError("the model has no input shape yet: build it or give an Input")
    flat = flatten(model.graph)
    flat = flat._replace(calls=_needed(flat))
    for call in flat.calls:
        kind = type(call.layer).__name__
        if getattr(call.layer, "is_op", False):  # a keras.ops node, not the layer of its name
            raise ExportError(
                f"keras.ops.{call.layer.op_name} has no ONNX export yet (in {model.name}); "
                "exportable: the layers " + ", ".join(sorted([*_EXPORTERS, *_IDENTITY]))
            )
        if kind not in _EXPORTERS and kind not in _IDENTITY:
            raise ExportError(
                f'layer "{call.layer.name}" ({kind}) has no ONNX export; exportable: '
                f"{', '.join(sorted([*_EXPORTERS, *_IDENTITY]))}"
            )
    g = _Graph(onnx)
    h = onnx.helper
    several = len(flat.inputs) > 1
    names = [f"input_{i}" if several else "input" for i in range(len(flat.inputs))]
    values = {v: (n, "nhwc" if len(flat.shapes[v]) == 4 else "flat") for v, n in zip(flat.inputs, names)}  # fmt: skip
    for call in flat.calls:
        layer, kind = call.layer, type(call.layer).__name__
        ins = [values[v] for v in call.inputs]
        if kind in _IDENTITY:
            values[call.outputs[0]] = ins[0]
            continue
        w = {n: np.asarray(a, dtype=np.float32) for n, a in zip(layer.weight_names, layer.own_weights())}  # fmt: skip
        shapes = [flat.shapes[v] for v in call.inputs]
        values[call.outputs[0]] = _EXPORTERS[kind](g, layer, ins if not call.single else ins[0], shapes if not call.single else shapes[0], w)  # fmt: skip
    inputs, outputs = [], []
    for n, t in zip(names, model.inputs):
        x = h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["batch", *t.shape[1:]])
        axes = "images (N, H, W, C)" if len(t.shape) == 4 else f"{t.history[0].name} (N, ...)"
        x.doc_string = f"{axes} = (batch, {', '.join(map(str, t.shape[1:]))}), float32, as minicnn's predict takes them"  # fmt: skip
        inputs.append(x)
    several = len(flat.outputs) > 1
    for i, v in enumerate(flat.outputs):
        name = f"output_{i}" if several else "output"
        value = g.to(values[v], "nhwc")
        if value[0] in [x.name for x in inputs] or value[0] in [o.name for o in outputs]:
            value = (g.node("Identity", [value[0]]), value[1])
        g.nodes.append(h.make_node("Identity", [value[0]], [name], name=name))
        outputs.append(h.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", *flat.shapes[v][1:]]))  # fmt: skip
    graph = h.make_graph(g.nodes, model.name, inputs, outputs, g.inits)
    proto = h.make_model(
        graph,
        opset_imports=[h.make_opsetid("", OPSET)],
        producer_name="minicnn",
        producer_version=__version__,
        doc_string=f"minicnn {model.name}: {len(flat.calls)} layer calls, outputs {[list(flat.shapes[v]) for v in flat.outputs]}",  # fmt: skip
    )
    proto.ir_version = min(proto.ir_version, 9)  # readable by ONNX Runtimes of the last years
    h.set_model_props(proto, {"minicnn_version": __version__, "input": inputs[0].doc_string})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_model(model, path) -> None:
    """Write the model to ``path`` as ONNX; nothing is written if a layer cannot be exported."""
    proto = to_onnx(model)  # every check first
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


# -- one exporter per layer type: (graph, layer, input value(s), input shape(s), weights) ----


def _conv(g, layer, x, shape, w):
    x = g.to(x, "nchw")
    (kh, kw), (sy, sx) = layer.kernel_size, layer.strides
    top, bottom, left, right = layer.pads(shape[1], shape[2])
    inputs = [x[0], g.const("kernel", w["kernel"].transpose(3, 2, 0, 1))]
    if "bias" in w:
        inputs.append(g.const("bias", w["bias"]))
    y = g.node("Conv", inputs, kernel_shape=[kh, kw], strides=[sy, sx], pads=[top, left, bottom, right])  # fmt: skip
    return g.activation((y, "nchw"), layer.activation)


def _pool(op):
    def export(g, layer, x, shape, w):
        x = g.to(x, "nchw")
        (ph, pw), (sy, sx) = layer.pool_size, layer.strides
        t, b, l, r = maths.padding_amounts(shape[1], shape[2], ph, pw, sy, sx, layer.padding)
        attrs = {"count_include_pad": 0} if op == "AveragePool" else {}
        y = g.node(op, [x[0]], kernel_shape=[ph, pw], strides=[sy, sx], pads=[t, l, b, r], **attrs)  # fmt: skip
        return y, "nchw"

    return export


def _global_pool(op):
    def export(g, layer, x, shape, w):
        y = g.node(op, [g.to(x, "nchw")[0]])  # (N, C, 1, 1)
        if not layer.keepdims:
            return g.node("Flatten", [y], axis=1), "flat"
        return y, "nchw"

    return export


def _dense(g, layer, x, shape, w):
    y = g.node("MatMul", [x[0], g.const("kernel", w["kernel"])])
    if "bias" in w:
        y = g.node("Add", [y, g.const("bias", w["bias"])])
    return g.activation((y, x[1]), layer.activation)


def _flatten(g, layer, x, shape, w):
    x = g.to(x, "nhwc")  # minicnn flattens channels-last: C varies fastest
    return g.node("Flatten", [x[0]], axis=1), "flat"


def _reshape(g, layer, x, shape, w):
    x = g.to(x, "nhwc")
    target = layer.compute_output_shape(shape)[1:]
    y = g.node("Reshape", [x[0], g.const("shape", np.array([-1, *target], np.int64))])
    return y, "nhwc" if len(target) == 3 else "flat"


def _batchnorm(g, layer, x, shape, w):
    c = shape[-1]
    x = g.to(x, "nchw") if len(shape) == 4 else x
    gamma = w.get("gamma", np.ones(c, np.float32))
    beta = w.get("beta", np.zeros(c, np.float32))
    names = [g.const(k, v) for k, v in (("gamma", gamma), ("beta", beta), ("mean", w["moving_mean"]), ("var", w["moving_variance"]))]  # fmt: skip
    return g.node("BatchNormalization", [x[0], *names], epsilon=layer.epsilon), x[1]


def _rescaling(g, layer, x, shape, w):
    y = g.node("Mul", [x[0], g.const("scale", np.float32(layer.scale))])
    if layer.offset:
        y = g.node("Add", [y, g.const("offset", np.float32(layer.offset))])
    return y, x[1]


def _activation(g, layer, x, shape, w):
    return g.activation(x, layer.activation)


def _merge(op):
    """Add, Subtract, Multiply, Maximum, Minimum, Average: every input in the first's layout."""

    def export(g, layer, xs, shapes, w):
        if len({len(s) for s in shapes}) > 1:
            raise ExportError(f'layer "{layer.name}" merges inputs of different ranks {shapes}: not exported')  # fmt: skip
        layout = xs[0][1]
        names = [g.to(x, layout)[0] for x in xs]
        if op == "Average":
            total = g.node("Sum", names) if len(names) > 1 else names[0]
            return g.node("Div", [total, g.const("count", np.float32(len(names)))]), layout
        y = names[0]
        for n in names[1:]:  # pairwise, as Keras computes them
            y = g.node(op, [y, n])
        return (y if len(names) > 1 else g.node("Identity", [y])), layout

    return export


def _concatenate(g, layer, xs, shapes, w):
    layout = xs[0][1]
    axis = layer._axis(len(shapes[0]))
    if layout == "nchw":
        axis = (0, 2, 3, 1)[axis]  # where a channels-last axis lies in (N, C, H, W)
    return g.node("Concat", [g.to(x, layout)[0] for x in xs], axis=axis), layout


_EXPORTERS = {
    "Conv2D": _conv,
    "MaxPooling2D": _pool("MaxPool"),
    "AveragePooling2D": _pool("AveragePool"),
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePool"),
    "GlobalMaxPooling2D": _global_pool("GlobalMaxPool"),
    "Dense": _dense,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "BatchNormalization": _batchnorm,
    "Rescaling": _rescaling,
    "Activation": _activation,
    "ReLU": _activation,
    "Softmax": _activation,
    "Add": _merge("Add"),
    "Subtract": _merge("Sub"),
    "Multiply": _merge("Mul"),
    "Maximum": _merge("Max"),
    "Minimum": _merge("Min"),
    "Average": _merge("Average"),
    "Concatenate": _concatenate,
    **export_layers.EXPORTERS,
}
