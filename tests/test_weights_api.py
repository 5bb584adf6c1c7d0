"""Weights and freezing as Keras 3 has them: ``weights``, ``trainable_weights`` and
``non_trainable_weights`` of Keras-like variables on layers and models, ``trainable`` on
models and nested models, what fit trains, BatchNormalization frozen in inference mode (the
transfer-learning guide), ``pop``, ``metrics_names`` and ``count_params``.

The expected paths, freezing rules and metrics_names were read from Keras 3.15.1 (torch
backend) running the same models: keras/src/layers/layer.py (``trainable`` sets every
sublayer's, ``trainable_weights`` is empty for a frozen layer), keras/src/trainers/trainer.py
lines 286-308 (``metrics_names`` is the names of ``metrics``: the loss tracker, the
"compile_metrics" container, then each output's loss tracker once fit has built them)."""

import numpy as np
import pytest

import minicnn as keras
from minicnn.layers import BatchNormalization, Conv2D, Dense, Flatten
from minicnn.utils import set_random_seed


def paths(variables):
    return [v.path for v in variables]


def test_a_variable_is_a_view_of_the_layers_array():
    layer = Dense(3, name="d")
    layer(np.ones((2, 4), dtype="float32"))
    kernel, bias = layer.weights
    assert (kernel.name, kernel.path, kernel.shape, kernel.dtype) == ("kernel", "d/kernel", (4, 3), "float32")  # fmt: skip
    array = layer.params["kernel"]
    kernel.assign(np.full((4, 3), 2.0))
    assert layer.params["kernel"] is array and (array == 2).all()  # written in place
    copy = kernel.numpy()
    copy[...] = 5
    assert (array == 2).all() and np.asarray(kernel).shape == (4, 3)
    bias.assign_add(np.ones(3))
    np.testing.assert_array_equal(layer.get_weights()[1], np.ones(3))
    with pytest.raises(ValueError, match="must match"):
        kernel.assign(np.zeros((3, 4)))
    with pytest.raises(NotImplementedError, match="layer.trainable"):
        kernel.trainable = False
    assert "path=d/kernel, shape=(4, 3)" in repr(kernel)


def test_paths_and_lists_are_kerass():
    seq = keras.Sequential([keras.Input((4,)), Dense(3, name="d1"), BatchNormalization(name="bn")], name="seq")  # fmt: skip
    assert paths(seq.weights) == ["seq/d1/kernel", "seq/d1/bias", "seq/bn/gamma", "seq/bn/beta", "seq/bn/moving_mean", "seq/bn/moving_variance"]  # fmt: skip
    assert paths(seq.trainable_weights) == ["seq/d1/kernel", "seq/d1/bias", "seq/bn/gamma", "seq/bn/beta"]  # fmt: skip
    assert paths(seq.non_trainable_weights) == ["seq/bn/moving_mean", "seq/bn/moving_variance"]
    bn = seq.get_layer("bn")
    assert [v.trainable for v in bn.weights] == [True, True, False, False]
    bn.trainable = False
    assert bn.trainable_weights == [] and len(bn.non_trainable_weights) == 4
    assert [v.trainable for v in bn.weights] == [False] * 4
    for got, want in zip(seq.weights, seq.get_weights()):
        np.testing.assert_array_equal(got.numpy(), want)


def nested():
    inner = keras.Sequential([keras.Input((4,)), Dense(2, name="i1")], name="inner")
    x = keras.Input((4,))
    outer = keras.Model(x, Dense(2, activation="softmax", name="head")(inner(x)), name="outer")
    return outer, inner


def test_trainable_propagates_as_in_keras():
    outer, inner = nested()
    assert paths(outer.weights) == ["inner/i1/kernel", "inner/i1/bias", "head/kernel", "head/bias"]  # fmt: skip
    outer.get_layer("inner").trainable = False
    assert paths(outer.trainable_weights) == ["head/kernel", "head/bias"]
    assert inner.layers[0].trainable is False and inner.trainable_weights == []
    inner.layers[0].trainable = True  # Keras: the layer's weights train again, its model is frozen
    assert inner.trainable is False and inner.trainable_weights == []
    assert paths(outer.trainable_weights) == ["inner/i1/kernel", "inner/i1/bias", "head/kernel", "head/bias"]  # fmt: skip
    outer.trainable = False
    assert outer.trainable_weights == [] and len(outer.non_trainable_weights) == 4
    outer.trainable = True  # every layer inside takes the setting, frozen ones too
    assert inner.trainable and inner.layers[0].trainable and len(outer.trainable_weights) == 4
    inner.layers[0].trainable = False  # a layer frozen inside a trainable model stays frozen
    assert outer.trainable and paths(outer.trainable_weights) == ["head/kernel", "head/bias"]


