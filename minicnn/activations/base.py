"""Activation functions by Keras name (``activation="gelu"``) or as Keras's functions
(``activation=keras.activations.gelu``), each a forward and its backward side by side.

The backward reads one array the forward leaves: its output ``y`` where the derivative is a
function of it (ReLU, sigmoid, tanh, softplus, ...), else its input ``z`` (GELU, swish, ELU),
as ``keeps`` says. A layer keeps what ``apply`` returns beside the output, so it holds one
array whatever its activation. ``forward`` may overwrite z only where it keeps the output
(ReLU does, in place on a fresh product).

The formulas are Keras 3's (keras/src/backend/numpy/nn.py): ``gelu`` is the exact one by
default (``approximate=False``, through erf), ``hard_sigmoid`` is relu6(x + 3) / 6, ``elu`` is x
for x >= 0 else alpha (exp(x) - 1), ``selu`` is scale * elu(x, alpha) with Keras's constants.
"""

from __future__ import annotations

import math

import numpy as np

from minicnn import maths
from minicnn.backend import floatx, get_array_module


class Activation:
    name = "linear"
    keeps = "output"  # what backward reads: the forward's "output" y or its "input" z

    def get_config(self) -> dict:
        """The settings that differ from the name's defaults (ELU's alpha, GELU's approximate)."""
        return {}

    def forward(self, z):
        return z

    def backward(self, gy, kept):
        return gy

    def apply(self, z):
        """-> (y, what backward needs)."""
        y = self.forward(z)
        return y, (y if self.keeps == "output" else z)

    def __call__(self, x):
        """On an array, as Keras's function is called: ``activations.get("gelu")(x)``."""
        return self.forward(_fresh(x))

    def __repr__(self) -> str:
        return f"activations.get({self.name!r})"


class ReLU(Activation):
    name = "relu"

    def forward(self, z):
        xp = get_array_module(z)
        return xp.maximum(z, 0, out=z)  # in place: z is a fresh product nobody else holds

    def backward(self, gy, y):
        return maths.relu_backward(gy, y)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, z):
        xp = get_array_module(z)
        # 1 / (1 + exp(-z)) overflows exp for z << 0; tanh form is exact and never overflows
        return 0.5 * (xp.tanh(0.5 * z) + 1)

    def backward(self, gy, y):
        return gy * y * (1 - y)


class Tanh(Activation):
    name = "tanh"

    def forward(self, z):
        return get_array_module(z).tanh(z)

    def backward(self, gy, y):
        return gy * (1 - y * y)


class Softmax(Activation):
    name = "softmax"

    def forward(self, z):
        return maths.softmax(z)

    def backward(self, gy, y):
        # Jacobian-vector product of softmax: y * (gy - <gy, y>) row by row
        return y * (gy - (gy * y).sum(axis=-1, keepdims=True))


class AxisSoftmax(Activation):
    """The softmax over ``axis`` (an int or a tuple of them) other than the last alone: the
    Softmax layer's ``Softmax(axis=1)``. Not a name of its own."""

    name = "softmax_over_axis"

    def __init__(self, axis):
        self.axis = axis

    def forward(self, z):
        xp = get_array_module(z)
        e = xp.exp(z - z.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)

    def backward(self, gy, y):
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


class ELU(Activation):
    """z for z >= 0, else alpha (exp(z) - 1); its slope alpha exp(z) there."""

    name = "elu"
    keeps = "input"  # any alpha (a negative one makes y > 0 for z < 0 too)

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def get_config(self):
        return {} if self.alpha == 1.0 else {"alpha": self.alpha}

    def forward(self, z):
        xp = get_array_module(z)
        return xp.where(z >= 0, z, self.alpha * xp.expm1(xp.minimum(z, 0)))

    def backward(self, gy, z):
        xp = get_array_module(z)
        return gy * xp.where(z >= 0, 1, self.alpha * xp.exp(xp.minimum(z, 0)))


class SELU(ELU):
    """scale * elu(z, alpha), with Keras's alpha and scale."""

    name = "selu"
    ALPHA, SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

    def __init__(self):
        super().__init__(self.ALPHA)

    def get_config(self):
        return {}

    def forward(self, z):
        return self.SCALE * super().forward(z)

    def backward(self, gy, z):
        return super().backward(gy * self.SCALE, z)


class GELU(Activation):
    """z * Phi(z), Phi the standard normal's CDF: 0.5 z (1 + erf(z / sqrt 2)); its slope is
    Phi(z) + z phi(z). ``approximate``: the tanh form 0.5 z (1 + tanh(c (z + 0.044715 z^3))),
    c = sqrt(2 / pi)."""

    name = "gelu"
    keeps = "input"
    C, A = math.sqrt(2 / math.pi), 0.044715

    def __init__(self, approximate: bool = False):
        self.approximate = bool(approximate)

    def get_config(self):
        return {"approximate": True} if self.approximate else {}

    def forward(self, z):
        if self.approximate:
            return 0.5 * z * (1 + get_array_module(z).tanh(self.C * (z + self.A * z**3)))
        return 0.5 * z * (1 + maths.erf(z * (1 / math.sqrt(2))))

    def backward(self, gy, z):
        xp = get_array_module(z)
        if self.approximate:
            t = xp.tanh(self.C * (z + self.A * z**3))
            return gy * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * self.C * (1 + 3 * self.A * z * z))  # fmt: skip
        cdf = 0.5 * (1 + maths.erf(z * (1 / math.sqrt(2))))
        return gy * (cdf + z * xp.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi)))


