"""Input, Dense, Flatten, the activation layers, Dropout and SpatialDropout2D."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from minicnn import activations, initializers, maths
from minicnn.backend import floatx, get_array_module, rng
from minicnn.layers.base import ActivationMixin, Layer
from minicnn.layers.node import KerasTensor, Node
from minicnn.layers.options import WeightOptions, channels_last, no_seed


class InputLayer(Layer):
    """Where a graph starts: it makes the KerasTensor that ``keras.Input`` returns, of shape
    ``(None, *shape)``. It has one node, with no inputs."""

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, **kwargs):  # fmt: skip
        if batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if batch_size is not None:
            raise ValueError(
                "Input: a fixed batch_size is not supported (minicnn takes any batch). "
                f"Received: batch_size={batch_size!r}"
            )
        if kwargs.pop("sparse", None):
            raise ValueError("Input: sparse inputs are not supported")
        if shape is None or not all(isinstance(d, int) and d > 0 for d in shape) or not len(shape):
            raise ValueError(
                f"Input: shape must be a tuple of positive ints (no batch axis; every size known). "
                f"Received: shape={shape!r}"
            )
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.start(shape, floatx())

    def start(self, shape: tuple, dtype) -> None:
        """Make the one node and its tensor, of shape ``(None, *shape)``."""
        self.shape = tuple(int(d) for d in shape)
        self.built = True
        self.build_shape = (None, *self.shape)
        tensor = KerasTensor(self.build_shape, dtype, self.name, (self, 0, 0))
        self.inbound_nodes.append(Node(self, [], [tensor], True))

    def get_config(self) -> dict:
        return {"name": self.name, "shape": list(self.shape)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None) -> KerasTensor:  # noqa: N802  (Keras spells it so)
    """A symbolic input of shape ``(None, *shape)``: call layers on it, then
    ``keras.Model(inputs, outputs)``; or make it the first entry of a Sequential."""
    return InputLayer(shape, batch_size, dtype, batch_shape, name=name).output


class DenseCtx(NamedTuple):
    x: object  # the input, for the kernel's gradient
    y: object  # what the activation's backward reads: the output, or its input (``keeps``)


class Dense(ActivationMixin, WeightOptions, Layer):
    """y = activation(x @ W + b). x: (N, in) -> y: (N, units); W: (in, units), b: (units,)."""

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        lora_rank=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_weight_options(f'Layer "{self.name}" (Dense)', locals())
        if lora_rank is not None:
            raise ValueError(f'Layer "{self.name}" (Dense): lora_rank is not supported by minicnn. Received: lora_rank={lora_rank!r}')  # fmt: skip
        if not isinstance(units, int) or units <= 0:
            raise ValueError(
                f'Layer "{self.name}": units must be a positive int. Received: units={units!r}'
            )
        self.units = units
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer, f'layer "{self.name}"')
        self.bias_initializer = initializers.get(bias_initializer, f'layer "{self.name}"')
        self._init_activation(activation)

    def build(self, input_shape):
        kernel = (input_shape[-1], self.units)
        self.add_weight(shape=kernel, initializer=self.kernel_initializer, name="kernel", **self.weight_options("kernel"))  # fmt: skip
        if self.use_bias:
            self.add_weight(shape=(self.units,), initializer=self.bias_initializer, name="bias", **self.weight_options("bias"))  # fmt: skip

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 2, "; add Flatten() before it")
        self.check_channels(input_shape, "features")
        return (input_shape[0], self.units)

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (input_shape[-1], self.units)}
        return {**shapes, "bias": (self.units,)} if self.use_bias else shapes

    def forward(self, x, training=False):
        z = x @ self.params["kernel"]  # (N, units)
        relu = self.activation.name == "relu"  # fused with the bias add in one pass
        z = maths.bias_relu(z, self.params.get("bias"), relu=relu)
        y, kept = (z, z) if relu else self.activation.apply(z)
        return y, (DenseCtx(x, kept) if training else None)

    def backward(self, gy, ctx, need_gx=True):
        gz = self.activation.backward(gy, ctx.y)  # (N, units)
        grads = {"kernel": maths.matmul_tn(ctx.x, gz)}  # (in, units)
        if self.use_bias:
            grads["bias"] = maths.sum_rows(gz)
        return (gz @ self.params["kernel"].T if need_gx else None), grads

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self.weight_options_config(),
        }


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in C order as Keras's channels-last Flatten."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        channels_last(data_format, f'Layer "{self.name}" (Flatten)')

    def compute_output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))

    def forward(self, x, training=False):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, gy, ctx, need_gx=True):
        return gy.reshape(ctx), {}


class Activation(ActivationMixin, Layer):
    """An activation by name as its own layer: ``Activation("relu")``."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._init_activation(activation)

    def forward(self, x, training=False):
        y, kept = self.activation.apply(x.copy())  # activations may work in place; x is not ours
        return y, (kept if training else None)

    def backward(self, gy, ctx, need_gx=True):
        return self.activation.backward(gy, ctx), {}

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class ReLU(Activation):
    """max(x, 0), or Keras's ``relu`` with ``max_value``, ``negative_slope`` and ``threshold``
    (``activations.KerasReLU``); the plain one is what the plan fuses into a convolution."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        kwargs.pop("activation", None)
        super().__init__("relu", **kwargs)
        owner = f'Layer "{self.name}" (ReLU)'
        for arg, value in (("max_value", max_value), ("negative_slope", negative_slope), ("threshold", threshold)):  # fmt: skip
            if value is None and arg == "max_value":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not np.isfinite(value):  # fmt: skip
                raise ValueError(f"{owner}: {arg} must be a finite number. Received: {arg}={value!r}")  # fmt: skip
        if max_value is not None and max_value < 0:
            raise ValueError(f"{owner}: max_value of a ReLU layer cannot be a negative value. Received: max_value={max_value}")  # fmt: skip
        if threshold < 0:
            raise ValueError(f"{owner}: threshold of a ReLU layer cannot be None or a negative value. Received: threshold={threshold}")  # fmt: skip
        if negative_slope < 0:
            raise ValueError(f"{owner}: negative_slope of a ReLU layer cannot be a negative value. Received: negative_slope={negative_slope}")  # fmt: skip
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope, self.threshold = float(negative_slope), float(threshold)
        if self.max_value is not None or self.negative_slope or self.threshold:
            self.activation = activations.KerasReLU(self.negative_slope, self.max_value, self.threshold)  # fmt: skip

    def get_config(self):
        settings = {"max_value": self.max_value, "negative_slope": self.negative_slope, "threshold": self.threshold}  # fmt: skip
        return {**Layer.get_config(self), **settings}


class Softmax(Activation):
    """The softmax over ``axis`` (Keras's default -1, or any axes but the batch's: an int or a
    tuple); over the last axis it is the activation a head's loss may take the logits of."""

    def __init__(self, axis=-1, **kwargs):
        kwargs.pop("activation", None)
        super().__init__("softmax", **kwargs)
        axes = axis if isinstance(axis, (list, tuple)) else (axis,)
        if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):  # fmt: skip
            raise ValueError(f'Layer "{self.name}" (Softmax): axis must be an int or a tuple of ints. Received: axis={axis!r}')  # fmt: skip
        self.axis = tuple(int(a) for a in axes) if isinstance(axis, (list, tuple)) else int(axis)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape)
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if any(not -rank <= a < rank or a % rank == 0 for a in axes):
            raise ValueError(f'Layer "{self.name}" (Softmax): axis={self.axis!r} must name axes of the input other than the batch axis. Received: input shape {input_shape}')  # fmt: skip
        resolved = tuple(sorted(a % rank for a in axes))
        if resolved != (rank - 1,):
            self.activation = activations.AxisSoftmax(resolved)
        return tuple(input_shape)

    def get_config(self):
        return {**Layer.get_config(self), "axis": self.axis}


