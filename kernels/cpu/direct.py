"""Direct convolution: the CPU's choice for few input channels (a first layer), and at inference
for layers the GEMM paths serve poorly. Bias, ReLU and their gradients are fused into the same
passes.

The forward takes one of three kernels:
- up to ``WRITTEN_OUT_TAPS`` taps (kh*kw*C: a 3x3 or 4x4 kernel on one channel), one written
  out per geometry (``generated.py``): each output pixel loads its taps into named scalars, then
  one loop over the F filters sums ``b + t0 * k[0] + t1 * k[1] + ...`` in registers and stores
  the pixel once. With the taps a run-time loop numba keeps the sums in memory; written out it
  ran 3.7-3.9x faster (3x3, 1 -> 32 and 1 -> 64 channels, 128 and 1000 digits: 2.99 -> 0.81 ms
  at 128 x 32, 62-80 GFLOP/s, on 2 cores of an AMD EPYC whose GEMM peak was 191), in the
  loop's order, so with the same bits;
- more taps, up to 128 filters: ``blocked.py``'s, a block of pixels' sums held in registers;
- more filters: the written-out kernel up to ``UNROLLED_TAPS`` taps, then the loops below, per
  output row each tap a broadcast-multiply-add of its F weights into the row's sums in L1.
The kernel gradient is written out per geometry up to ``UNROLLED_TAPS`` taps, each tap's row of
sums local to its task (64 digits x 32 filters 1.05-1.7 -> 0.85 ms; 128 x 64 4.0-6.6 -> 2.1 ms;
the same bits as its loop)."""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from .. import WRITTEN_OUT_TAPS
from . import blocked, generated
from .jit import bias_row, jit, pjit, relu_grad_if, relu_if
from .pooling import maxpool

UNROLLED_TAPS = 100  # kh*kw*C up to which a kernel is written out (5x5 on 4 channels)
# WRITTEN_OUT_TAPS: kh*kw*C up to which that written-out kernel beats the register-blocked one
# (blocked.py), which takes the rest up to its MAX_FILTERS: 128 images, 2 cores of an AMD EPYC,
# ms written out -> blocked: 3x3 1 -> 32 1.25 -> 1.29, 1 -> 64 1.00 -> 1.89; 3 -> 32 3.02 ->
# 0.99; 5x5 4 -> 32 9.05 -> 2.56; 3x3 8 -> 16 4.27 -> 1.08; 5x5 3 -> 64 on 32x32 14.1 -> 5.6.


@pjit
def _conv_direct(x, k, b, relu, z, sy, sx):
    n, oh, ow, nf = z.shape
    kh, kw, nc, _ = k.shape
    for r in prange(n * oh):  # one output row of one image per task
        im, p = r // oh, r % oh
        row = np.empty((ow, nf), dtype=z.dtype)  # the row's sums, in L1
        for q in range(ow):
            row[q] = b
        for i in range(kh):
            xr = x[im, p * sy + i]
            for j in range(kw):
                for c in range(nc):
                    kk = k[i, j, c]  # one tap for all filters, across the whole row
                    for q in range(ow):
                        xv = xr[q * sx + j, c]
                        for f in range(nf):
                            row[q, f] += xv * kk[f]
        for q in range(ow):
            for f in range(nf):
                z[im, p, q, f] = relu_if(row[q, f], relu)


