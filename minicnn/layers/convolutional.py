"""Conv2D, channels-last: the layer; the algorithms that compute it are in ``minicnn.maths.conv``."""

from __future__ import annotations

from typing import NamedTuple

from minicnn import activations, initializers, maths
from minicnn.layers.base import ActivationMixin, Layer, normalize_padding, normalize_tuple
from minicnn.layers.options import WeightOptions, channels_last, only_one


class ConvCtx(NamedTuple):
    conv: object  # the convolution algorithm's own ctx
    y: object  # what an activation other than ReLU reads in backward (``keeps``); else None


class Conv2D(ActivationMixin, WeightOptions, Layer):
    """2-D convolution (cross-correlation, as every framework computes it).

    x: (N, H, W, C) -> y: (N, oH, oW, F); kernel: (kh, kw, C, F) as in Keras; bias: (F,).
    Its maths is ``minicnn.maths.conv2d_forward``/``conv2d_backward``, which pick an
    algorithm for the geometry (``minicnn.maths.conv``); a model's plan picks once per layer
    and may fuse what follows into the convolution's output pass (``minicnn.plan``).
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (Conv2D)'
        channels_last(data_format, owner)
        only_one(dilation_rate, "dilation_rate", owner)
        only_one(groups, "groups", owner)
        self._init_weight_options(owner, locals())
        if not isinstance(filters, int) or filters <= 0:
            raise ValueError(
                f"{owner}: filters must be a positive int. Received: filters={filters!r}"
            )
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", owner)
        self.strides = normalize_tuple(strides, 2, "strides", owner)
        self.padding = normalize_padding(padding, owner)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer, owner)
        self.bias_initializer = initializers.get(bias_initializer, owner)
        self._init_activation(activation)

    def build(self, input_shape):
        kh, kw = self.kernel_size
        kernel = (kh, kw, input_shape[-1], self.filters)
        self.add_weight(shape=kernel, initializer=self.kernel_initializer, name="kernel", **self.weight_options("kernel"))  # fmt: skip
        if self.use_bias:
            self.add_weight(shape=(self.filters,), initializer=self.bias_initializer, name="bias", **self.weight_options("bias"))  # fmt: skip

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, input_shape[-1], self.filters)}
        return {**shapes, "bias": (self.filters,)} if self.use_bias else shapes

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        self.check_channels(input_shape)
        n, h, w, _ = input_shape
        (kh, kw), (sy, sx) = self.kernel_size, self.strides
        if self.padding == "valid" and (h < kh or w < kw):
            raise ValueError(
                f'Layer "{self.name}" (Conv2D): a {self.kernel_size} kernel with padding="valid" '
                f"needs an image at least that large. Received: input shape {input_shape}"
            )
        if kh > 2 * h + 1 or kw > 2 * w + 1:  # "same": every tap past 2x the map reads padding
            raise ValueError(
                f'Layer "{self.name}" (Conv2D): a {self.kernel_size} kernel is more than twice '
                f"the {h}x{w} map it convolves: its outer taps would read only padding. "
                f"Received: input shape {input_shape}"
            )
        oh = maths.conv_output_length(h, kh, sy, self.padding)
        ow = maths.conv_output_length(w, kw, sx, self.padding)
        return (n, oh, ow, self.filters)

    def pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding for an h x w input."""
        (kh, kw), (sy, sx) = self.kernel_size, self.strides
        return maths.padding_amounts(h, w, kh, kw, sy, sx, self.padding)

    def forward(self, x, training=False):
        relu = self.activation.name == "relu"  # applied in the convolution's last pass
        y, conv = maths.conv2d_forward(
            x, self.params["kernel"], self.params.get("bias"), self.strides,
            self.pads(*x.shape[1:3]), relu=relu, keep=training,
        )  # fmt: skip
        kept = None
        if not relu:
            y, kept = self.activation.apply(y)
        return y, (ConvCtx(conv, kept) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        if ctx.y is not None:  # another activation than ReLU (whose mask conv2d_backward applies)
            gy = self.activation.backward(gy, ctx.y)
        gx, gkernel, gbias = maths.conv2d_backward(gy, ctx.conv, need_gx)
        return gx, ({"kernel": gkernel, "bias": gbias} if self.use_bias else {"kernel": gkernel})

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self.weight_options_config(),
        }
