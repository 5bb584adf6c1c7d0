"""CUDA kernels for the CuPy backend: the ``.cu`` files named in ``cuda_sources.KERNELS``, each
compiled once per process by ``cupy.RawModule`` (CuPy also caches the binary on disk), launched
with checked arguments.

Each function mirrors the plain array version in ``minicnn/maths/`` (the same signature), which the
tests use as its reference. Matrix multiplies are not here: they go through CuPy's matmul
(cuBLAS). ``kernels.lookup`` imports this module only for CuPy arrays, so CuPy is imported here
at the top and nowhere else in ``kernels/``.
"""

from __future__ import annotations

import cupy
import numpy as np

from .cuda_sources import KERNELS, OPTIONS, name_expression, name_expressions, source

_INT32_LIMIT = 2**31 - 2**28  # leaves room for the grid-stride loop's last increment
_THREADS = 256
_FINISH_THREADS = 256  # normalization.cu's FINISH_THREADS: one block per channel
_PARTIAL_THREADS = 2**16  # threads of a partial-sums pass (slices x channels): ~16 warps an SM
FILL_MODES = ("constant", "nearest", "reflect", "mirror", "wrap")  # resample.cu's numbering
_modules: dict[str, cupy.RawModule] = {}


def _function(name: str, dtype, index):
    file = KERNELS[name]
    if file not in _modules:
        _modules[file] = cupy.RawModule(
            code=source(file), options=OPTIONS, name_expressions=name_expressions(file)
        )
    return _modules[file].get_function(name_expression(name, dtype, index))


def _index_type(*arrays):
    """32-bit indices when every array a kernel touches is small enough, else 64-bit."""
    return np.int32 if max(a.size for a in arrays) < _INT32_LIMIT else np.int64


