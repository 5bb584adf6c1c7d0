"""The layers beyond the seed model's: float64 gradient checks, naive-loop references written
here, and PyTorch where it has the op (skipped without torch)."""

import numpy as np
import pytest
from gradcheck import build
from referee import keras_referee, need
from test_gradients import gradcheck_layer

import minicnn
from minicnn import Sequential, backend, maths
from minicnn.layers import (
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Input,
    MaxPooling2D,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    ReLU,
    Rescaling,
    Reshape,
)
from minicnn.maths import reference
from minicnn.plan.graph import Call
from minicnn.plan.steps import BatchNormStep
from minicnn.utils import set_random_seed


@pytest.fixture
def f64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


# -- gradient checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 5, 6, 3), (7, 4)], ids=["after-conv", "after-dense"])
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("relu", [False, True], ids=["", "fused-relu"])
def test_batchnorm_gradients_in_training(backend_name, rng, f64, shape, center, scale, relu):
    """With ``relu``, as a Sequential runs it when a ReLU layer follows: the ReLU applied in
    BatchNorm's own pass, its mask in BatchNorm's gradient."""
    layer = BatchNormalization(center=center, scale=scale)
    build(layer, shape, backend.get_backend(backend_name))
    for name in ("gamma", "beta"):  # away from the initial 1 and 0
        if name in layer.params:
            layer.params[name][...] = layer.xp.asarray(rng.uniform(0.5, 1.5, shape[-1]))
    checked = StepAsLayer(BatchNormStep(Call(layer, (0,), (1,), True, None), True, ReLU())) if relu else layer  # fmt: skip
    gradcheck_layer(checked, rng.standard_normal(shape) * 2 + 1, backend_name, rng)


class StepAsLayer:
    """A plan's fused step with a layer's contract, for gradcheck_layer."""

    def __init__(self, step):
        self.step, self.layer = step, step.layer
        self.params, self.backend = step.layer.params, step.layer.backend

    def maybe_build(self, shape):
        pass

    def forward(self, x, training=False):
        return self.step.forward([x], training)

    def backward(self, gy, ctx, need_gx=True):
        gxs, grads = self.step.backward(gy, ctx)
        return gxs[0], {k: g for _, k, g in grads}

    def __repr__(self):
        return repr(self.step)


@pytest.mark.parametrize(
    "layer",
    [
        lambda: AveragePooling2D(2),
        lambda: AveragePooling2D(3, strides=2, padding="same"),
        lambda: AveragePooling2D((2, 3), strides=1, padding="same"),
        lambda: GlobalAveragePooling2D(),
        lambda: GlobalAveragePooling2D(keepdims=True),
        lambda: GlobalMaxPooling2D(),
        lambda: Rescaling(1 / 255, offset=-0.5),
        lambda: Reshape((-1, 2)),
        lambda: minicnn.layers.Permute((3, 1, 2)),
        lambda: minicnn.layers.UnitNormalization(),
        lambda: minicnn.layers.UnitNormalization([1, 2]),
        lambda: minicnn.layers.Identity(),
        lambda: minicnn.layers.CenterCrop(3, 2),
    ],
    ids=[
        "avg2",
        "avg3s2same",
        "avg23same",
        "gap",
        "gap-keepdims",
        "gmp",
        "rescaling",
        "reshape",
        "permute",
        "unitnorm",
        "unitnorm12",
        "identity",
        "centercrop",
    ],  # fmt: skip
)
def test_parameterless_gradients(backend_name, rng, f64, layer):
    gradcheck_layer(layer(), rng.standard_normal((2, 6, 5, 4)), backend_name, rng)


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize(
    "layer",
    [
        lambda m: RandomRotation(0.2, fill_mode=m, fill_value=0.5),
        lambda m: RandomTranslation(0.3, 0.2, fill_mode=m),
        lambda m: RandomZoom(0.3, 0.2, fill_mode=m),
    ],
    ids=["rotation", "translation", "zoom"],
)
def test_augmentation_input_gradients(backend_name, rng, f64, fill_mode, layer):
    """For fixed transforms (the same seed each call) bilinear resampling is linear in x."""
    gradcheck_layer(layer(fill_mode), rng.standard_normal((3, 7, 6, 2)), backend_name, rng, seed=5)


