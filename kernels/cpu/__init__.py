"""CPU kernels in numba (``cache=True``: compiled once, then loaded from disk), one module an idea.

Each function mirrors the plain array version in ``minicnn/ops/``, the reference the tests
compare it with. What they win over NumPy: one pass over memory instead of one per kernel offset
(im2col, col2im, pooling), fused elementwise work (bias + ReLU, Adam), and both cores.
Parallel loops split over independent rows or images, so no two threads write the same element.
"""

from __future__ import annotations

from .. import OP_NAMES
from . import (  # each imports .jit first
    direct,
    elementwise,
    im2col,
    normalization,
    pooling,
    resample,
    winograd,
)

_MODULES = (im2col, elementwise, pooling, direct, winograd, normalization, resample)

OPS = {
    (name, "any"): getattr(module, name)
    for module in _MODULES
    for name in OP_NAMES
    if hasattr(module, name)
}
