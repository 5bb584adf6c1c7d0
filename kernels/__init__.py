"""Hand-written kernels: numba for the CPU (``cpu/``), CUDA for the GPU (``cuda.py`` + ``*.cu``).

Installed as ``minicnn.kernels``. The engine asks ``lookup(op, xp, dtype)`` for a fast version of
an op and falls back to its own array code when the answer is None, so every kernel is optional:
``MINICNN_KERNELS=numpy`` turns them all off, and a machine without numba or CuPy still runs.
Kernels never import the engine (the import graph flows engine -> kernels only).

Each device's table is written out: ``cpu.OPS`` and ``cuda.OPS`` map (op, dtype or "any") to a
function with the signature the op hands its kernel; ``cuda_sources.KERNELS`` lists the CUDA
templates, and tests/test_cuda_compile.py checks it against the ``.cu`` files. ``cuda`` (and so
CuPy) is imported only when an array is a CuPy array.
"""

from __future__ import annotations

import os

# The most channels a Winograd tile holds (blocks x channels in, or filters out): the CPU
# kernels keep a tile's scratch on the stack (cpu/jit.py); wider layers take another algorithm.
SCRATCH_CHANNELS = 512
# The most filters the CPU's register-blocked direct kernel holds sums for (cpu/blocked.py).
BLOCKED_MAX_FILTERS = 128
# kh*kw*C up to which the direct kernel is written out tap by tap (cpu/direct.py); above it
# the register-blocked one (cpu/blocked.py) takes layers of up to BLOCKED_MAX_FILTERS filters.
WRITTEN_OUT_TAPS = 16

# The ops a device module may serve: each module exports OPS = {(name, dtype or "any"): function}
# for the names it implements, each one of these, called as minicnn.maths.<name> calls it.
OP_NAMES = (
    "im2col",
    "col2im",
    "bias_relu",
    "relu_backward",
    "relu_backward_sum",
    "softmax_cross_entropy",
    "maxpool_forward",
    "maxpool",
    "maxpool_backward",
    "adam_update",
    "sum_rows",
    "matmul_tn",
    "winograd_input",
    "winograd_output",
    "winograd_input_serial",
    "winograd_output_serial",
    "winograd_fused",
    "winograd_grad_output",
    "winograd_grad_input",
    "winograd_grad_output_serial",
    "winograd_grad_input_serial",
    "conv_direct",
    "conv_direct_pool",
    "conv_direct_grad",
    "conv_direct_grad_input",
    "batchnorm_forward",
    "batchnorm_backward",
    "channel_affine",
    "affine_resample",
    "affine_resample_backward",
    "dropout",
    "dropout_backward",
    "ema_update",
    "erf",
    "depthwise_conv",
    "depthwise_conv_backward",
)

_tables: dict[str, dict | None] = {}


def enabled() -> bool:
    return os.environ.get("MINICNN_KERNELS", "auto").lower() != "numpy"


def _table(device: str) -> dict | None:
    """The op table of ``device`` ("cpu" or "cuda"), loaded on first use; None if unavailable."""
    if device not in _tables:
        try:
            if device == "cpu":
                from . import cpu as module
            else:
                from . import cuda as module
            _tables[device] = module.OPS
        except ImportError:
            _tables[device] = None
    return _tables[device]


_found: dict[tuple, object] = {}  # (op, xp, dtype, MINICNN_KERNELS) -> kernel or None


def lookup(op: str, xp, dtype):
    """The kernel for ``op`` on arrays of module ``xp`` and ``dtype``, or None. Remembered:
    a training step asks about a hundred times, and working it out (``str(dtype)``) took
    ~9 us a time."""
    key = (op, xp, dtype, os.environ.get("MINICNN_KERNELS", "auto"))
    if key not in _found:
        table = _table("cpu" if xp.__name__ == "numpy" else "cuda") if enabled() else None
        _found[key] = None if table is None else (table.get((op, str(dtype))) or table.get((op, "any")))  # fmt: skip
    return _found[key]


def available(device: str = "cpu") -> bool:
    return enabled() and _table(device) is not None
