"""ONNX exporters of the activations and of the layers beyond Conv2D's family's first members,
for ``minicnn.export``: each takes (graph, layer, input value, input shape, weights) and gives
the output value, (ONNX name, layout), in opset 17.

- activations: ONNX's own op where it has one (Elu, Selu, LeakyRelu, Softplus, Softsign,
  HardSigmoid with alpha 1/6, Exp), else composed: exact GELU as x (1 + Erf(x / sqrt 2)) / 2
  (ONNX's Gelu is opset 20), swish as x Sigmoid(x), relu6 as Clip;
- PReLU as PRelu, its slope channels-last; ZeroPadding2D as Pad, Cropping2D as Slice,
  UpSampling2D as Resize (nearest: "asymmetric" coordinates with floor, a repeat; bilinear:
  "linear" with "half_pixel" coordinates, TensorFlow's);
- LayerNormalization as LayerNormalization over trailing axes (channels-last);
- DepthwiseConv2D as a grouped Conv (one group per channel), SeparableConv2D as that Conv and a
  1x1 one, Conv2DTranspose as ConvTranspose with TensorFlow's crop as pads and output_padding.
"""

from __future__ import annotations

import math

import numpy as np

_SIMPLE = {  # activation name -> (ONNX op, attributes from the activation object)
    "relu": ("Relu", lambda a: {}),
    "sigmoid": ("Sigmoid", lambda a: {}),
    "tanh": ("Tanh", lambda a: {}),
    "elu": ("Elu", lambda a: {"alpha": a.alpha}),
    "selu": ("Selu", lambda a: {"alpha": a.ALPHA, "gamma": a.SCALE}),
    "softplus": ("Softplus", lambda a: {}),
    "softsign": ("Softsign", lambda a: {}),
    "hard_sigmoid": ("HardSigmoid", lambda a: {"alpha": 1 / 6, "beta": 0.5}),
    "exponential": ("Exp", lambda a: {}),
    "leaky_relu": ("LeakyRelu", lambda a: {"alpha": a.negative_slope}),
}


_COMPOSED = {  # Keras 3's newer activations as ONNX opset 17 writes them
    "mish": lambda g, x: g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x])])]),
    "log_sigmoid": lambda g, x: g.node("Neg", [g.node("Softplus", [g.node("Neg", [x])])]),
    "hard_tanh": lambda g, x: g.node(
        "Clip", [x, g.const("minus_one", np.float32(-1)), g.const("one", np.float32(1))]
    ),  # fmt: skip
    "tanh_shrink": lambda g, x: g.node("Sub", [x, g.node("Tanh", [x])]),
    "hard_silu": lambda g, x: g.node(
        "Mul", [x, g.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)]
    ),  # fmt: skip
}


def activation(g, value, act):
    """``value`` through the activation object ``act`` (softmax over the channels' axis)."""
    name, layout = act.name, value[1]
    if name == "linear":
        return value
    if name == "softmax":
        return g.node("Softmax", [value[0]], axis=1 if layout == "nchw" else -1), layout
    if name in _SIMPLE:
        op, attrs = _SIMPLE[name]
        return g.node(op, [value[0]], **attrs(act)), layout
    x = value[0]
    if name == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x])]), layout
    if name == "log_softmax":
        return g.node("LogSoftmax", [value[0]], axis=1 if layout == "nchw" else -1), layout
    if name in _COMPOSED:
        return _COMPOSED[name](g, x), layout
    if name == "relu_with_settings":  # Keras's relu(x, negative_slope, max_value, threshold)
        t = g.const("threshold", np.float32(act.threshold))
        y = g.node("Mul", [x, g.node("Cast", [g.node("Greater", [x, t])], to=1)])
        if act.max_value is not None:
            lo, hi = g.const("zero", np.float32(0)), g.const("max_value", np.float32(act.max_value))  # fmt: skip
            y = g.node("Clip", [y, lo, hi])
        if act.negative_slope:
            below = g.node("Relu", [g.node("Sub", [t, x])])
            y = g.node("Sub", [y, g.node("Mul", [below, g.const("slope", np.float32(act.negative_slope))])])  # fmt: skip
        return y, layout
    if name == "relu6":
        lo, hi = g.const("zero", np.float32(0)), g.const("six", np.float32(6))
        return g.node("Clip", [x, lo, hi]), layout
    if name == "gelu":
        half = g.const("half", np.float32(0.5))
        if act.approximate:  # x (1 + tanh(c (x + 0.044715 x^3))) / 2
            cube = g.node("Mul", [x, g.node("Mul", [x, x])])
            inner = g.node("Add", [x, g.node("Mul", [cube, g.const("a", np.float32(act.A))])])
            t = g.node("Tanh", [g.node("Mul", [inner, g.const("c", np.float32(act.C))])])
        else:  # x (1 + erf(x / sqrt 2)) / 2
            t = g.node("Erf", [g.node("Mul", [x, g.const("rsqrt2", np.float32(1 / math.sqrt(2)))])])
        one_plus = g.node("Add", [t, g.const("one", np.float32(1))])
        return g.node("Mul", [g.node("Mul", [x, one_plus]), half]), layout
    g.refuse(f"activation {name!r} has no ONNX export")


