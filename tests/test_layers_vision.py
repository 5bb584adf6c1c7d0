"""The image layers of small vision models: ZeroPadding2D, Cropping2D, UpSampling2D,
LayerNormalization, SpatialDropout2D. Each forward against NumPy or a naive loop
(minicnn/maths/reference.py), every gradient by float64 finite differences, PyTorch where it
has the op, and a model with all of them saved, loaded and trained."""

import numpy as np
import pytest
from gradcheck import build
from referee import need
from test_gradients import gradcheck_layer

import minicnn
from minicnn import Sequential, backend
from minicnn.layers import (
    Conv2D,
    Cropping2D,
    Dense,
    Flatten,
    LayerNormalization,
    SpatialDropout2D,
    UpSampling2D,
    ZeroPadding2D,
)
from minicnn.maths import reference
from minicnn.utils import set_random_seed


@pytest.fixture
def f64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


# -- padding, cropping, upsampling ---------------------------------------------------------------


@pytest.mark.parametrize("padding", [1, (2, 0), ((0, 3), (2, 1))])
def test_zero_padding_matches_numpy(rng, padding):
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    layer = ZeroPadding2D(padding)
    (t, b), (le, r) = layer.padding
    np.testing.assert_array_equal(layer(x), np.pad(x, ((0, 0), (t, b), (le, r), (0, 0))))
    assert layer.compute_output_shape((None, 4, 5, 3)) == (None, 4 + t + b, 5 + le + r, 3)


@pytest.mark.parametrize("cropping", [1, (2, 0), ((0, 3), (2, 1))])
def test_cropping_matches_numpy(rng, cropping):
    x = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    layer = Cropping2D(cropping)
    (t, b), (le, r) = layer.cropping
    np.testing.assert_array_equal(layer(x), x[:, t : 6 - b, le : 7 - r])


@pytest.mark.parametrize("size", [2, (3, 1), (1, 4), (2, 3)])
def test_upsampling_matches_numpy_and_a_pixel_loop(backend_name, rng, size):
    be = backend.get_backend(backend_name)
    x = rng.standard_normal((2, 5, 4, 3))
    fh, fw = (size, size) if isinstance(size, int) else size
    minicnn.set_floatx("float64")
    try:
        nearest = be.to_numpy(UpSampling2D(size)(be.asarray(x)))
        bilinear = be.to_numpy(UpSampling2D(size, interpolation="bilinear")(be.asarray(x)))
    finally:
        minicnn.set_floatx("float32")
    np.testing.assert_array_equal(
        nearest, x.repeat(fh, axis=1).repeat(fw, axis=2)
    )  # Keras's ops.repeat
    np.testing.assert_allclose(bilinear, reference.upsample_bilinear(x, fh, fw), atol=1e-14)


@pytest.mark.parametrize(
    "layer",
    [lambda: ZeroPadding2D(((1, 2), (0, 3))), lambda: Cropping2D(((1, 0), (2, 1))),
     lambda: UpSampling2D((2, 3)), lambda: UpSampling2D((3, 2), interpolation="bilinear"),
     lambda: UpSampling2D(1, interpolation="bilinear")],
    ids=["pad", "crop", "nearest", "bilinear", "bilinear-1"],
)  # fmt: skip
def test_resizing_gradients(backend_name, rng, f64, layer):
    gradcheck_layer(layer(), rng.standard_normal((2, 5, 4, 3)), backend_name, rng)


def test_upsampling_and_padding_against_pytorch(rng):
    torch = need("torch")
    F = torch.nn.functional
    x = rng.standard_normal((2, 5, 6, 3))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    minicnn.set_floatx("float64")
    try:
        for layer, ref in (
            (
                UpSampling2D((2, 3), interpolation="bilinear"),
                lambda t: F.interpolate(
                    t, scale_factor=(2, 3), mode="bilinear", align_corners=False
                ),
            ),  # fmt: skip
            (
                UpSampling2D((3, 2), interpolation="bilinear"),
                lambda t: F.interpolate(
                    t, scale_factor=(3, 2), mode="bilinear", align_corners=False
                ),
            ),  # fmt: skip
            (UpSampling2D(2), lambda t: F.interpolate(t, scale_factor=2, mode="nearest")),
            (ZeroPadding2D(((1, 2), (3, 0))), lambda t: F.pad(t, (3, 0, 1, 2))),
        ):
            xt.grad = None
            yt = ref(xt)
            g = rng.standard_normal(yt.shape)
            yt.backward(torch.tensor(g))
            layer.maybe_build((None, *x.shape[1:]))
            y, ctx = layer.forward(x, training=True)
            gx, _ = layer.backward(g.transpose(0, 2, 3, 1), ctx)
            np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-13)
            np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-12)
    finally:
        minicnn.set_floatx("float32")


def test_resizing_layers_refuse_what_they_do_not_compute():
    with pytest.raises(ValueError, match="bicubic"):
        UpSampling2D(interpolation="bicubic")
    with pytest.raises(ValueError, match="data_format='channels_first'"):
        ZeroPadding2D(data_format="channels_first")
    with pytest.raises(ValueError, match="1st entry of padding must be an int >= 0"):
        ZeroPadding2D((-1, 2))
    with pytest.raises(ValueError, match="should be smaller than the corresponding spatial"):
        Sequential([minicnn.Input((4, 4, 1)), Cropping2D(2)])
    with pytest.raises(ValueError, match="expects input of rank 4"):
        Sequential([minicnn.Input((8,)), UpSampling2D()])


