"""DepthwiseConv2D and SeparableConv2D, channels-last; their maths is ``minicnn.maths.depthwise``
(each channel convolved with its own filters) and, for SeparableConv2D, one GEMM (the 1x1
pointwise convolution)."""

from __future__ import annotations

from minicnn import activations, initializers, maths
from minicnn.layers.base import ActivationMixin, Layer, normalize_padding, normalize_tuple
from minicnn.layers.options import WeightOptions, channels_last, only_one, window_output


class _Depthwise(ActivationMixin, WeightOptions, Layer):
    """What both layers share: the depthwise geometry, its checks and its settings."""

    KIND = ""

    def _init_depthwise(self, kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias):  # fmt: skip
        owner = f'Layer "{self.name}" ({self.KIND})'
        channels_last(data_format, owner)
        only_one(dilation_rate, "dilation_rate", owner)
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, int) or depth_multiplier <= 0:  # fmt: skip
            raise ValueError(f"{owner}: depth_multiplier must be a positive int. Received: depth_multiplier={depth_multiplier!r}")  # fmt: skip
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", owner)
        self.strides = normalize_tuple(strides, 2, "strides", owner)
        self.padding = normalize_padding(padding, owner)
        self.depth_multiplier, self.use_bias = depth_multiplier, bool(use_bias)
        self._init_activation(activation)
        return owner

    def depthwise_shape(self, input_shape):
        return (*self.kernel_size, input_shape[-1], self.depth_multiplier)

    def pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        (kh, kw), (sy, sx) = self.kernel_size, self.strides
        return maths.padding_amounts(h, w, kh, kw, sy, sx, self.padding)

    def depthwise_output(self, input_shape):
        self.check_rank(input_shape, 4)
        self.check_channels(input_shape)
        return window_output(self, input_shape, self.kernel_size, self.strides, self.padding)

    def activate(self, y):
        """-> (y, what the activation's backward reads)."""
        return self.activation.apply(y)

    def config(self) -> dict:
        return {
            **Layer.get_config(self),
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "depth_multiplier": self.depth_multiplier,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self.weight_options_config(),
        }


