"""Losses written as Keras writes them: a keras.losses.Loss subclass with call(), and a plain
function fn(y_true, y_pred), both with keras.ops. compile traces them into ops nodes and the
ops' hand-written backward passes give the gradient: checked against finite differences, the
built-in loss of the same formula, and Keras 3 itself."""

from __future__ import annotations

import os

import numpy as np
import pytest
from gradcheck import numerical_gradient
from referee import need

import minicnn as keras
from minicnn import layers, ops
from minicnn.ops.traced_loss import TracedLoss
from minicnn.saving import ModelFileError


class CustomMSE(keras.losses.Loss):  # keras.io "Training & evaluation with the built-in methods"
    def __init__(self, regularization_factor=0.1, name="custom_mse"):
        super().__init__(name=name)
        self.regularization_factor = regularization_factor

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
        reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
        return mse + self.regularization_factor * reg


def custom_mean_squared_error(y_true, y_pred):  # the same guide's function
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


def custom_mse_reference(t, p, factor=0.1):
    return ((t - p) ** 2).mean(-1) + factor * ((0.5 - p) ** 2).mean(-1)


def _data(n=12, k=4, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)).astype(dtype), rng.normal(size=(n, k)).astype(dtype)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_loss_subclass_gives_the_gradient_of_its_reduced_value(reduction, weighted):
    t, p = _data()
    w = np.linspace(0.2, 2.0, len(t)) if weighted else None
    loss = CustomMSE()
    loss.reduction = reduction
    runner = TracedLoss(loss)
    value, g = runner.forward_backward(p, t, None, w)

    q = p.copy()
    num = numerical_gradient(lambda: float(runner.forward_backward(q, t, None, w)[0]), q)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)
    ref = custom_mse_reference(t, p) * (1 if w is None else w)
    want = {"sum": ref.sum(), "sum_over_batch_size": ref.sum() / len(t)}.get(reduction)
    if want is None:
        want = ref.sum() / (w.sum() if w is not None else len(t))
    np.testing.assert_allclose(value, want, rtol=1e-12)
    assert g.dtype == np.float64


def test_a_function_loss_trains_as_the_built_in_loss_of_its_formula():
    """loss=fn with fn the mean squared error: the same weights as loss="mse" after two epochs."""
    x, _ = _data(64, 6, np.float32, seed=1)
    y = np.random.default_rng(2).normal(size=(64, 3)).astype(np.float32)

    def model():
        keras.utils.set_random_seed(5)
        inp = keras.Input((6,))
        return keras.Model(inp, layers.Dense(3)(layers.Dense(8, activation="tanh")(inp)))

    runs = []
    for loss in ("mse", custom_mean_squared_error):
        m = model()
        m.compile(keras.optimizers.SGD(0.1), loss)
        h = m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        runs.append((h.history["loss"], m.get_weights()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert runs[0][0][-1] < runs[0][0][0]


def test_the_trace_is_made_once_and_its_loss_is_the_direct_calls():
    x, y = _data(50, 5, np.float32)
    inp = keras.Input((5,))
    m = keras.Model(inp, layers.Dense(5)(inp))
    loss = CustomMSE(0.3)
    m.compile("adam", loss)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)  # batches of 16 and a last one of 2
    runner = m.objectives.runners[0]
    assert isinstance(runner, TracedLoss) and len(runner.graphs) == 1
    p = m.predict(x, verbose=0)
    np.testing.assert_allclose(m.evaluate(x, y, verbose=0), float(loss(y, p)), rtol=1e-5)
    np.testing.assert_allclose(float(loss(y, p)), custom_mse_reference(y, p, 0.3).mean(), rtol=1e-5)  # fmt: skip


def test_a_function_loss_meets_targets_one_rank_apart_as_keras_does():
    """Dense(1) outputs (N, 1) against targets (N,): Keras's wrapper adds the targets' last
    axis; the gradient still reaches every output."""
    rng = np.random.default_rng(3)
    p, t = rng.normal(size=(10, 1)), rng.normal(size=10)

    def absolute(y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred), axis=-1)

    runner = TracedLoss(keras.losses.get(absolute))
    value, g = runner.forward_backward(p, t)
    np.testing.assert_allclose(value, np.abs(t - p[:, 0]).mean(), rtol=1e-12)
    np.testing.assert_allclose(g[:, 0], np.sign(p[:, 0] - t) / 10, rtol=1e-12)


