"""Keras code beyond built-in layers, as the keras.io guides write it: a Layer subclass with
build/add_weight/call, add_loss, a subclassed Model, Lambda, a siamese network. Each traced
call against the same maths written with built-in layers (forward and every gradient), and
each guide's pattern must learn."""

import numpy as np
import pytest
from gradcheck import check, model_gradients, model_loss, numerical_gradient

import minicnn as keras
from minicnn import layers, ops
from minicnn.utils import set_random_seed


class Linear(keras.layers.Layer):
    """The guide's custom Dense (keras.io "Making new layers and models via subclassing")."""

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True)  # fmt: skip
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b


class ActivityRegularization(keras.layers.Layer):
    """The guide's activity-regularisation layer."""

    def __init__(self, rate=1e-2):
        super().__init__()
        self.rate = rate

    def call(self, inputs):
        self.add_loss(self.rate * ops.sum(inputs))
        return inputs


class MLP(keras.Model):
    """The guide's subclassed model."""

    def __init__(self, classes=3):
        super().__init__()
        self.hidden = Linear(16)
        self.out = layers.Dense(classes, activation="softmax")

    def call(self, inputs, training=False):
        return self.out(ops.relu(self.hidden(inputs)))


def blobs(rng, n=120, d=6, k=3):
    """k separable clusters: a problem a small model must learn."""
    centres = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, d)) * 0.5).astype(np.float32), y


def test_add_weight_takes_keras_arguments_and_build_gets_the_batch_axis():
    seen = []

    class Probe(keras.layers.Layer):
        def build(self, input_shape):
            seen.append(input_shape)
            self.k = self.add_weight(shape=(input_shape[-1], 2), initializer="ones")
            self.s = self.add_weight(shape=(2,), initializer="zeros", trainable=False, name="s")

        def call(self, x):
            return ops.matmul(x, self.k) + self.s

    layer = Probe()
    y = layer(keras.Input((4,)))
    assert seen == [(None, 4)] and y.shape == (None, 2) and layer.built
    assert sorted(layer.params) == ["variable_0"] and list(layer.state) == ["s"]
    np.testing.assert_array_equal(layer(np.ones((3, 4), np.float32)), np.full((3, 2), 4.0))


@pytest.mark.usefixtures("float64")
def test_traced_layer_equals_dense_forward_and_every_gradient(rng):
    set_random_seed(0)
    inputs = keras.Input((5,))
    custom = keras.Model(inputs, layers.Dense(3, activation="softmax")(ops.tanh(Linear(4, name="lin")(inputs))))  # fmt: skip
    inputs2 = keras.Input((5,))
    builtin = keras.Model(inputs2, layers.Dense(3, activation="softmax")(layers.Dense(4, activation="tanh")(inputs2)))  # fmt: skip
    builtin.set_weights(custom.get_weights())
    for m in (custom, builtin):
        m.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    t = custom.objectives.targets([y], [3], np, "float64")
    np.testing.assert_allclose(custom.predict(x, verbose=0), builtin.predict(x, verbose=0), rtol=1e-12)  # fmt: skip
    _, g1 = model_gradients(custom, [x], t)
    _, g2 = model_gradients(builtin, [x], t)
    a = [g for _, g in sorted(g1.items(), key=lambda kv: custom.trainable_params().index(kv[0]))]
    b = [g for _, g in sorted(g2.items(), key=lambda kv: builtin.trainable_params().index(kv[0]))]
    assert len(a) == len(b) == 4
    for ga, gb in zip(a, b):
        np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-12)
    lin = custom.get_layer("lin")
    host = lin.params["variable_0"].copy()

    def f():
        lin.params["variable_0"][...] = host
        return model_loss(custom, [x], t)

    check("traced Linear w", g1[(lin, "variable_0")], numerical_gradient(f, host))


def test_activity_regularisation_adds_its_loss_and_its_gradient(rng):
    x, y = blobs(rng)
    inputs = keras.Input((6,))
    h = layers.Dense(8, activation="relu")(inputs)
    plain = keras.Model(inputs, layers.Dense(3, activation="softmax")(h))
    reg = keras.Model(inputs, plain.layers[-1](ActivityRegularization(0.05)(h)))
    for m in (plain, reg):
        m.compile("adam", "sparse_categorical_crossentropy")
    hidden = keras.Model(inputs, h).predict(x, verbose=0)
    penalty = 0.05 * hidden.sum() / len(x) * 1  # per batch: 0.05 * sum over the batch
    lp, lr = plain.evaluate(x, y, batch_size=len(x), verbose=0), reg.evaluate(x, y, batch_size=len(x), verbose=0)  # fmt: skip
    assert lr == pytest.approx(lp + 0.05 * hidden.sum(), rel=1e-5) and penalty > 0
    before = hidden.sum()
    reg.fit(x, y, epochs=20, batch_size=40, verbose=0)
    assert keras.Model(inputs, h).predict(x, verbose=0).sum() < before  # the penalty pushed it down


