"""A subclassed keras.Model that makes weights of its own: in ``__init__`` or in its own
``build(input_shape)`` (which sets ``self.built = True``, as Keras's guides write it). Its
weights train, count, come back from get_weights/set_weights, and go through ``.weights.h5``
files both ways with Keras 3 itself."""

import numpy as np
import pytest
from gradcheck import check, model_gradients, model_loss, numerical_gradient
from referee import keras_referee

import minicnn


def scaled_mlp(keras, in_build: bool, record=None):
    """x * w (a weight of the model's own) -> Dense 4 relu -> Dense 3 softmax, the weight made
    in ``__init__`` or in the model's own ``build``, for minicnn or Keras."""

    class Scaled(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(4, activation="relu")
            self.head = keras.layers.Dense(3, activation="softmax")
            if not in_build:
                self.w = self.add_weight(shape=(5,), initializer="random_normal", name="w")

        if in_build:

            def build(self, input_shape):
                if record is not None:
                    record.append(tuple(input_shape))
                self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="w")  # fmt: skip
                self.built = True

        def call(self, x):
            return self.head(self.hidden(x * self.w))

    return Scaled()


@pytest.mark.parametrize("in_build", [False, True])
def test_own_weights_train_count_and_round_trip(rng, in_build):
    minicnn.utils.set_random_seed(0)
    calls = []
    model = scaled_mlp(minicnn, in_build, calls)
    x = rng.standard_normal((32, 5)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    if in_build:
        assert not model.built
        model.build((None, 5))
        assert model.built and calls == [(None, 5)]
    model.compile(minicnn.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # builds once, at most
    assert len(calls) == (1 if in_build else 0)
    paths = [v.path for v in model.weights]
    assert [p.split("/")[-1] for p in paths] == ["w", "kernel", "bias", "kernel", "bias"], paths
    assert model.count_params() == 5 + 24 + 15
    before = model.params["w"].copy()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert not np.array_equal(before, model.params["w"])  # the model's own weight trains
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(5,), (5, 4), (4,), (4, 3), (3,)]
    other = scaled_mlp(minicnn, in_build)
    other(x[:1])
    other.set_weights(weights)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.usefixtures("float64")
def test_the_gradient_of_a_weight_made_in_build(rng):
    model = scaled_mlp(minicnn, True)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    model(x)
    t = model.objectives.targets([y], [3], np, "float64")
    _, grads = model_gradients(model, [x], t)
    host = model.params["w"].copy()

    def f():
        model.params["w"][...] = host
        return model_loss(model, [x], t)

    check("the model's own w", grads[(model, "w")], numerical_gradient(f, host))


@pytest.mark.parametrize("in_build", [False, True])
def test_weights_files_both_ways_with_keras(rng, tmp_path, in_build):
    """Keras writes a subclassed model's own weights in the file's root group and its layers'
    under their attribute names ("hidden/vars"); minicnn reads Keras's file and writes one
    Keras reads, to the same outputs."""
    keras = keras_referee()
    x = rng.standard_normal((16, 5)).astype(np.float32)
    theirs = scaled_mlp(keras, in_build)
    want = np.asarray(theirs.predict(x, verbose=0))
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours = scaled_mlp(minicnn, in_build)
    ours(x[:1])
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    ours.set_weights([w * 1.5 for w in ours.get_weights()])
    ours.save_weights(tmp_path / "minicnn.weights.h5")
    theirs.load_weights(tmp_path / "minicnn.weights.h5")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)  # fmt: skip


def test_get_config_is_kerass_base_for_the_guides_from_config(rng):
    """The guides' pattern: a subclassed model's get_config extends ``super().get_config()``
    with its __init__'s arguments, and from_config makes it again. minicnn's base config is
    Keras's (name and trainable; Keras adds its dtype policy)."""
    keras = keras_referee()

    def net(k):
        class Net(k.Model):
            def __init__(self, units=8, **kwargs):
                super().__init__(**kwargs)
                self.units = units
                self.hidden = k.layers.Dense(units, activation="relu")
                self.head = k.layers.Dense(3)

            def call(self, x):
                return self.head(self.hidden(x))

            def get_config(self):
                return {**super().get_config(), "units": self.units}

        return Net

    x = rng.standard_normal((4, 6)).astype(np.float32)
    theirs, ours = net(keras)(units=5, name="n"), net(minicnn)(units=5, name="n")
    for m in (theirs, ours):
        m(x)
    want = theirs.get_config()
    assert ours.get_config() == {k: v for k, v in want.items() if k != "dtype"} == {"name": "n", "trainable": True, "units": 5}  # fmt: skip
    again = type(ours).from_config(ours.get_config())
    again(x)
    assert again.units == 5 and again.name == "n" and again.count_params() == ours.count_params()
    again.set_weights(ours.get_weights())
    np.testing.assert_array_equal(again.predict(x, verbose=0), ours.predict(x, verbose=0))


def test_built_is_kept_as_set_and_a_built_model_is_not_unbuilt(rng):
    """``model.built = True`` reads back as set (as in Keras) before the graph exists; the
    graph still comes at the first call; ``built = False`` on a built model is refused by name
    (minicnn does not drop a graph)."""
    model = scaled_mlp(minicnn, False)
    assert not model.built
    model.built = True
    assert model.built and model.graph is None
    model(rng.standard_normal((2, 5)).astype(np.float32))
    assert model.built and model.graph is not None
    with pytest.raises(ValueError, match="cannot set built = False"):
        model.built = False
