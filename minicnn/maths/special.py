"""The error function, which exact GELU needs and NumPy does not have.

erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, written over ``xp`` from two expansions that
hold to ~2e-15 in float64:

- |x| <= 3.5: erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)), every term
  positive (no cancellation), 50 terms;
- |x| > 3.5: erfc(x) = exp(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), the
  continued fraction cut at depth 30, where erfc(3.5) ~ 7e-7 already.

Both run a fixed number of passes over the array (80 in all), in float64. The CPU kernel calls libm's
``erf`` per element instead (``kernels/cpu/activation.py``), tested against this.
"""

from __future__ import annotations

import math

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for

_CUT, _TERMS, _DEPTH = 3.5, 50, 30


def erf(x):
    """erf of every element of ``x``, in x's dtype."""
    fast = kernel_for("erf", x)
    if fast is not None:
        return fast(x)
    xp = get_array_module(x)
    a = xp.abs(x).astype(xp.float64)  # float32's sums would drift by a few ulps
    s = xp.minimum(a, _CUT)  # the series' share
    term, total, s2 = s.copy(), s.copy(), 2 * s * s
    for n in range(_TERMS):
        term *= s2 / (2 * n + 3)
        total += term
    series = (2 / math.sqrt(math.pi)) * xp.exp(-s * s) * total
    b = xp.maximum(a, _CUT)  # the continued fraction's share
    k = xp.zeros_like(b)
    for j in range(_DEPTH, 0, -1):
        k = (j / 2) / (b + k)
    fraction = 1 - xp.exp(-b * b) / math.sqrt(math.pi) / (b + k)
    return (xp.sign(x) * xp.where(a <= _CUT, series, fraction)).astype(x.dtype, copy=False)