class DepthwiseConv2D(_Depthwise):
    """Each input channel convolved with its own ``depth_multiplier`` filters: x (N, H, W, C)
    -> y (N, oH, oW, C*M), output channel c*M + m; weights ``kernel`` (kh, kw, C, M) and
    ``bias`` (C*M,), Keras's names and layouts."""

    KIND = "DepthwiseConv2D"
    WEIGHTS = ("depthwise", "bias")

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        owner = self._init_depthwise(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias)  # fmt: skip
        self._init_weight_options(owner, locals())
        self.depthwise_initializer = initializers.get(depthwise_initializer, owner)
        self.bias_initializer = initializers.get(bias_initializer, owner)

    def weight_shapes(self, input_shape):
        shapes = {"kernel": self.depthwise_shape(input_shape)}
        return {**shapes, "bias": (input_shape[-1] * self.depth_multiplier,)} if self.use_bias else shapes  # fmt: skip

    def build(self, input_shape):
        shapes = self.weight_shapes(input_shape)
        self.add_weight(shape=shapes["kernel"], initializer=self.depthwise_initializer, name="kernel", **self.weight_options("depthwise"))  # fmt: skip
        if self.use_bias:
            self.add_weight(shape=shapes["bias"], initializer=self.bias_initializer, name="bias", **self.weight_options("bias"))  # fmt: skip

    def compute_output_shape(self, input_shape):
        n, oh, ow = self.depthwise_output(input_shape)
        return (n, oh, ow, input_shape[-1] * self.depth_multiplier)

    def forward(self, x, training=False):
        kernel, bias = self.params["kernel"], self.params.get("bias")
        relu = self.activation.name == "relu"  # applied in the convolution's own pass
        y, dctx = maths.depthwise_forward(x, kernel, bias, self.strides, self.pads(*x.shape[1:3]), relu, keep=training)  # fmt: skip
        y, kept = (y, None) if relu else self.activate(y)
        return y, ((dctx, kept) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        dctx, kept = ctx
        if kept is not None:  # another activation than ReLU (whose mask the kernel applies)
            gy = self.activation.backward(gy, kept)
        gx, gkernel, gbias = maths.depthwise_backward(gy, dctx, need_gx)
        return gx, ({"kernel": gkernel, "bias": gbias} if self.use_bias else {"kernel": gkernel})

    def get_config(self):
        return self.config()


class SeparableConv2D(_Depthwise):
    """A depthwise convolution, then a 1x1 convolution mixing its C*M channels into
    ``filters``: x (N, H, W, C) -> y (N, oH, oW, filters). Weights ``depthwise_kernel``
    (kh, kw, C, M), ``pointwise_kernel`` (1, 1, C*M, filters) and ``bias`` (filters,), as in
    Keras; the strides and padding are the depthwise step's."""

    KIND = "SeparableConv2D"
    WEIGHTS = ("depthwise", "pointwise", "bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, pointwise_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, depthwise_constraint=None,
                 pointwise_constraint=None, bias_constraint=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        owner = self._init_depthwise(kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate, activation, use_bias)  # fmt: skip
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"{owner}: filters must be a positive int. Received: filters={filters!r}")  # fmt: skip
        self.filters = filters
        self._init_weight_options(owner, locals())
        self.initializers = {
            "depthwise_kernel": initializers.get(depthwise_initializer, owner),
            "pointwise_kernel": initializers.get(pointwise_initializer, owner),
            "bias": initializers.get(bias_initializer, owner),
        }

    def weight_shapes(self, input_shape):
        cm = input_shape[-1] * self.depth_multiplier
        shapes = {"depthwise_kernel": self.depthwise_shape(input_shape), "pointwise_kernel": (1, 1, cm, self.filters)}  # fmt: skip
        return {**shapes, "bias": (self.filters,)} if self.use_bias else shapes

    def build(self, input_shape):
        for name, shape in self.weight_shapes(input_shape).items():
            prefix = name.split("_")[0]
            self.add_weight(shape=shape, initializer=self.initializers[name], name=name, **self.weight_options(prefix))  # fmt: skip

    def compute_output_shape(self, input_shape):
        n, oh, ow = self.depthwise_output(input_shape)
        return (n, oh, ow, self.filters)

    def forward(self, x, training=False):
        p = self.params
        d, dctx = maths.depthwise_forward(x, p["depthwise_kernel"], None, self.strides, self.pads(*x.shape[1:3]), keep=training)  # fmt: skip
        n, oh, ow, cm = d.shape
        d2 = d.reshape(n * oh * ow, cm)
        relu = self.activation.name == "relu"  # fused with the bias add in one pass
        z = maths.bias_relu(d2 @ p["pointwise_kernel"].reshape(cm, self.filters), p.get("bias"), relu)  # fmt: skip
        y, kept = (z, z) if relu else self.activate(z)
        return y.reshape(n, oh, ow, self.filters), ((dctx, d2, kept) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        dctx, d2, kept = ctx
        pointwise = self.params["pointwise_kernel"]
        cm = pointwise.shape[2]
        g2 = gy.reshape(kept.shape)
        if self.activation.name == "relu" and self.use_bias:  # the mask and the bias sums: one pass
            gz, gbias = maths.relu_backward_sum(g2, kept)
        else:
            gz = self.activation.backward(g2, kept)  # (M, filters)
            gbias = maths.sum_rows(gz) if self.use_bias else None
        grads = {"pointwise_kernel": maths.matmul_tn(d2, gz).reshape(pointwise.shape)}
        if self.use_bias:
            grads["bias"] = gbias
        gd = (gz @ pointwise.reshape(cm, self.filters).T).reshape(*gy.shape[:3], cm)
        gx, grads["depthwise_kernel"], _ = maths.depthwise_backward(gd, dctx, need_gx)
        return gx, grads

    def get_config(self):
        return {**self.config(), "filters": self.filters}
