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


def he_normal(shape, dtype) -> np.ndarray:
    # Keras draws from a normal truncated at 2 standard deviations, scaled for the truncation
    fan_in, _ = fans(shape)
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
    w = rng().standard_normal(size=shape)
    while (bad := np.abs(w) > 2).any():
        w[bad] = rng().standard_normal(size=int(bad.sum()))
    return (w * std).astype(dtype)


def zeros(shape, dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


_ALL = {f.__name__: f for f in (glorot_uniform, he_normal, zeros, ones)}


def get(identifier, owner: str = "layer"):
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return _ALL[identifier.lower()]
    raise ValueError(
        f"Unknown initializer for {owner}: expected one of {sorted(_ALL)} or a function "
        f"(shape, dtype) -> array. Received: {identifier!r}"
    )