class Identity(Layer):
    """y = x (Keras's placeholder layer)."""

    def forward(self, x, training=False):
        return x, None

    def backward(self, gy, ctx, need_gx=True):
        return gy, {}


class GaussianNoise(Layer):
    """Keras's: in training, x plus noise drawn from N(0, stddev^2) per element (from minicnn's
    seeded generator, in x's dtype); the identity in inference. The gradient passes as it is."""

    mode_dependent = True

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" (GaussianNoise)'
        no_seed(seed, owner)
        if not (isinstance(stddev, (int, float)) and not isinstance(stddev, bool) and 0 <= stddev < math.inf):  # fmt: skip
            raise ValueError(f"{owner}: stddev must be a number >= 0. Received: stddev={stddev!r}")
        self.stddev, self.seed = float(stddev), None

    def forward(self, x, training=False):
        if not training or self.stddev == 0:
            return x, None
        noise = rng().standard_normal(x.shape, dtype=x.dtype) * x.dtype.type(self.stddev)
        return x + get_array_module(x).asarray(noise), None

    def backward(self, gy, ctx, need_gx=True):
        return gy, {}

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs while training and scales the rest by 1/(1 - rate)
    (inverted dropout), so inference is the identity."""

    def __init__(self, rate: float, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        owner = f'Layer "{self.name}" ({type(self).__name__})'
        if noise_shape is not None:
            ok = isinstance(noise_shape, (list, tuple)) and all(d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0) for d in noise_shape)  # fmt: skip
            if not ok:
                raise ValueError(f"{owner}: noise_shape must be a tuple of positive ints or None (one per axis, batch first). Received: noise_shape={noise_shape!r}")  # fmt: skip
            noise_shape = tuple(None if d is None else int(d) for d in noise_shape)
        self.noise_shape = noise_shape
        no_seed(seed, owner)
        if not 0 <= rate < 1:
            raise ValueError(
                f'Layer "{self.name}": rate must be in [0, 1). Received: rate={rate!r}'
            )
        self.rate = float(rate)

    mode_dependent = True

    def compute_output_shape(self, input_shape):
        s = self.noise_shape
        if s is not None and (len(s) != len(input_shape) or any(d not in (None, 1, n) for d, n in zip(s[1:], input_shape[1:]))):  # fmt: skip
            raise ValueError(f'Layer "{self.name}" (Dropout): noise_shape={s!r} must have one entry per axis of the input, each None, 1 or the axis\'s size. Received: input shape {tuple(input_shape)}')  # fmt: skip
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            return x, None
        if self.noise_shape is not None:  # one draw per mask entry, shared along the 1s
            shape = tuple(n if d is None else d for d, n in zip(self.noise_shape, x.shape))
            return maths.shaped_dropout(x, self.rate, shape)
        return maths.dropout(x, self.rate)  # (y, mask): True where kept

    def backward(self, gy, ctx, need_gx=True):
        if ctx is None:
            return gy, {}
        if self.noise_shape is not None:
            return maths.spatial_dropout_backward(gy, ctx, self.rate), {}
        return maths.dropout_backward(gy, ctx, self.rate), {}

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": None if self.noise_shape is None else list(self.noise_shape)}  # fmt: skip


class SpatialDropout2D(Dropout):
    """Dropout of whole channels: while training, each image's channels are zeroed with
    probability ``rate`` (one draw per image and channel, for every pixel) and the rest scaled
    by 1/(1 - rate); inference is the identity. For (N, H, W, C) inputs."""

    def __init__(self, rate: float, data_format=None, seed=None, **kwargs):
        super().__init__(rate, **kwargs)
        owner = f'Layer "{self.name}" (SpatialDropout2D)'
        channels_last(data_format, owner)
        no_seed(seed, owner)

    def compute_output_shape(self, input_shape):
        self.check_rank(input_shape, 4)
        return tuple(input_shape)

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            return x, None
        return maths.spatial_dropout(x, self.rate)  # (y, keep (N, 1, 1, C))

    def backward(self, gy, ctx, need_gx=True):
        return (gy if ctx is None else maths.spatial_dropout_backward(gy, ctx, self.rate)), {}

    def get_config(self):  # Keras's SpatialDropout2D has no noise_shape of its own
        return {k: v for k, v in super().get_config().items() if k != "noise_shape"}


class Lambda(Layer):
    """``Lambda(function)``: ``function(inputs, **arguments)`` written with keras.ops, traced
    once on symbolic inputs like a custom layer's call (its backward is the ops' own). A given
    ``output_shape`` (no batch axis) is checked against the traced one. Lambda layers are not
    saved: a file never carries code to run."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda: function must be callable. Received: {function!r}")
        if mask is not None:
            raise ValueError("Lambda: masks are not supported in minicnn. Received: mask=...")
        self.function, self.arguments = function, dict(arguments or {})
        self.declared_shape = None if output_shape is None or callable(output_shape) else tuple(output_shape)  # fmt: skip

    def call(self, inputs):
        out = self.function(inputs, **self.arguments)
        if self.declared_shape is not None and hasattr(out, "shape"):
            if tuple(out.shape[1:]) != self.declared_shape:
                raise ValueError(
                    f'Lambda "{self.name}": output_shape={self.declared_shape} but the function '
                    f"gives {tuple(out.shape[1:])} (no batch axis)"
                )
        return out

    def __repr__(self) -> str:
        return f"Lambda({getattr(self.function, '__name__', 'function')}, name={self.name!r})"
