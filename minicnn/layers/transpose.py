"""Conv2DTranspose, channels-last: the layer; its maths is ``minicnn.maths.conv.transpose``
(Conv2D's adjoint)."""

from __future__ import annotations

from typing import NamedTuple

from minicnn import activations, initializers, maths
from minicnn.layers.base import (
    ActivationMixin,
    Layer,
    normalize_padding,
    normalize_tuple,
    unique_name,
)
from minicnn.layers.options import WeightOptions, channels_last, only_one


class TransposeCtx(NamedTuple):
    conv: object  # maths.conv.transpose's ctx
    y: object  # what an activation other than ReLU reads in backward; else None


def output_length(size: int, k: int, s: int, padding: str, output_padding) -> int:
    """Keras's (and TensorFlow's) output size of a transposed convolution along one axis."""
    if output_padding is None:
        return size * s if padding == "same" else size * s + max(k - s, 0)
    if padding == "same":
        return (size - 1) * s + k % 2 + output_padding
    return (size - 1) * s + k + output_padding


class Conv2DTranspose(ActivationMixin, WeightOptions, Layer):
    """The transposed convolution ("deconvolution"): x (N, H, W, C) -> y (N, oH, oW, filters),
    the input gradient of the Conv2D that maps (oH, oW, filters) to (H, W, C). Keras's output
    sizes (``output_length``; ``output_padding`` adds rows and columns at the end, each less
    than its stride) and TensorFlow's "same" padding of that convolution. Weights ``kernel``
    (kh, kw, filters, C), Keras's layout, and ``bias`` (filters,)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, name=None, **kwargs):  # fmt: skip
        super().__init__(name=name or unique_name("conv2d_transpose"), **kwargs)  # Keras's name
        owner = f'Layer "{self.name}" (Conv2DTranspose)'
        channels_last(data_format, owner)
        only_one(dilation_rate, "dilation_rate", owner)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive int. Received: filters={filters!r}")  # fmt: skip
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", owner)
        self.strides = normalize_tuple(strides, 2, "strides", owner)
        self.padding = normalize_padding(padding, owner)
        self.output_padding = None
        if output_padding is not None:
            op = (output_padding,) * 2 if isinstance(output_padding, int) else tuple(output_padding)
            if len(op) != 2 or not all(isinstance(v, int) and 0 <= v < s for v, s in zip(op, self.strides)):  # fmt: skip
                raise ValueError(
                    f"{owner}: output_padding must be ints >= 0, each less than its stride "
                    f"{self.strides}. Received: output_padding={output_padding!r}"
                )
            self.output_padding = op
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, owner)
        self.bias_initializer = initializers.get(bias_initializer, owner)
        self._init_weight_options(owner, locals())
        self._init_activation(activation)

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, self.filters, input_shape[-1])}
        return {**shapes, "bias": (self.filters,)} if self.use_bias else shapes

    def build(self, input_shape):
        shapes = self.weight_shapes(input_shape)
        self.add_weight(shape=shapes["kernel"], initializer=self.kernel_initializer, name="kernel", **self.weight_options("kernel"))  # fmt: skip
        if self.use_bias:
            self.add_weight(shape=shapes["bias"], initializer=self.bias_initializer, name="bias", **self.weight_options("bias"))  # fmt: skip

    def output_hw(self, h: int, w: int) -> tuple[int, int]:
        op = self.output_padding or (None, None)
        return tuple(
            output_length(size, k, s, self.padding, o)
            for size, k, s, o in zip((h, w), self.kernel_size, self.strides, op)
        )

    def pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The padding of the convolution this is the adjoint of, over the (oH, oW) output."""
        (kh, kw), (sy, sx) = self.kernel_size, self.strides
        return maths.padding_amounts(*self.output_hw(h, w), kh, kw, sy, sx, self.padding)

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        self.check_channels(input_shape)
        n, h, w, _ = input_shape
        oh, ow = self.output_hw(h, w)
        (kh, kw), (sy, sx) = self.kernel_size, self.strides
        back = (maths.conv_output_length(oh, kh, sy, self.padding), maths.conv_output_length(ow, kw, sx, self.padding))  # fmt: skip
        if min(oh, ow) <= 0 or back != (h, w):  # TensorFlow refuses these too
            raise ValueError(
                f'Layer "{self.name}" (Conv2DTranspose): an output of {oh}x{ow} (output_padding='
                f"{self.output_padding}) is not one the {self.kernel_size} convolution with strides "
                f"{self.strides} and padding={self.padding!r} maps back to {h}x{w}. Received: "
                f"input shape {input_shape}"
            )
        return (n, oh, ow, self.filters)

    def forward(self, x, training=False):
        relu = self.activation.name == "relu"  # applied in the output's bias pass
        h, w = x.shape[1:3]
        y, tctx = maths.conv2d_transpose_forward(
            x, self.params["kernel"], self.params.get("bias"), self.strides, self.pads(h, w),
            self.output_hw(h, w), relu=relu, keep=training,
        )  # fmt: skip
        kept = None
        if not relu:
            y, kept = self.activation.apply(y)
        return y, (TransposeCtx(tctx, kept) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        if ctx.y is not None:
            gy = self.activation.backward(gy, ctx.y)
        gx, gkernel, gbias = maths.conv2d_transpose_backward(gy, ctx.conv, need_gx)
        return gx, ({"kernel": gkernel, "bias": gbias} if self.use_bias else {"kernel": gkernel})

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "output_padding": None if self.output_padding is None else list(self.output_padding),
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self.weight_options_config(),
        }
