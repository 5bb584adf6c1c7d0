"""Conv2D's maths: which algorithm convolves a given geometry, and one forward/backward pair that
hands the work to it. Each algorithm lives in its own module, its forward and backward side by
side, with the same two signatures:

    forward(x, kernel, bias, strides, pads, relu=False, keep=True) -> (y, ctx)
    backward(gy, ctx, need_gx=True) -> (gx, gkernel, gbias)

y = conv(x, kernel) + bias, then max(y, 0) where ``relu`` (applied in the output's last pass;
the backward masks gy by it). ``ctx`` is the algorithm's own small named structure (its
``Ctx``), so the backward pass goes back to the algorithm that made it; ``keep=False``
(inference) keeps nothing (Winograd then reuses one buffer for every chunk's transformed input
instead of holding them all). The plain definition the algorithms are tested against is
``minicnn.maths.reference.conv2d``.
"""

from __future__ import annotations

import os

import numpy as np

from minicnn import kernels
from minicnn.backend import get_array_module
from minicnn.maths import dispatch
from minicnn.maths.conv import direct, im2col, shifted, space_to_depth, taps, winograd
from minicnn.maths.elementwise import bias_relu

ALGORITHMS = {
    "im2col": im2col,
    "shifted": shifted,
    "direct": direct,
    "winograd": winograd,
    "space_to_depth": space_to_depth,
    "taps": taps,
}

_DIRECT_MAX_C = 4  # input channels up to which the direct kernel beats im2col + GEMM
# Output rows (images x pixels) up to which a map of at most 4x4 (one Winograd tile an image)
# goes to im2col: Winograd's kernel transforms (36 C F values each way) cost the same at any
# batch. The best recipe's 5x5/2 layer, 8x8x64 -> 4x4x64, forward + backward: batch 2 0.66 ms
# im2col against 1.70 space-to-depth, batch 32 2.51 against 2.92, batch 128 7.97 against 4.90.
_SMALL_ROWS = 512
# Output filters up to which "taps" (one GEMM to kh*kw*F columns, then col2im) beats Winograd
# and im2col: 32 -> 1 channel, 3x3 "same" at 28x28, forward + backward, batch 128: 11.3 ms
# taps against 44 Winograd; F = 4 at batch 32, 4.6 against 10.3; F = 8, 15.0 against 8.3.
_TAPS_MAX_F = 4
# The register-blocked direct kernel (kernels/cpu/blocked.py: a block of pixels' sums in
# registers) against the GEMM paths, one 128-image forward on 2 cores of an AMD EPYC: shifted
# 5x5 32 -> 32 on 14x14 24.1 -> 6.5 ms, 64 -> 64 73 -> 20, 128 -> 128 103 -> 43 (so shifted's
# forward is that kernel's, in training too: its backward needs only the padded input); im2col
# 3x3/2 32 -> 64 on 28x28 10.1 -> 6.8, 3x3 8 -> 16 7.8 -> 2.0, 12 -> 32 10.0 -> 3.4, but 3x3/2
# 32 -> 128 4.9 -> 5.1, 48 -> 64 7.3 -> 6.7, 64 -> 128 7.1 -> 8.7 (GEMMs wide enough). At
# inference, "direct" takes im2col's layers where it wins; training keeps im2col, whose
# backward reads the matrix its forward builds.
_DIRECT_MAX_CF = 32 * 64  # C x F up to which the direct kernel replaces im2col (C <= 32)


