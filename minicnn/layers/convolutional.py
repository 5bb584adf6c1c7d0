"""Conv2D, channels-last: the layer; the algorithms that compute it are in ``minicnn.ops.conv``."""

from __future__ import annotations

from minicnn import initializers, ops
from minicnn.layers.base import ActivationMixin, Layer, normalize_padding, normalize_tuple


class Conv2D(ActivationMixin, Layer):
    """2-D convolution (cross-correlation, as every framework computes it).

    x: (N, H, W, C) -> y: (N, oH, oW, F); kernel: (kh, kw, C, F) as in Keras; bias: (F,).
    Forward is one GEMM of the im2col matrix (N*oH*oW, kh*kw*C) with the kernel (kh*kw*C, F); its
    result is already (N, oH, oW, F) in memory, so channels-last needs no transpose anywhere.
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (Conv2D)'
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

    def build(self, input_shape, backend=None):
        self.check_input_shape(tuple(input_shape), rank=3)
        self._check_fits(input_shape)
        super().build(input_shape, backend)
        kh, kw = self.kernel_size
        self.add_weight("kernel", (kh, kw, input_shape[-1], self.filters), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def _check_fits(self, input_shape):
        h, w, _ = input_shape
        if self.padding == "valid" and (h < self.kernel_size[0] or w < self.kernel_size[1]):
            raise ValueError(
                f'Layer "{self.name}" (Conv2D): a {self.kernel_size} kernel with padding="valid" '
                f"needs an image at least that large. Received: input shape {(None, *input_shape)}"
            )

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, input_shape[-1], self.filters)}
        return {**shapes, "bias": (self.filters,)} if self.use_bias else shapes

    def compute_output_shape(self, input_shape):
        self._check_fits(input_shape)
        h, w, _ = input_shape
        (kh, kw), (sy, sx) = self.kernel_size, self.strides
        return (
            ops.conv_output_length(h, kh, sy, self.padding),
            ops.conv_output_length(w, kw, sx, self.padding),
            self.filters,
        )

    def forward(self, x, training=False, affine=None, relu=False):
        """``affine`` (inference, no activation): (scale, shift) per filter applied to the
        output, folded into the kernel and bias (a BatchNormalization that follows, as a
        Sequential runs it when predicting); ``relu``: a ReLU after that, fused in too."""
        self.check_input_shape(x.shape[1:], rank=3)
        n, h, w, c = x.shape
        (kh, kw), (sy, sx) = self.kernel_size, self.strides
        pads = ops.padding_amounts(h, w, kh, kw, sy, sx, self.padding)
        kernel, bias = self.params["kernel"], self.params.get("bias")
        if affine is not None:
            scale, shift = affine
            kernel = kernel * scale.astype(kernel.dtype)
            bias = (shift if bias is None else bias * scale + shift).astype(kernel.dtype)
        relu = relu or self.activation.name == "relu"  # fused into the convolution's last pass
        z, saved = ops.conv2d_forward(
            x, kernel, self.strides, pads, bias, relu, keep=training
        )  # (N*oH*oW, F)
        oh, ow, _ = self.compute_output_shape((h, w, c))
        y = (z if relu else self._activate(z)).reshape(n, oh, ow, self.filters)
        if training:
            self.saved, self.y, self.pads, self.x_shape = saved, y, pads, x.shape
        return y

    def backward(self, gy):
        n, oh, ow, f = gy.shape
        relu = self.activation.name == "relu"  # conv2d_backward masks by y > 0 itself
        gz = gy if relu else self._activate_backward(gy, self.y)
        gkernel, gbias, gx = ops.conv2d_backward(
            gz.reshape(n * oh * ow, f),
            self.saved,
            self.params["kernel"],
            self.x_shape,
            self.strides,
            self.pads,
            self.needs_input_grad,
            y=self.y if relu else None,
            bias=self.use_bias,
        )
        self.grads["kernel"] = gkernel
        if self.use_bias:
            self.grads["bias"] = gbias
        self.saved = None  # the largest arrays of the step: let them go as soon as they are used
        return gx

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "activation": self.activation.name,
            "use_bias": self.use_bias,
        }