@pytest.mark.parametrize("name", ["RandomContrast", "RandomBrightness"])
def test_colour_augmentation_input_gradients(backend_name, rng, f64, name):
    """For the same draws (the same seed each call) the contrast is linear in x up to the
    clip, whose mask the backward applies; inputs reach past value_range, so it is used."""
    layer = getattr(minicnn.layers, name)((0.2, 0.5), value_range=(-1.5, 1.5))
    gradcheck_layer(layer, rng.standard_normal((3, 5, 4, 2)), backend_name, rng, seed=5)


def test_gaussian_noise_adds_its_noise_in_training_only(backend_name, rng, f64):
    """x + N(0, stddev^2) per element in training, in x's dtype; the identity in inference (as
    Keras's, checked in test_keras_conformance); the gradient passes as it is; a unit vector
    stays a unit vector under UnitNormalization, a zero one stays zero."""
    from minicnn.layers import GaussianNoise, UnitNormalization

    layer = GaussianNoise(0.3)
    x = rng.standard_normal((50, 8, 8, 4))
    build(layer, x.shape, backend.get_backend(backend_name))
    be = layer.backend
    y = be.to_numpy(layer.forward(be.asarray(x), True)[0])
    assert y.dtype == x.dtype
    noise = y - x
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.3) < 0.01, (noise.mean(), noise.std())
    np.testing.assert_array_equal(be.to_numpy(layer.forward(be.asarray(x), False)[0]), x)
    gradcheck_layer(
        GaussianNoise(0.3), rng.standard_normal((2, 5, 4, 3)), backend_name, rng, seed=5
    )
    unit = UnitNormalization()
    z = np.concatenate([rng.standard_normal((3, 4, 5, 6)), np.zeros((1, 4, 5, 6))])
    build(unit, z.shape, be)
    out = be.to_numpy(unit.forward(be.asarray(z), False)[0])
    np.testing.assert_allclose(np.linalg.norm(out[:3], axis=-1), 1.0, rtol=1e-6)
    assert np.all(out[3] == 0)
    with pytest.raises(ValueError, match="stddev must be a number >= 0"):
        GaussianNoise(-1.0)
    with pytest.raises(ValueError, match="dims must number the axes"):
        minicnn.layers.Permute((0, 1))