def _launch(name: str, dtype, total: int, index, *args) -> None:
    """A grid-stride kernel over ``total`` elements."""
    blocks = max(1, min((total + _THREADS - 1) // _THREADS, 65535 * 8))
    _function(name, dtype, index)((blocks,), (_THREADS,), args)


def _launch_per_channel(name: str, dtype, channels: int, index, *args) -> None:
    """A kernel that finishes a reduction with one block of _FINISH_THREADS per channel."""
    blocks = max(1, min(channels, 65535))
    _function(name, dtype, index)((blocks,), (_FINISH_THREADS,), args)


_FLOAT = (np.dtype(np.float32), np.dtype(np.float64))


def _checked(a, dtype=None):
    """The kernel boundary: a C-contiguous float32/float64 CuPy array (copied only if needed)."""
    a = cupy.ascontiguousarray(a)
    if a.dtype not in _FLOAT or (dtype is not None and a.dtype != dtype):
        raise TypeError(f"CUDA kernels take float32 or float64 arrays. Received: {a.dtype}")
    return a


def _in_place(name: str, *arrays) -> None:
    for a in arrays:
        if not isinstance(a, cupy.ndarray) or not a.flags.c_contiguous or a.dtype not in _FLOAT:
            raise TypeError(f"{name} works in place on C-contiguous float CuPy arrays")


def _per_channel(a, c: int, dtype, what: str):
    """A (C,) vector in the kernel's dtype (cast as the CPU kernels cast it)."""
    a = cupy.ascontiguousarray(a, dtype=dtype)
    if a.size != c:
        raise ValueError(f"{what} must hold one value per channel ({c}). Received: {a.shape}")
    return a


def _optional(a, c: int, dtype, what: str, placeholder):
    """(array or any valid pointer, present flag) for gamma and beta, which may be None."""
    if a is None:
        return placeholder, np.int32(0)
    return _per_channel(a, c, dtype, what), np.int32(1)


def _geometry(n, h, w, c, oh, ow, kh, kw, sy, sx, pads):
    return tuple(np.int32(v) for v in (n, h, w, c, oh, ow, kh, kw, sy, sx, pads[0], pads[2]))


# -- windows: im2col, pooling ---------------------------------------------------------------------


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


# -- elementwise: bias + ReLU, the loss, the optimizer, Dropout -----------------------------------


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


def adam_update(p, g, m, v, alpha, b1, b2, eps):
    _in_place("adam_update", p, m, v)
    g = _checked(g, p.dtype)
    t, i = p.dtype.type, _index_type(p)
    scalars = (t(alpha), t(b1), t(b2), t(eps))
    _launch("adam_update", p.dtype, p.size, i, p, g, m, v, i(p.size), *scalars)


def ema_update(ema, p, momentum):
    _in_place("ema_update", ema)
    p = _checked(p, ema.dtype)
    if p.size != ema.size:
        raise ValueError(f"ema_update: p must match ema's {ema.shape}. Received: {p.shape}")
    t, i = ema.dtype.type, _index_type(ema)
    _launch("ema_update", ema.dtype, ema.size, i, ema, p, i(ema.size), t(momentum), t(1 - momentum))


def _raw_bits(bits, n: int):
    """32 raw bits per element on the device. A CuPy array is read where it is (CuPy's
    ``bit_generator.random_raw`` gives them as int32: the same bits); a NumPy one, as
    ``ops.dropout`` draws from the host generator, is copied over (4 bytes an element)."""
    if bits.dtype not in (np.uint32, np.int32) or bits.size < n:
        raise ValueError(f"dropout takes {n} raw 32-bit values. Received: {bits.dtype} {bits.shape}")  # fmt: skip
    return cupy.ascontiguousarray(bits.reshape(-1)[:n]).view(np.uint32)


def dropout(x, bits, threshold, scale):
    """-> (y, keep): keep where an element's 32 bits >= threshold, y = x * scale there, else 0."""
    x = _checked(x)
    if not 0 <= threshold < 2**32:
        raise ValueError(f"dropout's threshold must fit 32 bits. Received: {threshold}")
    bits = _raw_bits(bits, x.size)
    y, keep = cupy.empty_like(x), cupy.empty(x.shape, dtype=np.bool_)
    i = _index_type(x)
    _launch("dropout", x.dtype, x.size, i, x, bits, y, keep, i(x.size), np.uint32(threshold), x.dtype.type(scale))  # fmt: skip
    return y, keep


def dropout_backward(gy, keep, scale):
    gy = _checked(gy)
    keep = cupy.ascontiguousarray(keep)
    if keep.dtype != np.bool_ or keep.size != gy.size:
        raise ValueError(f"dropout_backward takes the forward's bool mask of {gy.shape}. Received: {keep.dtype} {keep.shape}")  # fmt: skip
    gx = cupy.empty_like(gy)
    i = _index_type(gy)
    _launch("dropout_backward", gy.dtype, gy.size, i, gy, keep, gx, i(gy.size), gy.dtype.type(scale))  # fmt: skip
    return gx


# -- batch normalisation over (M, C) rows ---------------------------------------------------------


def _rows(x):
    """(M, C, slices of rows for the partial sums: ~_PARTIAL_THREADS threads, >= 1 row each)."""
    c = x.shape[-1]
    m = x.size // c
    return m, c, max(1, min(m, -(-_PARTIAL_THREADS // c)))


def batchnorm_forward(x, gamma, beta, eps, relu=False):
    x = _checked(x)
    m, c, parts = _rows(x)
    dt = x.dtype
    partial = cupy.empty((parts, 2, c), dtype=np.float64)
    i = _index_type(x, partial)
    sizes = (np.int64(m), np.int32(c), np.int32(parts))
    _launch("batchnorm_sums", dt, parts * c, i, x, partial, *sizes)
    mean, var, inv_std = (cupy.empty(c, dtype=dt) for _ in range(3))
    _launch_per_channel("batchnorm_moments", dt, c, i, x, partial, *sizes, np.float64(eps), mean, var, inv_std)  # fmt: skip
    g, has_g = _optional(gamma, c, dt, "gamma", x)
    b, has_b = _optional(beta, c, dt, "beta", x)
    y = cupy.empty_like(x)
    flags = (np.int32(c), has_g, has_b, np.int32(bool(relu)))
    _launch("batchnorm_normalize", dt, x.size, i, x, mean, inv_std, g, b, y, i(x.size), *flags)
    return y, mean, var, inv_std


def batchnorm_backward(gy, x, mean, inv_std, gamma, beta=None, relu=False):
    gy = _checked(gy)
    dt = gy.dtype
    x = _checked(x, dt)
    if x.shape != gy.shape:
        raise ValueError(f"batchnorm_backward: gy must match x's {x.shape}. Received: {gy.shape}")
    m, c, parts = _rows(x)
    mean, inv_std = _per_channel(mean, c, dt, "mean"), _per_channel(inv_std, c, dt, "inv_std")
    g, has_g = _optional(gamma, c, dt, "gamma", x)
    b, has_b = _optional(beta, c, dt, "beta", x)
    flags = (has_g, has_b, np.int32(bool(relu)))
    partial = cupy.empty((parts, 2, c), dtype=np.float64)
    i = _index_type(x, partial)
    sizes = (np.int64(m), np.int32(c), np.int32(parts))
    _launch("batchnorm_grad_sums", dt, parts * c, i, gy, x, mean, inv_std, g, b, partial, *sizes, *flags)  # fmt: skip
    ggamma, gbeta, gbeta_m, ggamma_m = (cupy.empty(c, dtype=dt) for _ in range(4))
    _launch_per_channel("batchnorm_grad_finish", dt, c, i, partial, *sizes, ggamma, gbeta, gbeta_m, ggamma_m)  # fmt: skip
    gx = cupy.empty_like(gy)
    _launch("batchnorm_grad_input", dt, gy.size, i, gy, x, mean, inv_std, g, b, gbeta_m, ggamma_m, gx, i(gy.size), np.int32(c), *flags)  # fmt: skip
    return gx, ggamma, gbeta


def channel_affine(x, scale, shift, relu=False):
    x = _checked(x)
    c = x.shape[-1]
    scale, shift = _per_channel(scale, c, x.dtype, "scale"), _per_channel(shift, c, x.dtype, "shift")  # fmt: skip
    y = cupy.empty_like(x)
    i = _index_type(x)
    _launch("channel_affine", x.dtype, x.size, i, x, scale, shift, y, i(x.size), np.int32(c), np.int32(bool(relu)))  # fmt: skip
    return y


# -- the augmentations' affine resampling ---------------------------------------------------------


def _resampling(x, transforms, interpolation, fill_mode):
    """(x, transforms as (N, 6) float64 on the device, the kernels' shape and mode arguments)."""
    x = _checked(x)
    if x.ndim != 4:
        raise ValueError(f"affine resampling takes images (N, H, W, C). Received: {x.shape}")
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest'. Received: interpolation={interpolation!r}")  # fmt: skip
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}. Received: fill_mode={fill_mode!r}")  # fmt: skip
    t = cupy.ascontiguousarray(transforms, dtype=np.float64)
    if t.shape != (x.shape[0], 6):
        raise ValueError(f"transforms must be ({x.shape[0]}, 6), one per image. Received: {t.shape}")  # fmt: skip
    modes = (np.int32(interpolation == "bilinear"), np.int32(FILL_MODES.index(fill_mode)))
    return x, t, (*(np.int32(v) for v in x.shape), *modes)


def affine_resample(x, transforms, interpolation="bilinear", fill_mode="reflect", fill_value=0.0):
    x, t, args = _resampling(x, transforms, interpolation, fill_mode)
    y = cupy.empty_like(x)
    _launch("affine_resample", x.dtype, x.size, _index_type(x), x, t, y, *args, x.dtype.type(fill_value))  # fmt: skip
    return y


def affine_resample_backward(gy, transforms, interpolation="bilinear", fill_mode="reflect"):
    """The adjoint in x, by atomicAdd (see resample.cu): the last bits may vary run to run."""
    gy, t, args = _resampling(gy, transforms, interpolation, fill_mode)
    gx = cupy.zeros_like(gy)
    _launch("affine_resample_backward", gy.dtype, gy.size, _index_type(gy), gy, t, gx, *args)
    return gx


# -- cuBLAS-shaped work: the weight gradient's product and the bias gradient's sums ---------------


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


# The ops this module serves, each for float32 and float64 ("any"); kernels.lookup answers None
# for the rest: the Winograd and direct convolutions, which the GPU runs only where MINICNN_CONV
# forces them (it picks im2col), as array code.
OPS = {
    ("im2col", "any"): im2col,
    ("col2im", "any"): col2im,
    ("maxpool_forward", "any"): maxpool_forward,
    ("maxpool_backward", "any"): maxpool_backward,
    ("bias_relu", "any"): bias_relu,
    ("relu_backward", "any"): relu_backward,
    ("softmax_cross_entropy", "any"): softmax_cross_entropy,
    ("adam_update", "any"): adam_update,
    ("ema_update", "any"): ema_update,
    ("dropout", "any"): dropout,
    ("dropout_backward", "any"): dropout_backward,
    ("batchnorm_forward", "any"): batchnorm_forward,
    ("batchnorm_backward", "any"): batchnorm_backward,
    ("channel_affine", "any"): channel_affine,
    ("affine_resample", "any"): affine_resample,
    ("affine_resample_backward", "any"): affine_resample_backward,
    ("matmul_tn", "any"): matmul_tn,
    ("sum_rows", "any"): sum_rows,
}