def data(n=32, seed=0):
    g = np.random.default_rng(seed)
    return g.random((n, 4), dtype=np.float32), g.integers(0, 2, n)


def test_frozen_weights_are_bit_identical_after_fit():
    outer, inner = nested()
    inner.trainable = False
    outer.compile("adam", "sparse_categorical_crossentropy")
    before = outer.get_weights()
    outer.fit(*data(), epochs=2, verbose=0)
    after = outer.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before[:2], after[:2]))  # the frozen inner
    assert not np.array_equal(before[2], after[2])  # the head trained
    # a model frozen whole: fit runs and logs the loss, and changes nothing
    outer.trainable = False
    outer.compile("adam", "sparse_categorical_crossentropy")
    history = outer.fit(*data(), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(np.array_equal(a, b) for a, b in zip(after, outer.get_weights()))


def test_unfreezing_needs_a_new_compile_as_in_keras():
    outer, inner = nested()
    inner.trainable = False
    outer.compile("adam", "sparse_categorical_crossentropy")
    outer.fit(*data(), epochs=1, verbose=0)
    inner.trainable = True
    with pytest.raises(ValueError, match='cannot recognize "i1" weight "kernel".*compile'):
        outer.fit(*data(), epochs=1, verbose=0)
    outer.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy")
    before = inner.get_weights()
    outer.fit(*data(), epochs=1, verbose=0)
    assert not np.array_equal(before[0], inner.get_weights()[0])
    # freezing after a fit keeps each remaining weight's own optimizer slots
    slots = outer.optimizer.slots[2]["m"].copy()
    inner.trainable = False
    outer.fit(*data(), epochs=1, verbose=0)
    assert len(outer.optimizer.slots) == 2 and not np.array_equal(slots, outer.optimizer.slots[0]["m"])  # fmt: skip


def test_frozen_batch_normalization_runs_in_inference_mode():
    """The transfer-learning guide: a base model with BatchNormalization, frozen, inside a new
    model; fit leaves its moving statistics as they were and trains the new head."""
    set_random_seed(0)
    base = keras.Sequential([keras.Input((6, 6, 1)), Conv2D(4, 3, name="conv"), BatchNormalization(name="bn"), Flatten()], name="base")  # fmt: skip
    x = np.random.default_rng(0).random((16, 6, 6, 1), dtype=np.float32) * 3 + 1
    base.get_layer("bn").set_weights([np.ones(4), np.zeros(4), np.full(4, 0.5), np.full(4, 2.0)])  # fmt: skip
    base.trainable = False
    inputs = keras.Input((6, 6, 1))
    model = keras.Model(inputs, Dense(2, activation="softmax", name="new_head")(base(inputs, training=False)))  # fmt: skip
    model.compile("adam", "sparse_categorical_crossentropy")
    frozen = base.get_weights()
    # training=True reads the moving statistics (the plans differ only in fusing them into the
    # convolution when predicting, hence float32 rounding)
    np.testing.assert_allclose(
        base(x, training=True), base(x, training=False), rtol=1e-5, atol=1e-6
    )
    model.fit(x, np.arange(16) % 2, epochs=2, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, base.get_weights()))
    assert paths(model.trainable_weights) == ["new_head/kernel", "new_head/bias"]
    # the guide's fine-tuning: the base unfrozen, still called with training=False, so its
    # BatchNormalization keeps its moving statistics while every weight trains
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    after = base.get_weights()
    assert not np.array_equal(frozen[0], after[0])  # the convolution trained
    assert not np.array_equal(frozen[2], after[2]) and not np.array_equal(frozen[3], after[3])  # gamma, beta  # fmt: skip
    assert all(np.array_equal(a, b) for a, b in zip(frozen[4:], after[4:]))  # moving statistics  # fmt: skip


def _fine_tune_model(rng):
    """A base with BatchNormalization (alone and fused with its ReLU) and Dropout, called with
    training=False inside a new model, its moving statistics far from a batch's."""
    base = keras.Sequential(
        [keras.Input((6, 6, 2)), Conv2D(3, 3, name="c1"), BatchNormalization(name="bn1"),
         keras.layers.ReLU(), keras.layers.Dropout(0.5), Conv2D(2, 1, name="c2"),
         BatchNormalization(name="bn2"), Flatten()],
        name="base",
    )  # fmt: skip
    for name, c in (("bn1", 3), ("bn2", 2)):
        bn = base.get_layer(name)
        bn.set_weights([rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 3, c)])  # fmt: skip
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, Dense(3, activation="softmax", name="head")(base(inputs, training=False)))  # fmt: skip
    model.compile("sgd", "categorical_crossentropy")
    return model, base


