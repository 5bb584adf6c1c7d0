"""Weight initialisers, Keras's defaults. Drawn on the host, so a seed gives the same starting
model on every backend.

By name (``kernel_initializer="he_normal"``) an initialiser draws from minicnn's seeded generator
(``minicnn.utils.set_random_seed``), a new draw for every weight. As an instance, Keras's
classes (``HeNormal(seed=3)``, ``RandomNormal(stddev=0.1)``) behave as Keras 3's: the instance
draws from its own seed, so every call gives the same values; unseeded, it takes a seed from
minicnn's generator when made, and warns, as Keras does, when it is called again."""

from __future__ import annotations

import math
import warnings

import numpy as np

from minicnn.backend import floatx, rng
from minicnn.configurable import Configurable


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras counts them: a conv kernel (kh, kw, in, out) has a receptive
    field of kh*kw, so fan_in = kh*kw*in and fan_out = kh*kw*out."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape, dtype) -> np.ndarray:
    return _scaled(shape, dtype, rng(), 1.0, "fan_avg", "uniform")


def _truncated(shape, gen=None) -> np.ndarray:
    """Standard normal draws, those beyond 2 standard deviations drawn again (Keras's truncation)."""
    gen = gen or rng()
    w = gen.standard_normal(size=shape)
    while (bad := np.abs(w) > 2).any():
        w[bad] = gen.standard_normal(size=int(bad.sum()))
    return w


_TRUNC = 0.87962566103423978  # the standard deviation of a unit normal truncated at 2


def _scaled(shape, dtype, gen, scale: float, mode: str, distribution: str, fan=None) -> np.ndarray:
    """Keras's VarianceScaling: variance ``scale / fan`` (fan_in, fan_out or their mean)."""
    fan_in, fan_out = fan or fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out}.get(mode, (fan_in + fan_out) / 2)
    n = max(1.0, n)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale / n)
        return gen.uniform(-limit, limit, size=shape).astype(dtype)
    if distribution == "untruncated_normal":
        return (gen.standard_normal(size=shape) * math.sqrt(scale / n)).astype(dtype)
    return (_truncated(shape, gen) * (math.sqrt(scale / n) / _TRUNC)).astype(dtype)


def he_normal(shape, dtype) -> np.ndarray:
    return _scaled(shape, dtype, rng(), 2.0, "fan_in", "truncated_normal")


def glorot_normal(shape, dtype) -> np.ndarray:
    return _scaled(shape, dtype, rng(), 1.0, "fan_avg", "truncated_normal")


def he_uniform(shape, dtype) -> np.ndarray:
    return _scaled(shape, dtype, rng(), 2.0, "fan_in", "uniform")


def lecun_normal(shape, dtype) -> np.ndarray:
    return _scaled(shape, dtype, rng(), 1.0, "fan_in", "truncated_normal")


def lecun_uniform(shape, dtype) -> np.ndarray:
    return _scaled(shape, dtype, rng(), 1.0, "fan_in", "uniform")


class Initializer(Configurable):
    """Keras's ``keras.initializers.Initializer``: ``__call__(shape, dtype=None)``."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError(f"{type(self).__name__} defines no __call__")


class RandomInitializer(Initializer):
    """An initialiser that draws from its own seed (see the module docstring)."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):  # fmt: skip
            raise ValueError(f"`seed` argument should be an integer. Received: seed={seed!r}")
        self.seed = None if seed is None else int(seed)
        self._seed = int(rng().integers(2**31)) if seed is None else int(seed)
        self._calls = 0

    def generator(self):
        self._calls += 1
        if self._calls == 2 and self.seed is None:
            warnings.warn(
                f"The initializer {type(self).__name__} is unseeded and being called multiple "
                "times, which will return identical values each time (even if the initializer is "
                "unseeded). Please update your code to provide a seed to the initializer, or "
                "avoid using the same initializer instance more than once.",
                stacklevel=3,
            )
        return np.random.default_rng(self._seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class RandomNormal(RandomInitializer):
    """Keras's RandomNormal(mean=0.0, stddev=0.05, seed=None)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype=None):
        return self.generator().normal(self.mean, self.stddev, size=shape).astype(dtype or floatx())  # fmt: skip

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    """Keras's RandomUniform(minval=-0.05, maxval=0.05, seed=None)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype=None):
        return self.generator().uniform(self.minval, self.maxval, size=shape).astype(dtype or floatx())  # fmt: skip

    def get_config(self) -> dict:
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class TruncatedNormal(RandomInitializer):
    """Keras's TruncatedNormal(mean=0.0, stddev=0.05, seed=None): redrawn beyond 2 standard
    deviations."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype=None):
        return (self.mean + self.stddev * _truncated(shape, self.generator())).astype(dtype or floatx())  # fmt: skip

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class VarianceScaling(RandomInitializer):
    """Keras's VarianceScaling(scale=1.0, mode="fan_in", distribution="truncated_normal",
    seed=None, input_axes=None, output_axes=None)."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None, input_axes=None, output_axes=None):  # fmt: skip
        if not scale > 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"Invalid `mode` argument: {mode}. Please use one of ['fan_avg', 'fan_in', 'fan_out']")  # fmt: skip
        distribution = "truncated_normal" if str(distribution).lower() == "normal" else str(distribution).lower()  # fmt: skip
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError(f"Invalid `distribution` argument: {distribution}. Please use one of ['truncated_normal', 'uniform', 'untruncated_normal']")  # fmt: skip
        super().__init__(seed)
        self.scale, self.mode, self.distribution = float(scale), mode, distribution
        self.input_axes, self.output_axes = input_axes, output_axes

    def _fans(self, shape):
        if self.input_axes is None or self.output_axes is None:
            return fans(shape)
        return math.prod(shape[a] for a in self.input_axes), math.prod(shape[a] for a in self.output_axes)  # fmt: skip

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        return _scaled(shape, dtype or floatx(), self.generator(), self.scale, self.mode, self.distribution, self._fans(shape))  # fmt: skip

    def get_config(self) -> dict:
        axes = {"input_axes": self.input_axes, "output_axes": self.output_axes}
        if type(self) is not VarianceScaling:  # Keras's named members write their seed, axes
            return {**super().get_config(), **axes}
        return {**super().get_config(), "scale": self.scale, "mode": self.mode, "distribution": self.distribution, **axes}  # fmt: skip


