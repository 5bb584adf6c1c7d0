"""RandomElasticTransform (Keras 3's elastic distortion): its two parts against Keras's own
ops (the Gaussian blur of the noise, the resampling at the displaced points), its adjoint by
finite differences, its draws statistically, and its arguments' errors."""

import os

import numpy as np
import pytest
from gradcheck import check, numerical_gradient
from referee import need

import minicnn
from minicnn import layers, maths
from minicnn.utils import set_random_seed


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return need("keras")


@pytest.mark.parametrize("sigma", [0.4, 1.4, 2.5])
def test_the_noise_is_blurred_as_keras_blurs_it(sigma):
    keras = _keras()
    maps = np.random.default_rng(0).standard_normal((3, 17, 12)).astype(np.float32)
    size = int(6 * sigma) | 1
    ref = keras.ops.image.gaussian_blur(maps[..., None], kernel_size=(size, size), sigma=(sigma, sigma), data_format="channels_last")  # fmt: skip
    ours = maths.gaussian_blur_maps(maps, sigma)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(ref)[..., 0], atol=2e-6)


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "mirror"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_the_displaced_points_are_read_as_keras_reads_them(fill_mode, interpolation):
    """Against keras.ops.image.map_coordinates, image by image and channel by channel, with
    points well outside the image too (Keras's torch backend has no "wrap")."""
    keras = _keras()
    rng = np.random.default_rng(1)
    x = rng.random((2, 9, 11, 3)).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(9), np.arange(11), indexing="ij")
    ys = (rows + rng.normal(0, 3, (2, 9, 11))).astype(np.float32)
    xs = (cols + rng.normal(0, 3, (2, 9, 11))).astype(np.float32)
    ours = maths.point_resample(x, ys, xs, interpolation, fill_mode, 0.5)
    order = 1 if interpolation == "bilinear" else 0
    for k in range(2):
        for c in range(3):
            ref = keras.ops.image.map_coordinates(x[k, :, :, c], [ys[k], xs[k]], order, fill_mode, 0.5)  # fmt: skip
            np.testing.assert_allclose(ours[k, :, :, c], keras.ops.convert_to_numpy(ref), atol=1e-5)


def test_the_points_are_kerass_displacement_of_the_grid():
    """rows + alpha * blur(sigma * noise_rows), columns likewise: Keras's elastic_transform,
    built from Keras's own blur."""
    keras = _keras()
    noise = np.random.default_rng(2).standard_normal((2, 2, 14, 10)).astype(np.float32)
    alpha, sigma = 1.4, 0.7
    ys, xs = maths.elastic_points(noise, alpha, sigma)
    size = int(6 * sigma) | 1

    def blur(a):
        blurred = keras.ops.image.gaussian_blur((a * sigma)[..., None], (size, size), (sigma, sigma), "channels_last")  # fmt: skip
        return keras.ops.convert_to_numpy(blurred)[..., 0]

    rows, cols = np.meshgrid(np.arange(14), np.arange(10), indexing="ij")
    np.testing.assert_allclose(ys, rows + alpha * blur(noise[1]), atol=1e-5)
    np.testing.assert_allclose(xs, cols + alpha * blur(noise[0]), atol=1e-5)


@pytest.mark.parametrize("fill_mode", ["constant", "reflect", "wrap"])
def test_resampling_backward_is_its_adjoint(fill_mode):
    rng = np.random.default_rng(3)
    x = rng.random((2, 6, 5, 2))
    ys = rng.uniform(-2, 7, (2, 6, 5))
    xs = rng.uniform(-2, 6, (2, 6, 5))
    gy = rng.standard_normal(x.shape)
    f = lambda: float(np.sum(maths.point_resample(x, ys, xs, "bilinear", fill_mode) * gy))  # noqa: E731
    check(f"elastic resample ({fill_mode})", maths.point_resample_backward(gy, ys, xs, "bilinear", fill_mode), numerical_gradient(f, x))  # fmt: skip


def test_the_layer_trains_through_its_input_and_clips_to_the_value_range():
    """The gradient reaches the input through the drawn points and the clip (fixed draws)."""
    set_random_seed(4)
    layer = layers.RandomElasticTransform(factor=1.0, scale=(0.6, 0.6), value_range=(0, 0.8))
    x = np.random.default_rng(4).random((3, 10, 10, 1))
    y, ctx = layer.forward(x, training=True)
    assert y.shape == x.shape and y.max() <= 0.8 and not np.allclose(y, np.clip(x, 0, 0.8))
    gy = np.random.default_rng(5).standard_normal(x.shape)
    (idx, ys, xs), inside = ctx

    def f():
        z = x.copy()
        z[idx] = maths.point_resample(x[idx], ys, xs, "bilinear", "reflect")
        return float(np.sum(np.clip(z, 0, 0.8) * gy))

    gx, _ = layer.backward(gy, ctx)
    check("RandomElasticTransform input", gx, numerical_gradient(f, x))


def test_the_draws_follow_keras():
    """Each image is distorted with the probability drawn from factor, all with one d from
    scale: alpha = 0.1 d max(H, W), sigma = 0.05 d min(H, W), displacements of alpha times
    blurred noise, whose spread for 28x28 digits at d = 1 is about 0.8 pixel."""
    set_random_seed(5)
    layer = layers.RandomElasticTransform(factor=(0.3, 0.3), scale=(1.0, 1.0))
    counts, spreads = [], []
    for _ in range(20):
        idx, alpha, sigma, noise = layer.draw(200, 28, 28, np.dtype(np.float32))
        assert (alpha, sigma) == pytest.approx((2.8, 1.4)) and noise.dtype == np.float32
        counts.append(idx.size)
        ys, _ = maths.elastic_points(noise, alpha, sigma)
        spreads.append(np.std(ys - np.arange(28)[None, :, None]))
    assert abs(np.mean(counts) / 200 - 0.3) < 0.02
    assert 0.6 < np.mean(spreads) < 1.0, np.mean(spreads)


def test_inference_is_the_identity_and_a_model_round_trips(tmp_path):
    x = np.random.default_rng(6).random((4, 12, 12, 1)).astype(np.float32)
    model = minicnn.Sequential(
        [
            layers.Input((12, 12, 1)),
            layers.RandomElasticTransform(0.5, 0.5, fill_mode="constant"),
            layers.Flatten(),
            layers.Dense(3),
        ]  # fmt: skip
    )
    layer = model.layers[0]
    assert layer.forward(x)[0] is x
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.layers[-1].forward(x.reshape(4, -1))[0])  # fmt: skip
    model.save(tmp_path / "m.minicnn")
    again = minicnn.saving.load_model(tmp_path / "m.minicnn").layers[0]
    assert again.get_config() == layer.get_config()
    assert (again.factor, again.scale, again.fill_mode) == ((0.0, 0.5), (0.0, 0.5), "constant")


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"factor": 1.5}, "factor"),
        ({"factor": (0.1, 0.2, 0.3)}, "factor"),
        ({"scale": -0.1}, "scale"),
        ({"scale": (-0.2, 0.5)}, "scale"),
        ({"scale": "big"}, "scale"),
        ({"interpolation": "bicubic"}, "interpolation"),
        ({"fill_mode": "zeros"}, "fill_mode"),
        ({"value_range": (1, 0)}, "value_range"),
        ({"seed": 3}, "seed"),
        ({"data_format": "channels_first"}, "data_format"),
    ],
)
def test_bad_arguments_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named):
        layers.RandomElasticTransform(**kwargs)