# At inference, the register-blocked direct kernel against the GEMM paths, one forward on 2
# cores of an AMD EPYC, batch 128 (1000), ms, interleaved (Winograd then ran its GEMMs; see
# below for its fused kernel): 3x3 32->32 on 13x13 "same" 1.9 (17) against Winograd 3.4 (23);
# 5x5/2 32->32 26 -> 13 5.3 (35) against space to depth 8.2 (56); 5x5/2 64->64 10 -> 5 2.8 (32)
# / 6.3 (60); 3x3 16->16 on 28x28 "same" 3.1 / 4.6. Winograd kept larger maps and wider
# layers: 64->64 on 28x28 20 against 24; 128->128 on 7x7 8.8 / 13; 256->128 on 14x14 53 / 87.
_DIRECT_INFER_PIXELS = 26 * 26  # output pixels up to which it takes layers of C x F <= 4096
_DIRECT_INFER_CF = 64 * 64
# Winograd's fused inference kernel (kernels/cpu/winograd_fused.py, where U fits a core's L2)
# against the direct kernel, 2 cores of an AMD EPYC, ms, batch 128: 3x3 64->32 26 -> 24 6.3 /
# 14.2, 32->32 3.3 / 12.9, 32->64 13 -> 11 1.6 / 2.8, 64->64 10 -> 8 1.1 / 2.7, 64->64 11x11
# "same" 2.5 / 6.3; space to depth 5x5/2 32->32 24 -> 12 3.1 / 6.2, 32->64 16 -> 8 3.5 / 4.6, but
# 26 -> 13 (its tiles a third empty) 8.7 / 8.6 and 64->64 8 -> 4 (U spills L2) 3.5 / 2.1. On
# a few images its fixed costs lose: batch 1, us, 64->32 26 -> 24 86 / 99, 32->64 13 -> 11 56 /
# 28, 64->64 11x11 103 / 56; batch 4, 13x13 "same" 70 / 73, 12 -> 10 101 / 73. So it takes a
# batch of at least this many output pixels:
_FUSED_MIN_PIXELS = 512


def _direct_at_inference(kernel_shape, blk, out, n, itemsize) -> bool:
    """Whether the blocked direct kernel convolves a layer at inference: it holds the filters'
    sums (at most BLOCKED_MAX_FILTERS) of more than a few taps, and Winograd's fused kernel
    would not do better (``blk``: 1 for a Winograd geometry, 2 for space to depth's, else 0;
    one whose U fits, over at least _FUSED_MIN_PIXELS output pixels, whose tiles the map fills
    for space to depth); else where the layer is thin (16 channels or fewer) or small (a map of
    at most _DIRECT_INFER_PIXELS, C x F at most 4096)."""
    kh, kw, c, f = kernel_shape
    if f > kernels.BLOCKED_MAX_FILTERS or kh * kw * c <= kernels.WRITTEN_OUT_TAPS:
        return False
    oh, ow = out
    if blk and 36 * blk * blk * c * f * itemsize <= winograd.FUSED_U_BYTES:  # tiled_forward's U
        filled = blk == 1 or (oh % 4 == 0 and ow % 4 == 0 and oh * ow > 16)
        return n * oh * ow < _FUSED_MIN_PIXELS or not filled
    return c <= 16 or (oh * ow <= _DIRECT_INFER_PIXELS and c * f <= _DIRECT_INFER_CF)


def conv_algorithm(x, kernel_shape, strides, pads=(0, 0, 0, 0), training=True) -> str:
    """Which algorithm convolves the array ``x``: ``choose_algorithm`` for its shape and device."""
    return choose_algorithm(x.shape, kernel_shape, strides, pads, get_array_module(x), x.dtype, training=training)  # fmt: skip