def _member(name: str, scale: float, mode: str, distribution: str):
    def init(self, seed=None, input_axes=None, output_axes=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed, input_axes, output_axes)

    doc = f"Keras's {name}(seed=None): VarianceScaling(scale={scale}, mode={mode!r}, distribution={distribution!r})."  # fmt: skip
    return type(name, (VarianceScaling,), {"__init__": init, "__doc__": doc, "__module__": __name__})  # fmt: skip


GlorotUniform = _member("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _member("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeNormal = _member("HeNormal", 2.0, "fan_in", "truncated_normal")
HeUniform = _member("HeUniform", 2.0, "fan_in", "uniform")
LecunNormal = _member("LecunNormal", 1.0, "fan_in", "truncated_normal")
LecunUniform = _member("LecunUniform", 1.0, "fan_in", "uniform")


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        return np.full(shape, self.value, dtype=dtype or floatx())

    def get_config(self) -> dict:
        return {"value": self.value}


class Zeros(Initializer):
    def __call__(self, shape, dtype=None):
        return np.zeros(shape, dtype=dtype or floatx())


class Ones(Initializer):
    def __call__(self, shape, dtype=None):
        return np.ones(shape, dtype=dtype or floatx())


def zeros(shape, dtype) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


_ALL = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal, lecun_uniform, zeros, ones)}  # fmt: skip
_NAMED = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal", "HeNormal": "he_normal", "HeUniform": "he_uniform", "LecunNormal": "lecun_normal", "LecunUniform": "lecun_uniform", "Zeros": "zeros", "Ones": "ones"}  # fmt: skip
_CLASSES = {"random_normal": RandomNormal, "random_uniform": RandomUniform, "truncated_normal": TruncatedNormal, "constant": Constant}  # fmt: skip


_BUILT_IN = ("Constant", "Zeros", "Ones", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform")  # fmt: skip


_CAMEL = {v: k for k, v in _NAMED.items()}  # "he_normal" -> "HeNormal"


def serialize(init):
    """What a layer's config holds for ``init``, in Keras's layout (``{"module",
    "class_name", "config", "registered_name"}``): a built-in by name is its class unseeded;
    None for a function of the user's (its weights travel in the file, not its code)."""
    for name, fn in _ALL.items():
        if fn is init:
            config = {} if name in ("zeros", "ones") else {"seed": None, "input_axes": None, "output_axes": None}  # fmt: skip
            return _entry(_CAMEL[name], config)
    kind = type(init).__name__
    if kind in _BUILT_IN and globals()[kind] is type(init):
        return _entry(kind, init.get_config())
    return None


def _entry(kind: str, config: dict) -> dict:
    return {"module": "keras.initializers", "class_name": kind, "config": config, "registered_name": None}  # fmt: skip


def get(identifier, owner: str = "layer"):
    """An initialiser from a name (snake_case or Keras's class name), an instance, a class
    (made with its defaults, as Keras's get does), ``serialize``'s dict, or a function
    (shape, dtype) -> array."""
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, dict):
        kind, config = identifier.get("class_name"), identifier.get("config", {})
        if kind not in _BUILT_IN or not isinstance(config, dict):
            raise ValueError(f"Unknown initializer for {owner}: expected one of {list(_BUILT_IN)}. Received: {str(identifier)[:120]}")  # fmt: skip
        if kind in _NAMED and not any(config.values()):  # unseeded, by name: a draw per weight
            return _ALL[_NAMED[kind]]
        return globals()[kind](**config)
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier in _NAMED:
        return _ALL[_NAMED[identifier]]
    if isinstance(identifier, str) and identifier.lower() in _ALL:
        return _ALL[identifier.lower()]
    if isinstance(identifier, str) and identifier.lower() in _CLASSES:
        return _CLASSES[identifier.lower()]()
    raise ValueError(
        f"Unknown initializer for {owner}: expected one of {sorted([*_ALL, *_CLASSES])} or a function "
        f"(shape, dtype) -> array. Received: {identifier!r}"
    )
