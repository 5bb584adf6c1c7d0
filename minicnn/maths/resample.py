"""Affine resampling of a batch of images, each with its own transform: the maths of the
augmentation layers (RandomRotation, RandomTranslation, RandomZoom); and resampling through a
map of points per pixel, with the smooth random maps of RandomElasticTransform.

A transform ``(a0, a1, a2, b0, b1, b2)`` maps each output pixel (column x, row y) to the input
point ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``, which is read by bilinear or nearest
interpolation. Points outside the image are read by ``fill_mode``, Keras's names:

    "constant" (fill_value)   "nearest" (a a a | a b c d | d d d)
    "reflect" (d c b a | a b c d | d c b a)   "mirror" (d c b | a b c d | c b a)
    "wrap" (a b c d | a b c d | a b c d)
"""

from __future__ import annotations

from minicnn.backend import get_array_module
from minicnn.maths.dispatch import kernel_for

FILL_MODES = ("constant", "nearest", "reflect", "mirror", "wrap")
INTERPOLATIONS = ("bilinear", "nearest")


def fold(xp, i, n: int, fill_mode: str):
    """Integer coordinates ``i`` mapped into [0, n) by ``fill_mode``; for "constant" they are
    clipped (the caller masks them with ``inside``)."""
    if fill_mode == "reflect":
        i = i % (2 * n)
        return xp.where(i >= n, 2 * n - 1 - i, i)
    if fill_mode == "mirror":
        if n == 1:
            return xp.zeros_like(i)
        i = i % (2 * n - 2)
        return xp.where(i >= n, 2 * n - 2 - i, i)
    if fill_mode == "wrap":
        return i % n
    return xp.clip(i, 0, n - 1)


def _affine_points(xp, transforms, h, w, dtype):
    """The input point (ys, xs), each (N, H, W), that each output pixel of each image reads."""
    n = transforms.shape[0]
    t = transforms.astype(dtype)
    rows = xp.arange(h, dtype=dtype)[None, :, None]  # (1, H, 1)
    cols = xp.arange(w, dtype=dtype)[None, None, :]  # (1, 1, W)
    a0, a1, a2, b0, b1, b2 = (t[:, k].reshape(n, 1, 1) for k in range(6))
    xs = a0 * cols + a1 * rows + a2  # (N, H, W) input column of each output pixel
    ys = b0 * cols + b1 * rows + b2
    return ys, xs


def _taps(xp, ys, xs, h, w, interpolation, fill_mode):
    """For output pixels that read the input points (ys, xs), each (N, H, W): the input pixels
    each reads and their weights -> list of (row, col, weight, inside), each (N, H, W)."""
    if interpolation == "nearest":
        corners = [(xp.rint(ys), xp.rint(xs), xp.ones_like(xs))]  # halves to even, as Keras rounds
    else:
        x0, y0 = xp.floor(xs), xp.floor(ys)
        fx, fy = xs - x0, ys - y0
        corners = [
            (y0, x0, (1 - fy) * (1 - fx)),
            (y0, x0 + 1, (1 - fy) * fx),
            (y0 + 1, x0, fy * (1 - fx)),
            (y0 + 1, x0 + 1, fy * fx),
        ]
    taps = []
    for r, c, wgt in corners:
        r, c = r.astype(xp.int64), c.astype(xp.int64)
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        taps.append((fold(xp, r, h, fill_mode), fold(xp, c, w, fill_mode), wgt, inside))
    return taps


def affine_resample(x, transforms, interpolation="bilinear", fill_mode="reflect", fill_value=0.0):
    """x (N, H, W, C), transforms (N, 6) -> (N, H, W, C): image k resampled by transform k."""
    fast = kernel_for("affine_resample", x)
    if fast is not None:
        return fast(x, transforms, interpolation, fill_mode, fill_value)
    xp = get_array_module(x)
    ys, xs = _affine_points(xp, transforms, x.shape[1], x.shape[2], x.dtype)
    return point_resample(x, ys, xs, interpolation, fill_mode, fill_value)


