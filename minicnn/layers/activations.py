"""The activation layers with a setting: LeakyReLU, ELU, and PReLU, whose slope is a weight."""

from __future__ import annotations

from minicnn import activations, initializers
from minicnn.layers.base import Layer, unique_name
from minicnn.layers.options import WeightOptions


class _Elementwise(Layer):
    """A layer that is one activation function of its input (any shape)."""

    fn: activations.Activation

    def forward(self, x, training=False):
        y, kept = self.fn.apply(x)  # these activations never write into x
        return y, (kept if training else None)

    def backward(self, gy, ctx, need_gx=True):
        return self.fn.backward(gy, ctx), {}


class LeakyReLU(_Elementwise):
    """x for x >= 0, else negative_slope * x (Keras's default slope 0.3; ``alpha=`` is its
    deprecated name)."""

    def __init__(self, negative_slope: float = 0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) or not negative_slope >= 0:  # fmt: skip
            raise ValueError(
                "The negative_slope value of a Leaky ReLU layer cannot be None or negative "
                f"value. Expected a float. Received: negative_slope={negative_slope!r}"
            )
        super().__init__(**kwargs)
        self.negative_slope = float(negative_slope)
        self.fn = activations.LeakyReLU(self.negative_slope)

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(_Elementwise):
    """x for x >= 0, else alpha (exp(x) - 1); Keras's default alpha 1.0."""

    def __init__(self, alpha: float = 1.0, **kwargs):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"ELU: alpha must be a float. Received: alpha={alpha!r}")
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.fn = activations.ELU(self.alpha)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(WeightOptions, Layer):
    """x for x >= 0, else alpha * x, with ``alpha`` a trained weight of the input's shape
    (batch axis left out), of size 1 along ``shared_axes`` (``[1, 2]`` after a Conv2D: one slope
    per channel). Its gradient: gx = gy where x > 0, else alpha gy; galpha = the sum of
    gy * min(x, 0) over the batch and the shared axes."""

    WEIGHTS = ("alpha",)

    def __init__(self, alpha_initializer="Zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, name=None, **kwargs):  # fmt: skip
        super().__init__(name=name or unique_name("p_re_lu"), **kwargs)  # Keras's default name
        owner = f'Layer "{self.name}" (PReLU)'
        self._init_weight_options(owner, locals())
        self.alpha_initializer = initializers.get(alpha_initializer, owner)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in axes):
                raise ValueError(
                    f"{owner}: shared_axes must be ints >= 1 (axis 0 is the batch). "
                    f"Received: shared_axes={shared_axes!r}"
                )
            self.shared_axes = axes

    def weight_shapes(self, input_shape):
        shape = list(input_shape[1:])
        for a in self.shared_axes or []:
            shape[a - 1] = 1
        return {"alpha": tuple(shape)}

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2 or any(a >= len(input_shape) for a in self.shared_axes or []):
            raise ValueError(
                f'Layer "{self.name}" (PReLU): shared_axes {self.shared_axes} must be axes of '
                f"the input. Received: input shape {input_shape}"
            )
        if self.built:
            want = self.weight_shapes(self.build_shape)["alpha"]
            if self.weight_shapes(input_shape)["alpha"] != want:
                raise ValueError(
                    f'Layer "{self.name}" (PReLU) was built for inputs of shape '
                    f"{self.build_shape}. Received: input shape {input_shape}"
                )
        return tuple(input_shape)

    def build(self, input_shape):
        shape = self.weight_shapes(input_shape)["alpha"]
        self.add_weight(shape=shape, initializer=self.alpha_initializer, name="alpha", **self.weight_options("alpha"))  # fmt: skip

    def forward(self, x, training=False):
        xp = self.xp
        y = xp.where(x > 0, x, self.params["alpha"] * x)
        return y, (x if training else None)

    def backward(self, gy, x, need_gx=True):
        xp = self.xp
        alpha = self.params["alpha"]
        shared = (0, *(self.shared_axes or []))
        galpha = (gy * xp.minimum(x, 0)).sum(axis=shared, keepdims=True).reshape(alpha.shape)
        gx = xp.where(x > 0, gy, gy * alpha) if need_gx else None
        return gx, {"alpha": galpha}

    def get_config(self):
        return {**super().get_config(), "shared_axes": self.shared_axes, **self.weight_options_config()}  # fmt: skip
