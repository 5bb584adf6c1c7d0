"""The layers beyond the seed model's: float64 gradient checks, naive-loop references written
here, and PyTorch where it has the op (skipped without torch)."""

import functools
import math

import numpy as np
import pytest
from test_gradients import gradcheck_layer

import minicnn
from minicnn import Sequential, backend, ops
from minicnn.layers import (
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
    Rescaling,
    Reshape,
)
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
    if relu:
        layer.forward = functools.partial(layer.forward, relu=True)
    layer.build(shape[1:], backend.get_backend(backend_name))
    for name in ("gamma", "beta"):  # away from the initial 1 and 0
        if name in layer.params:
            layer.params[name][...] = layer.xp.asarray(rng.uniform(0.5, 1.5, shape[-1]))
    gradcheck_layer(layer, rng.standard_normal(shape) * 2 + 1, backend_name, rng)


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
    ],
    ids=["avg2", "avg3s2same", "avg23same", "gap", "gap-keepdims", "gmp", "rescaling", "reshape"],
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
    pads = ops.padding_amounts(11, 10, kernel, kernel, 2, 2, padding)
    z, _ = ops.conv2d_forward(be.asarray(x), k, (2, 2), pads)
    monkeypatch.setenv("MINICNN_CONV", "im2col")
    ref, _ = ops.conv2d_forward(be.asarray(x), k, (2, 2), pads)
    np.testing.assert_allclose(be.to_numpy(z), be.to_numpy(ref), rtol=1e-9, atol=1e-10)


# -- naive references --------------------------------------------------------------------------


def test_batchnorm_matches_a_per_channel_loop_and_keras_moving_rule(rng):
    x = rng.standard_normal((6, 3, 4, 5)).astype(np.float32) * 3 + 2
    layer = BatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.build(x.shape[1:])
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    layer.params["gamma"][...], layer.params["beta"][...] = gamma, beta
    y = layer.forward(x, training=True)
    for c in range(5):
        v = x[..., c].astype(np.float64)
        mean, var = v.sum() / v.size, ((v - v.mean()) ** 2).sum() / v.size
        expected = gamma[c] * (v - mean) / math.sqrt(var + 1e-3) + beta[c]
        np.testing.assert_allclose(y[..., c], expected, rtol=1e-4, atol=1e-5)
        assert layer.state["moving_mean"][c] == pytest.approx(0.1 * mean, rel=1e-5)
        assert layer.state["moving_variance"][c] == pytest.approx(0.9 + 0.1 * var, rel=1e-5)
    assert [w.shape for w in layer.get_weights()] == [(5,)] * 4  # gamma, beta, mean, variance
    mm, mv = layer.state["moving_mean"].copy(), layer.state["moving_variance"].copy()
    y = layer.forward(x, training=False)  # inference: the moving statistics, unchanged
    np.testing.assert_allclose(y, gamma * (x - mm) / np.sqrt(mv + 1e-3) + beta, rtol=1e-5, atol=1e-5)  # fmt: skip
    assert np.array_equal(layer.state["moving_mean"], mm)
    assert y.dtype == np.float32


@pytest.mark.parametrize("pool,strides,padding", [(2, 2, "valid"), (3, 2, "same"), (3, 1, "same")])
def test_average_pooling_matches_a_loop(rng, pool, strides, padding):
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    y = AveragePooling2D(pool, strides, padding).forward(x)
    pads = ops.padding_amounts(7, 6, pool, pool, strides, strides, padding)
    oh, ow = y.shape[1:3]
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * strides - pads[0], j * strides - pads[2]
            window = x[:, max(r0, 0) : r0 + pool, max(c0, 0) : c0 + pool, :]  # real pixels only
            np.testing.assert_allclose(y[:, i, j], window.mean(axis=(1, 2)), rtol=1e-5)