def choose_algorithm(x_shape, kernel_shape, strides, pads, xp=np, dtype=np.float32, kernels_on=True, training=True) -> str:  # fmt: skip
    """Which algorithm convolves inputs of ``x_shape`` (N, H, W, C) on ``xp``'s device with a
    kernel of ``kernel_shape`` (kh, kw, C, F), for training (a backward pass follows) or not:

    - "im2col": the reference, any geometry, and the GPU's choice (cuBLAS on one big GEMM);
    - "direct": CPU, up to 4 input channels (a first layer), with the numba kernels; and at
      inference, the kernel that holds a block of pixels' sums in registers
      (``kernels/cpu/blocked.py``) for layers of at most 128 filters: Winograd's and space to
      depth's geometries over fewer than _FUSED_MIN_PIXELS output pixels of a batch (or on
      maps whose tiles they leave a third empty), and where Winograd's fused kernel cannot
      take them, thin (16 channels or fewer) or small layers (maps of at most 26x26 out, C x F
      <= 4096) (``_direct_at_inference``); and where "im2col" would run, up to 32 channels
      and 128 filters with C x F <= 2048;
    - "winograd": CPU, 3x3 stride 1, 16 to 512 input channels and at most 512 filters, with
      the numba kernels (a tile's channels are held on the stack); at inference one fused
      kernel a layer where its transformed kernel fits a core's L2;
    - "shifted": stride 1 on 16+ channels otherwise (other kernel sizes, more channels than a
      Winograd tile holds, or no numba): GEMMs
      on the input as it lies, no im2col copy, for the backward; with numba and up to 128
      filters its forward is the blocked direct kernel's;
    - "space_to_depth": CPU with numba, stride 2, 5x5 or 6x6 kernels, 8+ input channels: the
      same convolution as a 3x3 stride-1 Winograd one over 2x2 blocks of 4C channels;
    - "taps": CPU, stride 1, at most 4 output filters from more input channels (a decoder's
      last layer): one GEMM to each pixel's share of its kh*kw outputs, then col2im;
    - "im2col" also where the output is so small that its rows hold no more than twice the
      input (a 4x4 kernel over a 4x4 map, a Dense layer in disguise): one GEMM, not 16
      (7.1 -> 0.7 ms at batch 64, 64 -> 128 channels); and for outputs of at most 4x4 over
      no more than 512 rows in all (see _SMALL_ROWS).
    MINICNN_CONV forces one where the geometry allows it (else im2col)."""
    kh, kw, c, f = kernel_shape
    stride1 = tuple(strides) == (1, 1)
    stride2 = tuple(strides) == (2, 2)
    forced = os.environ.get("MINICNN_CONV", "auto").lower()
    # Winograd's kernels hold a tile's channels on the stack (kernels/cpu/jit.py): wider layers
    # take another algorithm. Space to depth gives Winograd 4C channels.
    fits = max(c, f) <= kernels.SCRATCH_CHANNELS
    fits2 = max(4 * c, f) <= kernels.SCRATCH_CHANNELS
    s2d_winograd = stride2 and (-(-kh // 2), -(-kw // 2)) == (3, 3)  # 5x5 and 6x6
    if forced == "space_to_depth":
        return "space_to_depth" if stride2 and (fits2 or not s2d_winograd) else "im2col"
    if forced == "taps":
        return "taps" if taps.fits(kernel_shape, strides, pads) else "im2col"
    if forced == "winograd":
        return "winograd" if stride1 and (kh, kw) == (3, 3) and fits else "im2col"
    if forced in ("im2col", "shifted", "direct"):
        return "im2col" if forced == "shifted" and not stride1 else forced
    if xp is not np:
        return "im2col"
    numba = kernels_on and dispatch.lookup("conv_direct", np, np.dtype(dtype)) is not None
    n, h, w = x_shape[:3]
    oh = (h + pads[0] + pads[1] - kh) // strides[0] + 1
    ow = (w + pads[2] + pads[3] - kw) // strides[1] + 1
    if oh * ow * kh * kw <= 2 * h * w:
        return "im2col"
    # the Winograd block of the geometry as the branches below take it (3x3 / 1; space to depth)
    blk = 1 if stride1 and (kh, kw) == (3, 3) and c >= 16 else 2 if s2d_winograd and c >= 8 else 0
    if numba and not training and _direct_at_inference(kernel_shape, blk, (oh, ow), n, np.dtype(dtype).itemsize):  # fmt: skip
        return "direct"
    if oh <= 4 and ow <= 4 and n * oh * ow <= _SMALL_ROWS and c > _DIRECT_MAX_C:
        return "im2col"  # one Winograd tile an image, few images: its weight transforms cost most
    if c <= _DIRECT_MAX_C:
        return "direct" if numba else "im2col"
    if f <= _TAPS_MAX_F and c > f and taps.fits(kernel_shape, strides, pads):
        return "taps"
    if s2d_winograd and c >= 8 and numba and fits2:
        return "space_to_depth"
    if stride1 and c >= 16:  # its forward is the direct kernel's where numba is there
        return "winograd" if numba and (kh, kw) == (3, 3) and fits else "shifted"
    if numba and not training and f <= kernels.BLOCKED_MAX_FILTERS and c * f <= _DIRECT_MAX_CF and c <= 32:  # fmt: skip
        return "direct"
    return "im2col"


def conv2d_forward(x, kernel, bias, strides, pads, relu=False, algorithm=None, keep=True):
    """``conv(x, kernel) + bias`` (then ReLU where ``relu``). x: (N, H, W, C), kernel:
    (kh, kw, C, F), bias: (F,) or None -> (y (N, oH, oW, F), ctx or None). ``algorithm``: one
    of ALGORITHMS (a plan's choice), else ``conv_algorithm`` picks."""
    name = algorithm or conv_algorithm(x, kernel.shape, strides, pads, training=keep)
    return ALGORITHMS[name].forward(x, kernel, bias, tuple(strides), tuple(pads), relu, keep)


# The algorithms whose last pass can max-pool their output (2x2, stride 2, "valid") at inference
POOLED = {"direct": direct.pooled_forward, "shifted": shifted.pooled_forward, "winograd": winograd.pooled_forward}  # fmt: skip


def conv2d_pooled(x, kernel, bias, strides, pads, relu=False, algorithm=None):
    """Inference: ``conv2d_forward``'s output (then ReLU where ``relu``), max-pooled 2x2 with
    stride 2 and no padding, in the convolution's output pass, so the full map is never
    written. ``algorithm``: one of POOLED. -> y (N, oH // 2, oW // 2, F)"""
    name = algorithm or conv_algorithm(x, kernel.shape, strides, pads, training=False)
    if name not in POOLED:
        raise ValueError(f"The {name} convolution cannot pool in its output pass; those that can: {sorted(POOLED)}")  # fmt: skip
    return POOLED[name](x, kernel, bias, tuple(strides), tuple(pads), relu)


def conv2d_residual(x, kernel, bias, strides, pads, residual, relu=False, algorithm=None):
    """Inference: ``act(conv(x, kernel) + bias + residual)``, act ReLU or none: a residual
    block's convolution, its Add and the ReLU after it. Winograd adds the residual in its output
    pass; the other algorithms add it after. -> y (N, oH, oW, F), residual's shape"""
    name = algorithm or conv_algorithm(x, kernel.shape, strides, pads, training=False)
    if name == "winograd":
        return winograd.residual_forward(x, kernel, bias, tuple(strides), tuple(pads), residual, relu)  # fmt: skip
    y, _ = conv2d_forward(x, kernel, bias, strides, pads, False, name, keep=False)
    y += residual
    return bias_relu(y.reshape(-1, y.shape[3]), None, True).reshape(y.shape) if relu else y


def conv2d_backward(gy, ctx, need_gx: bool = True):
    """The gradients of ``conv2d_forward`` from that of its output, gy (N, oH, oW, F):
    -> (gx (N, H, W, C) or None, gkernel (kh, kw, C, F), gbias (F,) or None)."""
    gy = get_array_module(gy).ascontiguousarray(gy)  # a slice of a concatenation's gradient
    return _BACKWARD[type(ctx)](gy, ctx, need_gx)


_BACKWARD = {module.Ctx: module.backward for module in ALGORITHMS.values()}
