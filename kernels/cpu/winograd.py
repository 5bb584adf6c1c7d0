"""Winograd F(4x4, 3x3) transforms; the maths, and the array versions these are tested
against, are in minicnn/maths/conv/winograd.py."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import SCRATCH_CHANNELS
from .jit import bias_row, jit, pjit, relu_if, scratch

# fmt: off
# Winograd F(4x4, 3x3) transforms . Each 2-D transform is two
# passes of a 1-D one: down the columns of a tile into a small scratch array, then along its
# rows. The inner loops run over channels, so every read or write is a contiguous run of C (or F)
# values. The 1-D transforms are written out once each; constants take the operands' type
# (``type(d0)(4)``), so float32 stays float32.


@njit(cache=True, inline="always")
def _bt6(d0, d1, d2, d3, d4, d5):  # B^T d for a column d of 6
    k2, k4, k5 = type(d0)(2), type(d0)(4), type(d0)(5)
    return (
        k4 * d0 - k5 * d2 + d4,
        d3 + d4 - k4 * (d1 + d2),
        d4 - d3 + k4 * (d1 - d2),
        d4 - d2 + k2 * (d3 - d1),
        d4 - d2 + k2 * (d1 - d3),
        k4 * d1 - k5 * d3 + d5,
    )


@njit(cache=True, inline="always")
def _b6(v0, v1, v2, v3, v4, v5):  # B v: the adjoint of _bt6
    k2, k4, k5 = type(v0)(2), type(v0)(4), type(v0)(5)
    return (
        k4 * v0,
        k4 * (v2 - v1 + v5) + k2 * (v4 - v3),
        -k5 * v0 - k4 * (v1 + v2) - v3 - v4,
        v1 - v2 + k2 * (v3 - v4) - k5 * v5,
        v0 + v1 + v2 + v3 + v4,
        v5,
    )


@njit(cache=True, inline="always")
def _at6(m0, m1, m2, m3, m4, m5):  # A^T m: 6 points to 4 outputs
    k2, k4, k8 = type(m0)(2), type(m0)(4), type(m0)(8)
    return (
        m0 + m1 + m2 + m3 + m4,
        m1 - m2 + k2 * (m3 - m4),
        m1 + m2 + k4 * (m3 + m4),
        m1 - m2 + k8 * (m3 - m4) + m5,
    )


@njit(cache=True, inline="always")
def _a6(g0, g1, g2, g3):  # A g: the adjoint of _at6
    k2, k4, k8 = type(g0)(2), type(g0)(4), type(g0)(8)
    return (
        g0,
        g0 + g1 + g2 + g3,
        g0 - g1 + g2 - g3,
        g0 + k2 * g1 + k4 * g2 + k8 * g3,
        g0 - k2 * g1 + k4 * g2 - k8 * g3,
        g3,
    )


@njit(cache=True, inline="always")
def _input_tile(d, b, y0, x0, s, v, t):  # v[:, t] = B^T d B, d = d[b, y0:y0+6, x0:x0+6]; s: scratch
    nc = d.shape[3]
    for j in range(6):
        q = x0 + j
        for c in range(nc):
            s[0, j, c], s[1, j, c], s[2, j, c], s[3, j, c], s[4, j, c], s[5, j, c] = _bt6(
                d[b, y0, q, c], d[b, y0 + 1, q, c], d[b, y0 + 2, q, c],
                d[b, y0 + 3, q, c], d[b, y0 + 4, q, c], d[b, y0 + 5, q, c],
            )
    for i in range(6):
        k = 6 * i
        for c in range(nc):
            v[k, t, c], v[k + 1, t, c], v[k + 2, t, c], v[k + 3, t, c], v[k + 4, t, c], v[k + 5, t, c] = _bt6(
                s[i, 0, c], s[i, 1, c], s[i, 2, c], s[i, 3, c], s[i, 4, c], s[i, 5, c]
            )


@njit(cache=True, inline="always")
def _band(x, b, y, top, left, blk, g):  # g[0, i, J, (r, s, c)] = x[b, blk*(y+i) + r - top, blk*J + s - left, c], 0 outside
    h, w, nc = x.shape[1], x.shape[2], x.shape[3]
    for i in range(6):
        for r in range(blk):
            row = blk * (y + i) + r - top
            for j in range(g.shape[2]):
                for s in range(blk):
                    col, o = blk * j + s - left, (r * blk + s) * nc
                    if 0 <= row < h and 0 <= col < w:
                        for c in range(nc):
                            g[0, i, j, o + c] = x[b, row, col, c]
                    else:
                        for c in range(nc):
                            g[0, i, j, o + c] = 0


@njit(cache=True, inline="always")
def _input_span(x, b, y, col0, ncol, top, left, blk, v, t0):  # tiles col0.. of the row at y into v[:, t0:]
    h, w = x.shape[1], x.shape[2]
    vc = v.shape[2]
    s = scratch((6, 6, vc), x.dtype)  # s[i, j] = (B^T d)[i, j]
    y0 = blk * y - top
    if blk == 1 and y0 >= 0 and y0 + 6 <= h and left == 0 and 4 * (col0 + ncol) + 2 <= w:
        for col in range(ncol):  # every tile a plain window of x
            _input_tile(x, b, y0, 4 * (col0 + col), s, v, t0 + col)
        return
    # else the span's band of the placed grid first (padding, 2x2 blocks): each pixel copied
    # once, not once per tile that reads it. Per 2 images, 3x3 32 -> 32 "same" on 13x13:
    # 0.022 -> 0.019-0.020 ms; 5x5/2 (space to depth) 32 -> 32 on 26x26: 0.051-0.053 -> 0.040-0.045
    g = np.empty((1, 6, 4 * ncol + 2, vc), dtype=x.dtype)
    _band(x, b, y, top, left - 4 * blk * col0, blk, g)
    for col in range(ncol):
        _input_tile(g, 0, 0, 4 * col, s, v, t0 + col)


@njit(cache=True, inline="always")
def _input_row(x, th, tw, top, left, blk, v, task):  # one row of tiles of one image
    _input_span(x, task // th, 4 * (task % th), 0, tw, top, left, blk, v, task * tw)


# The two spans as functions of their own, compiled once per dtype (and cached): the fused
# inference kernel (winograd_fused.py) is written out per geometry and calls them, so that each
# geometry compiles only its own code (on an empty cache, each geometry after the first:
# 10.8 -> 7.0 s).
@jit
def input_span(x, b, y, col0, ncol, top, left, blk, v, t0):
    _input_span(x, b, y, col0, ncol, top, left, blk, v, t0)


@jit
def output_span(m, b, y, col0, ncol, z, bias, relu, pool, lo, res, t0):
    _output_span(m, b, y, col0, ncol, z, bias, relu, pool, lo, res, t0)


@pjit
def _winograd_input(x, th, tw, top, left, blk, v):  # V = B^T d B over the placed grid
    for task in prange(x.shape[0] * th):  # one row of tiles of one image per task
        _input_row(x, th, tw, top, left, blk, v, task)
    return v


@jit
def _winograd_input_serial(x, th, tw, top, left, blk, v):  # the same on this thread only
    for task in range(x.shape[0] * th):
        _input_row(x, th, tw, top, left, blk, v, task)
    return v


@njit(cache=True, inline="always")
def _output_span(m, b, y, col0, ncol, z, bias, relu, pool, lo, res, t0):  # m[:, t0:] to tiles col0.. at row y
    oh, ow, nf = z.shape[1], z.shape[2], z.shape[3]
    s = scratch((6, 4, nf), z.dtype)  # s[i, q] = (M A)[i, q]
    o = scratch((4, 4, nf), z.dtype)  # the tile's 4x4 outputs
    for col in range(ncol):
        t, q = t0 + col, 4 * (col0 + col)
        for i in range(6):
            k = 6 * i
            for f in range(nf):
                s[i, 0, f], s[i, 1, f], s[i, 2, f], s[i, 3, f] = _at6(
                    m[k, t, f], m[k + 1, t, f], m[k + 2, t, f],
                    m[k + 3, t, f], m[k + 4, t, f], m[k + 5, t, f],
                )
        for j in range(4):
            for f in range(nf):
                o[0, j, f], o[1, j, f], o[2, j, f], o[3, j, f] = _at6(
                    s[0, j, f], s[1, j, f], s[2, j, f], s[3, j, f], s[4, j, f], s[5, j, f]
                )
        if pool:  # z is the 2x2 stride-2 max pool of the output: 2x2 of it a tile
            _pool_tile(o, bias, relu, lo, z, b, y // 2, q // 2)
            continue
        if res.shape[0]:  # a residual added before the activation: act(y + bias + r)
            for p in range(min(4, oh - y)):
                for j in range(min(4, ow - q)):
                    for f in range(nf):
                        z[b, y + p, q + j, f] = relu_if(o[p, j, f] + bias[f] + res[b, y + p, q + j, f], relu)  # fmt: skip
            continue
        for p in range(min(4, oh - y)):
            for j in range(min(4, ow - q)):
                for f in range(nf):
                    z[b, y + p, q + j, f] = relu_if(o[p, j, f] + bias[f], relu)


@njit(cache=True, inline="always")
def _output_row(m, th, tw, z, bias, relu, pool, lo, res, task):  # one row of tiles of one image
    _output_span(m, task // th, 4 * (task % th), 0, tw, z, bias, relu, pool, lo, res, task * tw)


@njit(cache=True, inline="always")
def _pool_tile(o, bias, relu, lo, z, b, y, q):  # z[b, y:y+2, q:q+2] = 2x2 max pool of act(o + bias)
    oh, ow, nf = z.shape[1], z.shape[2], z.shape[3]
    for p in range(min(2, oh - y)):
        for j in range(min(2, ow - q)):
            for f in range(nf):  # the max-pooling kernel's order and comparison: the same maxima
                best = lo
                for a in range(2):
                    for c in range(2):
                        v = relu_if(o[2 * p + a, 2 * j + c, f] + bias[f], relu)
                        best = v if (v > best) | (v != v) else best  # a NaN wins and stays
                z[b, y + p, q + j, f] = best


@pjit
def _winograd_output(m, th, tw, z, bias, relu, pool, lo, res):  # y = act(A^T M A + bias), cut to z
    for task in prange(z.shape[0] * th):  # one row of tiles of one image per task
        _output_row(m, th, tw, z, bias, relu, pool, lo, res, task)


@jit
def _winograd_output_serial(m, th, tw, z, bias, relu, pool, lo, res):  # the same, this thread only
    for task in range(z.shape[0] * th):
        _output_row(m, th, tw, z, bias, relu, pool, lo, res, task)


# fmt: on


def _shape(what: str, got: tuple, want: tuple) -> None:  # the kernels index without bounds checks
    if tuple(got) != tuple(want):
        raise ValueError(f"Winograd {what}: expected shape {tuple(want)}. Received: {tuple(got)}")


def _tiles(what: str, z, th: int, tw: int, scale: int = 1) -> None:  # z's map inside th x tw tiles
    if scale * z.shape[1] > 4 * th or scale * z.shape[2] > 4 * tw:
        raise ValueError(f"Winograd {what}: a {z.shape[1]}x{z.shape[2]} map does not fit {th}x{tw} tiles")  # fmt: skip


def _fits(channels: int, what: str) -> None:  # the tile's scratch is on the stack: jit.py
    if channels > SCRATCH_CHANNELS:
        raise ValueError(
            f"The Winograd kernels take at most {SCRATCH_CHANNELS} channels a tile "
            f"(blocks x channels). Received: {channels} {what}"
        )


def _input_args(x, grid, v):  # the input kernels' arguments, checked
    th, tw, top, left, blk = grid
    _fits(v.shape[2], "input channels")
    _shape("input's V", v.shape, (36, x.shape[0] * th * tw, blk * blk * x.shape[3]))
    return np.ascontiguousarray(x), th, tw, top, left, blk, v


def _residual(residual, z, pool):  # the array a kernel adds, or an empty one for none
    if residual is not None and pool:
        raise ValueError("The Winograd output pools or adds a residual, not both")
    if residual is None:
        return np.empty((0, 0, 0, 0), dtype=z.dtype)
    if residual.shape != z.shape or residual.dtype != z.dtype:
        raise ValueError(f"The residual must match the output: {z.shape} {z.dtype}. Received: {residual.shape} {residual.dtype}")  # fmt: skip
    return np.ascontiguousarray(residual)


def _output_args(
    m, th, tw, z, bias, relu, pool, residual
):  # the output kernels' arguments, checked
    _fits(z.shape[3], "filters")
    _shape("output's M", m.shape, (36, z.shape[0] * th * tw, z.shape[3]))
    _tiles("output", z, th, tw, 2 if pool else 1)
    b, lo = bias_row(bias, z.shape[3], z.dtype), z.dtype.type(-np.inf)
    return m, th, tw, z, b, bool(relu), bool(pool), lo, _residual(residual, z, pool)


def winograd_input(x, grid, v):
    return _winograd_input(*_input_args(x, grid, v))


def winograd_output(m, th, tw, z, bias=None, relu=False, pool=False, residual=None):
    _winograd_output(*_output_args(m, th, tw, z, bias, relu, pool, residual))
    return z


# The same two on the calling thread alone, for a pipeline that gives each core its own chunk
# (minicnn/maths/conv/winograd.py): the transforms, GEMMs and inverse of a chunk stay in L2.


def winograd_input_serial(x, grid, v):
    return _winograd_input_serial(*_input_args(x, grid, v))


def winograd_output_serial(m, th, tw, z, bias=None, relu=False, pool=False, residual=None):
    _winograd_output_serial(*_output_args(m, th, tw, z, bias, relu, pool, residual))
    return z
