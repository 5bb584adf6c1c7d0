"""Weight initialisers, Keras's defaults. Drawn on the host from minicnn's seeded generator, so a
seed gives the same starting model on every backend."""

from __future__ import annotations

import math

import numpy as np

from minicnn.backend import rng


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras counts them: a conv kernel (kh, kw, in, out) has a receptive
    field of kh*kw, so fan_in = kh*kw*in and fan_out = kh*kw*out."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape, dtype) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng().uniform(-limit, limit, size=shape).astype(dtype)


def _truncated(shape) -> np.ndarray:
    """Standard normal draws, those beyond 2 standard deviations drawn again (Keras's truncation)."""
    w = rng().standard_normal(size=shape)
    while (bad := np.abs(w) > 2).any():
        w[bad] = rng().standard_normal(size=int(bad.sum()))
    return w


def he_normal(shape, dtype) -> np.ndarray:
    # Keras draws from a normal truncated at 2 standard deviations, scaled for the truncation
    fan_in, _ = fans(shape)
    return (_truncated(shape) * (math.sqrt(2.0 / fan_in) / 0.87962566103423978)).astype(dtype)


def glorot_normal(shape, dtype) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    return (_truncated(shape) * math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978).astype(dtype)  # fmt: skip


def he_uniform(shape, dtype) -> np.ndarray:
    limit = math.sqrt(6.0 / fans(shape)[0])
    return rng().uniform(-limit, limit, size=shape).astype(dtype)


def lecun_normal(shape, dtype) -> np.ndarray:
    return (_truncated(shape) * math.sqrt(1.0 / fans(shape)[0]) / 0.87962566103423978).astype(dtype)  # fmt: skip


def lecun_uniform(shape, dtype) -> np.ndarray:
    limit = math.sqrt(3.0 / fans(shape)[0])
    return rng().uniform(-limit, limit, size=shape).astype(dtype)


class RandomNormal:
    """Keras's RandomNormal(mean=0.0, stddev=0.05)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def __call__(self, shape, dtype):
        return rng().normal(self.mean, self.stddev, size=shape).astype(dtype)


class RandomUniform:
    """Keras's RandomUniform(minval=-0.05, maxval=0.05)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = float(minval), float(maxval), seed

    def __call__(self, shape, dtype):
        return rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)


class TruncatedNormal:
    """Keras's TruncatedNormal(mean=0.0, stddev=0.05): redrawn beyond 2 standard deviations."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed

    def __call__(self, shape, dtype):
        return (self.mean + self.stddev * _truncated(shape)).astype(dtype)


class Constant:
    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype):
        return np.full(shape, self.value, dtype=dtype)


def zeros(shape, dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


_ALL = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal, lecun_uniform, zeros, ones)}  # fmt: skip
_CLASSES = {"random_normal": RandomNormal, "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal, "constant": Constant}  # fmt: skip


def get(identifier, owner: str = "layer"):
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return _ALL[identifier.lower()]
    if isinstance(identifier, str) and identifier.lower() in _CLASSES:
        return _CLASSES[identifier.lower()]()
    raise ValueError(
        f"Unknown initializer for {owner}: expected one of {sorted([*_ALL, *_CLASSES])} or a function "
        f"(shape, dtype) -> array. Received: {identifier!r}"
    )


GlorotUniform, GlorotNormal, HeNormal, HeUniform = (
    glorot_uniform,
    glorot_normal,
    he_normal,
    he_uniform,
)
Zeros, Ones = zeros, ones
