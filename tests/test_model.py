"""Sequential: summary, training, reproducibility, weights in Keras layouts, save/load."""

import io

import numpy as np
import pytest
from referee import keras_referee

import minicnn
from minicnn import Sequential, load_model
from minicnn.cli import build_seed_model
from minicnn.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
from minicnn.optimizers import SGD, Adam
from minicnn.utils import set_random_seed, to_categorical


def seed_model(backend=None):
    return build_seed_model(
        backend=backend
    )  # the tutorial's network, as examples/mnist.py builds it


def quadrants(n, rng, size=8):
    """A learnable toy problem: which quadrant of a noisy image holds a bright 2x2 blob."""
    labels = rng.integers(0, 4, n)
    x = rng.random((n, size, size, 1)).astype("float32") * 0.3
    half = size // 2
    for k in range(4):
        idx = np.where(labels == k)[0]
        r0 = (k // 2) * half + rng.integers(0, half - 1, idx.size)
        c0 = (k % 2) * half + rng.integers(0, half - 1, idx.size)
        for dr in (0, 1):
            for dc in (0, 1):
                x[idx, r0 + dr, c0 + dc, 0] = 1.0
    return x, labels


def small_model(backend=None, dropout=0.0):
    return Sequential(
        [
            Conv2D(8, 3, activation="relu", padding="same", input_shape=(8, 8, 1)),
            MaxPooling2D(),
            Flatten(),
            Dropout(dropout),
            Dense(4, activation="softmax"),
        ],
        backend=backend,
    )


def test_seed_model_summary_counts_203434_parameters():
    model = seed_model()
    out = io.StringIO()
    model.summary(print_fn=lambda s: out.write(s))
    text = out.getvalue()
    assert model.count_params() == 203_434
    assert [layer.count_params() for layer in model.layers] == [640, 18_464, 0, 184_330]
    for figure in (
        "640",
        "18,464",
        "184,330",
        "Total params: 203,434",
        "(None, 26, 26, 64)",
        "(None, 18432)",
    ):
        assert figure in text


def test_input_layer_declares_the_shape():
    model = Sequential()
    model.add(Input(shape=(28, 28, 1)))
    model.add(Conv2D(4, 3))
    assert model.output_shape == (None, 26, 26, 4)


@pytest.mark.parametrize(
    "loss,opt",
    [
        ("sparse_categorical_crossentropy", "adam"),
        ("categorical_crossentropy", lambda: SGD(0.1, momentum=0.9)),
    ],
)
def test_training_learns_a_synthetic_problem(backend_name, rng, loss, opt):
    x, labels = quadrants(768, rng)
    y = labels if loss.startswith("sparse") else to_categorical(labels, 4)
    model = small_model(backend_name, dropout=0.2)
    model.compile(optimizer=opt() if callable(opt) else opt, loss=loss, metrics=["accuracy"])
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(
        x, y, batch_size=32, epochs=6, verbose=0, validation_data=(x[:128], y[:128])
    )
    after = model.evaluate(x, y, verbose=0)
    h = history.history
    assert set(h) == {"loss", "accuracy", "val_loss", "val_accuracy"} and len(h["loss"]) == 6
    assert h["loss"][-1] < h["loss"][0] < before[0]
    assert after[0] < 0.5 * before[0] and after[1] >= 0.95


def test_fit_progress_bar_reads_like_keras(rng, capsys):
    x, labels = quadrants(64, rng)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, labels, epochs=2, batch_size=16)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2"
    assert out[1].startswith("4/4 ━━━━━━━━━━━━━━━━━━━━ ") and "s/step" in out[1]
    assert " img/s - accuracy: " in out[1] and " - loss: " in out[1]


def test_same_seed_gives_identical_weights(rng):
    x, labels = quadrants(128, rng)
    runs = []
    for _ in range(2):
        set_random_seed(42)
        model = small_model(dropout=0.3)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, labels, epochs=2, verbose=0)
        runs.append(model.get_weights())
    set_random_seed(43)
    other = small_model().get_weights()
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0], other[0])


def test_weights_use_keras_layouts_and_round_trip(rng):
    model = seed_model()
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 3, 1, 64), (64,), (3, 3, 64, 32), (32,), (18432, 10), (10,)]
    new = [rng.standard_normal(s).astype("float32") for s in shapes]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    # Keras's Conv2D computes y[n,i,j,o] = sum x[n,i+u,j+v,c] * kernel[u,v,c,o] + bias[o]
    x = rng.random((1, 28, 28, 1)).astype("float32")
    y = model.layers[0](x)
    expected = np.einsum("uvco,uvc->o", new[0], x[0, 5:8, 7:10, :]) + new[1]
    np.testing.assert_allclose(y[0, 5, 7], np.maximum(expected, 0), rtol=1e-5, atol=1e-5)


