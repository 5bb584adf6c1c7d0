"""keras.ops' activations and the other neural-network ops: relu, sigmoid, softmax and
log_softmax over an axis, gelu, silu/swish, leaky_relu, elu, selu, softplus, softsign,
hard_sigmoid, log_sigmoid, one_hot. Keras's defaults (ops.gelu is approximate, ops.leaky_relu's
slope is 0.2: those of keras.ops, not of the layers)."""

from __future__ import annotations

import math

from minicnn.backend import floatx
from minicnn.ops.core import Operation, run, xp_of
from minicnn.ops.math import unary

_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _sigmoid(xp, x):
    return 0.5 * (xp.tanh(0.5 * x) + 1)  # exact, and never overflows exp


relu = unary("relu", lambda xp, x: xp.maximum(x, 0), lambda g, x, y: g * (x > 0), "max(x, 0)")
relu6 = unary("relu6", lambda xp, x: xp.clip(x, 0, 6), lambda g, x, y: g * ((x > 0) & (x < 6)), "min(max(x, 0), 6)")  # fmt: skip
sigmoid = unary("sigmoid", _sigmoid, lambda g, x, y: g * y * (1 - y), "1 / (1 + e^-x)")
softplus = unary("softplus", lambda xp, x: xp.logaddexp(x, 0), lambda g, x, y: g * _sigmoid(xp_of(x), x), "log(1 + e^x)")  # fmt: skip
softsign = unary("softsign", lambda xp, x: x / (1 + xp.abs(x)), lambda g, x, y: g / (1 + xp_of(x).abs(x)) ** 2, "x / (1 + |x|)")  # fmt: skip
silu = unary(
    "silu",
    lambda xp, x: x * _sigmoid(xp, x),
    lambda g, x, y: g * (_sigmoid(xp_of(x), x) * (1 + x * (1 - _sigmoid(xp_of(x), x)))),
    "x * sigmoid(x)",
)
swish = silu
log_sigmoid = unary("log_sigmoid", lambda xp, x: -xp.logaddexp(-x, 0), lambda g, x, y: g * (1 - _sigmoid(xp_of(x), x)), "log(sigmoid(x))")  # fmt: skip
hard_sigmoid = unary(
    "hard_sigmoid",
    lambda xp, x: xp.clip(x / 6 + 0.5, 0, 1),
    lambda g, x, y: g * ((x > -3) & (x < 3)) / 6,
    "relu6(x + 3) / 6, Keras 3's",
)
selu = unary(
    "selu",
    lambda xp, x: _SELU_SCALE * xp.where(x > 0, x, _SELU_ALPHA * xp.expm1(xp.minimum(x, 0))),
    lambda g, x, y: g * xp_of(x).where(x > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA),
    "scale * elu(x, alpha), the self-normalising constants",
)


class Param(Operation):
    """An activation with a setting (leaky_relu's slope, elu's alpha, gelu's approximation)."""

    def output_shape(self, shape):
        return tuple(shape)


class LeakyRelu(Param):
    op_name = "leaky_relu"

    def compute(self, x):
        return xp_of(x).where(x > 0, x, x * self.settings["slope"])

    def grads(self, g, xs, y):
        return [g * xp_of(g).where(xs[0] > 0, 1, self.settings["slope"]).astype(g.dtype)]


def leaky_relu(x, negative_slope=0.2):
    return run(LeakyRelu(slope=negative_slope), x)


class Elu(Param):
    op_name = "elu"

    def compute(self, x):
        xp = xp_of(x)
        return xp.where(x > 0, x, self.settings["alpha"] * xp.expm1(xp.minimum(x, 0)))

    def grads(self, g, xs, y):
        return [g * xp_of(g).where(xs[0] > 0, 1, y + self.settings["alpha"]).astype(g.dtype)]


def elu(x, alpha=1.0):
    return run(Elu(alpha=alpha), x)


class Gelu(Param):
    op_name = "gelu"

    def compute(self, x):
        xp = xp_of(x)
        if self.settings["approximate"]:
            c = math.sqrt(2 / math.pi)
            return 0.5 * x * (1 + xp.tanh(c * (x + 0.044715 * x**3)))
        return 0.5 * x * (1 + _erf(xp, x / math.sqrt(2)))

    def grads(self, g, xs, y):
        x = xs[0]
        xp = xp_of(x)
        if self.settings["approximate"]:
            c = math.sqrt(2 / math.pi)
            t = xp.tanh(c * (x + 0.044715 * x**3))
            return [g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))]
        cdf = 0.5 * (1 + _erf(xp, x / math.sqrt(2)))
        pdf = xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        return [g * (cdf + x * pdf)]


def _erf(xp, x):
    """erf elementwise: math.erf on the CPU (exact to rounding; a Python call per element, so
    the exact gelu is slow on large arrays), CuPy's on the GPU."""
    if xp.__name__ == "numpy":
        return xp.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)
    import cupyx.scipy.special

    return cupyx.scipy.special.erf(x)


def gelu(x, approximate=True):
    """Keras's ops.gelu (its default is the tanh approximation)."""
    return run(Gelu(approximate=approximate), x)


class Softmax(Param):
    op_name = "softmax"

    def compute(self, x):
        xp, a = xp_of(x), self.settings["axis"]
        e = xp.exp(x - x.max(axis=a, keepdims=True))
        return e / e.sum(axis=a, keepdims=True)

    def grads(self, g, xs, y):
        return [y * (g - (g * y).sum(axis=self.settings["axis"], keepdims=True))]


def softmax(x, axis=-1):
    return run(Softmax(axis=axis), x)


class LogSoftmax(Param):
    op_name = "log_softmax"

    def compute(self, x):
        xp, a = xp_of(x), self.settings["axis"]
        z = x - x.max(axis=a, keepdims=True)
        return z - xp.log(xp.exp(z).sum(axis=a, keepdims=True))

    def grads(self, g, xs, y):
        return [g - xp_of(y).exp(y) * g.sum(axis=self.settings["axis"], keepdims=True)]


def log_softmax(x, axis=-1):
    return run(LogSoftmax(axis=axis), x)


class OneHot(Operation):
    op_name = "one_hot"

    def compute(self, x):
        xp = xp_of(x)
        k, axis = self.settings["num_classes"], self.settings["axis"]
        out = (xp.asarray(x)[..., None] == xp.arange(k)).astype(self.settings["dtype"])
        return out if axis == -1 else xp.moveaxis(out, -1, axis)

    def grads(self, g, xs, y):
        return [None]

    def output_shape(self, shape):
        axis = self.settings["axis"]
        out = [*shape, self.settings["num_classes"]]
        if axis != -1:
            out.insert(axis, out.pop())
        return tuple(out)


def one_hot(x, num_classes, axis=-1, dtype=None):
    """Integer labels as one-hot rows (no gradient)."""
    return run(OneHot(num_classes=int(num_classes), axis=axis, dtype=dtype or floatx()), x)