def test_keras_computes_the_same_custom_losses():
    os.environ["KERAS_BACKEND"] = "torch"
    k = need("keras")

    class KerasCustomMSE(k.losses.Loss):
        def __init__(self, name="custom_mse"):
            super().__init__(name=name)

        def call(self, y_true, y_pred):
            mse = k.ops.mean(k.ops.square(y_true - y_pred), axis=-1)
            return mse + 0.1 * k.ops.mean(k.ops.square(0.5 - y_pred), axis=-1)

    t, p = _data(9, 3, np.float32, seed=4)
    w = np.linspace(0.5, 1.5, 9).astype(np.float32)
    ours = TracedLoss(CustomMSE())
    for sw in (None, w):
        want = float(k.ops.convert_to_numpy(KerasCustomMSE()(t, p, sample_weight=sw)))
        np.testing.assert_allclose(float(ours.forward_backward(p, t, None, sw)[0]), want, rtol=1e-6)  # fmt: skip
        np.testing.assert_allclose(float(CustomMSE()(t, p, sample_weight=sw)), want, rtol=1e-6)
    from keras.src.losses.losses import LossFunctionWrapper  # what Keras's compile makes of fn

    fn = LossFunctionWrapper(lambda a, b: k.ops.mean(k.ops.abs(a - b), axis=-1))
    t1, p1 = t[:, :1], p[:, 0]
    mine = keras.losses.get(lambda a, b: ops.mean(ops.abs(a - b), axis=-1))
    want = float(k.ops.convert_to_numpy(fn(t1, p1)))
    np.testing.assert_allclose(float(TracedLoss(mine).forward_backward(p1, t1)[0]), want, rtol=1e-6)  # fmt: skip


def _compile_and_fit(loss):
    x, y = _data(8, 3, np.float32)
    inp = keras.Input((3,))
    m = keras.Model(inp, layers.Dense(3)(inp))
    m.compile("sgd", loss)
    before = [w.copy() for w in m.get_weights()]
    with pytest.raises(TypeError) as e:
        m.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    return str(e.value)


def test_a_loss_that_reads_values_fails_naming_itself_and_its_line():
    def peeks(y_true, y_pred):
        return ops.mean(np.asarray(y_pred) - y_true, axis=-1)

    msg = _compile_and_fit(peeks)
    assert 'Loss "peeks"' in msg and "test_traced_losses.py" in msg and "np.asarray(y_pred)" in msg


def test_a_loss_with_a_layer_or_no_tensor_is_refused_by_name():
    dense = layers.Dense(3, name="hidden_dense")
    assert "hidden_dense" in _compile_and_fit(lambda t, p: ops.mean(dense(p) - t, axis=-1))
    assert "must return a tensor" in _compile_and_fit(lambda t, p: 1.0)


def test_a_model_with_a_custom_loss_saves_and_says_how_to_load_it(tmp_path):
    x, y = _data(16, 3, np.float32)
    inp = keras.Input((3,))
    m = keras.Model(inp, layers.Dense(3)(inp))
    m.compile("adam", CustomMSE())
    m.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.minicnn"
    m.save(path)
    with pytest.raises(ModelFileError, match="CustomMSE.*compile=False"):
        keras.models.load_model(path)
    back = keras.models.load_model(path, compile=False)
    np.testing.assert_array_equal(back.predict(x, verbose=0), m.predict(x, verbose=0))
