"""Keras 3's newer activations, each a forward and its derivative (formulas from
keras/src/backend/numpy/nn.py): celu, hard_silu (hard_swish), hard_tanh, log_sigmoid, mish,
soft_shrink, hard_shrink, tanh_shrink, squareplus, sparse_plus, sparse_sigmoid, and
log_softmax over the last axis. All but log_softmax keep their input for backward."""

from __future__ import annotations

from minicnn.activations.base import Activation, Softplus
from minicnn.backend import get_array_module


def _sigmoid(z):
    return z.dtype.type(0.5) * (get_array_module(z).tanh(z.dtype.type(0.5) * z) + 1)


class _OfInput(Activation):
    keeps = "input"

    def backward(self, gy, z):
        return gy * self.slope(z)


class CELU(_OfInput):
    """max(x, 0) + alpha expm1(min(x, 0) / alpha)."""

    name = "celu"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def get_config(self):
        return {} if self.alpha == 1.0 else {"alpha": self.alpha}

    def forward(self, z):
        xp, a = get_array_module(z), z.dtype.type(self.alpha)
        return xp.maximum(z, 0) + a * xp.expm1(xp.minimum(z, 0) / a)

    def slope(self, z):
        xp = get_array_module(z)
        return xp.where(z > 0, z.dtype.type(1), xp.exp(xp.minimum(z, 0) / z.dtype.type(self.alpha)))  # fmt: skip


class HardSiLU(_OfInput):
    """x * hard_sigmoid(x), hard_sigmoid = clip(x / 6 + 1/2, 0, 1)."""

    name = "hard_silu"

    def forward(self, z):
        return z * get_array_module(z).clip(z / z.dtype.type(6) + z.dtype.type(0.5), 0, 1)

    def slope(self, z):
        xp = get_array_module(z)
        hs = xp.clip(z / z.dtype.type(6) + z.dtype.type(0.5), 0, 1)
        return hs + z * ((z > -3) & (z < 3)) / z.dtype.type(6)


class HardTanh(_OfInput):
    name = "hard_tanh"

    def forward(self, z):
        return get_array_module(z).clip(z, -1, 1)

    def slope(self, z):
        return ((z > -1) & (z < 1)).astype(z.dtype)


class LogSigmoid(_OfInput):
    """-softplus(-x); its slope sigmoid(-x)."""

    name = "log_sigmoid"

    def forward(self, z):
        return -Softplus().forward(-z)

    def slope(self, z):
        return _sigmoid(-z)


class Mish(_OfInput):
    """x tanh(softplus(x)); slope tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)."""

    name = "mish"

    def forward(self, z):
        return z * get_array_module(z).tanh(Softplus().forward(z))

    def slope(self, z):
        t = get_array_module(z).tanh(Softplus().forward(z))
        return t + z * (1 - t * t) * _sigmoid(z)


class SoftShrink(_OfInput):
    """x - t above t, x + t below -t, 0 between (threshold t = 0.5)."""

    name = "soft_shrink"

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)

    def get_config(self):
        return {} if self.threshold == 0.5 else {"threshold": self.threshold}

    def forward(self, z):
        xp, t = get_array_module(z), z.dtype.type(self.threshold)
        return xp.where(z > t, z - t, xp.where(z < -t, z + t, z.dtype.type(0)))

    def slope(self, z):
        return (get_array_module(z).abs(z) > self.threshold).astype(z.dtype)


class HardShrink(SoftShrink):
    """x where |x| > t, else 0."""

    name = "hard_shrink"

    def forward(self, z):
        xp = get_array_module(z)
        return xp.where(xp.abs(z) > z.dtype.type(self.threshold), z, z.dtype.type(0))


class TanhShrink(_OfInput):
    name = "tanh_shrink"

    def forward(self, z):
        return z - get_array_module(z).tanh(z)

    def slope(self, z):
        t = get_array_module(z).tanh(z)
        return t * t


class Squareplus(_OfInput):
    """(x + sqrt(x^2 + b)) / 2, b = 4."""

    name = "squareplus"

    def __init__(self, b: float = 4.0):
        self.b = float(b)

    def get_config(self):
        return {} if self.b == 4.0 else {"b": self.b}

    def forward(self, z):
        return (z + get_array_module(z).sqrt(z * z + z.dtype.type(self.b))) / 2

    def slope(self, z):
        return (1 + z / get_array_module(z).sqrt(z * z + z.dtype.type(self.b))) / 2


class SparsePlus(_OfInput):
    """0 up to -1, (x + 1)^2 / 4 up to 1, then x."""

    name = "sparse_plus"

    def forward(self, z):
        xp = get_array_module(z)
        return xp.where(z <= -1, z.dtype.type(0), xp.where(z < 1, (z + 1) ** 2 / 4, z))

    def slope(self, z):
        xp = get_array_module(z)
        return xp.where(z <= -1, z.dtype.type(0), xp.where(z < 1, (z + 1) / 2, z.dtype.type(1)))  # fmt: skip


class SparseSigmoid(_OfInput):
    """0 up to -1, (x + 1) / 2 up to 1, then 1."""

    name = "sparse_sigmoid"

    def forward(self, z):
        xp = get_array_module(z)
        return xp.where(z <= -1, z.dtype.type(0), xp.where(z >= 1, z.dtype.type(1), (z + 1) / 2))  # fmt: skip

    def slope(self, z):
        return ((z > -1) & (z < 1)).astype(z.dtype) / 2


class LogSoftmax(Activation):
    """x - logsumexp(x) over the last axis; backward from its output: gy - softmax sum(gy)."""

    name = "log_softmax"

    def forward(self, z):
        xp = get_array_module(z)
        m = z.max(axis=-1, keepdims=True)
        return z - m - xp.log(xp.exp(z - m).sum(axis=-1, keepdims=True))

    def backward(self, gy, y):
        return gy - get_array_module(y).exp(y) * gy.sum(axis=-1, keepdims=True)


CLASSES = (CELU, HardSiLU, HardTanh, LogSigmoid, Mish, SoftShrink, HardShrink, TanhShrink,
           Squareplus, SparsePlus, SparseSigmoid, LogSoftmax)  # fmt: skip