def affine_resample_backward(gy, transforms, interpolation="bilinear", fill_mode="reflect"):
    """The adjoint of affine_resample in its input: each output's gradient added back onto the
    input pixels it read, with the same weights (the fill value takes none)."""
    fast = kernel_for("affine_resample_backward", gy)
    if fast is not None:
        return fast(gy, transforms, interpolation, fill_mode)
    xp = get_array_module(gy)
    ys, xs = _affine_points(xp, transforms, gy.shape[1], gy.shape[2], gy.dtype)
    return point_resample_backward(gy, ys, xs, interpolation, fill_mode)


def _scatter_add(xp, target, index, values):
    if xp.__name__ == "numpy":
        xp.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)


def point_resample(x, ys, xs, interpolation="bilinear", fill_mode="reflect", fill_value=0.0):
    """x (N, H, W, C), ys and xs (N, H, W): output pixel (i, j) of image k reads the input
    point (row ys[k, i, j], column xs[k, i, j]) -> (N, H, W, C)."""
    xp = get_array_module(x)
    n, h, w, _ = x.shape
    image = xp.arange(n)[:, None, None]
    y = xp.zeros_like(x)
    for r, c, wgt, inside in _taps(xp, ys, xs, h, w, interpolation, fill_mode):
        v = x[image, r, c]
        if fill_mode == "constant":
            v = xp.where(inside[..., None], v, x.dtype.type(fill_value))
        y += wgt.astype(x.dtype, copy=False)[..., None] * v
    return y


def point_resample_backward(gy, ys, xs, interpolation="bilinear", fill_mode="reflect"):
    """The adjoint of point_resample in its input."""
    xp = get_array_module(gy)
    n, h, w, _ = gy.shape
    image = xp.broadcast_to(xp.arange(n)[:, None, None], (n, h, w))
    gx = xp.zeros_like(gy)
    for r, col, wgt, inside in _taps(xp, ys, xs, h, w, interpolation, fill_mode):
        g = wgt.astype(gy.dtype, copy=False)[..., None] * gy
        if fill_mode == "constant":
            g = g * inside[..., None]
        _scatter_add(xp, gx, (image, r, col), g)
    return gx


def gaussian_blur_maps(maps, sigma: float):
    """Each (H, W) map of ``maps`` (N, H, W) blurred by a Gaussian of standard deviation
    ``sigma`` over a window of int(6 sigma) | 1 pixels a side (weights summing to 1), zeros
    beyond the edges, as Keras's ``ops.image.gaussian_blur`` pads; separable: rows, then
    columns."""
    xp = get_array_module(maps)
    size = int(6 * sigma) | 1
    t = xp.arange(size, dtype=maps.dtype) - maps.dtype.type((size - 1) / 2)
    k = xp.exp(maps.dtype.type(-0.5) * (t / maps.dtype.type(sigma)) ** 2)
    k = k / k.sum()
    r = (size - 1) // 2
    n, h, w = maps.shape
    padded = xp.pad(maps, ((0, 0), (r, r), (0, 0)))
    rows = sum(k[i] * padded[:, i : i + h] for i in range(size))  # a loop over the taps
    padded = xp.pad(rows, ((0, 0), (0, 0), (r, r)))
    return sum(k[j] * padded[:, :, j : j + w] for j in range(size))


def elastic_points(noise, alpha: float, sigma: float):
    """Keras's elastic map: each pixel displaced by alpha times a Gaussian blur (``sigma``) of
    ``noise`` (2, N, H, W) of unit normal values scaled by sigma, rows by noise[1] and columns
    by noise[0]. -> (ys, xs), each (N, H, W), the input points the output pixels read."""
    xp = get_array_module(noise)
    dtype = noise.dtype.type
    _, n, h, w = noise.shape
    dx = gaussian_blur_maps(noise[0] * dtype(sigma), sigma)
    dy = gaussian_blur_maps(noise[1] * dtype(sigma), sigma)
    rows = xp.arange(h, dtype=noise.dtype)[None, :, None]
    cols = xp.arange(w, dtype=noise.dtype)[None, None, :]
    return rows + dtype(alpha) * dy, cols + dtype(alpha) * dx