def test_subclassed_mlp_learns_saves_and_exports(rng, tmp_path):
    x, y = blobs(rng)
    model = MLP()
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    history = model.fit(x, y, epochs=15, batch_size=30, verbose=0)
    assert history.history["accuracy"][-1] > 0.9 and history.history["loss"][-1] < history.history["loss"][0]  # fmt: skip
    assert model.name.startswith("mlp") and model.input_shape == (None, 6)
    np.testing.assert_allclose(model(x[:4]), model.predict(x[:4], verbose=0), rtol=1e-6)


def test_siamese_network_with_a_shared_tower_and_a_lambda_distance(rng):
    x, y = blobs(rng, n=200)
    same = rng.integers(0, 2, 200)
    partner = np.array([rng.choice(np.flatnonzero((y == y[i]) == bool(same[i]))) for i in range(200)])  # fmt: skip
    a, b = keras.Input((6,)), keras.Input((6,))
    tower = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu"), layers.Dense(4)])  # fmt: skip
    dist = layers.Lambda(lambda t: ops.sqrt(ops.sum(ops.square(t[0] - t[1]), axis=1, keepdims=True) + 1e-6))([tower(a), tower(b)])  # fmt: skip
    out = layers.Dense(2, activation="softmax")(dist)
    model = keras.Model([a, b], out)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    history = model.fit([x, x[partner]], same, epochs=30, batch_size=40, verbose=0)
    assert history.history["accuracy"][-1] > 0.85, history.history["accuracy"][-1]
    assert model.count_params() == tower.count_params() + 4  # one tower, used twice


def test_calls_that_cannot_be_traced_name_the_layer_and_the_line():
    class ToNumpy(keras.layers.Layer):
        def call(self, x):
            return np.tanh(x)

    class Branchy(keras.layers.Layer):
        def call(self, x):
            if ops.sum(x) > 0:
                return x
            return -x

    for cls, name, what in ((ToNumpy, "to_numpy", "tanh"), (Branchy, "branchy", "ops.sum")):
        with pytest.raises(TypeError, match=rf'Layer "{name}" \({cls.__name__}\): its call\(\) could not be traced.*test_custom_layers.py:\d+ \(.*{what}'):  # fmt: skip
            cls()(keras.Input((3,)))


def test_a_weight_updated_in_place_inside_call_is_refused_by_name():
    """The guide's ComputeSum (a non-trainable weight added to in call()) is refused naming
    the layer, the line and Keras's assign_add, not with NumPy's AttributeError."""

    class ComputeSum(keras.layers.Layer):
        def __init__(self, input_dim):
            super().__init__()
            self.total = self.add_weight(initializer="zeros", shape=(input_dim,), trainable=False)  # fmt: skip

        def call(self, inputs):
            self.total.assign_add(ops.sum(inputs, axis=0))
            return self.total

    inputs = keras.Input((3,))
    with pytest.raises(NotImplementedError, match=r'Layer "compute_sum" \(ComputeSum\): its call\(\) updates a weight in place at .*test_custom_layers.py:\d+ \(self.total.assign_add.*assign_add and assign_sub are not supported'):  # fmt: skip
        ComputeSum(3)(inputs)
    with pytest.raises(NotImplementedError, match="updates a weight in place"):
        ComputeSum(3)(np.ones((2, 3), np.float32))


def test_a_custom_training_loop_is_refused_by_name(rng):
    class Custom(MLP):
        def train_step(self, data):
            return {}

    model = Custom()
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(NotImplementedError, match="Custom overrides train_step: minicnn has no autograd"):  # fmt: skip
        model.fit(*blobs(rng), epochs=1, verbose=0)


def test_lambda_checks_its_declared_shape():
    with pytest.raises(ValueError, match=r"output_shape=\(5,\) but the function gives \(3,\)"):
        layers.Lambda(lambda t: t * 2, output_shape=(5,))(keras.Input((3,)))
    with pytest.raises(ValueError, match="cannot be saved: its function is code"):
        inputs = keras.Input((3,))
        keras.Model(inputs, layers.Lambda(lambda t: t * 2)(inputs)).get_config()