def _naive_resample(x, t, fill_mode, fill_value, interpolation):
    """One pixel at a time, folding coordinates as Keras's fill modes say."""

    def fold(i, n):
        if fill_mode == "reflect":
            i %= 2 * n
            return 2 * n - 1 - i if i >= n else i
        if fill_mode == "mirror":
            i %= 2 * n - 2
            return 2 * n - 2 - i if i >= n else i
        if fill_mode == "wrap":
            return i % n
        return min(max(i, 0), n - 1)

    def read(b, r, c):
        if fill_mode == "constant" and not (0 <= r < h and 0 <= c < w):
            return np.full(x.shape[-1], fill_value)
        return x[b, fold(r, h), fold(c, w)]

    n, h, w, _ = x.shape
    y = np.zeros_like(x, dtype=np.float64)
    for b in range(n):
        a0, a1, a2, b0, b1, b2 = t[b]
        for row in range(h):
            for col in range(w):
                xs, ys = a0 * col + a1 * row + a2, b0 * col + b1 * row + b2
                if interpolation == "nearest":
                    y[b, row, col] = read(b, math.floor(ys + 0.5), math.floor(xs + 0.5))
                    continue
                x0, y0 = math.floor(xs), math.floor(ys)
                fx, fy = xs - x0, ys - y0
                y[b, row, col] = (
                    (1 - fy) * (1 - fx) * read(b, y0, x0)
                    + (1 - fy) * fx * read(b, y0, x0 + 1)
                    + fy * (1 - fx) * read(b, y0 + 1, x0)
                    + fy * fx * read(b, y0 + 1, x0 + 1)
                )
    return y


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "mirror", "wrap"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_resampling_matches_a_pixel_loop(backend_name, rng, fill_mode, interpolation):
    be = backend.get_backend(backend_name)
    x = rng.standard_normal((3, 9, 8, 2))
    t = np.stack([RandomRotation(0.3).transforms(1, 9, 8)[0], RandomZoom(0.4).transforms(1, 9, 8)[0], RandomTranslation(0.5, 0.5).transforms(1, 9, 8)[0]])  # fmt: skip
    y = ops.affine_resample(be.asarray(x), be.asarray(t), interpolation, fill_mode, 0.25)
    np.testing.assert_allclose(be.to_numpy(y), _naive_resample(x, t, fill_mode, 0.25, interpolation), atol=1e-9)  # fmt: skip


def test_augmentation_factor_conventions():
    """Keras's: rotation factor in turns (0.25 = 90 degrees); translation by a fraction of the
    size, a positive zoom factor zooming out (the content shrinks)."""
    set_random_seed(0)
    x = np.zeros((1, 9, 9, 1), np.float32)
    x[0, 1:4, 4, 0] = 1  # a bar above the centre
    rot = RandomRotation((0.25, 0.25), fill_mode="constant", interpolation="nearest")
    y = rot.forward(x, training=True)
    assert np.array_equal(np.argwhere(y[0, ..., 0] > 0.5), [[4, 5], [4, 6], [4, 7]]) or np.array_equal(np.argwhere(y[0, ..., 0] > 0.5), [[4, 1], [4, 2], [4, 3]])  # fmt: skip
    shift = RandomTranslation((0.0, 0.0), (1 / 3, 1 / 3), fill_mode="constant")
    y = shift.forward(x, training=True)  # 3 of 9 columns to the right
    assert np.array_equal(np.argwhere(y[0, ..., 0] > 0.5)[:, 1], [7, 7, 7])
    out = RandomZoom((0.5, 0.5), fill_mode="constant").forward(np.ones((1, 9, 9, 1), np.float32), training=True)  # fmt: skip
    assert out[0, 4, 4, 0] == 1 and out[0, 0, 0, 0] == 0  # zoomed out: the border is fill
    for layer in (rot, shift):
        assert layer.forward(x, training=False) is x  # the identity in inference


def test_global_pools_and_reshape_match_numpy(rng):
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(GlobalAveragePooling2D().forward(x), x.mean(axis=(1, 2)), rtol=1e-6)
    assert np.array_equal(GlobalMaxPooling2D(keepdims=True).forward(x), x.max(axis=(1, 2), keepdims=True))  # fmt: skip
    assert Reshape((5, -1)).forward(x).shape == (2, 5, 12)
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape((7, -1)).build((4, 5, 3))


# -- PyTorch, where it has the op --------------------------------------------------------------


