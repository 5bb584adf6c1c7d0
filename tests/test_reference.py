"""Layers against naive loop implementations written here, and dtype discipline."""

import math

import numpy as np
import pytest

from minicnn import backend, ops, set_floatx
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ReLU, Softmax


def naive_pads(size, k, s, padding):
    if padding == "valid":
        return 0, 0
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def naive_conv2d(x, W, b, stride, padding):
    """Seven nested loops, straight from the definition (cross-correlation)."""
    n, h, w, c = x.shape
    kh, kw, _, f = W.shape
    (t, bo), (l, r) = naive_pads(h, kh, stride[0], padding), naive_pads(w, kw, stride[1], padding)
    xp = np.zeros((n, h + t + bo, w + l + r, c))
    xp[:, t : t + h, l : l + w] = x
    oh, ow = (h + t + bo - kh) // stride[0] + 1, (w + l + r - kw) // stride[1] + 1
    y = np.zeros((n, oh, ow, f))
    for i in range(n):
        for p in range(oh):
            for q in range(ow):
                for o in range(f):
                    acc = b[o]
                    for u in range(kh):
                        for v in range(kw):
                            for ch in range(c):
                                acc += (
                                    xp[i, p * stride[0] + u, q * stride[1] + v, ch] * W[u, v, ch, o]
                                )
                    y[i, p, q, o] = acc
    return y


def naive_maxpool(x, pool, stride, padding):
    n, h, w, c = x.shape
    (t, bo), (l, r) = (
        naive_pads(h, pool[0], stride[0], padding),
        naive_pads(w, pool[1], stride[1], padding),
    )
    xp = np.full((n, h + t + bo, w + l + r, c), -np.inf)
    xp[:, t : t + h, l : l + w] = x
    oh, ow = (h + t + bo - pool[0]) // stride[0] + 1, (w + l + r - pool[1]) // stride[1] + 1
    y = np.zeros((n, oh, ow, c))
    for i in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    window = xp[
                        i,
                        p * stride[0] : p * stride[0] + pool[0],
                        q * stride[1] : q * stride[1] + pool[1],
                        ch,
                    ]
                    y[i, p, q, ch] = window.max()
    return y


@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (1, 2)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(
    "hw,k", [((5, 5), (3, 3)), ((6, 7), (2, 2)), ((7, 6), (3, 2)), ((4, 4), (1, 1))]
)
def test_conv2d_matches_naive_loops(
    backend_name, conv_algorithm, float64, rng, stride, padding, hw, k
):
    be = backend.get_backend(backend_name)
    layer = Conv2D(3, k, strides=stride, padding=padding)
    x = rng.standard_normal((2, *hw, 2))
    layer.build(x.shape[1:], be)
    layer.params["bias"][...] = be.asarray(rng.standard_normal(3))
    y = be.to_numpy(layer.forward(be.asarray(x)))
    W, b = (be.to_numpy(layer.params[n]) for n in ("kernel", "bias"))
    expected = naive_conv2d(x, W, b, stride, padding)
    assert y.shape == expected.shape == (2, *layer.compute_output_shape(x.shape[1:]))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "pool,stride,padding",
    [
        ((2, 2), None, "valid"),
        ((3, 3), (2, 2), "valid"),
        ((3, 3), (2, 2), "same"),
        ((2, 3), (1, 2), "same"),
    ],
)
def test_maxpool_matches_naive_loops(backend_name, float64, rng, pool, stride, padding):
    be = backend.get_backend(backend_name)
    layer = MaxPooling2D(pool, stride, padding)
    x = rng.standard_normal((2, 7, 6, 3))
    layer.build(x.shape[1:], be)
    y = be.to_numpy(layer.forward(be.asarray(x)))
    np.testing.assert_array_equal(y, naive_maxpool(x, pool, stride or pool, padding))


def test_im2col_col2im_are_adjoint(backend_name, float64, rng):
    """<im2col(x), g> == <x, col2im(g)> for every geometry: col2im is im2col's transpose."""
    be = backend.get_backend(backend_name)
    for (kh, kw), (sy, sx), padding in [
        ((3, 3), (1, 1), "same"),
        ((2, 3), (2, 1), "valid"),
        ((3, 3), (2, 2), "same"),
    ]:
        x = rng.standard_normal((2, 7, 8, 3))
        pads = ops.padding_amounts(7, 8, kh, kw, sy, sx, padding)
        col = ops.im2col(be.asarray(x), kh, kw, sy, sx, pads)
        g = rng.standard_normal(col.shape)
        gx = ops.col2im(be.asarray(g), x.shape, sy, sx, pads)
        lhs = float((be.to_numpy(col) * g).sum())
        rhs = float((x * be.to_numpy(gx)).sum())
        assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "make,shape",
    [
        (lambda: Conv2D(4, 3, activation="relu", padding="same"), (2, 6, 6, 3)),
        (lambda: Conv2D(4, 3, activation="relu"), (2, 6, 6, 20)),  # the shifted algorithm
        (lambda: MaxPooling2D(), (2, 6, 6, 3)),
        (lambda: Dense(5, activation="softmax"), (2, 7)),
        (lambda: Dense(5, activation="sigmoid"), (2, 7)),
        (lambda: Flatten(), (2, 3, 3, 2)),
        (lambda: ReLU(), (2, 5)),
        (lambda: Softmax(), (2, 5)),
        (lambda: Dropout(0.5), (2, 5)),
    ],
)
def test_no_silent_upcast(backend_name, rng, dtype, make, shape):
    """Outputs, input gradients and weight gradients keep the float type asked for."""
    set_floatx(dtype)
    be = backend.get_backend(backend_name)
    layer = make()
    layer.build(shape[1:], be)
    x = be.asarray(rng.standard_normal(shape).astype(dtype))
    y = layer.forward(x, training=True)
    gx = layer.backward(be.asarray(np.ones(y.shape, dtype=dtype)))
    assert y.dtype == dtype and gx.dtype == dtype
    for name, g in layer.grads.items():
        assert g.dtype == dtype, name
    for name, p in layer.params.items():
        assert p.dtype == dtype, name
