"""What the CUDA module compiles, written out so a test can check it on a machine without CuPy
or a GPU (this module imports neither): each kernel template and the ``.cu`` file that defines
it, the type pairs each is instantiated for, and NVRTC's options.

``cuda.py`` compiles each file once per process as one ``cupy.RawModule`` (``common.cu`` put in
front), asking NVRTC for exactly ``name_expressions(file)``; tests/test_cuda_compile.py compiles
the same expressions with NVRTC's own library and checks this table against the sources.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FOLDER = Path(__file__).parent
COMMON = "common.cu"  # macros every file uses; defines no kernel

# kernel template -> the file that defines it (every one is template <typename T, typename I>)
KERNELS = {
    "im2col": "minicnn.cu",
    "col2im": "minicnn.cu",
    "bias_relu": "minicnn.cu",
    "relu_backward": "minicnn.cu",
    "softmax_cross_entropy": "minicnn.cu",
    "maxpool_forward": "minicnn.cu",
    "maxpool_backward": "minicnn.cu",
    "adam_update": "minicnn.cu",
    "ema_update": "minicnn.cu",
    "dropout": "minicnn.cu",
    "dropout_backward": "minicnn.cu",
    "batchnorm_sums": "normalization.cu",
    "batchnorm_moments": "normalization.cu",
    "batchnorm_normalize": "normalization.cu",
    "batchnorm_grad_sums": "normalization.cu",
    "batchnorm_grad_finish": "normalization.cu",
    "batchnorm_grad_input": "normalization.cu",
    "channel_affine": "normalization.cu",
    "affine_resample": "resample.cu",
    "affine_resample_backward": "resample.cu",
}

FLOAT_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}  # T
INDEX_TYPES = {np.dtype(np.int32): "int", np.dtype(np.int64): "long long"}  # I

# CuPy adds -arch for the device and -ftz=true itself (cupy/_core/core.pyx, cuda/compiler.py)
OPTIONS = ("--std=c++17",)


def files() -> list[str]:
    """The .cu files that define kernels, in the order of KERNELS."""
    return list(dict.fromkeys(KERNELS.values()))


def source(file: str) -> str:
    """The text NVRTC compiles for ``file``: common.cu, then the file."""
    return (FOLDER / COMMON).read_text() + "\n" + (FOLDER / file).read_text()


def name_expression(kernel: str, dtype, index) -> str:
    """``kernel<float, int>`` and the like: the instantiation for arrays of ``dtype`` indexed
    by ``index`` (np.int32 or np.int64)."""
    return f"{kernel}<{FLOAT_TYPES[np.dtype(dtype)]}, {INDEX_TYPES[np.dtype(index)]}>"


def name_expressions(file: str) -> list[str]:
    """Every instantiation compiled from ``file``: its kernels x float types x index types."""
    return [
        name_expression(kernel, t, i)
        for kernel, where in KERNELS.items()
        if where == file
        for t in FLOAT_TYPES
        for i in INDEX_TYPES
    ]
