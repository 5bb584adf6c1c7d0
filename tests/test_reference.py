"""Layers against naive loop implementations written here, and dtype discipline."""

import numpy as np
import pytest
from gradcheck import build

from minicnn import backend, maths, set_floatx
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ReLU, Softmax
from minicnn.maths import dispatch, reference


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
    build(layer, x.shape, be)
    layer.params["bias"][...] = be.asarray(rng.standard_normal(3))
    y = be.to_numpy(layer(be.asarray(x)))
    W, b = (be.to_numpy(layer.params[n]) for n in ("kernel", "bias"))
    expected = reference.conv2d(x, W, b, stride, padding)
    assert y.shape == expected.shape == (2, *layer.compute_output_shape((None, *x.shape[1:]))[1:])
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
    build(layer, x.shape, be)
    want = reference.maxpool(x, pool, stride or pool, padding)
    np.testing.assert_array_equal(be.to_numpy(layer(be.asarray(x))), want)  # inference
    with dispatch.array_code():  # the array code too, as a few images' predict runs it
        np.testing.assert_array_equal(be.to_numpy(layer(be.asarray(x))), want)
        np.testing.assert_array_equal(be.to_numpy(layer.forward(be.asarray(x), True)[0]), want)
    np.testing.assert_array_equal(be.to_numpy(layer.forward(be.asarray(x), True)[0]), want)


def test_im2col_col2im_are_adjoint(backend_name, float64, rng):
    """<im2col(x), g> == <x, col2im(g)> for every geometry: col2im is im2col's transpose."""
    be = backend.get_backend(backend_name)
    for (kh, kw), (sy, sx), padding in [
        ((3, 3), (1, 1), "same"),
        ((2, 3), (2, 1), "valid"),
        ((3, 3), (2, 2), "same"),
    ]:
        x = rng.standard_normal((2, 7, 8, 3))
        pads = maths.padding_amounts(7, 8, kh, kw, sy, sx, padding)
        col = maths.im2col(be.asarray(x), kh, kw, sy, sx, pads)
        g = rng.standard_normal(col.shape)
        gx = maths.col2im(be.asarray(g), x.shape, sy, sx, pads)
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
    build(layer, shape, be)
    x = be.asarray(rng.standard_normal(shape).astype(dtype))
    y, ctx = layer.forward(x, training=True)
    gx, grads = layer.backward(be.asarray(np.ones(y.shape, dtype=dtype)), ctx)
    assert y.dtype == dtype and gx.dtype == dtype
    for name, g in grads.items():
        assert g.dtype == dtype, name
    for name, p in layer.params.items():
        assert p.dtype == dtype, name
