"""CUDA kernels for the CuPy backend: ``minicnn.cu``, compiled once per process by
``cupy.RawModule`` (CuPy also caches the binary on disk), launched with checked arguments.

Each function mirrors the plain array version in ``minicnn/ops/``, which the tests use as its
reference. Matrix multiplies are not here: they go through CuPy's matmul (cuBLAS).
"""

from __future__ import annotations

from pathlib import Path

import cupy
import numpy as np

from . import OP_NAMES

_SOURCE = Path(__file__).with_name("minicnn.cu")
_KERNELS = tuple(name for name in OP_NAMES if name not in ("sum_rows", "matmul_tn"))  # in .cu
_CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INDEX = {np.int32: "int", np.int64: "long long"}
_INT32_LIMIT = 2**31 - 2**28  # leaves room for the grid-stride loop's last increment
_THREADS = 256
_module = None


def _function(name: str, dtype, index):
    global _module
    if _module is None:
        names = [
            f"{k}<{t}, {i}>" for k in _KERNELS for t in _CTYPE.values() for i in _INDEX.values()
        ]
        _module = cupy.RawModule(
            code=_SOURCE.read_text(), options=("--std=c++14",), name_expressions=names
        )
    return _module.get_function(f"{name}<{_CTYPE[np.dtype(dtype)]}, {_INDEX[index]}>")


def _index_type(*arrays):
    """32-bit indices when every array a kernel touches is small enough, else 64-bit."""
    return np.int32 if max(a.size for a in arrays) < _INT32_LIMIT else np.int64