@pjit
def _conv_direct_grad(x, gz, y, masked, gk, gb, sy, sx):
    n, oh, ow, nf = gz.shape
    blocks, kh, kw, nc, _ = gk.shape
    for blk in prange(blocks):  # each block of images sums into its own slot: no shared writes
        gk[blk] = 0
        gb[blk] = 0
        g = np.empty((ow, nf), dtype=gz.dtype)  # one output row's gradient, masked
        for im in range(blk * n // blocks, (blk + 1) * n // blocks):
            for p in range(oh):
                for q in range(ow):
                    for f in range(nf):
                        g[q, f] = relu_grad_if(gz[im, p, q, f], y[im, p, q, f], masked)
                        gb[blk, f] += g[q, f]
                for i in range(kh):
                    xr = x[im, p * sy + i]
                    for j in range(kw):
                        for c in range(nc):
                            acc = gk[blk, i, j, c]  # one tap for all filters, over the row
                            for q in range(ow):
                                xv = xr[q * sx + j, c]
                                for f in range(nf):
                                    acc[f] += xv * g[q, f]


@jit
def _masked(gz, y, masked, im, p, q, g):  # g = gz at one pixel, ReLU's mask applied if masked
    for f in range(g.size):
        g[f] = relu_grad_if(gz[im, p, q, f], y[im, p, q, f], masked)


@pjit
def _conv_direct_grad_input(gz, y, masked, k, gx, sy, sx):
    n, oh, ow, nf = gz.shape
    kh, kw, nc, _ = k.shape
    for im in prange(n):  # one image per task: its windows overlap only each other
        gx[im] = 0
        g = np.empty(nf, dtype=gz.dtype)
        for p in range(oh):
            for q in range(ow):
                _masked(gz, y, masked, im, p, q, g)
                for i in range(kh):
                    for j in range(kw):
                        for c in range(nc):
                            s = gx.dtype.type(0)
                            for f in range(nf):
                                s += g[f] * k[i, j, c, f]
                            gx[im, p * sy + i, q * sx + j, c] += s


def _tap_loads(kh: int, kw: int, nc: int, indent: int) -> tuple[int, str]:
    """(the taps, the lines naming them: t0 = x[im, y0 + i, x0 + j, c] ...) of one pixel."""
    taps = [(i, j, c) for i in range(kh) for j in range(kw) for c in range(nc)]
    pad = " " * indent
    return len(taps), "".join(f"{pad}t{t} = x[im, y0 + {i}, x0 + {j}, {c}]\n" for t, (i, j, c) in enumerate(taps))  # fmt: skip


@functools.cache
def _written_out(kind: str, kh: int, kw: int, nc: int, sy: int, sx: int):
    """The generated kernel ("conv", "pool" or "grad") for one geometry, made once per process."""
    source = {"conv": _forward_source, "grad": _grad_source, "pool": _pool_source}[kind](kh, kw, nc, sy, sx)  # fmt: skip
    stem = f"direct_{'' if kind == 'conv' else kind + '_'}{kh}x{kw}x{nc}_s{sy}x{sx}"
    return generated.load(stem, source, kind, parallel=True)


def _forward_source(kh: int, kw: int, nc: int, sy: int, sx: int) -> str:
    """The forward for one geometry: taps t0.. of pixel (p, q), then per filter their sum."""
    n_taps, loads = _tap_loads(kh, kw, nc, 12)
    terms = [f"t{t} * k[{t}, f]" for t in range(n_taps)]
    rows = [" + ".join(terms[a : a + 6]) for a in range(0, len(terms), 6)]
    total = "b[f]\n" + "".join(f"                    + {row}\n" for row in rows)
    return f"""# Generated by kernels/cpu/direct.py: a {kh}x{kw} convolution on {nc} channel(s), strides ({sy}, {sx}).
from numba import prange

from {__package__}.jit import relu_if


def conv(x, k, b, relu, z):  # z = act(b + sum over taps of x * k); k: ({n_taps}, F)
    n, oh, ow, nf = z.shape
    for r in prange(n * oh):  # one output row of one image per task
        im, p = r // oh, r % oh
        for q in range(ow):
            y0, x0 = p * {sy}, q * {sx}
{loads}            for f in range(nf):
                s = (
                    {total}                )
                z[im, p, q, f] = relu_if(s, relu)
"""


def conv_direct(xpad, kernel, bias, relu, strides):
    x, k = np.ascontiguousarray(xpad), np.ascontiguousarray(kernel)
    n, hp, wp, _ = x.shape
    kh, kw, nc, f = k.shape
    (sy, sx) = strides
    taps = kh * kw * nc
    if taps > WRITTEN_OUT_TAPS and f <= blocked.MAX_FILTERS:
        return blocked.conv_blocked(x, k, bias, relu, strides)
    z = np.empty((n, (hp - kh) // sy + 1, (wp - kw) // sx + 1, f), dtype=x.dtype)
    b = bias_row(bias, f, x.dtype)
    if taps <= UNROLLED_TAPS:
        _written_out("conv", kh, kw, nc, sy, sx)(x, k.reshape(kh * kw * nc, f), b, bool(relu), z)
    else:
        _conv_direct(x, k, b, bool(relu), z, sy, sx)
    return z


def _pool_source(kh: int, kw: int, nc: int, sy: int, sx: int) -> str:
    """The forward max-pooled 2x2, stride 2, for one geometry: the taps of the 2x2 outputs of
    pooled pixel (p, q) as scalars, then per filter each output's sum (as ``_forward_source``
    writes it, so the same bits) and their max (the max-pooling kernel's comparison)."""
    rows = sorted({a * sy + i for a in range(2) for i in range(kh)})
    cols = sorted({c * sx + j for c in range(2) for j in range(kw)})
    loads = "".join(f"            u{r}_{q}_{c} = x[im, y0 + {r}, x0 + {q}, {c}]\n" for r in rows for q in cols for c in range(nc))  # fmt: skip
    outs = ""
    for a in range(2):
        for c in range(2):
            terms = [f"u{a * sy + i}_{c * sx + j}_{ch} * k[{t}, f]" for t, (i, j, ch) in enumerate((i, j, ch) for i in range(kh) for j in range(kw) for ch in range(nc))]  # fmt: skip
            outs += f"                v = relu_if(b[f] + {' + '.join(terms)}, relu)\n"
            outs += "                best = v if (v > best) | (v != v) else best\n"  # a NaN wins
    return f"""# Generated by kernels/cpu/direct.py: a {kh}x{kw} convolution on {nc} channel(s), strides ({sy}, {sx}), max-pooled 2x2 / 2.
from numba import prange

from {__package__}.jit import relu_if


def pool(x, k, b, relu, z, lo):  # z = the 2x2 stride-2 max pool of act(b + sum of x * k)
    n, oh, ow, nf = z.shape
    for r in prange(n * oh):  # one pooled row of one image per task
        im, p = r // oh, r % oh
        for q in range(ow):
            y0, x0 = 2 * p * {sy}, 2 * q * {sx}
{loads}            for f in range(nf):
                best = lo
{outs}                z[im, p, q, f] = best
"""


def conv_direct_pool(xpad, kernel, bias, relu, strides):
    """``conv_direct`` then 2x2 stride-2 max pooling (inference), in one pass (but for the
    loops of more than UNROLLED_TAPS taps and MAX_FILTERS filters): the full map is never
    written."""
    x, k = np.ascontiguousarray(xpad), np.ascontiguousarray(kernel)
    n, hp, wp, _ = x.shape
    kh, kw, nc, f = k.shape
    (sy, sx) = strides
    oh, ow = (hp - kh) // sy + 1, (wp - kw) // sx + 1
    taps = kh * kw * nc
    if taps > WRITTEN_OUT_TAPS and f <= blocked.MAX_FILTERS:
        return blocked.conv_blocked_pool(x, k, bias, relu, strides)
    if taps > UNROLLED_TAPS:  # the loops, then the pooling
        y = conv_direct(xpad, kernel, bias, relu, strides)
        return maxpool(y, 2, 2, 2, 2, (0, 0, 0, 0))
    z = np.empty((n, oh // 2, ow // 2, f), dtype=x.dtype)
    pooled = _written_out("pool", kh, kw, nc, sy, sx)
    pooled(x, k.reshape(kh * kw * nc, f), bias_row(bias, f, x.dtype), bool(relu), z, z.dtype.type(-np.inf))  # fmt: skip
    return z


_GRAD_BLOCKS = 16  # partial sums of the kernel gradient, added at the end in NumPy


def _grad_source(kh: int, kw: int, nc: int, sy: int, sx: int) -> str:
    """The kernel and bias gradients for one geometry: per pixel, its masked gradient row g and
    its taps t0.. as scalars, then per tap one loop over filters adding t * g into that tap's
    row of sums (local to the task, so the loop vectorises), in the loop kernel's order."""
    n_taps, loads = _tap_loads(kh, kw, nc, 20)
    adds = "".join(
        f"                    for f in range(nf):\n                        acc[{t}, f] += t{t} * g[f]\n"
        for t in range(n_taps)
    )
    return f"""# Generated by kernels/cpu/direct.py: the gradients of a {kh}x{kw} convolution on {nc} channel(s), strides ({sy}, {sx}).
import numpy as np
from numba import prange

from {__package__}.jit import relu_grad_if


def grad(x, gz, y, masked, gk, gb):  # gk: (blocks, {n_taps}, F), gb: (blocks, F), per block of images
    n, oh, ow, nf = gz.shape
    blocks = gk.shape[0]
    for blk in prange(blocks):  # each block of images sums into its own slot: no shared writes
        acc = np.zeros(({n_taps}, nf), dtype=gz.dtype)
        bsum = np.zeros(nf, dtype=gz.dtype)
        g = np.empty(nf, dtype=gz.dtype)
        for im in range(blk * n // blocks, (blk + 1) * n // blocks):
            for p in range(oh):
                for q in range(ow):
                    y0, x0 = p * {sy}, q * {sx}
                    for f in range(nf):
                        g[f] = relu_grad_if(gz[im, p, q, f], y[im, p, q, f], masked)
                        bsum[f] += g[f]
{loads}{adds}        gk[blk] = acc
        gb[blk] = bsum
"""


def conv_direct_grad(xpad, gz, y, kernel_shape, strides):
    x, gz = np.ascontiguousarray(xpad), np.ascontiguousarray(gz)
    y = gz if y is None else np.ascontiguousarray(y)
    blocks = min(gz.shape[0], _GRAD_BLOCKS)
    kh, kw, nc, f = kernel_shape
    gb = np.empty((blocks, f), dtype=gz.dtype)
    if kh * kw * nc <= UNROLLED_TAPS:
        gk = np.empty((blocks, kh * kw * nc, f), dtype=gz.dtype)
        _written_out("grad", kh, kw, nc, *strides)(x, gz, y, y is not gz, gk, gb)
        return gk.sum(axis=0).reshape(kernel_shape), gb.sum(axis=0)
    gk = np.empty((blocks, *kernel_shape), dtype=gz.dtype)
    _conv_direct_grad(x, gz, y, y is not gz, gk, gb, *strides)
    return gk.sum(axis=0), gb.sum(axis=0)


def conv_direct_grad_input(gz, y, kernel, padded_shape, strides):
    gz = np.ascontiguousarray(gz)
    y = gz if y is None else np.ascontiguousarray(y)
    gx = np.empty(tuple(padded_shape), dtype=gz.dtype)
    _conv_direct_grad_input(gz, y, y is not gz, np.ascontiguousarray(kernel), gx, *strides)
    return gx
