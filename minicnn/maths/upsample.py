"""Upsampling by integer factors (UpSampling2D), channels-last, forward and backward side by side.

- nearest: each pixel repeated fh x fw times; its gradient sums each block back;
- bilinear: Keras's ``ops.image.resize(..., "bilinear", antialias=False)`` (TensorFlow's
  half-pixel centres): output row o reads the input at s = max((o + 1/2) / f - 1/2, 0), between
  rows floor(s) and min(floor(s) + 1, H - 1), weighted by the fraction of s. Rows and columns
  are interpolated one after the other (the weights are a product).

For a factor f the f output rows of input row i sit at s = i + d_r, d_r = (r + 1/2)/f - 1/2
for r = 0..f-1, so each phase r is one two-tap stencil over the input edge-padded by a row
(the clamps at both ends): whole-array slices, no gather. The backward pass is the adjoint of
the same stencils.
"""

from __future__ import annotations

from minicnn.backend import get_array_module


def nearest_forward(x, fh: int, fw: int):
    """x (N, H, W, C) -> (N, H*fh, W*fw, C), each pixel repeated."""
    n, h, w, c = x.shape
    xp = get_array_module(x)
    y = xp.broadcast_to(x[:, :, None, :, None, :], (n, h, fh, w, fw, c))
    return xp.ascontiguousarray(y).reshape(n, h * fh, w * fw, c)


def nearest_backward(gy, fh: int, fw: int):
    """The sum of each fh x fw block of gy (N, H*fh, W*fw, C) -> (N, H, W, C)."""
    n, oh, ow, c = gy.shape
    g = gy.reshape(n, oh // fh, fh, ow // fw, fw, c)
    gx = g[:, :, 0, :, 0].copy()
    for i in range(fh):  # fh*fw strided adds: a reduction over the inner axes runs slower
        for j in range(fw):
            if i or j:
                gx += g[:, :, i, :, j]
    return gx


def _phases(f: int):
    """(first tap in the edge-padded input, weight of the second tap) for each phase r."""
    out = []
    for r in range(f):
        d = (r + 0.5) / f - 0.5
        out.append((1, d) if d >= 0 else (0, 1 + d))
    return out


def _split(shape, axis: int, f: int):
    """``shape`` with axis ``axis`` of size h*f written as (h, f)."""
    return (*shape[:axis], shape[axis] // f, f, *shape[axis + 1 :])


def _take(a, axis: int, lo: int, hi: int):
    index = [slice(None)] * a.ndim
    index[axis] = slice(lo, hi)
    return a[tuple(index)]


def _phase(a, axis: int, r: int):
    """Phase r of an array split by ``_split`` (axis ``axis`` then the phase axis)."""
    index = [slice(None)] * a.ndim
    index[axis + 1] = r
    return a[tuple(index)]


def _lerp(x, f: int, axis: int):
    """Linear upsampling of x by f along ``axis``, half-pixel centres, edges clamped."""
    if f == 1:
        return x
    xp = get_array_module(x)
    h = x.shape[axis]
    ext = xp.concatenate([_take(x, axis, 0, 1), x, _take(x, axis, h - 1, h)], axis=axis)
    y = xp.empty(_split((*x.shape[:axis], h * f, *x.shape[axis + 1 :]), axis, f), dtype=x.dtype)
    for r, (lo, t) in enumerate(_phases(f)):
        out = _phase(y, axis, r)
        xp.multiply(_take(ext, axis, lo, lo + h), 1 - t, out=out)
        out += t * _take(ext, axis, lo + 1, lo + 1 + h)
    return y.reshape(*x.shape[:axis], h * f, *x.shape[axis + 1 :])


def _lerp_adjoint(g, f: int, axis: int):
    """The adjoint of ``_lerp``: g (.., h*f, ..) -> (.., h, ..)."""
    if f == 1:
        return g
    xp = get_array_module(g)
    g = g.reshape(_split(g.shape, axis, f))
    h = g.shape[axis]
    shape = list(g.shape)
    del shape[axis + 1]
    shape[axis] = h + 2
    gext = xp.zeros(shape, dtype=g.dtype)
    for r, (lo, t) in enumerate(_phases(f)):
        gr = _phase(g, axis, r)
        _take(gext, axis, lo, lo + h)[...] += (1 - t) * gr
        _take(gext, axis, lo + 1, lo + 1 + h)[...] += t * gr
    gx = _take(gext, axis, 1, h + 1).copy()
    _take(gx, axis, 0, 1)[...] += _take(gext, axis, 0, 1)  # the clamped reads past each edge
    _take(gx, axis, h - 1, h)[...] += _take(gext, axis, h + 1, h + 2)
    return gx


def bilinear_forward(x, fh: int, fw: int):
    """x (N, H, W, C) -> (N, H*fh, W*fw, C) by bilinear interpolation (see the module)."""
    return _lerp(_lerp(x, fh, 1), fw, 2)


def bilinear_backward(gy, fh: int, fw: int):
    """The gradient of ``bilinear_forward``: gy (N, H*fh, W*fw, C) -> (N, H, W, C)."""
    return _lerp_adjoint(_lerp_adjoint(gy, fw, 2), fh, 1)