class SiLU(Activation):
    """swish: z sigmoid(z); its slope s (1 + z (1 - s)), s = sigmoid(z)."""

    name = "silu"
    keeps = "input"

    def forward(self, z):
        return z * Sigmoid().forward(z)

    def backward(self, gy, z):
        s = Sigmoid().forward(z)
        return gy * s * (1 + z * (1 - s))


class Softplus(Activation):
    """log(1 + exp(z)), as max(z, 0) + log1p(exp(-|z|)); its slope sigmoid(z) = 1 - exp(-y)."""

    name = "softplus"

    def forward(self, z):
        xp = get_array_module(z)
        return xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))

    def backward(self, gy, y):
        return gy * -get_array_module(y).expm1(-y)


class Softsign(Activation):
    """z / (1 + |z|); its slope 1 / (1 + |z|)^2 = (1 - |y|)^2."""

    name = "softsign"

    def forward(self, z):
        return z / (1 + get_array_module(z).abs(z))

    def backward(self, gy, y):
        d = 1 - get_array_module(y).abs(y)
        return gy * d * d


class HardSigmoid(Activation):
    """Keras 3's: relu6(z + 3) / 6 = clip(z / 6 + 1/2, 0, 1); its slope 1/6 where 0 < y < 1."""

    name = "hard_sigmoid"

    def forward(self, z):
        return get_array_module(z).clip(z * (1 / 6) + 0.5, 0, 1)

    def backward(self, gy, y):
        return gy * ((y > 0) & (y < 1)) * (1 / 6)


class Exponential(Activation):
    name = "exponential"

    def forward(self, z):
        return get_array_module(z).exp(z)

    def backward(self, gy, y):
        return gy * y


class LeakyReLU(Activation):
    """z for z >= 0, else negative_slope * z (Keras's activation defaults to 0.2, its layer to
    0.3); with a slope >= 0, y > 0 exactly where z > 0."""

    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.2):
        if not negative_slope >= 0:
            raise ValueError(f"leaky_relu: negative_slope must be >= 0. Received: negative_slope={negative_slope!r}")  # fmt: skip
        self.negative_slope = float(negative_slope)

    def get_config(self):
        return {} if self.negative_slope == 0.2 else {"negative_slope": self.negative_slope}

    def forward(self, z):
        return get_array_module(z).where(z >= 0, z, self.negative_slope * z)

    def backward(self, gy, y):
        return get_array_module(y).where(y > 0, gy, gy * self.negative_slope)


class KerasReLU(Activation):
    """Keras's ``relu(x, negative_slope, max_value, threshold)`` with settings (the ReLU layer's
    ``ReLU(max_value=6.0)``, say): x above the threshold, else 0; clipped to [0, max_value];
    less ``negative_slope * relu(threshold - x)``. Not a name of its own: the plain ReLU is
    ``ReLU``, which the plan fuses."""

    name = "relu_with_settings"
    keeps = "input"

    def __init__(self, negative_slope=0.0, max_value=None, threshold=0.0):
        self.negative_slope = float(negative_slope)
        self.max_value = None if max_value is None else float(max_value)
        self.threshold = float(threshold)

    def get_config(self) -> dict:
        return {"negative_slope": self.negative_slope, "max_value": self.max_value, "threshold": self.threshold}  # fmt: skip

    def forward(self, z):
        xp, t = get_array_module(z), z.dtype.type(self.threshold)
        y = z * (z > t) if self.threshold else xp.maximum(z, 0)
        if self.max_value is not None:
            y = xp.clip(y, 0, z.dtype.type(self.max_value))
        if self.negative_slope:
            y = y - z.dtype.type(self.negative_slope) * xp.maximum(t - z, 0)
        return y

    def backward(self, gy, z):
        t = z.dtype.type(self.threshold)
        d = z > t if self.threshold else z > 0
        if self.max_value is not None:
            d = d & (z > 0) & (z < z.dtype.type(self.max_value))
        g = gy * d
        if self.negative_slope:
            g = g + gy * (z.dtype.type(self.negative_slope) * (z < t))
        return g


class ReLU6(Activation):
    name = "relu6"

    def forward(self, z):
        return get_array_module(z).clip(z, 0, 6)

    def backward(self, gy, y):
        return gy * ((y > 0) & (y < 6))


def _fresh(x):
    """A copy of ``x`` as an array of floatx when it is not an array (forward may work in place)."""
    if not hasattr(x, "dtype"):
        return np.array(x, dtype=floatx())
    return get_array_module(x).array(x, copy=True)
