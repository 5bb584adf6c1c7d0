"""Sample weights (issue 27) as Keras 3 has them: fit(sample_weight=...), fit(class_weight=...),
validation_data=(x, y, w), evaluate(sample_weight=...) and compile(weighted_metrics=...), against
the weighted loss computed here (sum(w * loss) / N for "sum_over_batch_size": the batch size,
not the weights' sum), against Keras 3.15.1 training the same model, and through a checkpoint
and its resume, bit for bit."""

import os

import numpy as np
import pytest
from referee import need
from test_faults import weights_equal

import minicnn
from minicnn import layers, load_checkpoint, losses, metrics
from minicnn.callbacks import ModelCheckpoint
from minicnn.models import Model, Sequential
from minicnn.optimizers import SGD, Adam
from minicnn.utils import set_random_seed


def keras_referee():
    os.environ["KERAS_BACKEND"] = "torch"
    keras = need("keras")
    assert keras.backend.backend() == "torch"
    return keras


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def mlp(loss="sparse_categorical_crossentropy", out=3, activation="softmax", **compile_args):
    set_random_seed(3)
    model = Sequential([layers.Input((5,)), layers.Dense(8, activation="relu"), layers.Dense(out, activation=activation)])  # fmt: skip
    model.compile(SGD(0.1), loss, **compile_args)
    return model