def test_against_pytorch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rng.standard_normal((4, 8, 7, 3))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)  # NCHW
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    bn = BatchNormalization(epsilon=1e-3)
    minicnn.set_floatx("float64")
    try:
        bn.build(x.shape[1:])
        bn.params["gamma"][...], bn.params["beta"][...] = gamma, beta
        y = bn.forward(x, training=True)
        g = rng.standard_normal(y.shape)
        gx = bn.backward(g)
    finally:
        minicnn.set_floatx("float32")
    yt = F.batch_norm(xt, None, None, torch.tensor(gamma, requires_grad=True), torch.tensor(beta), training=True, eps=1e-3)  # fmt: skip
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-10)
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), atol=1e-10)
    x32 = x.astype(np.float32)
    t32 = torch.tensor(x32.transpose(0, 3, 1, 2))
    ours = AveragePooling2D(3, 2, "same").forward(x32)
    # TF's "same" pads (0, 1) rows and (1, 1) columns here: torch pools the padded input and
    # divides by the pooled mask of real pixels
    top, bottom, left, right = ops.padding_amounts(8, 7, 3, 3, 2, 2, "same")
    sums = F.avg_pool2d(F.pad(t32, (left, right, top, bottom)), 3, 2)
    counts = F.avg_pool2d(F.pad(torch.ones_like(t32), (left, right, top, bottom)), 3, 2)
    theirs = sums / counts
    np.testing.assert_allclose(ours, theirs.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(GlobalAveragePooling2D().forward(x32), F.adaptive_avg_pool2d(t32, 1).numpy()[:, :, 0, 0], rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(GlobalMaxPooling2D().forward(x32), F.adaptive_max_pool2d(t32, 1).numpy()[:, :, 0, 0])  # fmt: skip


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
    model._mark_input_grads()
    fused = [extra.get("relu", False) for _, extra in model._steps()]
    assert fused == [False, True, False, True, False, False, False, False, False, False]
    folded = [
        (type(layer).__name__, sorted(extra)) for layer, extra in model._steps(training=False)
    ]
    assert folded == [
        ("Conv2D", ["affine", "relu"]),  # Conv2D + BatchNormalization + ReLU
        ("Conv2D", ["affine", "relu"]),  # + BatchNormalization + Activation("relu")
        ("ReLU", []),
        ("Flatten", []),
        ("Dense", []),
        ("BatchNormalization", []),  # after Dense: not folded
        ("Activation", []),
        ("Dense", []),
    ]
    x = rng.standard_normal((5, 7, 6, 2))
    g = rng.standard_normal((5, 2))
    for training in (True, False):
        y_fused = model.forward(x, training=training)
        grads_fused = None
        if training:
            model.backward(g)
            grads_fused = [layer.grads[k].copy() for layer, k in model.trainable_params()]
        h = x
        for layer in model.layers:
            h = layer.forward(h, training=training)
        np.testing.assert_allclose(y_fused, h, rtol=1e-12, atol=1e-12)  # folded: rounding
        if training:
            gh = g
            for layer in reversed(model.layers):
                gh = layer.backward(gh)
            for a, (layer, k) in zip(grads_fused, model.trainable_params()):
                np.testing.assert_allclose(a, layer.grads[k], rtol=1e-10, atol=1e-12, err_msg=f"{layer.name}.{k}")  # fmt: skip
    assert (y_fused != 0).all()


def test_nested_sequential_as_augmentation(rng):
    keras = minicnn
    data_augmentation = keras.Sequential([RandomRotation(0.1), RandomZoom(0.1)])
    model = keras.Sequential([keras.Input(shape=(10, 10, 1)), data_augmentation, Flatten(), Dense(3, activation="softmax")])  # fmt: skip
    assert [type(l).__name__ for l in model.layers] == ["RandomRotation", "RandomZoom", "Flatten", "Dense"]  # fmt: skip
    x = rng.random((5, 10, 10, 1), dtype=np.float32)
    assert np.array_equal(data_augmentation(x), x)  # inference: unchanged
    assert not np.array_equal(data_augmentation(x, training=True), x)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # rmsprop
    assert type(model.optimizer).__name__ == "RMSprop"
    model.fit(x, np.arange(5) % 3, epochs=1, verbose=0)


def test_unsupported_names_fail_clearly():
    with pytest.raises(AttributeError, match="minicnn.layers has no LSTM: it is not implemented"):
        minicnn.layers.LSTM  # noqa: B018
    with pytest.raises(AttributeError, match="minicnn has no Model: the functional"):
        minicnn.Model  # noqa: B018
    with pytest.raises(AttributeError, match="minicnn.optimizers has no Lion"):
        minicnn.optimizers.Lion  # noqa: B018
    with pytest.raises(ValueError, match="last axis"):
        Sequential([BatchNormalization(axis=1, input_shape=(4, 4, 2))])
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        RandomZoom(0.1, fill_mode="edge")
    with pytest.raises(ValueError, match=r"height_factor must lie in \(-1, 1\]"):
        RandomTranslation(1.5, 0.1)