@pytest.mark.parametrize("mode", ["horizontal", "vertical", "horizontal_and_vertical"])
def test_random_flip_flips_half_the_images_as_keras_does(backend_name, rng, f64, mode):
    """Each image is itself or its flip (both axes on one draw for "horizontal_and_vertical",
    as Keras's RandomFlip), about half flipped; the identity at inference, as Keras's; the
    input gradient of the same draws is the flip of the output's."""
    from minicnn.layers import RandomFlip

    keras = keras_referee()
    axes = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}[mode]
    x = rng.standard_normal((400, 5, 4, 2))
    layer = RandomFlip(mode)
    build(layer, x.shape, backend.get_backend(backend_name))
    be = layer.backend
    minicnn.utils.set_random_seed(3)
    y = be.to_numpy(layer.forward(be.asarray(x), True)[0])
    flipped = np.all(y == np.flip(x, axes), axis=(1, 2, 3))
    assert np.all(flipped | np.all(y == x, axis=(1, 2, 3)))
    assert 150 < flipped.sum() < 250, flipped.sum()  # 200 +- 5 standard deviations
    theirs = np.asarray(keras.layers.RandomFlip(mode)(x.astype(np.float32), training=True))
    keras_flipped = np.all(theirs == np.flip(x, axes).astype(np.float32), axis=(1, 2, 3))
    assert 150 < keras_flipped.sum() < 250 and np.all(keras_flipped | np.all(theirs == x.astype(np.float32), axis=(1, 2, 3)))  # fmt: skip
    np.testing.assert_array_equal(be.to_numpy(layer.forward(be.asarray(x), False)[0]), x)
    np.testing.assert_array_equal(np.asarray(keras.layers.RandomFlip(mode)(x.astype(np.float32), training=False)), x.astype(np.float32))  # fmt: skip
    gradcheck_layer(RandomFlip(mode), rng.standard_normal((6, 5, 4, 2)), backend_name, rng, seed=5)
    with pytest.raises(ValueError, match="mode must be one of"):
        RandomFlip("diagonal")


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel,cin", [(5, 8), (6, 3), (4, 2)])
def test_strided_conv_by_space_to_depth(backend_name, rng, f64, monkeypatch, padding, kernel, cin):
    """5x5/6x6 stride 2 (Winograd over 2x2 blocks) and 4x4 (shifted): gradients, and the same
    output as im2col."""
    monkeypatch.setenv("MINICNN_CONV", "space_to_depth")
    x = rng.standard_normal((2, 11, 10, cin))
    gradcheck_layer(Conv2D(3, kernel, strides=2, padding=padding), x, backend_name, rng)
    be = backend.get_backend(backend_name)
    k = be.asarray(rng.standard_normal((kernel, kernel, cin, 4)))
    pads = maths.padding_amounts(11, 10, kernel, kernel, 2, 2, padding)
    z, _ = maths.conv2d_forward(be.asarray(x), k, None, (2, 2), pads)
    ref, _ = maths.conv2d_forward(be.asarray(x), k, None, (2, 2), pads, algorithm="im2col")
    np.testing.assert_allclose(be.to_numpy(z), be.to_numpy(ref), rtol=1e-9, atol=1e-10)


# -- naive references --------------------------------------------------------------------------