def _elementwise(g, layer, x, shape, w):
    return activation(g, x, layer.fn)


def _prelu(g, layer, x, shape, w):
    x = g.to(x, "nhwc")  # alpha is channels-last: (H, W, C) or with 1s on the shared axes
    return g.node("PRelu", [x[0], g.const("alpha", w["alpha"])]), x[1]


def _zero_padding(g, layer, x, shape, w):
    (t, b), (le, r) = layer.padding
    x = g.to(x, "nchw")
    pads = g.const("pads", np.array([0, 0, t, le, 0, 0, b, r], np.int64))
    return g.node("Pad", [x[0], pads], mode="constant"), "nchw"


def _cropping(g, layer, x, shape, w):
    (t, b), (le, r) = layer.cropping
    x = g.to(x, "nchw")
    starts = g.const("starts", np.array([t, le], np.int64))
    ends = g.const("ends", np.array([shape[1] - b, shape[2] - r], np.int64))
    axes = g.const("axes", np.array([2, 3], np.int64))
    return g.node("Slice", [x[0], starts, ends, axes]), "nchw"


def _upsampling(g, layer, x, shape, w):
    x = g.to(x, "nchw")
    scales = g.const("scales", np.array([1, 1, *layer.size], np.float32))
    if layer.interpolation == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}  # fmt: skip
    else:
        attrs = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    return g.node("Resize", [x[0], "", scales], **attrs), "nchw"


def _layer_norm(g, layer, x, shape, w):
    axes = layer.axes(len(shape))
    first = axes[0]
    if axes != tuple(range(first, len(shape))):
        g.refuse(f'layer "{layer.name}" normalises axes {list(axes)}: ONNX\'s LayerNormalization takes trailing axes only')  # fmt: skip
    x = g.to(x, "nhwc")  # minicnn's axes are channels-last
    norm_shape = tuple(shape[first:])
    scale = w.get("gamma", np.ones(norm_shape, np.float32)).reshape(norm_shape)
    bias = w.get("beta", np.zeros(norm_shape, np.float32)).reshape(norm_shape)
    inputs = [x[0], g.const("gamma", scale), g.const("beta", bias)]
    return g.node("LayerNormalization", inputs, axis=first, epsilon=layer.epsilon), x[1]


def _depthwise_conv(g, x, layer, kernel, bias, shape):
    kh, kw, c, m = kernel.shape
    top, bottom, left, right = layer.pads(shape[1], shape[2])
    weight = kernel.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]  # (C*M, 1, kh, kw)
    inputs = [g.to(x, "nchw")[0], g.const("kernel", np.ascontiguousarray(weight))]
    if bias is not None:
        inputs.append(g.const("bias", bias))
    attrs = {"kernel_shape": [kh, kw], "strides": list(layer.strides), "pads": [top, left, bottom, right], "group": c}  # fmt: skip
    return g.node("Conv", inputs, **attrs), "nchw"


def _depthwise(g, layer, x, shape, w):
    y = _depthwise_conv(g, x, layer, w["kernel"], w.get("bias"), shape)
    return activation(g, y, layer.activation)


def _separable(g, layer, x, shape, w):
    d = _depthwise_conv(g, x, layer, w["depthwise_kernel"], None, shape)
    inputs = [d[0], g.const("pointwise", w["pointwise_kernel"].transpose(3, 2, 0, 1))]
    if "bias" in w:
        inputs.append(g.const("bias", w["bias"]))
    y = g.node("Conv", inputs, kernel_shape=[1, 1])
    return activation(g, (y, "nchw"), layer.activation)


def _transpose(g, layer, x, shape, w):
    (kh, kw), (sy, sx) = layer.kernel_size, layer.strides
    h, wd = shape[1], shape[2]
    oh, ow = layer.output_hw(h, wd)
    top, _, left, _ = layer.pads(h, wd)
    pads, extra = [top, left, 0, 0], [0, 0]
    for i, (size, k, s, o, begin) in enumerate(((h, kh, sy, oh, top), (wd, kw, sx, ow, left))):
        beyond = begin + o - ((size - 1) * s + k)  # rows past the full result: zeros, then bias
        pads[2 + i], extra[i] = max(-beyond, 0), max(beyond, 0)
    inputs = [
        g.to(x, "nchw")[0],
        g.const("kernel", w["kernel"].transpose(3, 2, 0, 1)),
    ]  # (C, F, kh, kw)
    if "bias" in w:
        inputs.append(g.const("bias", w["bias"]))
    y = g.node("ConvTranspose", inputs, kernel_shape=[kh, kw], strides=[sy, sx], pads=pads, output_padding=extra)  # fmt: skip
    return activation(g, (y, "nchw"), layer.activation)


EXPORTERS = {
    "LeakyReLU": _elementwise,
    "ELU": _elementwise,
    "PReLU": _prelu,
    "ZeroPadding2D": _zero_padding,
    "Cropping2D": _cropping,
    "UpSampling2D": _upsampling,
    "LayerNormalization": _layer_norm,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    "Conv2DTranspose": _transpose,
}
IDENTITY = ("SpatialDropout2D",)  # gone at inference, as Dropout
