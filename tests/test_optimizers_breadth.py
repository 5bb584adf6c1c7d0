"""Optimizers, schedules, EMA, label smoothing and callbacks against references written here from
Keras 3's update rules; and a bit-exact resume that carries every new piece of state."""

import csv
import math

import numpy as np
import pytest

import minicnn
from minicnn import Sequential, load_checkpoint
from minicnn.callbacks import (
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
)
from minicnn.layers import (
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    GlobalAveragePooling2D,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from minicnn.losses import CategoricalCrossentropy
from minicnn.optimizers import SGD, Adam, AdamW, RMSprop
from minicnn.optimizers.schedules import CosineDecay, ExponentialDecay, PiecewiseConstantDecay
from minicnn.utils import set_random_seed


def run(opt, steps=6, seed=0, shape=(3, 4)):
    """The optimizer on one float64 parameter for a few steps of fixed random gradients."""
    g = np.random.default_rng(seed)
    p = g.standard_normal(shape)
    grads = [g.standard_normal(shape) * 3 for _ in range(steps)]
    p0 = p.copy()
    for gr in grads:
        opt.apply([p], [gr.copy()])
    return p0, grads, p


@pytest.mark.parametrize(
    "momentum,centered", [(0.0, False), (0.5, False), (0.0, True), (0.3, True)]
)
def test_rmsprop_matches_keras_rule(momentum, centered):
    opt = RMSprop(0.01, rho=0.8, momentum=momentum, epsilon=1e-6, centered=centered)
    p, grads, got = run(opt)
    v, m, a = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        v = 0.8 * v + 0.2 * g**2
        if centered:
            a = 0.8 * a + 0.2 * g
            step = 0.01 * g / np.sqrt(v - a**2 + 1e-6)
        else:
            step = 0.01 * g / np.sqrt(v + 1e-6)
        if momentum:
            m = momentum * m + step
            p = p - m
        else:
            p = p - step
    np.testing.assert_allclose(got, p, rtol=1e-12)


def _adam(p, grads, lr, wd=0.0, b1=0.9, b2=0.999, eps=1e-7, lrs=None):
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        rate = lr if lrs is None else lrs[t - 1]
        p = p - p * wd * rate  # decoupled decay first, as Keras's base optimizer does
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - rate * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return p


def test_adamw_and_weight_decay():
    p, grads, got = run(AdamW(0.01, weight_decay=0.1))
    np.testing.assert_allclose(got, _adam(p, grads, 0.01, wd=0.1), rtol=1e-12)
    p, grads, got = run(Adam(0.01, weight_decay=0.05))
    np.testing.assert_allclose(got, _adam(p, grads, 0.01, wd=0.05), rtol=1e-12)
    assert AdamW().weight_decay == 0.004  # Keras's default


@pytest.mark.parametrize("kind", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_clipping(kind):
    g = np.random.default_rng(1)
    a, b = g.standard_normal((3, 3)) * 5, g.standard_normal(4) * 5
    opt = SGD(1.0, **{kind: 1.5})
    pa, pb = np.zeros_like(a), np.zeros_like(b)
    opt.apply([pa, pb], [a.copy(), b.copy()])
    if kind == "clipnorm":
        expected = [x * min(1, 1.5 / np.linalg.norm(x)) for x in (a, b)]
    elif kind == "clipvalue":
        expected = [np.clip(x, -1.5, 1.5) for x in (a, b)]
    else:
        total = math.sqrt(np.sum(a**2) + np.sum(b**2))
        expected = [x * min(1, 1.5 / total) for x in (a, b)]
    np.testing.assert_allclose(-pa, expected[0], rtol=1e-12)
    np.testing.assert_allclose(-pb, expected[1], rtol=1e-12)
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        SGD(clipnorm=1, clipvalue=1)


def test_schedules_follow_keras_formulas():
    e = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert e(0) == 0.1 and e(10) == pytest.approx(0.05) and e(5) == pytest.approx(0.1 * 0.5**0.5)
    assert ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    pc = PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1])
    assert [pc(s) for s in (0, 10, 11, 20, 21)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    c = CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert c(0) == 1.0 and c(100) == pytest.approx(0.1) and c(50) == pytest.approx(0.55)
    assert c(500) == pytest.approx(0.1)
    w = CosineDecay(0.0, decay_steps=100, warmup_target=1.0, warmup_steps=10)
    assert w(5) == pytest.approx(0.5) and w(10) == 1.0 and w(60) == pytest.approx(0.5)


def test_optimizer_reads_the_schedule_before_each_step():
    schedule = ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)
    p, grads, got = run(Adam(schedule))
    expected = _adam(p, grads, None, lrs=[schedule(t) for t in range(len(grads))])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    with pytest.raises(TypeError, match="is a schedule"):
        Adam(schedule).learning_rate = 0.1