def test_glorot_uniform_default_initialisation():
    w = seed_model().layers[1].params["kernel"]
    limit = np.sqrt(6 / (3 * 3 * 64 + 3 * 3 * 32))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert abs(float(w.std()) - limit / np.sqrt(3)) < 0.02 * limit
    assert not seed_model().layers[0].params["bias"].any()


def test_predict_returns_probabilities_as_numpy(backend_name, rng):
    model = seed_model(backend_name)
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    p = model.predict(rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8), verbose=0)
    assert isinstance(p, np.ndarray) and p.shape == (5, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)


def test_predict_on_batch_is_predict_of_one_batch(backend_name, rng):
    """predict_on_batch skips predict's batching and callbacks, nothing else: the same bits as
    predict over one batch, Keras's output structure, uint8 in and float32 out, new arrays
    (never a view of x), and predict's errors."""
    inputs = Input((6, 6, 2))
    h = Conv2D(4, 3, activation="relu")(inputs)
    flat = Flatten()(inputs)  # a view of the input, were it handed back as it is
    model = minicnn.Model(inputs, {"probs": Dense(3, activation="softmax")(Flatten()(h)), "flat": flat}, backend=backend_name)  # fmt: skip
    x = rng.integers(0, 256, (5, 6, 6, 2), dtype=np.uint8)
    got, want = model.predict_on_batch(x), model.predict(x, batch_size=5, verbose=0)
    assert sorted(got) == ["flat", "probs"]
    for key in got:
        assert isinstance(got[key], np.ndarray) and got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], want[key])
    xf = x.astype(np.float32)
    out = model.predict_on_batch(xf)["flat"]
    out[...] = -1
    assert (xf >= 0).all()  # x is untouched
    with pytest.raises(ValueError) as ours:
        model.predict_on_batch(x[:, :5])
    with pytest.raises(ValueError) as theirs:
        model.predict(x[:, :5], verbose=0)
    assert str(ours.value) == str(theirs.value) and "shape" in str(ours.value)
    with pytest.raises(ValueError, match="x is empty"):
        model.predict(x[:0], verbose=0)  # predict refuses no samples; predict_on_batch gives none
    with pytest.raises(ValueError, match=r"takes arrays.*use predict\(\) for a generator"):
        model.predict_on_batch(b for b in [x])


def test_predict_on_batch_of_no_samples_is_keras_s():
    """A batch of no samples gives outputs of no samples, of the model's shapes, as Keras's
    predict_on_batch does (torch backend), in the model's output structure."""
    keras = keras_referee()
    theirs_in = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, activation="relu")(theirs_in)
    theirs = keras.Model(theirs_in, {"probs": keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(h)), "map": h})  # fmt: skip
    inputs = Input((6, 6, 2))
    h = Conv2D(4, 3, activation="relu")(inputs)
    ours = minicnn.Model(inputs, {"probs": Dense(3, activation="softmax")(Flatten()(h)), "map": h})
    x = np.zeros((0, 6, 6, 2), np.float32)
    got, want = ours.predict_on_batch(x), theirs.predict_on_batch(x)
    assert sorted(got) == sorted(want) == ["map", "probs"]
    for key in want:
        assert got[key].shape == want[key].shape and got[key].dtype == want[key].dtype == np.float32
    with pytest.raises(ValueError, match="wrong shape"):
        ours.predict_on_batch(np.zeros((0, 6, 5, 2), np.float32))  # still checked
    # an output whose first axis is not the samples' (a sum over them) needs samples to tell
    inputs = Input((4, 5))
    summed = minicnn.Model(inputs, minicnn.ops.sum(inputs, axis=0))
    with pytest.raises(ValueError, match=r"cannot tell this output's shape.*\(4, 5\)"):
        summed.predict_on_batch(np.zeros((0, 4, 5), np.float32))
    # and a scalar output comes back as an array (it was an AttributeError)
    total = minicnn.Model(inputs, minicnn.ops.mean(inputs)).predict_on_batch(np.ones((3, 4, 5)))
    assert isinstance(total, np.ndarray) and total.shape == () and total == 1