def test_batchnorm_matches_a_per_channel_loop_and_keras_moving_rule(rng):
    x = rng.standard_normal((6, 3, 4, 5)).astype(np.float32) * 3 + 2
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.maybe_build((None, *x.shape[1:]))
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    layer.params["gamma"][...], layer.params["beta"][...] = gamma, beta
    y = layer(x, training=True)
    expected, mean, var = reference.batchnorm(x, gamma, beta, 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.state["moving_mean"], 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(layer.state["moving_variance"], 0.9 + 0.1 * var, rtol=1e-5)
    assert [w.shape for w in layer.get_weights()] == [(5,)] * 4  # gamma, beta, mean, variance
    mm, mv = layer.state["moving_mean"].copy(), layer.state["moving_variance"].copy()
    y = layer(x, training=False)  # inference: the moving statistics, unchanged
    np.testing.assert_allclose(y, gamma * (x - mm) / np.sqrt(mv + 1e-3) + beta, rtol=1e-5, atol=1e-5)  # fmt: skip
    assert np.array_equal(layer.state["moving_mean"], mm)
    assert y.dtype == np.float32


@pytest.mark.parametrize("pool,strides,padding", [(2, 2, "valid"), (3, 2, "same"), (3, 1, "same")])
def test_average_pooling_matches_a_loop(rng, pool, strides, padding):
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    y = AveragePooling2D(pool, strides, padding)(x)
    expected = reference.avgpool(x, (pool, pool), (strides, strides), padding)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_resampling_matches_a_pixel_loop(backend_name, rng, fill_mode, interpolation):
    be = backend.get_backend(backend_name)
    x = rng.standard_normal((3, 9, 8, 2))
    t = np.stack([RandomRotation(0.3).transforms(1, 9, 8)[0], RandomZoom(0.4).transforms(1, 9, 8)[0], RandomTranslation(0.5, 0.5).transforms(1, 9, 8)[0]])  # fmt: skip
    y = maths.affine_resample(be.asarray(x), be.asarray(t), interpolation, fill_mode, 0.25)
    np.testing.assert_allclose(be.to_numpy(y), reference.affine_resample(x, t, fill_mode, 0.25, interpolation), atol=1e-9)  # fmt: skip


def test_augmentation_factor_conventions():
    """Keras's: rotation factor in turns (0.25 = 90 degrees); translation by a fraction of the
    size, a positive zoom factor zooming out (the content shrinks)."""
    set_random_seed(0)
    x = np.zeros((1, 9, 9, 1), np.float32)
    x[0, 1:4, 4, 0] = 1  # a bar above the centre
    rot = RandomRotation((0.25, 0.25), fill_mode="constant", interpolation="nearest")
    y = rot(x, training=True)
    assert np.array_equal(np.argwhere(y[0, ..., 0] > 0.5), [[4, 5], [4, 6], [4, 7]]) or np.array_equal(np.argwhere(y[0, ..., 0] > 0.5), [[4, 1], [4, 2], [4, 3]])  # fmt: skip
    shift = RandomTranslation((0.0, 0.0), (1 / 3, 1 / 3), fill_mode="constant")
    y = shift(x, training=True)  # 3 of 9 columns to the right
    assert np.array_equal(np.argwhere(y[0, ..., 0] > 0.5)[:, 1], [7, 7, 7])
    out = RandomZoom((0.5, 0.5), fill_mode="constant")(np.ones((1, 9, 9, 1), np.float32), training=True)  # fmt: skip
    assert out[0, 4, 4, 0] == 1 and out[0, 0, 0, 0] == 0  # zoomed out: the border is fill
    for layer in (rot, shift):
        assert layer(x, training=False) is x  # the identity in inference


def test_global_pools_and_reshape_match_numpy(rng):
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(GlobalAveragePooling2D()(x), x.mean(axis=(1, 2)), rtol=1e-6)
    assert np.array_equal(GlobalMaxPooling2D(keepdims=True)(x), x.max(axis=(1, 2), keepdims=True))  # fmt: skip
    assert Reshape((5, -1))(x).shape == (2, 5, 12)
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape((7, -1)).maybe_build((None, 4, 5, 3))


# -- PyTorch, where it has the op --------------------------------------------------------------


def test_against_pytorch(rng):
    torch = need("torch")
    F = torch.nn.functional
    x = rng.standard_normal((4, 8, 7, 3))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)  # NCHW
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    bn = BatchNormalization(epsilon=1e-3)
    minicnn.set_floatx("float64")
    try:
        bn.maybe_build((None, *x.shape[1:]))
        bn.params["gamma"][...], bn.params["beta"][...] = gamma, beta
        y, ctx = bn.forward(x, training=True)
        g = rng.standard_normal(y.shape)
        gx, _ = bn.backward(g, ctx)
    finally:
        minicnn.set_floatx("float32")
    yt = F.batch_norm(xt, None, None, torch.tensor(gamma, requires_grad=True), torch.tensor(beta), training=True, eps=1e-3)  # fmt: skip
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-10)
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-10)
    x32 = x.astype(np.float32)
    t32 = torch.tensor(x32.transpose(0, 3, 1, 2))
    ours = AveragePooling2D(3, 2, "same")(x32)
    # TF's "same" pads (0, 1) rows and (1, 1) columns here: torch pools the padded input and
    # divides by the pooled mask of real pixels
    top, bottom, left, right = maths.padding_amounts(8, 7, 3, 3, 2, 2, "same")
    sums = F.avg_pool2d(F.pad(t32, (left, right, top, bottom)), 3, 2)
    counts = F.avg_pool2d(F.pad(torch.ones_like(t32), (left, right, top, bottom)), 3, 2)
    theirs = sums / counts
    np.testing.assert_allclose(ours, theirs.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(GlobalAveragePooling2D()(x32), F.adaptive_avg_pool2d(t32, 1).numpy()[:, :, 0, 0], rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(GlobalMaxPooling2D()(x32), F.adaptive_max_pool2d(t32, 1).numpy()[:, :, 0, 0])  # fmt: skip


@pytest.mark.parametrize("batch", [1, 6])  # the array code; the kernels (and their fusions)
def test_max_pooling_gives_a_nan_as_pytorch_does(rng, batch):
    """A NaN is its window's maximum, in training and at inference, alone and fused into the
    convolution before it (the plan's inference fusion), as in PyTorch: never hidden from the
    loss and the non-finite guard. Inputs with NaNs are refused at the door, so in a model the
    NaN comes from a weight: one filter's bias."""
    torch = need("torch")
    F = torch.nn.functional
    x = rng.standard_normal((batch, 9, 10, 3)).astype(np.float32)
    xn = x.copy()
    xn[0, 2, 3, 1] = xn[-1, 7, 8, 0] = np.nan
    pool = MaxPooling2D(2)
    want = F.max_pool2d(torch.tensor(xn.transpose(0, 3, 1, 2)), 2).numpy().transpose(0, 2, 3, 1)
    assert np.isnan(want).sum() == 2
    for training in (False, True):
        with maths.dispatch.array_code():
            np.testing.assert_array_equal(pool(xn, training=training), want)
        np.testing.assert_array_equal(pool(xn, training=training), want)
    model = Sequential([Input((9, 10, 3)), Conv2D(5, 3, activation="relu"), MaxPooling2D(2)])
    kernel, bias = model.layers[0].get_weights()
    bias[2] = np.nan
    model.layers[0].set_weights([kernel, bias])
    xt = torch.tensor(x.transpose(0, 3, 1, 2)).double()
    conv = F.conv2d(xt, torch.tensor(kernel.transpose(3, 2, 0, 1)).double(), torch.tensor(bias).double())  # fmt: skip
    want = F.max_pool2d(F.relu(conv), 2).numpy().transpose(0, 2, 3, 1)
    got = model.predict_on_batch(x)
    fused = [row[3] for row in model.plan(batch, False).describe()]
    assert fused[0] == ("relu, max_pooling" if batch > 4 else "relu")
    assert np.isnan(want[..., 2]).all() and not np.isnan(want[..., [0, 1, 3, 4]]).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-5)


# -- models that use them ----------------------------------------------------------------------


def test_batchnorm_model_trains_saves_and_resumes_inference(tmp_path, rng):
    x = rng.random((64, 12, 12, 1), dtype=np.float32)
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3))).astype(int)
    model = Sequential(
        [
            Conv2D(8, 3, use_bias=False, input_shape=(12, 12, 1)),
            BatchNormalization(),
            Conv2D(8, 5, strides=2, padding="same", activation="relu"),
            AveragePooling2D(),
            Flatten(),
            Dense(8, use_bias=False),
            BatchNormalization(),
            Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.layers[1].state["moving_mean"].copy()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert not np.array_equal(before, model.layers[1].state["moving_mean"])
    model.save(tmp_path / "bn.keras")  # any extension
    again = minicnn.models.load_model(tmp_path / "bn.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    names = [w.shape for w in again.layers[1].get_weights()]
    assert names == [(8,)] * 4


@pytest.mark.parametrize("frozen", [False, True])
def test_batchnorm_then_relu_runs_fused_with_the_same_values(rng, f64, frozen):
    """A BatchNormalization that a plain ReLU layer (ReLU or Activation("relu")) follows runs
    as one step, and at inference folds into the Conv2D before it; the model's output and
    every gradient equal those of the layers run one by one, in training (a frozen BatchNorm
    too: its moving statistics) and in inference."""
    model = Sequential(
        [
            Conv2D(4, 3, use_bias=False, input_shape=(7, 6, 2)),
            BatchNormalization(),
            minicnn.layers.ReLU(),
            Conv2D(3, 3, padding="same"),
            BatchNormalization(center=False),
            minicnn.layers.Activation("relu"),
            minicnn.layers.ReLU(),  # a second ReLU stays a layer of its own
            Flatten(),
            Dense(5, use_bias=False),
            BatchNormalization(),
            minicnn.layers.Activation("tanh"),  # not ReLU: not fused
            Dense(2),
        ]
    )
    model.layers[4].trainable = not frozen
    for bn in (model.layers[1], model.layers[4], model.layers[9]):
        for k in bn.params:
            bn.params[k][...] = rng.uniform(-0.5, 1.5, bn.params[k].shape)
        bn.state["moving_mean"][...] = rng.standard_normal(bn.state["moving_mean"].shape)

    def steps(training):
        plan = model.plan(5, training)
        return [(tuple(type(x).__name__ for x in step.layers), step.fused) for step in plan.steps]

    assert steps(True) == [
        (("Conv2D",), ()),
        (("BatchNormalization", "ReLU"), ("relu",)),
        (("Conv2D",), ()),
        (("BatchNormalization", "Activation"), ("relu",)),
        (("ReLU",), ()),  # a second ReLU stays a layer of its own
        (("Flatten",), ()),
        (("Dense",), ()),
        (("BatchNormalization",), ()),
        (("Activation",), ()),
        (("Dense",), ()),
    ]
    assert steps(False) == [
        (("Conv2D", "BatchNormalization", "ReLU"), ("batchnorm", "relu")),
        (("Conv2D", "BatchNormalization", "Activation"), ("batchnorm", "relu")),
        (("ReLU",), ()),
        (("Flatten",), ()),
        (("Dense",), ()),
        (("BatchNormalization",), ()),  # after Dense: not folded
        (("Activation",), ()),
        (("Dense",), ()),
    ]
    x = rng.standard_normal((5, 7, 6, 2))
    g = rng.standard_normal((5, 2))
    for training in (True, False):
        plan = model.plan(5, training)
        (y_fused,), tape = plan.forward([x], training)
        h, ctxs = x, []
        for layer in model.layers:
            h, ctx = layer.forward(h, training=training)
            ctxs.append(ctx)
        np.testing.assert_allclose(y_fused, h, rtol=1e-12, atol=1e-12)  # folded: rounding
        if training:
            grads = plan.backward(tape, [g])
            gh, ref = g, {}
            for layer, ctx in reversed(list(zip(model.layers, ctxs))):
                gh, wg = layer.backward(gh, ctx, True)
                ref.update({(id(layer), k): v for k, v in wg.items()})
            assert sorted(grads) == sorted((id(layer), k) for layer, k in model.trainable_params())
            for key, a in grads.items():
                np.testing.assert_allclose(a, ref[key], rtol=1e-10, atol=1e-12, err_msg=str(key))
    assert (y_fused != 0).all()


def test_nested_sequential_as_augmentation(rng):
    keras = minicnn
    data_augmentation = keras.Sequential([RandomRotation(0.1), RandomZoom(0.1)])
    model = keras.Sequential([keras.Input(shape=(10, 10, 1)), data_augmentation, Flatten(), Dense(3, activation="softmax")])  # fmt: skip
    assert [type(l).__name__ for l in model.layers] == [
        "Sequential",
        "Flatten",
        "Dense",
    ]  # as in Keras
    kinds = [type(x).__name__ for step in model.plan(5, True).steps for x in step.layers]
    assert kinds == ["RandomRotation", "RandomZoom", "Flatten", "Dense"]  # the plan opens it up
    x = rng.random((5, 10, 10, 1), dtype=np.float32)
    assert np.array_equal(data_augmentation(x), x)  # inference: unchanged
    assert not np.array_equal(data_augmentation(x, training=True), x)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # rmsprop
    assert type(model.optimizer).__name__ == "RMSprop"
    model.fit(x, np.arange(5) % 3, epochs=1, verbose=0)


def test_unsupported_names_fail_clearly():
    with pytest.raises(AttributeError, match="minicnn.layers has no LSTM: it is not implemented"):
        minicnn.layers.LSTM  # noqa: B018
    with pytest.raises(AttributeError, match="minicnn has no applications: pretrained"):
        minicnn.applications  # noqa: B018
    with pytest.raises(AttributeError, match="minicnn.optimizers has no Lion"):
        minicnn.optimizers.Lion  # noqa: B018
    with pytest.raises(ValueError, match="last axis"):
        Sequential([BatchNormalization(axis=1, input_shape=(4, 4, 2))])
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        RandomZoom(0.1, fill_mode="edge")
    with pytest.raises(ValueError, match=r"height_factor must lie in \(-1, 1\]"):
        RandomTranslation(1.5, 0.1)