def dataset(rng, n=48):
    x = rng.standard_normal((n, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5), (rng.random(n) * 3).astype(np.float32)


def test_one_step_is_the_gradient_step_of_the_weighted_loss(rng):
    """A linear model, MSE, one batch: W <- W - lr * X^T (2 w (XW + b - T)) / (K N) by hand."""
    minicnn.set_floatx("float64")
    x, t = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    w = rng.random(10) * 2
    model = Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile(SGD(0.5), "mse")
    kernel, bias = model.get_weights()
    model.fit(x, t, sample_weight=w, batch_size=10, shuffle=False, verbose=0)
    d = 2 * w[:, None] * (x @ kernel + bias - t) / (2 * 10)
    np.testing.assert_allclose(model.get_weights()[0], kernel - 0.5 * x.T @ d, rtol=1e-12)
    np.testing.assert_allclose(model.get_weights()[1], bias - 0.5 * d.sum(0), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
def test_evaluate_weighs_the_loss_as_keras_reduces_it(reduction, rng):
    """Per batch, then the mean over batches weighted by their size (Keras's loss tracker)."""
    minicnn.set_floatx("float64")
    x, y, w = dataset(rng)
    model = mlp(losses.SparseCategoricalCrossentropy(reduction=reduction))
    p = model.predict(x, verbose=0)
    values = -np.log(p[np.arange(48), y])
    batches = [slice(i, i + 20) for i in range(0, 48, 20)]
    per_batch = {
        "sum_over_batch_size": [(values[b] * w[b]).sum() / len(values[b]) for b in batches],
        "sum": [(values[b] * w[b]).sum() for b in batches],
        "mean_with_sample_weight": [(values[b] * w[b]).sum() / w[b].sum() for b in batches],
    }[reduction]
    sizes = [len(values[b]) for b in batches]
    expected = np.dot(per_batch, sizes) / 48
    assert model.evaluate(x, y, sample_weight=w, batch_size=20, verbose=0) == pytest.approx(expected, rel=1e-10)  # fmt: skip


def test_class_weight_is_the_sample_weight_of_each_label(rng):
    x, y, _ = dataset(rng)
    weights = {0: 0.5, 1: 2.0}  # class 2 is not listed: weight 1
    a = mlp(metrics=["acc"], weighted_metrics=["acc"])
    ha = a.fit(x, y, class_weight=weights, batch_size=16, epochs=2, verbose=0).history
    b = mlp(metrics=["acc"], weighted_metrics=["acc"])
    hb = b.fit(x, y, sample_weight=np.array([weights.get(c, 1.0) for c in y]), batch_size=16, epochs=2, verbose=0).history  # fmt: skip
    assert ha == hb and weights_equal(a, b)
    onehot = mlp("categorical_crossentropy")
    onehot.fit(x, np.eye(3)[y], class_weight=weights, batch_size=16, epochs=2, verbose=0)
    assert weights_equal(onehot, a)  # one-hot targets: the class is the argmax


def test_weighted_metrics_and_weighted_validation(rng):
    x, y, w = dataset(rng)
    vx, vy, vw = dataset(rng, 20)
    model = mlp(metrics=["acc", "sparse_categorical_crossentropy"], weighted_metrics=["acc", metrics.SparseCategoricalAccuracy(name="wacc")])  # fmt: skip
    logs = model.fit(x, y, sample_weight=w, validation_data=(vx, vy, vw), verbose=0).history
    names = {"loss", "acc", "sparse_categorical_crossentropy", "weighted_acc", "wacc"}
    assert set(logs) == names | {f"val_{k}" for k in names}
    p = model.predict(vx, verbose=0)
    hit = (p.argmax(1) == vy).astype(float)
    assert logs["val_weighted_acc"][0] == pytest.approx((hit * vw).sum() / vw.sum(), rel=1e-6)
    assert logs["val_acc"][0] == pytest.approx(hit.mean(), rel=1e-6)
    assert logs["val_wacc"] == logs["val_weighted_acc"]
    val = model.evaluate(vx, vy, sample_weight=vw, return_dict=True, verbose=0)
    assert val["loss"] == pytest.approx(logs["val_loss"][0], rel=1e-6)
    ce = -np.log(p[np.arange(20), vy])
    assert val["loss"] == pytest.approx((ce * vw).mean(), rel=1e-5)
    assert val["sparse_categorical_crossentropy"] == pytest.approx(
        ce.mean(), rel=1e-5
    )  # unweighted


def test_validation_split_takes_the_last_weights(rng):
    x, y, w = dataset(rng, 40)
    model = mlp()
    logs = model.fit(x, y, sample_weight=w, validation_split=0.25, verbose=0).history
    p = model.predict(x[30:], verbose=0)
    assert logs["val_loss"][0] == pytest.approx((-np.log(p[np.arange(10), y[30:]]) * w[30:]).mean(), rel=1e-5)  # fmt: skip
    model = mlp()
    logs = model.fit(x, y, class_weight={0: 3.0}, validation_split=0.25, verbose=0).history
    p = model.predict(x[30:], verbose=0)  # class weights train only, as Keras
    assert logs["val_loss"][0] == pytest.approx(-np.log(p[np.arange(10), y[30:]]).mean(), rel=1e-5)


def test_several_outputs_weigh_each_loss_by_its_own_weights(rng):
    inputs = layers.Input((5,))
    a = layers.Dense(3, activation="softmax", name="digit")(inputs)
    b = layers.Dense(1, name="size")(inputs)
    model = Model(inputs, [a, b])
    model.compile(SGD(0.1), ["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5])
    x, y, w = dataset(rng, 16)
    s = rng.standard_normal((16, 1)).astype(np.float32)
    ws = rng.random((16, 1)).astype(np.float32)
    logs = model.evaluate(x, [y, s], sample_weight={"digit": w, "size": ws}, batch_size=16, return_dict=True, verbose=0)  # fmt: skip
    p, q = model.predict(x, verbose=0)
    ce = (-np.log(p[np.arange(16), y]) * w).mean()
    se = (((q - s) ** 2)[:, 0] * ws[:, 0]).mean()
    assert logs["digit_loss"] == pytest.approx(ce, rel=1e-5)
    assert logs["size_loss"] == pytest.approx(se, rel=1e-5)
    assert logs["loss"] == pytest.approx(ce + 0.5 * se, rel=1e-5)
    shared = model.evaluate(x, [y, s], sample_weight=w, batch_size=16, return_dict=True, verbose=0)  # fmt: skip
    assert shared["size_loss"] == pytest.approx((((q - s) ** 2)[:, 0] * w).mean(), rel=1e-5)


def test_weights_per_position_for_image_outputs(rng):
    """Keras multiplies the per-position values by the weights: (N, H, W) or (N, 1, 1) weigh
    an (N, H, W, C) output; (N,) does not broadcast there, and Keras fails, so minicnn refuses."""
    model = Sequential([layers.Input((4, 4, 1)), layers.Conv2D(2, 3, padding="same")])
    model.compile(SGD(0.1), "mse")
    x = rng.standard_normal((6, 4, 4, 1)).astype(np.float32)
    t = rng.standard_normal((6, 4, 4, 2)).astype(np.float32)
    w = rng.random((6, 4, 4)).astype(np.float32)
    p = model.predict(x, verbose=0)
    per = ((p - t) ** 2).mean(-1)
    assert model.evaluate(x, t, sample_weight=w, verbose=0) == pytest.approx((per * w).mean(), rel=1e-5)  # fmt: skip
    w1 = w[:, :1, :1]
    assert model.evaluate(x, t, sample_weight=w1, verbose=0) == pytest.approx((per * w1).mean(), rel=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match=r"sample_weight for output .* of shape \(6, 4, 4, 2\): sample_weight of shape \(6,\) cannot weight loss values of shape \(6, 4, 4\)"):  # fmt: skip
        model.fit(x, t, sample_weight=w[:, 0, 0], verbose=0)


def test_bad_weights_are_refused_before_anything_changes(rng):
    x, y, w = dataset(rng, 12)
    model = mlp()
    kernel = model.get_weights()[0].copy()
    cases = [
        (
            dict(sample_weight=w, class_weight={0: 1.0}),
            r"You cannot `class_weight` and `sample_weight` at the same time",
        ),  # fmt: skip
        (dict(sample_weight=w[:5]), r"sample_weight must have one entry per sample: 12"),
        (dict(sample_weight=w * np.nan), r"sample_weight contains NaN or inf"),
        (dict(sample_weight=w.astype(str)), r"sample_weight must hold real numbers"),
        (dict(class_weight=[1.0, 2.0]), r"class_weight must be a dict"),
        (dict(class_weight={0: "heavy"}), r"class_weight: each weight must be a finite number"),
        (dict(validation_data=(x, y, w[:3])), r"val_sample_weight must have one entry per sample"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            model.fit(x, y, verbose=0, **kwargs)
    assert np.array_equal(model.get_weights()[0], kernel)
    inputs = layers.Input((5,))
    two = Model(inputs, [layers.Dense(3, name="a")(inputs), layers.Dense(3, name="b")(inputs)])
    two.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"`class_weight` is only supported for Models with a single output"):  # fmt: skip
        two.fit(x, [np.zeros((12, 3))] * 2, class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match=r"a single `sample_weight` array, it should only have one scalar score per sample"):  # fmt: skip
        two.fit(x, [np.zeros((12, 3))] * 2, sample_weight=np.ones((12, 3)), verbose=0)


def test_train_and_test_on_batch_take_weights(rng):
    minicnn.set_floatx("float64")
    x, y, w = dataset(rng, 8)
    model = mlp()
    p = model.predict(x, verbose=0)
    expected = (-np.log(p[np.arange(8), y]) * w).mean()
    assert model.test_on_batch(x, y, sample_weight=w) == pytest.approx(expected, rel=1e-10)
    assert model.train_on_batch(x, y, sample_weight=w) == pytest.approx(expected, rel=1e-10)
    cw = {0: 2.0, 1: 0.5, 2: 1.0}
    p = model.predict(x, verbose=0)
    expected = (-np.log(p[np.arange(8), y]) * np.array([cw[c] for c in y])).mean()
    assert model.train_on_batch(x, y, class_weight=cw, return_dict=True)["loss"] == pytest.approx(expected, rel=1e-10)  # fmt: skip


@pytest.mark.parametrize("stop_after", [1, 2])
def test_a_weighted_run_resumes_bit_exact(tmp_path, stop_after, rng):
    x, y, w = dataset(rng, 96)

    def model():
        m = mlp(weighted_metrics=["acc"])
        m.compile(Adam(3e-3), "sparse_categorical_crossentropy", weighted_metrics=["acc"])
        return m

    args = dict(sample_weight=w, batch_size=16, validation_split=0.25, verbose=0)
    set_random_seed(7)
    full = model()
    full_history = full.fit(x, y, epochs=3, **args)
    set_random_seed(7)
    part = model()
    path = tmp_path / "ckpt.minicnn"
    part.fit(x, y, epochs=stop_after, callbacks=[ModelCheckpoint(path)], **args)
    set_random_seed(999)
    checkpoint = load_checkpoint(path)
    history = checkpoint.model.fit(x, y, epochs=3, initial_epoch=checkpoint.epoch, **args)
    assert weights_equal(checkpoint.model, full)
    assert history.history == full_history.history


def test_fit_matches_keras_with_sample_and_class_weights(rng):
    """The same model, weights and batches in Keras 3.15.1: the same history, to float32."""
    keras = keras_referee()
    x, y, w = dataset(rng, 64)
    vx, vy, vw = dataset(rng, 24)
    for kwargs in (dict(sample_weight=w), dict(class_weight={0: 0.3, 2: 4.0})):
        ours = mlp(metrics=["acc"], weighted_metrics=["acc", "sparse_categorical_crossentropy"])
        theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
        theirs.set_weights(ours.get_weights())
        theirs.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["acc"], weighted_metrics=["acc", "sparse_categorical_crossentropy"])  # fmt: skip
        run = dict(batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=(vx, vy, vw), **kwargs)  # fmt: skip
        mine = ours.fit(x, y, **run).history
        keras_history = theirs.fit(x, y, **run).history
        assert sorted(mine) == sorted(keras_history)
        for k in mine:
            np.testing.assert_allclose(mine[k], keras_history[k], rtol=1e-4, atol=1e-6, err_msg=k)
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        theirs_eval = theirs.evaluate(vx, vy, sample_weight=vw, return_dict=True, verbose=0)
        mine_eval = ours.evaluate(vx, vy, sample_weight=vw, return_dict=True, verbose=0)
        for k in theirs_eval:
            assert mine_eval[k] == pytest.approx(theirs_eval[k], rel=1e-4, abs=1e-6), k


def test_a_sigmoid_classifier_matches_keras_weighted(rng):
    keras = keras_referee()
    x, y, w = dataset(rng, 48)
    yb = (y > 0).astype(np.float32).reshape(-1, 1)
    ours = mlp("binary_crossentropy", out=1, activation="sigmoid", metrics=["acc", metrics.AUC(name="auc")], weighted_metrics=[metrics.Precision(name="p")])  # fmt: skip
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])  # fmt: skip
    theirs.set_weights(ours.get_weights())
    theirs.compile(keras.optimizers.SGD(0.1), "binary_crossentropy", metrics=["acc", keras.metrics.AUC(name="auc")], weighted_metrics=[keras.metrics.Precision(name="p")])  # fmt: skip
    run = dict(batch_size=12, epochs=2, shuffle=False, verbose=0, sample_weight=w)
    mine, keras_history = ours.fit(x, yb, **run).history, theirs.fit(x, yb, **run).history
    assert sorted(mine) == sorted(keras_history)
    for k in mine:
        np.testing.assert_allclose(mine[k], keras_history[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_a_generator_of_weighted_batches_trains_as_its_arrays(rng):
    """(x, y, sample_weight) batches from a generator, and class_weight applied to each of a
    generator's batches, give the bits the same arrays give (shuffle=False)."""
    x, y, w = dataset(rng, 48)

    def batches(with_weights):
        for lo in range(0, 48, 16):
            yield (x[lo : lo + 16], y[lo : lo + 16], w[lo : lo + 16]) if with_weights else (x[lo : lo + 16], y[lo : lo + 16])  # fmt: skip

    for arrays_args, gen, gen_args in [
        (dict(sample_weight=w), batches(True), {}),
        (dict(class_weight={1: 3.0}), batches(False), dict(class_weight={1: 3.0})),
    ]:
        a = mlp(weighted_metrics=["acc"])
        ha = a.fit(x, y, batch_size=16, shuffle=False, verbose=0, **arrays_args).history
        b = mlp(weighted_metrics=["acc"])
        hb = b.fit(gen, steps_per_epoch=3, shuffle=False, verbose=0, **gen_args).history
        assert ha == hb and weights_equal(a, b)
    with pytest.raises(ValueError, match=r"When providing `x` as a generator, `sample_weight` should not be passed"):  # fmt: skip
        mlp().fit(batches(False), sample_weight=w, verbose=0)
    val = mlp().evaluate(batches(True), verbose=0)
    assert val == pytest.approx(mlp().evaluate(x, y, sample_weight=w, batch_size=16, verbose=0), rel=1e-6)  # fmt: skip