def test_gradients_through_a_call_fixed_to_inference_mode(rng, float64):
    """Finite differences of the loss of the model as it predicts (moving statistics, no
    dropout) against the gradients a training step takes through base(x, training=False),
    for every weight: gamma and beta of both BatchNormalization layers included."""
    from gradcheck import check, model_gradients, model_loss, numerical_gradient

    model, base = _fine_tune_model(rng)
    be = model.backend
    x = be.asarray(rng.standard_normal((5, 6, 6, 2)))
    t = be.asarray(np.eye(3)[[0, 1, 2, 1, 0]])
    steps = [type(s).__name__ for s in model.plan(5, True).steps]
    assert "BatchNormStep" in steps  # bn1 and its ReLU fused; bn2 alone
    moving = [v.numpy().copy() for v in base.non_trainable_weights]
    loss, grads = model_gradients(model, [x], [t])
    # the training step computes what predict computes
    p = model.predict(be.to_numpy(x), verbose=0)
    np.testing.assert_allclose(float(loss), -np.log((p * be.to_numpy(t)).sum(1)).mean(), rtol=1e-10)  # fmt: skip
    names = sorted(f"{layer.name}.{k}" for layer, k in grads)
    assert names == ["bn1.beta", "bn1.gamma", "bn2.beta", "bn2.gamma", "c1.bias", "c1.kernel", "c2.bias", "c2.kernel", "head.bias", "head.kernel"]  # fmt: skip
    for (layer, name), g in grads.items():
        w = layer.params[name]
        w_host = be.to_numpy(w).copy()

        def f(w=w, w_host=w_host):
            w[...] = be.asarray(w_host)
            return model_loss(model, [x], [t])

        numeric = numerical_gradient(f, w_host)
        f()
        check(f"{layer.name}.{name}", be.to_numpy(g), numeric)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(moving, base.non_trainable_weights))


def test_pop_and_count_params():
    model = keras.Sequential([keras.Input((4,)), Dense(3, name="a"), Dense(2, name="b")])
    assert model.count_params() == 4 * 3 + 3 + 3 * 2 + 2
    last = model.pop()
    assert last.name == "b" and [layer.name for layer in model.layers] == ["a"]
    assert model.output_shape == (None, 3) and model.count_params() == 15
    model.add(Dense(5, activation="softmax", name="c"))
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(*data(), epochs=1, verbose=0)
    assert model.output_shape == (None, 5) and model.count_params() == 15 + 3 * 5 + 5
    empty = keras.Sequential()
    with pytest.raises(TypeError, match="no layers"):
        empty.pop()
    # a shared layer counts once; a nested model's layers count in the outer model
    shared = Dense(3, name="shared")
    x = keras.Input((3,))
    twice = keras.Model(x, shared(shared(x)))
    assert twice.count_params() == 12 and len(twice.weights) == 2
    outer, inner = nested()
    assert outer.count_params() == inner.count_params() + 2 * 2 + 2 == 16


def test_metrics_names_are_keras_3s():
    model = keras.Sequential([keras.Input((4,)), Dense(2, activation="softmax")])
    assert model.metrics_names == []
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    assert model.metrics_names == ["loss", "compile_metrics"]
    model.fit(*data(), epochs=1, verbose=0)
    assert model.metrics_names == ["loss", "compile_metrics"]
    model.compile("adam", "sparse_categorical_crossentropy")
    assert model.metrics_names == ["loss"]
    x = keras.Input((4,))
    h = Dense(3, name="h")
    two = keras.Model(x, [Dense(2, activation="softmax", name="a")(h(x)), Dense(2, activation="softmax", name="b")(h(x))])  # fmt: skip
    two.compile("adam", ["sparse_categorical_crossentropy"] * 2, metrics=[["accuracy"], ["accuracy"]])  # fmt: skip
    assert two.metrics_names == ["loss", "compile_metrics"]
    features, labels = data()
    two.fit(features, [labels, labels], epochs=1, verbose=0)
    assert two.metrics_names == ["loss", "compile_metrics", "a_loss", "b_loss"]
    assert two.count_params() == 31