def test_train_on_batch_and_evaluate(rng):
    x, labels = quadrants(64, rng)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = model.train_on_batch(x, labels)
    assert np.isfinite(loss) and 0 <= acc <= 1
    loss2, acc2 = model.evaluate(x, labels, verbose=0)
    assert loss2 < loss  # the step lowered the loss on the same batch
    model.compile("adam", "sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, labels, verbose=0), float)


def test_save_load_round_trip_gives_identical_predictions(tmp_path, rng):
    model = small_model()
    model.compile(Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, labels = quadrants(64, rng)
    model.fit(x, labels, epochs=1, verbose=0)
    path = tmp_path / "model.minicnn"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.optimizer.learning_rate == 0.01 and [m.name for m in loaded.metrics] == [
        "accuracy"
    ]
    assert loaded.evaluate(x, labels, verbose=0) == model.evaluate(x, labels, verbose=0)
    assert [p.name for p in tmp_path.iterdir()] == ["model.minicnn"]  # no temp file left behind


def test_float64_on_request(rng):
    minicnn.set_floatx("float64")
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    x, labels = quadrants(32, rng)
    assert model.predict(x, verbose=0).dtype == np.float64
    assert all(w.dtype == np.float64 for w in model.get_weights())


def test_auto_algorithm_choice(monkeypatch):
    """The seed model's conv2 (3x3, 64 channels, stride 1) takes Winograd on the CPU with numba
    (shifted GEMMs without); conv1 (1 channel) takes the direct kernel with numba (im2col
    without), and strided convolutions take im2col in training, as does a kernel as large as
    its map (one GEMM, not one per kernel offset); at inference the direct kernel takes the
    layers of up to 128 filters that im2col on up to 32 channels would run."""
    from minicnn import kernels, maths

    x = np.zeros((1, 28, 28, 64), dtype="float32")
    assert maths.conv_algorithm(x[:, :4, :4], (4, 4, 64, 128), (1, 1)) == "im2col"
    numba = kernels.available()
    assert maths.conv_algorithm(x, (3, 3, 64, 32), (1, 1)) == ("winograd" if numba else "shifted")
    assert maths.conv_algorithm(x, (3, 3, 1, 64), (1, 1)) == ("direct" if numba else "im2col")
    assert maths.conv_algorithm(x, (5, 5, 3, 8), (2, 2)) == ("direct" if numba else "im2col")
    assert maths.conv_algorithm(x, (5, 5, 64, 32), (1, 1)) == "shifted"
    assert maths.conv_algorithm(x, (3, 3, 8, 64), (1, 1)) == "im2col"
    assert maths.conv_algorithm(x, (3, 3, 64, 32), (2, 2)) == "im2col"
    assert maths.conv_algorithm(x, (3, 3, 64, 1), (1, 1), (1, 1, 1, 1)) == "taps"  # few filters
    assert maths.conv_algorithm(x, (3, 3, 64, 4), (1, 1)) == "taps"
    assert maths.conv_algorithm(x, (3, 3, 64, 5), (1, 1)) == ("winograd" if numba else "shifted")
    assert maths.conv_algorithm(x, (3, 3, 64, 1), (2, 2)) == "im2col"
    small = np.zeros((32, 8, 8, 64), dtype="float32")  # 5x5/2 "same" to 4x4: one tile an image
    same = maths.padding_amounts(8, 8, 5, 5, 2, 2, "same")
    assert maths.conv_algorithm(small, (5, 5, 64, 64), (2, 2), same) == "im2col"  # 512 rows
    s2d = "space_to_depth" if numba else "im2col"
    assert maths.conv_algorithm(np.zeros((33, 8, 8, 64), "float32"), (5, 5, 64, 64), (2, 2), same) == s2d  # fmt: skip
    # at inference, Winograd's fused kernel (3x3, and 5x5/2 as space to depth on maps that fill
    # its tiles) over a batch of at least _FUSED_MIN_PIXELS output pixels; the register-blocked
    # direct kernel below that, for thin or small layers (maps of at most 26x26 out, C x F <=
    # 4096) of up to 128 filters, and where im2col would run
    direct = "direct" if numba else None
    wino = "winograd" if numba else "shifted"
    assert maths.conv_algorithm(x, (5, 5, 64, 32), (1, 1), training=False) == (direct or "shifted")  # fmt: skip
    assert maths.conv_algorithm(x, (3, 3, 64, 32), (1, 1), training=False) == wino  # 26x26 out
    assert maths.conv_algorithm(x[:, :20, :20], (3, 3, 64, 32), (1, 1), training=False) == (direct or "shifted")  # 18x18  # fmt: skip
    assert maths.conv_algorithm(np.zeros((2, 20, 20, 64), "float32"), (3, 3, 64, 32), (1, 1), training=False) == wino  # fmt: skip
    assert maths.conv_algorithm(x, (3, 3, 64, 64), (1, 1), (1, 1, 1, 1), training=False) == wino  # 28x28 out  # fmt: skip
    assert maths.conv_algorithm(x[..., :12], (3, 3, 12, 12), (1, 1), (1, 1, 1, 1), training=False) == (direct or "im2col")  # thin  # fmt: skip
    assert maths.conv_algorithm(x[:, :12, :12], (3, 3, 64, 72), (1, 1), training=False) == wino  # C x F > 4096  # fmt: skip
    assert maths.conv_algorithm(small, (5, 5, 64, 64), (2, 2), same, training=False) == (direct or "im2col")  # fmt: skip
    assert maths.conv_algorithm(np.zeros((33, 8, 8, 64), "float32"), (5, 5, 64, 64), (2, 2), same, training=False) == (direct or "im2col")  # U spills L2  # fmt: skip
    half24, half26 = (maths.padding_amounts(h, h, 5, 5, 2, 2, "same") for h in (24, 26))
    assert maths.conv_algorithm(np.zeros((8, 24, 24, 32), "float32"), (5, 5, 32, 32), (2, 2), half24, training=False) == ("space_to_depth" if numba else "im2col")  # 12x12  # fmt: skip
    assert maths.conv_algorithm(np.zeros((8, 26, 26, 32), "float32"), (5, 5, 32, 32), (2, 2), half26, training=False) == (direct or "im2col")  # 13x13: tiles a third empty  # fmt: skip
    assert maths.conv_algorithm(x, (3, 3, 8, 64), (1, 1), training=False) == (direct or "im2col")
    half = maths.padding_amounts(28, 28, 3, 3, 2, 2, "same")
    assert maths.conv_algorithm(x, (3, 3, 32, 64), (2, 2), half, training=False) == (direct or "im2col")  # fmt: skip
    assert maths.conv_algorithm(x, (3, 3, 64, 128), (2, 2), half, training=False) == "im2col"  # wide  # fmt: skip
    assert maths.conv_algorithm(x, (3, 3, 32, 64), (2, 2), half) == "im2col"  # training
    assert maths.conv_algorithm(x, (5, 5, 64, 129), (1, 1), training=False) == "shifted"  # F > 128
    monkeypatch.setenv("MINICNN_KERNELS", "numpy")
    assert maths.conv_algorithm(x, (3, 3, 64, 32), (1, 1)) == "shifted"
    assert maths.conv_algorithm(x, (5, 5, 64, 32), (1, 1), training=False) == "shifted"
    assert maths.conv_algorithm(x, (3, 3, 1, 64), (1, 1)) == "im2col"
    monkeypatch.setenv("MINICNN_CONV", "winograd")
    assert maths.conv_algorithm(x, (3, 3, 64, 32), (1, 1)) == "winograd"
    assert maths.conv_algorithm(x, (5, 5, 64, 32), (1, 1)) == "im2col"
    monkeypatch.setenv("MINICNN_CONV", "direct")
    assert maths.conv_algorithm(x, (5, 5, 64, 32), (2, 2)) == "direct"


def test_shifted_gemms_refuse_a_stride_they_would_ignore():
    """The shifted GEMMs convolve at stride 1 only: asked for another (by a direct call; the
    plan never does), they refuse by name rather than give a stride-1 map."""
    from minicnn import maths

    x, k = np.zeros((1, 12, 12, 16), "float32"), np.zeros((5, 5, 16, 20), "float32")
    for call in (maths.conv2d_forward, maths.conv2d_pooled):
        with pytest.raises(ValueError, match=r"stride 1 only. Received: strides=\(2, 2\)"):
            call(x, k, None, (2, 2), (2, 2, 2, 2), algorithm="shifted")


def test_hostile_architecture_is_refused_before_allocating(tmp_path):
    """A model file whose architecture declares a 10^12-element weight is refused from its
    sizes alone, before anything is built."""
    import json
    import zipfile

    from minicnn.saving import ModelFileError

    model = Sequential([Dense(3, input_shape=(4,))])
    model.save(tmp_path / "m.minicnn")
    with zipfile.ZipFile(tmp_path / "m.minicnn") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(members["model.json"])
    meta["architecture"]["config"]["layers"][1]["config"]["units"] = 10**12  # 0: the Input
    members["model.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "bad.minicnn", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(
        ModelFileError, match=r"needs 20,000,000,000,000 bytes of weights but the file has"
    ):
        load_model(tmp_path / "bad.minicnn")
