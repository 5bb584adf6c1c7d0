"""Direct convolution for many channels, register-blocked: the forward of layers with more than
a few taps where shifted GEMMs would run (stride 1, not 3x3: in training too), where im2col
would at inference (3x3 on 8 channels, strided 3x3), of first layers on 3-4 channels
(``direct.py``), and at inference of small batches and thin or small layers Winograd and
space to depth would run (``minicnn.maths.conv._direct_at_inference``). At the hardware's
peak it does 2.25x the multiplications of Winograd, which keeps the training of 3x3 layers
(its backward reuses the forward's transformed input) and, at inference, larger batches
(``winograd_fused.py``).

Each task is one output row of one image (two, when it max-pools them 2x2 in the same pass).
The row is cut into blocks of a few pixels; a block's sums, pixels x F filters, stay in vector
registers while the loops run over the kh*kw*C taps: per tap, one broadcast of each pixel's
input value and one fused multiply-add with the tap's F weights per pixel. That is the register
tile of ONNX Runtime's NCHWc kernels (MLAS), with the filters as the vector lanes, on Keras's
channels-last layout as it lies.

numba keeps such sums in registers only when their sizes are compile-time constants, so the
kernel is written out per geometry (``generated.py``): the filters, channels, taps, strides and
the row's block widths (26 pixels of 32 filters: blocks of 7, 7, 6 and 6, none computed twice) are literals.
Products are contracted into fused multiply-adds (``fastmath={"contract"}``, nothing else of
fastmath): each output is one rounding per tap, so it differs from a separate multiply and add
in the last bits, as any BLAS does.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import BLOCKED_MAX_FILTERS as MAX_FILTERS  # a block of one pixel: 8 registers of float32
from . import generated
from .jit import bias_row
from .pooling import maxpool

# Bytes of sums a block holds: 16 AVX-512 registers (up to 8 pixels x 32 float32 filters, 4 x
# 64, 2 x 128), half the register file, the rest for the broadcasts and weights. The fastest of 15 runs,
# 128 images, ms for 512 / 768 / 1024 bytes: 3x3 32 -> 64 on 13x13 3.9 / 3.3-3.8 / 2.8-3.0,
# 64 -> 64 on 11x11 "same" 6.8-8.0 / 6.0-6.4 / 5.2-5.7; 32 -> 32 filters even (1.8-2.3,
# 5x5/2 on 26x26 5.7-5.9). 2 cores of an AMD EPYC (Zen 4), GEMM peak 195-200 GFLOP/s.
BLOCK_BYTES = 1024


def widths(ow: int, nf: int, itemsize: int) -> list[int]:
    """The widths of a row's blocks: as few blocks as BLOCK_BYTES allows, of near-equal widths."""
    most = max(1, BLOCK_BYTES // (nf * itemsize))
    blocks = -(-ow // most)
    base, extra = divmod(ow, blocks)
    return [base + 1] * extra + [base] * (blocks - extra)


def _block(rows: int, cols: int, g: tuple, pool: bool, pad: str) -> str:
    """Source of one block of ``rows`` x ``cols`` output pixels from row y0 and column q0: its
    sums from the bias, then per tap each pixel's input times the tap's weights, then the
    stores (ReLU where asked); with ``pool`` (2 rows), each 2x2 of them max-pooled into one,
    in the max-pooling kernel's order and comparison (a NaN wins)."""
    kh, kw, nc, nf, sy, sx = g
    pixels = [(r, a) for r in range(rows) for a in range(cols)]
    lines = [f"{pad}for f in range({nf}):"]
    lines += [f"{pad}    acc[{i}, f] = b[f]" for i in range(len(pixels))]
    lines += [f"{pad}for i in range({kh}):"]
    lines += [f"{pad}    for j in range({kw}):", f"{pad}        for c in range({nc}):"]
    lines += [f"{pad}            x{r}_{a} = x[im, y0 + {r * sy} + i, (q0 + {a}) * {sx} + j, c]" for r, a in pixels]  # fmt: skip
    lines += [f"{pad}            t = (i * {kw} + j) * {nc} + c", f"{pad}            for f in range({nf}):"]  # fmt: skip
    lines += [f"{pad}                w = k[t, f]"]
    lines += [
        f"{pad}                acc[{i}, f] += x{r}_{a} * w" for i, (r, a) in enumerate(pixels)
    ]
    lines += [f"{pad}for f in range({nf}):"]
    if not pool:
        lines += [
            f"{pad}    z[im, p, q0 + {a}, f] = relu_if(acc[{a}, f], relu)" for a in range(cols)
        ]
        return "\n".join(lines) + "\n"
    for q in range(cols // 2):
        lines += [f"{pad}    best = lo"]
        for r, a in ((0, 2 * q), (0, 2 * q + 1), (1, 2 * q), (1, 2 * q + 1)):
            lines += [f"{pad}    v = relu_if(acc[{r * cols + a}, f], relu)"]
            lines += [f"{pad}    best = v if (v > best) | (v != v) else best"]
        lines += [f"{pad}    z[im, p, q0 // 2 + {q}, f] = best"]
    return "\n".join(lines) + "\n"


def _source(g: tuple, ws: tuple, pool: bool) -> str:
    """The forward for one geometry ``g`` (kh, kw, C, F, sy, sx): per output row, its blocks of
    widths ``ws``; with ``pool``, per row of the 2x2 max pooling of the output, each block two
    output rows of twice its width."""
    kh, kw, nc, nf, sy, sx = g
    rows, scale = (2, 2) if pool else (1, 1)
    wide, narrow = ws[0], ws[-1]
    n_wide = ws.count(wide) if wide != narrow else len(ws)
    body = f"""            if qb < {n_wide}:
                q0 = qb * {scale * wide}
{_block(rows, scale * wide, g, pool, " " * 16)}"""
    if wide != narrow:
        body += f"""            else:
                q0 = {scale * n_wide * wide} + (qb - {n_wide}) * {scale * narrow}
{_block(rows, scale * narrow, g, pool, " " * 16)}"""
    what = "max-pooled 2x2 / 2, " if pool else ""
    return f"""# Generated by kernels/cpu/blocked.py: a {kh}x{kw} convolution, {nc} -> {nf} channels, strides ({sy}, {sx}), {what}row blocks {list(ws)}.
from numba import prange

from {__package__}.jit import relu_if, scratch


def conv(x, k, b, relu, z, lo):  # z = act(b + sum over taps of x * k){", max-pooled" if pool else ""}; k: ({kh * kw * nc}, {nf})
    n, oh, ow, nf = z.shape
    for r in prange(n * oh):  # one row of z of one image per task
        im, p = r // oh, r % oh
        y0 = p * {rows * sy}
        acc = scratch(({rows * scale * wide}, {nf}), z.dtype)  # a block's sums: registers, once unrolled
        for qb in range({len(ws)}):
{body}"""


@functools.cache
def _written_out(g: tuple, ws: tuple, pool: bool):
    kh, kw, nc, nf, sy, sx = g
    source = _source(g, ws, pool)
    stem = (
        f"blocked_{'pool_' if pool else ''}{kh}x{kw}x{nc}x{nf}_s{sy}x{sx}_w{'-'.join(map(str, ws))}"
    )
    return generated.load(stem, source, "conv", parallel=True, fastmath={"contract"})


def _run(xpad, kernel, bias, relu, strides, pool: bool):
    x, k = np.ascontiguousarray(xpad), np.ascontiguousarray(kernel, dtype=xpad.dtype)
    n, hp, wp, _ = x.shape
    kh, kw, nc, nf = k.shape
    sy, sx = strides
    if nf > MAX_FILTERS:
        raise ValueError(f"The blocked direct kernel holds at most {MAX_FILTERS} filters' sums in registers; got {nf} filters")  # fmt: skip
    oh, ow = (hp - kh) // sy + 1, (wp - kw) // sx + 1
    if pool:
        oh, ow = oh // 2, ow // 2
    z = np.empty((n, oh, ow, nf), dtype=x.dtype)
    if z.size == 0:
        return z
    ws = tuple(widths(ow, 4 * nf if pool else nf, x.dtype.itemsize))
    fn = _written_out((kh, kw, nc, nf, sy, sx), ws, pool)
    fn(x, k.reshape(kh * kw * nc, nf), bias_row(bias, nf, x.dtype), bool(relu), z, z.dtype.type(-np.inf))  # fmt: skip
    return z


def conv_blocked(xpad, kernel, bias, relu, strides):
    """``act(conv(xpad, kernel) + bias)``: xpad (N, Hp, Wp, C) padded already, kernel
    (kh, kw, C, F), F at most MAX_FILTERS -> z (N, oH, oW, F)."""
    return _run(xpad, kernel, bias, relu, strides, False)


# A pooled block is at least 2x2 pixels: past this many bytes of sums (float32 over 128 filters,
# float64 over 64) they spill from the registers and the two passes are faster. 128 images,
# separate / fused, ms: float64 3x3 32 -> 128 on 16x16 36.1 / 57.3-68.1, 32 -> 64 14.6-14.8 /
# 9.3-9.6; float32 32 -> 128 15.6 / 9.1-9.4.
POOL_BLOCK_BYTES = 2 * BLOCK_BYTES


def conv_blocked_pool(xpad, kernel, bias, relu, strides):
    """``conv_blocked`` then 2x2 stride-2 max pooling ("valid": an odd last row or column is
    dropped), in one pass where a 2x2 block's sums fit POOL_BLOCK_BYTES, so the full map is
    never written; else the two passes -> z (N, oH // 2, oW // 2, F)."""
    if 4 * kernel.shape[3] * np.dtype(xpad.dtype).itemsize > POOL_BLOCK_BYTES:
        return maxpool(_run(xpad, kernel, bias, relu, strides, False), 2, 2, 2, 2, (0, 0, 0, 0))
    return _run(xpad, kernel, bias, relu, strides, True)
