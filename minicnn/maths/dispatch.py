"""The one dispatch point between the array code and the hand-written kernels.

Every op that has a kernel asks ``kernel_for(name, x)`` first and runs its plain array code
(NumPy or CuPy) only when the answer is None; that array code stays as the reference the kernels
are tested against (``MINICNN_KERNELS=numpy`` selects it).
"""

from __future__ import annotations

from minicnn import kernels, tuning
from minicnn.backend import get_array_module

_first = True


def kernel_for(name: str, x):
    """The fast version of op ``name`` for ``x``'s device and dtype, or None to use array code.
    The first ask applies minicnn's process settings (``minicnn.tuning``) before a kernel loads."""
    global _first
    if _first:
        _first = False
        tuning.apply()
    return kernels.lookup(name, get_array_module(x), x.dtype)
