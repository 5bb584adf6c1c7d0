"""ONNX export: ``model.export("digits.onnx", format="onnx")`` or ``minicnn export MODEL OUT``.

The graph takes what the model takes, (N, H, W, C) float32 with a dynamic batch, and gives its
probabilities. ONNX's convolutions and pools are channels-first, so the graph transposes to
(N, C, H, W) before the first of them and back to channels-last before a Flatten or Reshape,
which then see the values in the order minicnn's do; weights are permuted to ONNX's layouts
(a kernel (kh, kw, C, F) becomes (F, C, kh, kw)). "same" padding is written out as explicit,
possibly uneven pads, as TensorFlow computes them. BatchNormalization becomes ONNX's inference
BatchNormalization with the moving statistics; Dropout and the augmentation layers vanish, as
they do in inference. Opset 17; the file passes ``onnx.checker`` with a full check before it is
written, atomically.
"""

from __future__ import annotations

import numpy as np

from minicnn import ops
from minicnn._version import __version__
from minicnn.fileio import atomic_write

OPSET = 17
_IDENTITY = ("InputLayer", "Dropout", "RandomRotation", "RandomTranslation", "RandomZoom")
_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}


class ExportError(ValueError):
    """A model that cannot be written as ONNX; raised before any file is written."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install -e '.[onnx]'") from None
    return onnx


class _Graph:
    """The nodes and weights built so far, and the current tensor with its layout: "nhwc"
    (minicnn's), "nchw" (ONNX's for images) or "flat" (N, features)."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits = [], []
        self.tensor, self.layout, self.count = "input", "nhwc", 0

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
        self.tensor = out
        return out

    def to(self, layout: str) -> None:
        if self.layout == layout or self.layout == "flat":
            return
        perm = [0, 3, 1, 2] if layout == "nchw" else [0, 2, 3, 1]
        self.node("Transpose", [self.tensor], perm=perm)
        self.layout = layout

    def activation(self, name: str) -> None:
        if name == "linear":
            return
        if name not in _ACTIVATIONS:
            raise ExportError(f"activation {name!r} has no ONNX export")
        attrs = {"axis": 1 if self.layout == "nchw" else -1} if name == "softmax" else {}
        self.node(_ACTIVATIONS[name], [self.tensor], **attrs)


def to_onnx(model):
    """The model as an ``onnx.ModelProto`` (checked), for inference."""
    onnx = _onnx()
    if model.input_shape is None:
        raise ExportError("the model has no input shape yet: build it or give input_shape=")
    g = _Graph(onnx)
    dtype = np.float32
    shape = tuple(model.input_shape)
    for layer in model.layers:
        kind = type(layer).__name__
        export = _EXPORTERS.get(kind)
        if export is None and kind not in _IDENTITY:
            raise ExportError(
                f'layer "{layer.name}" ({kind}) has no ONNX export; exportable: '
                f"{', '.join(sorted([*_EXPORTERS, *_IDENTITY]))}"
            )
        if export is not None:
            w = {n: np.asarray(a, dtype=dtype) for n, a in zip(layer.weight_names, layer.get_weights())}  # fmt: skip
            export(g, layer, shape, w)
        shape = layer.compute_output_shape(shape)
    g.to("nhwc")
    h = onnx.helper
    out_shape = ["batch", *shape]
    x = h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", *model.input_shape])
    x.doc_string = f"images (N, H, W, C) = (batch, {', '.join(map(str, model.input_shape))}), float32, as minicnn's predict takes them"  # fmt: skip
    g.nodes.append(h.make_node("Identity", [g.tensor], ["output"], name="output"))
    y = h.make_tensor_value_info("output", onnx.TensorProto.FLOAT, out_shape)
    graph = h.make_graph(g.nodes, model.name, [x], [y], g.inits)
    proto = h.make_model(
        graph,
        opset_imports=[h.make_opsetid("", OPSET)],
        producer_name="minicnn",
        producer_version=__version__,
        doc_string=f"minicnn {model.name}: {len(model.layers)} layers, outputs {out_shape}",
    )
    proto.ir_version = min(proto.ir_version, 9)  # readable by ONNX Runtimes of the last years
    h.set_model_props(proto, {"minicnn_version": __version__, "input": x.doc_string})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_model(model, path) -> None:
    """Write the model to ``path`` as ONNX; nothing is written if a layer cannot be exported."""
    proto = to_onnx(model)  # every check first
    data = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


# -- one exporter per layer type ---------------------------------------------------------------


def _conv(g, layer, shape, w):
    g.to("nchw")
    (kh, kw), (sy, sx) = layer.kernel_size, layer.strides
    top, bottom, left, right = ops.padding_amounts(
        shape[0], shape[1], kh, kw, sy, sx, layer.padding
    )
    inputs = [g.tensor, g.const("kernel", w["kernel"].transpose(3, 2, 0, 1))]
    if "bias" in w:
        inputs.append(g.const("bias", w["bias"]))
    g.node("Conv", inputs, kernel_shape=[kh, kw], strides=[sy, sx], pads=[top, left, bottom, right])
    g.activation(layer.activation.name)


def _pool(op):
    def export(g, layer, shape, w):
        g.to("nchw")
        (ph, pw), (sy, sx) = layer.pool_size, layer.strides
        t, b, l, r = ops.padding_amounts(shape[0], shape[1], ph, pw, sy, sx, layer.padding)
        attrs = {"count_include_pad": 0} if op == "AveragePool" else {}
        g.node(op, [g.tensor], kernel_shape=[ph, pw], strides=[sy, sx], pads=[t, l, b, r], **attrs)

    return export


def _global_pool(op):
    def export(g, layer, shape, w):
        g.to("nchw")
        g.node(op, [g.tensor])  # (N, C, 1, 1)
        if not layer.keepdims:
            g.node("Flatten", [g.tensor], axis=1)
            g.layout = "flat"

    return export


def _dense(g, layer, shape, w):
    g.node("MatMul", [g.tensor, g.const("kernel", w["kernel"])])
    if "bias" in w:
        g.node("Add", [g.tensor, g.const("bias", w["bias"])])
    g.activation(layer.activation.name)


def _flatten(g, layer, shape, w):
    g.to("nhwc")  # minicnn flattens channels-last: C varies fastest
    g.node("Flatten", [g.tensor], axis=1)
    g.layout = "flat"


def _reshape(g, layer, shape, w):
    g.to("nhwc")
    target = layer.compute_output_shape(shape)
    g.node("Reshape", [g.tensor, g.const("shape", np.array([-1, *target], np.int64))])
    g.layout = "nhwc" if len(target) == 3 else "flat"


def _batchnorm(g, layer, shape, w):
    c = shape[-1]
    if len(shape) == 3:
        g.to("nchw")
    gamma = w.get("gamma", np.ones(c, np.float32))
    beta = w.get("beta", np.zeros(c, np.float32))
    names = [g.const(k, v) for k, v in (("gamma", gamma), ("beta", beta), ("mean", w["moving_mean"]), ("var", w["moving_variance"]))]  # fmt: skip
    g.node("BatchNormalization", [g.tensor, *names], epsilon=layer.epsilon)


def _rescaling(g, layer, shape, w):
    g.node("Mul", [g.tensor, g.const("scale", np.float32(layer.scale))])
    if layer.offset:
        g.node("Add", [g.tensor, g.const("offset", np.float32(layer.offset))])


def _activation(g, layer, shape, w):
    g.activation(layer.activation.name)


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
}
