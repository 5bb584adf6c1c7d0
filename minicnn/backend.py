"""Array backends, the float type and the random generator.

Everything above this module writes plain array code against ``xp`` (NumPy or CuPy), as CuPy's
``get_array_module`` idiom suggests; this is the only module that knows which one is in use.
"""

from __future__ import annotations

import os

import numpy as np

_BACKENDS = ("numpy", "cupy")
_FLOATX = ("float32", "float64")

_floatx = "float32"
_default_backend: str | None = None  # None: read MINICNN_BACKEND, else "numpy"
_rng = np.random.default_rng()


class Backend:
    """One array library: ``xp`` is its module; ``asarray``/``to_numpy`` move data to and from it."""

    def __init__(self, name: str, xp):
        self.name = name
        self.xp = xp

    def asarray(self, x, dtype=None):
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        return x if isinstance(x, np.ndarray) else self.xp.asnumpy(x)

    def synchronize(self) -> None:
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"


_cache: dict[str, Backend] = {}


def _load_cupy():
    try:
        import cupy
    except ImportError:
        raise RuntimeError("CuPy is not installed: pip install 'minicnn[gpu]'") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # the CUDA runtime raises its own types when no driver is loaded
        count = 0
    if count == 0:
        raise RuntimeError("CuPy is installed but no CUDA device is visible")
    return cupy


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name``; by default the one set by ``set_backend`` or MINICNN_BACKEND."""
    if name is None:
        name = _default_backend or os.environ.get("MINICNN_BACKEND", "numpy")
    if isinstance(name, Backend):
        return name
    name = str(name).lower()
    if name not in _BACKENDS:
        raise ValueError(
            f"Unknown backend: expected one of {_BACKENDS}. Received: backend={name!r}"
        )
    if name not in _cache:
        _cache[name] = Backend(name, np if name == "numpy" else _load_cupy())
    return _cache[name]


def set_backend(name: str) -> None:
    """Make ``name`` ("numpy" or "cupy") the backend of models created from now on."""
    global _default_backend
    _default_backend = get_backend(name).name


def get_array_module(x):
    """``numpy`` or ``cupy``, whichever owns ``x`` (CuPy is never imported just to ask)."""
    xp = _cache.get("cupy")
    if xp is not None and isinstance(x, xp.xp.ndarray):
        return xp.xp
    return np


def floatx() -> str:
    """The float type of weights and activations: "float32" (default) or "float64"."""
    return _floatx


def set_floatx(value: str) -> None:
    global _floatx
    value = str(np.dtype(value)) if value in _FLOATX else value
    if value not in _FLOATX:
        raise ValueError(f"Unknown floatx: expected one of {_FLOATX}. Received: floatx={value!r}")
    _floatx = value


def rng() -> np.random.Generator:
    """The generator behind initialisers, shuffling and dropout (seeded by set_random_seed)."""
    return _rng


_device_rngs: dict = {}


def device_rng(xp):
    """A generator that draws on ``xp``'s device: the host one for NumPy; for CuPy one seeded from
    it, so set_random_seed fixes dropout masks on the GPU too without a copy per step."""
    if xp is np:
        return _rng
    if xp not in _device_rngs:
        _device_rngs[xp] = xp.random.default_rng(int(_rng.integers(2**63)))
    return _device_rngs[xp]


def seed(n: int) -> None:
    global _rng
    _rng = np.random.default_rng(n)
    _device_rngs.clear()


def set_rng_state(state: dict) -> None:
    """Put the generator back in a state saved from ``rng().bit_generator.state`` (checkpoints);
    device generators are re-seeded from it when next used."""
    _rng.bit_generator.state = state
    _device_rngs.clear()
