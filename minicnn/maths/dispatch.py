"""The one dispatch point between the array code and the hand-written kernels.

Every op that has a kernel asks ``kernel_for(name, x)`` first and runs its plain array code
(NumPy or CuPy) only when the answer is None; that array code stays as the reference the kernels
are tested against (``MINICNN_KERNELS=numpy`` selects it).
"""

from __future__ import annotations

import contextlib

from minicnn import kernels, tuning
from minicnn.backend import get_array_module

_first = True
_array_code = 0  # > 0 while a plan runs on array code alone (array_code())


def kernel_for(name: str, x):
    """The fast version of op ``name`` for ``x``'s device and dtype, or None to use array code.
    The first ask applies minicnn's process settings (``minicnn.tuning``) before a kernel loads."""
    if _array_code:
        return None
    if _first:  # checked here, not in a call: every op asks, hundreds of times a step
        _tune()
    return kernels.lookup(name, get_array_module(x), x.dtype)


def lookup(name: str, xp, dtype):
    """``kernels.lookup`` after minicnn's process settings, whatever the dispatch state: whether
    a kernel exists for op ``name`` on ``xp``'s device in ``dtype`` (a plan's choices)."""
    _tune()
    return kernels.lookup(name, xp, dtype)


def _tune() -> None:
    """minicnn's process settings, once, before the kernels' module loads: it decides numba's
    threading layer from them when it is imported (``kernels/cpu/jit.py``)."""
    global _first
    if _first:
        _first = False
        tuning.apply()


@contextlib.contextmanager
def array_code():
    """Run the array code only, no hand-written kernel (a plan for a few images at inference:
    a kernel's thread hand-offs, and a cold cache's compilation, cost more than it saves)."""
    global _array_code
    _array_code += 1
    try:
        yield
    finally:
        _array_code -= 1