def _launch(name: str, dtype, total: int, index, *args) -> None:
    blocks = max(1, min((total + _THREADS - 1) // _THREADS, 65535 * 8))
    _function(name, dtype, index)((blocks,), (_THREADS,), args)


def _checked(a, dtype=None):
    """The kernel boundary: a C-contiguous float32/float64 CuPy array (copied only if needed)."""
    a = cupy.ascontiguousarray(a)
    if a.dtype not in _CTYPE or (dtype is not None and a.dtype != dtype):
        raise TypeError(f"CUDA kernels take float32 or float64 arrays. Received: {a.dtype}")
    return a


def _geometry(n, h, w, c, oh, ow, kh, kw, sy, sx, pads):
    return tuple(np.int32(v) for v in (n, h, w, c, oh, ow, kh, kw, sy, sx, pads[0], pads[2]))


def im2col(x, kh, kw, sy, sx, pads):
    x = _checked(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - kh) // sy + 1
    ow = (w + pads[2] + pads[3] - kw) // sx + 1
    col = cupy.empty((n, oh, ow, kh, kw, c), dtype=x.dtype)
    geometry = _geometry(n, h, w, c, oh, ow, kh, kw, sy, sx, pads)
    _launch("im2col", x.dtype, col.size, _index_type(x, col), x, col, *geometry)
    return col


def col2im(gcol, x_shape, sy, sx, pads):
    gcol = _checked(gcol)
    n, oh, ow, kh, kw, c = gcol.shape
    _, h, w, _ = x_shape
    gx = cupy.empty((n, h, w, c), dtype=gcol.dtype)
    geometry = _geometry(n, h, w, c, oh, ow, kh, kw, sy, sx, pads)
    _launch("col2im", gcol.dtype, gx.size, _index_type(gcol, gx), gcol, gx, *geometry)
    return gx


def bias_relu(y, b, relu):
    if not y.flags.c_contiguous:
        raise TypeError("bias_relu works in place on a C-contiguous array")
    y = _checked(y)
    has_bias = b is not None
    b = _checked(b, y.dtype) if has_bias else y  # any valid pointer when there is no bias
    i = _index_type(y)
    f = np.int32(y.shape[-1])
    _launch("bias_relu", y.dtype, y.size, i, y, b, i(y.size), f, np.int32(has_bias), np.int32(relu))
    return y


def relu_backward(gy, y):
    gy, y = _checked(gy), _checked(y, gy.dtype)
    gx = cupy.empty_like(gy)
    i = _index_type(gy)
    _launch("relu_backward", gy.dtype, gy.size, i, gy, y, gx, i(gy.size))
    return gx


def softmax_cross_entropy(z, t):
    z, t = _checked(z), _checked(t, z.dtype)
    n, k = z.shape
    gz = cupy.empty_like(z)
    row_loss = cupy.empty(n, dtype=z.dtype)
    i = _index_type(z)
    _launch("softmax_cross_entropy", z.dtype, n, i, z, t, gz, row_loss, np.int32(n), np.int32(k))
    return row_loss.sum() / n, gz


def maxpool_forward(x, ph, pw, sy, sx, pads):
    x = _checked(x)
    n, h, w, c = x.shape
    oh = (h + pads[0] + pads[1] - ph) // sy + 1
    ow = (w + pads[2] + pads[3] - pw) // sx + 1
    y = cupy.empty((n, oh, ow, c), dtype=x.dtype)
    arg = cupy.empty((n, oh, ow, c), dtype=np.int8)
    geometry = _geometry(n, h, w, c, oh, ow, ph, pw, sy, sx, pads)
    _launch("maxpool_forward", x.dtype, y.size, _index_type(x, y), x, y, arg, *geometry)
    return y, arg


def maxpool_backward(gy, arg, x_shape, ph, pw, sy, sx, pads):
    gy = _checked(gy)
    arg = cupy.ascontiguousarray(arg, dtype=np.int8)
    n, h, w, c = x_shape
    _, oh, ow, _ = gy.shape
    gx = cupy.empty((n, h, w, c), dtype=gy.dtype)
    geometry = _geometry(n, h, w, c, oh, ow, ph, pw, sy, sx, pads)
    _launch("maxpool_backward", gy.dtype, gx.size, _index_type(gy, gx), gy, arg, gx, *geometry)
    return gx


def adam_update(p, g, m, v, alpha, b1, b2, eps):
    for a in (p, m, v):
        if not a.flags.c_contiguous:
            raise TypeError("adam_update works in place on C-contiguous arrays")
    g = _checked(g, p.dtype)
    t, i = p.dtype.type, _index_type(p)
    scalars = (t(alpha), t(b1), t(b2), t(eps))
    _launch("adam_update", p.dtype, p.size, i, p, g, m, v, i(p.size), *scalars)


def matmul_tn(a, b, rows_per_chunk: int = 4096):
    """``a.T @ b`` (a: (M, K), b: (M, F)) split along M into chunks multiplied as one batched
    cuBLAS call, then summed: a single GEMM with a (K, F) output and M in the hundreds of
    thousands leaves most of the GPU idle."""
    m = a.shape[0]
    chunks = m // rows_per_chunk
    if chunks < 16:  # below ~65k rows one GEMM fills the GPU well enough; splitting adds launches
        return a.T @ b
    main = chunks * rows_per_chunk
    a3 = a[:main].reshape(chunks, rows_per_chunk, a.shape[1])  # (S, M/S, K)
    b3 = b[:main].reshape(chunks, rows_per_chunk, b.shape[1])  # (S, M/S, F)
    out = cupy.matmul(a3.transpose(0, 2, 1), b3).sum(axis=0)  # (K, F)
    if main < m:
        out += a[main:].T @ b[main:]
    return out


_ones: dict = {}


def sum_rows(a):
    """a (M, F) -> (F,) column sums as ``ones(M) @ a``: cuBLAS spreads the work over the whole
    GPU, where a reduction over axis 0 gets one block per column (F of them)."""
    key = (a.shape[0], a.dtype, cupy.cuda.get_device_id())
    if key not in _ones:
        _ones[key] = cupy.ones(a.shape[0], dtype=a.dtype)
    return _ones[key] @ a


OPS = {(name, "any"): globals()[name] for name in OP_NAMES if name in globals()}
