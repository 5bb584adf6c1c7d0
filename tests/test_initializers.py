"""Initialisers as Keras 3 has them: by name (a fresh draw from minicnn's seeded generator for
each weight) and as instances of Keras's classes (each drawing from its own seed: the same
values on every call, with Keras's warning when an unseeded one is called again)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from referee import need

import minicnn
from minicnn import initializers as inits
from minicnn import layers

CLASSES = ["GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform", "RandomNormal", "RandomUniform", "TruncatedNormal", "VarianceScaling"]  # fmt: skip
SHAPE = (3, 3, 16, 32)  # fan_in 144, fan_out 288


def keras_referee():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return need("keras")


@pytest.mark.parametrize("name", CLASSES)
def test_each_class_draws_keras_s_distribution_from_its_seed(name):
    keras = keras_referee()
    ours, theirs = getattr(inits, name)(seed=7), getattr(keras.initializers, name)(seed=7)
    a = ours(SHAPE)
    np.testing.assert_array_equal(a, ours(SHAPE))  # a seeded instance repeats itself
    np.testing.assert_array_equal(a, getattr(inits, name)(seed=7)(SHAPE))  # and its seed
    assert not np.array_equal(a, getattr(inits, name)(seed=8)(SHAPE))
    assert a.dtype == np.float32 and a.shape == SHAPE
    b = keras.ops.convert_to_numpy(theirs(SHAPE))
    n = a.size  # 4,608 draws each: the means within 6 standard errors of their difference
    assert abs(a.mean() - b.mean()) < 6 * b.std() * np.sqrt(2 / n)
    np.testing.assert_allclose(a.std(), b.std(), rtol=0.05)
    if name != "RandomNormal":  # bounded: by the limit, or the truncation at 2 std
        np.testing.assert_allclose(np.abs(a).max(), np.abs(b).max(), rtol=0.03)
    assert ours.get_config() == theirs.get_config()


def test_an_unseeded_instance_repeats_itself_and_warns_as_keras_does():
    init = inits.HeUniform()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = init((20, 5)), init((20, 5))
    np.testing.assert_array_equal(first, second)
    assert len(caught) == 1 and "unseeded and being called multiple times" in str(caught[0].message)
    assert init.get_config() == {"seed": None, "input_axes": None, "output_axes": None}


def test_names_classes_and_instances_in_layers():
    minicnn.utils.set_random_seed(1)
    model = minicnn.Sequential([
        minicnn.Input((4,)),
        layers.Dense(3, kernel_initializer="he_normal"),
        layers.Dense(3, kernel_initializer="he_normal"),
        layers.Dense(3, kernel_initializer=inits.GlorotUniform(seed=5), bias_initializer=inits.Constant(0.5)),
        layers.Dense(3, kernel_initializer=inits.GlorotUniform, bias_initializer="Ones"),
    ])  # fmt: skip
    w = model.get_weights()
    assert not np.array_equal(w[0][:3], w[2])  # by name: a fresh draw for each weight
    np.testing.assert_array_equal(w[4], inits.GlorotUniform(seed=5)((3, 3)))
    np.testing.assert_array_equal(w[5], 0.5)
    np.testing.assert_array_equal(w[7], 1.0)
    with pytest.raises(ValueError, match="`seed` argument should be an integer"):
        inits.HeNormal(seed="3")
    with pytest.raises(ValueError, match="Invalid `mode` argument: fan_sum"):
        inits.VarianceScaling(mode="fan_sum")


@pytest.mark.parametrize("maker", ["keras", "minicnn"])
def test_seeded_initializers_travel_in_keras_files(maker, tmp_path):
    keras = keras_referee()
    need("h5py")
    k, other = (keras, minicnn) if maker == "keras" else (minicnn, keras)
    model = k.Sequential([
        k.Input((4,)),
        k.layers.Dense(3, kernel_initializer=k.initializers.HeNormal(seed=3)),
        k.layers.Dense(2, kernel_initializer=k.initializers.VarianceScaling(2.0, "fan_avg", "uniform", seed=4)),
    ])  # fmt: skip
    model.save(tmp_path / "m.keras")
    loaded = other.models.load_model(tmp_path / "m.keras")
    for a, b in zip(loaded.layers, model.layers):  # the same class and settings, seed included
        assert type(a.kernel_initializer).__name__ == type(b.kernel_initializer).__name__
        assert a.kernel_initializer.get_config() == b.kernel_initializer.get_config()
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_configs_carry_initializers_as_keras_writes_them(tmp_path):
    """get_config writes every layer's initializers in Keras's layout; Sequential.from_config
    and Model.from_config (new weights, as in Keras) and minicnn's files bring them back."""
    keras = keras_referee()
    model = minicnn.Sequential([
        minicnn.Input((4,)),
        layers.Dense(3, kernel_initializer=inits.HeNormal(seed=3), bias_initializer="ones"),
        layers.BatchNormalization(gamma_initializer=inits.Constant(0.5)),
        layers.Dense(2),
    ])  # fmt: skip
    theirs = keras.layers.Dense(3, kernel_initializer=keras.initializers.HeNormal(seed=3), bias_initializer="ones")  # fmt: skip
    ours = model.get_config()["layers"][1]["config"]
    for key in ("kernel_initializer", "bias_initializer"):
        assert ours[key] == theirs.get_config()[key]
    again = minicnn.Sequential.from_config(model.get_config())
    assert type(again) is minicnn.Sequential and again.layers[0].kernel_initializer.get_config()["seed"] == 3  # fmt: skip
    np.testing.assert_array_equal(again.get_weights()[0], model.get_weights()[0])  # the seed's draw
    np.testing.assert_array_equal(again.get_weights()[1], 1.0)
    np.testing.assert_array_equal(again.layers[1].get_weights()[0], 0.5)
    inputs = minicnn.Input((4,))
    functional = minicnn.Model(inputs, layers.Dense(2, kernel_initializer=inits.RandomUniform(seed=9))(inputs))  # fmt: skip
    back = minicnn.Model.from_config(functional.get_config())
    np.testing.assert_array_equal(back.get_weights()[0], functional.get_weights()[0])
    model.save(tmp_path / "m.minicnn")
    loaded = minicnn.models.load_model(tmp_path / "m.minicnn")
    assert loaded.layers[0].kernel_initializer.get_config() == model.layers[0].kernel_initializer.get_config()  # fmt: skip
    with pytest.raises(ValueError, match="Unknown initializer"):
        inits.get({"class_name": "Orthogonal", "config": {}})
    with pytest.raises(TypeError, match="takes the dict get_config gives"):
        minicnn.Sequential.from_config("sequential")
