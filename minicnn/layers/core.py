"""Dense, Flatten, activation layers, Dropout, and the Input marker."""

from __future__ import annotations

import math

from minicnn import initializers, ops
from minicnn.layers.base import ActivationMixin, Layer


class InputLayer(Layer):
    """Declares the input shape of a Sequential model (``model.add(Input(shape=(28, 28, 1)))``)."""

    def __init__(self, shape, name: str | None = None, **kwargs):
        if shape is None or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(
                f"Input: shape must be a tuple of positive ints. Received: shape={shape!r}"
            )
        super().__init__(name=name, input_shape=tuple(shape), **kwargs)

    def get_config(self) -> dict:
        return {"name": self.name, "shape": list(self.input_shape_hint)}


def Input(shape, name: str | None = None) -> InputLayer:  # noqa: N802  (Keras spells it so)
    return InputLayer(shape, name=name)


class Dense(ActivationMixin, Layer):
    """y = activation(x @ W + b). x: (N, in) -> y: (N, units); W: (in, units), b: (units,)."""

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(
                f'Layer "{self.name}": units must be a positive int. Received: units={units!r}'
            )
        self.units = units
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer, f'layer "{self.name}"')
        self.bias_initializer = initializers.get(bias_initializer, f'layer "{self.name}"')
        self._init_activation(activation)

    def build(self, input_shape, backend=None):
        if len(input_shape) != 1:
            raise ValueError(
                f'Layer "{self.name}" (Dense) expects input of rank 2 (batch, features); add '
                f"Flatten() before it. Received: input shape {(None, *input_shape)}"
            )
        super().build(input_shape, backend)
        self.add_weight("kernel", (input_shape[0], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (input_shape[-1], self.units)}
        return {**shapes, "bias": (self.units,)} if self.use_bias else shapes

    def forward(self, x, training=False):
        self.check_input_shape(x.shape[1:], rank=1)
        z = x @ self.params["kernel"]  # (N, units)
        relu = self.activation.name == "relu"  # fused with the bias add in one pass
        z = ops.bias_relu(z, self.params.get("bias"), relu=relu)
        y = z if relu else self._activate(z)
        if training:
            self.x, self.y = x, y
        return y

    def backward(self, gy):
        gz = self._activate_backward(gy, self.y)  # (N, units)
        self.grads["kernel"] = ops.matmul_tn(self.x, gz)  # (in, units)
        if self.use_bias:
            self.grads["bias"] = ops.sum_rows(gz)
        return gz @ self.params["kernel"].T if self.needs_input_grad else None

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation.name,
            "use_bias": self.use_bias,
        }


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in C order as Keras's channels-last Flatten."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self.check_input_shape(x.shape[1:])
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, gy):
        return gy.reshape(self.x_shape)


class Activation(ActivationMixin, Layer):
    """An activation by name as its own layer: ``Activation("relu")``."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._init_activation(activation)

    def forward(self, x, training=False):
        self.check_input_shape(x.shape[1:])
        y = self._activate(x.copy())  # activations may work in place; the input is not ours
        if training:
            self.y = y
        return y

    def backward(self, gy):
        return self._activate_backward(gy, self.y)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation.name}


class ReLU(Activation):
    def __init__(self, **kwargs):
        kwargs.pop("activation", None)
        super().__init__("relu", **kwargs)

    def get_config(self):
        return Layer.get_config(self)


class Softmax(Activation):
    def __init__(self, **kwargs):
        kwargs.pop("activation", None)
        super().__init__("softmax", **kwargs)

    def get_config(self):
        return Layer.get_config(self)


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs while training and scales the rest by 1/(1 - rate)
    (inverted dropout), so inference is the identity."""

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise ValueError(
                f'Layer "{self.name}": rate must be in [0, 1). Received: rate={rate!r}'
            )
        self.rate = float(rate)

    def forward(self, x, training=False):
        self.check_input_shape(x.shape[1:])
        if not training or self.rate == 0:
            self.mask = None
            return x
        y, self.mask = ops.dropout(x, self.rate)  # mask: (N, ...) True where kept
        return y

    def backward(self, gy):
        return gy if self.mask is None else ops.dropout_backward(gy, self.mask, self.rate)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