def test_ema_follows_keras_and_replaces_weights_at_the_end_of_fit():
    opt = SGD(0.1, use_ema=True, ema_momentum=0.9)
    p, grads, got = run(opt)
    w, ema = p.copy(), None
    for g in grads:
        w = w - 0.1 * g
        ema = w.copy() if ema is None else 0.9 * ema + 0.1 * w  # momentum 0 at the first step
    np.testing.assert_allclose(got, w, rtol=1e-12)
    np.testing.assert_allclose(opt.slots[0]["ema"], ema, rtol=1e-12)
    opt.finalize([got])
    np.testing.assert_allclose(got, ema, rtol=1e-12)
    # in fit: the model ends with the averaged weights
    set_random_seed(0)
    model = Sequential([Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(Adam(0.05, use_ema=True, ema_momentum=0.5), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((16, 4), dtype=np.float32)
    model.fit(x, np.arange(16) % 3, batch_size=4, verbose=0)
    kernel = model.layers[0].params["kernel"]
    assert np.array_equal(kernel, model.optimizer.slots[0]["ema"])


def test_label_smoothing():
    loss = CategoricalCrossentropy(label_smoothing=0.2)
    t = np.eye(4)[[0, 2]] * 0.8 + 0.05  # the targets it trains on
    p = np.array([[0.7, 0.1, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1]], np.float32)
    expected = -(t * np.log(p)).sum(axis=1).mean()
    assert loss(np.eye(4)[[0, 2]], p) == pytest.approx(expected, rel=1e-5)
    assert CategoricalCrossentropy.__name__ in repr(minicnn.losses.deserialize(loss.get_config()))
    assert minicnn.losses.deserialize(loss.get_config()).label_smoothing == 0.2


# -- callbacks ---------------------------------------------------------------------------------


def _model(lr=0.05):
    set_random_seed(1)
    model = Sequential([Dense(4, activation="relu", input_shape=(6,)), Dense(3, activation="softmax")])  # fmt: skip
    model.compile(SGD(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _xy(n=48):
    g = np.random.default_rng(2)
    return g.random((n, 6), dtype=np.float32), g.integers(0, 3, n)


def test_early_stopping_patience_and_best_weights():
    x, y = _xy()
    model = _model(lr=1e-12)  # nothing improves by min_delta
    stop = EarlyStopping(monitor="loss", patience=2, restore_best_weights=True, min_delta=1e-6)
    history = model.fit(x, y, epochs=20, verbose=0, callbacks=[stop])
    assert len(history.epoch) == 3 and stop.stopped_epoch == 2 and stop.best_epoch == 0

    class Spoil(minicnn.callbacks.Callback):  # makes every epoch after the first worse
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.best = self.model.get_weights()

    model = _model(lr=5.0)  # diverging steps: the first epoch stays the best
    spy = Spoil()
    stop = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True, min_delta=10)
    model.fit(x, y, epochs=10, validation_split=0.25, verbose=0, callbacks=[spy, stop])
    assert stop.best_epoch == 0 and stop.stopped_epoch >= 1
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), spy.best))


def test_reduce_lr_on_plateau_and_scheduler():
    x, y = _xy()
    model = _model(lr=1e-9)  # effectively frozen: the loss never improves by min_delta
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, cooldown=1, min_lr=0.0)
    model.fit(x, y, epochs=7, verbose=0, callbacks=[cb])
    # Keras's rule: epoch 0 sets the best; 1, 2 wait -> halve at 2; cooldown ends at 3 and that
    # epoch already counts (wait 1), 4 -> halve; 5 ends cooldown (wait 1), 6 -> halve
    assert model.optimizer.learning_rate == pytest.approx(1e-9 / 8, rel=1e-9)
    seen = []
    sched = LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5**epoch)

    class Record(minicnn.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.optimizer.learning_rate)

    model.fit(x, y, epochs=3, verbose=0, callbacks=[sched, Record()])
    assert seen == [0.1, 0.05, 0.025]


def test_csv_logger(tmp_path):
    x, y = _xy()
    path = tmp_path / "log.csv"
    _model().fit(x, y, epochs=2, validation_split=0.25, verbose=0, callbacks=[CSVLogger(path)])
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, append=True)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "0"]
    assert all(math.isfinite(float(v)) for v in rows[1][1:])


# -- resume carries every new piece of state ---------------------------------------------------


def _modern_model():
    model = Sequential(
        [
            RandomRotation(0.05, input_shape=(10, 10, 1)),
            RandomTranslation(0.1, 0.1),
            RandomZoom(0.1),
            Conv2D(6, 3, use_bias=False),
            BatchNormalization(),
            Conv2D(8, 5, strides=2, padding="same", activation="relu"),
            Dropout(0.2),
            GlobalAveragePooling2D(),
            Dense(4, activation="softmax"),
        ]
    )
    schedule = CosineDecay(1e-3, decay_steps=20, warmup_target=5e-3, warmup_steps=4)
    model.compile(AdamW(schedule, use_ema=True), CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])  # fmt: skip
    return model


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_is_bit_exact_with_batchnorm_augmentation_ema_schedule_and_callbacks(tmp_path, stop_after):  # fmt: skip
    g = np.random.default_rng(3)
    x = g.random((60, 10, 10, 1), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[g.integers(0, 4, 60)]
    kw = dict(batch_size=16, validation_split=0.2, verbose=0)

    def callbacks():
        return [EarlyStopping(patience=5)]

    set_random_seed(11)
    full = _modern_model()
    full_history = full.fit(x, y, epochs=3, **kw, callbacks=callbacks())

    set_random_seed(11)
    part = _modern_model()
    path = tmp_path / "ckpt.keras"
    part.fit(x, y, epochs=stop_after, **kw, callbacks=[*callbacks(), ModelCheckpoint(path)])
    del part
    set_random_seed(999)
    checkpoint = load_checkpoint(path)
    resumed = checkpoint.model
    fresh = callbacks()
    history = resumed.fit(x, y, epochs=3, initial_epoch=checkpoint.epoch, **kw, callbacks=fresh)
    assert fresh[0].best == full_history.history["val_loss"][int(np.argmin(full_history.history["val_loss"]))]  # fmt: skip
    assert all(np.array_equal(a, b) for a, b in zip(resumed.get_weights(), full.get_weights()))
    assert resumed.optimizer.iterations == full.optimizer.iterations
    for ms, mf in zip(resumed.optimizer.slots, full.optimizer.slots):
        assert set(ms) == {"m", "v", "ema"} and all(np.array_equal(ms[k], mf[k]) for k in ms)
    assert history.history == full_history.history
