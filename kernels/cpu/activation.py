"""The error function per element with libm's erf, for exact GELU (NumPy has no erf; the array
version in minicnn/maths/special.py is the reference this is tested against)."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .jit import pjit


@pjit
def _erf(x, y):
    for k in prange(x.size):
        y[k] = math.erf(x[k])


def erf(x):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    _erf(x.reshape(-1), y.reshape(-1))
    return y