# -- LayerNormalization --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,axis",
    [((3, 7), -1), ((2, 4, 5, 3), -1), ((2, 4, 5, 3), [1, 2, 3]), ((2, 4, 5, 3), [1, 3])],
)
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_layer_norm_matches_a_per_sample_loop_and_its_gradients(backend_name, rng, f64, shape, axis, center, scale):  # fmt: skip
    be = backend.get_backend(backend_name)
    layer = LayerNormalization(axis=axis, center=center, scale=scale)
    build(layer, shape, be)
    for name in layer.params:  # away from 1 and 0
        layer.params[name][...] = be.asarray(rng.uniform(0.5, 1.5, layer.params[name].shape))
    x = rng.standard_normal(shape) * 3 + 1
    axes = layer.axes(len(shape))
    y, _ = layer.forward(be.asarray(x))
    gamma = be.to_numpy(layer.params["gamma"]) if scale else None
    beta = be.to_numpy(layer.params["beta"]) if center else None
    np.testing.assert_allclose(be.to_numpy(y), reference.layer_norm(x, gamma, beta, axes, 1e-3), atol=1e-12)  # fmt: skip
    gradcheck_layer(layer, x, backend_name, rng)


def test_layer_norm_against_pytorch_and_keras_defaults(rng):
    torch = need("torch")
    layer = LayerNormalization()
    assert (layer.axis, layer.epsilon, layer.center, layer.scale) == (-1, 1e-3, True, True)
    x = rng.standard_normal((3, 4, 5, 6))
    minicnn.set_floatx("float64")
    try:
        layer.maybe_build((None, 4, 5, 6))
        assert [w.shape for w in layer.get_weights()] == [(6,), (6,)]  # gamma, beta
        gamma, beta = rng.uniform(0.5, 1.5, 6), rng.standard_normal(6)
        layer.set_weights([gamma, beta])
        y, ctx = layer.forward(x, training=True)
        g = rng.standard_normal(x.shape)
        gx, grads = layer.backward(g, ctx)
    finally:
        minicnn.set_floatx("float32")
    xt = torch.tensor(x, requires_grad=True)
    gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    yt = torch.nn.functional.layer_norm(xt, (6,), gt, bt, eps=1e-3)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(grads["gamma"], gt.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(grads["beta"], bt.grad.numpy(), atol=1e-11)
    with pytest.raises(ValueError, match="rms_scaling=True is not supported"):
        LayerNormalization(rms_scaling=True)
    with pytest.raises(ValueError, match="other than the batch"):
        Sequential([minicnn.Input((4, 3)), LayerNormalization(axis=0)])


# -- SpatialDropout2D ----------------------------------------------------------------------------


def test_spatial_dropout_drops_whole_channels_with_inverted_scaling(rng):
    x = rng.uniform(1, 2, (64, 5, 4, 16)).astype(np.float32)
    layer = SpatialDropout2D(0.25)
    assert layer(x) is x and layer(x, training=False) is x  # inference: the identity
    set_random_seed(5)
    y = layer(x, training=True)
    kept = y[:, :1, :1, :] != 0  # (N, 1, 1, C)
    assert ((y != 0) == np.broadcast_to(kept, y.shape)).all()  # every pixel of a channel alike
    np.testing.assert_allclose(y[np.broadcast_to(kept, y.shape)], x[np.broadcast_to(kept, y.shape)] / 0.75, rtol=1e-6)  # fmt: skip
    assert 0.2 < 1 - kept.mean() < 0.3  # 1024 draws of rate 0.25
    set_random_seed(5)
    assert np.array_equal(layer(x, training=True), y)  # minicnn's seeded generator
    with pytest.raises(ValueError, match="per-layer seed"):
        SpatialDropout2D(0.1, seed=3)
    with pytest.raises(ValueError, match="expects input of rank 4"):
        Sequential([minicnn.Input((8,)), SpatialDropout2D(0.1)])


def test_spatial_dropout_gradient_with_a_fixed_mask(backend_name, rng, f64):
    gradcheck_layer(SpatialDropout2D(0.4), rng.standard_normal((4, 3, 3, 5)), backend_name, rng, seed=9)  # fmt: skip


# -- in a model ----------------------------------------------------------------------------------


def test_a_model_of_them_trains_saves_and_loads(tmp_path, rng):
    set_random_seed(1)
    model = Sequential([
        minicnn.Input((6, 6, 1)),
        ZeroPadding2D(1),
        Conv2D(4, 3, activation="gelu"),
        SpatialDropout2D(0.2),
        UpSampling2D(2, interpolation="bilinear"),
        Cropping2D(((1, 1), (2, 0))),
        LayerNormalization(axis=[1, 2, 3]),
        UpSampling2D((1, 2)),
        Flatten(),
        LayerNormalization(),
        Dense(2, activation="softmax"),
    ])  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((32, 6, 6, 1), dtype=np.float32)
    y = (x[:, :3].mean(axis=(1, 2, 3)) > x[:, 3:].mean(axis=(1, 2, 3))).astype(int)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "vision.minicnn")
    again = minicnn.load_model(tmp_path / "vision.minicnn")
    assert [type(layer).__name__ for layer in again.layers] == [type(layer).__name__ for layer in model.layers]  # fmt: skip
    assert again.layers[3].interpolation == "bilinear" and again.layers[4].cropping == (
        (1, 1),
        (2, 0),
    )
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
