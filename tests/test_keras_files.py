"""Keras 3's own files against real Keras (3.15.1 on the torch backend, in this process): a model
trained in minicnn and saved as .keras loads in keras.models.load_model and predicts the same;
one trained in Keras loads in minicnn (.keras and .weights.h5) and predicts the same; the
config minicnn writes is Keras's, key for key; the optimizer's variables travel both ways, so
either side resumes training where the other stopped.

Each model is written once with ``keras`` or ``minicnn`` as the module, since their APIs are
the same. The worst differences are printed (run with -s) for the record.
"""

import json
import os
import re
import warnings
import zipfile

import numpy as np
import pytest
from referee import need

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported: no TensorFlow here
need("h5py")
keras = need("keras")
import minicnn  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
RESULTS = {}


def sequential_cnn(k):
    L = k.layers
    return k.Sequential([k.Input((12, 12, 1)), L.Conv2D(6, 3, activation="relu"), L.MaxPooling2D(), L.Conv2D(8, 3, strides=2, padding="same", activation="relu"), L.Flatten(), L.Dropout(0.25), L.Dense(4, activation="softmax")])  # fmt: skip


def residual_cnn(k):
    L = k.layers
    inputs = k.Input((12, 12, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.Conv2D(8, 3, padding="same")(y)
    x = L.Activation("relu")(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inputs, L.Dense(4, activation="softmax")(x))


def batchnorm_cnn(k):
    L = k.layers
    return k.Sequential([k.Input((12, 12, 1)), L.Conv2D(8, 3, use_bias=False), L.BatchNormalization(), L.ReLU(), L.AveragePooling2D(2), L.Flatten(), L.Dense(8, use_bias=False), L.BatchNormalization(momentum=0.9, epsilon=1e-3), L.Dense(4, activation="softmax")])  # fmt: skip


def nested_branches(k):
    """A nested Sequential, Concatenate, augmentation (a flip too), Rescaling, Dropout and max pooling."""
    L = k.layers
    inputs = k.Input((12, 12, 1), name="pixels")
    x = L.Rescaling(1 / 255.0)(inputs)
    x = L.RandomFlip("horizontal")(x)
    x = L.RandomRotation(0.05)(x)
    x = L.RandomTranslation(0.1, 0.1)(x)
    x = L.RandomZoom(0.1)(x)
    tower = k.Sequential([k.Input((12, 12, 1)), L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPooling2D()], name="tower")  # fmt: skip
    a = tower(x)
    b = L.AveragePooling2D(2)(L.Conv2D(4, 1, activation="tanh")(x))
    x = L.Concatenate()([a, b])
    x = L.Dropout(0.2)(L.Flatten()(x))
    return k.Model(inputs, L.Dense(3, activation="softmax")(x), name="branches")


MODELS = {"sequential": sequential_cnn, "residual": residual_cnn, "batchnorm": batchnorm_cnn, "nested": nested_branches}  # fmt: skip
CLASSES = {"sequential": 4, "residual": 4, "batchnorm": 4, "nested": 3}


def custom_layers(k):
    """The guide's custom layers, the same code for Keras and minicnn: a layer with its own
    weights and call(), and a block holding two Dense layers as attributes."""

    class Linear(k.layers.Layer):
        def __init__(self, units=4, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True, name="w")  # fmt: skip
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="b")  # fmt: skip

        def call(self, x):
            return k.ops.matmul(x, self.w) + self.b

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    class Block(k.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d1 = k.layers.Dense(8, activation="relu")
            self.d2 = k.layers.Dense(8)

        def call(self, x):
            return self.d2(self.d1(x)) + x

    register = k.saving.register_keras_serializable("tests")
    return register(Linear), register(Block)


CUSTOM = {k.__name__: custom_layers(k) for k in (keras, minicnn)}


def custom_cnn(k):
    Linear, Block = CUSTOM[k.__name__]
    L = k.layers
    inputs = k.Input((12, 12, 1))
    x = L.Flatten()(L.Conv2D(2, 3, activation="relu")(inputs))
    x = Block(name="block")(Linear(8, name="linear")(x))
    return k.Model(inputs, L.Dense(4, activation="softmax")(x))


MODELS["custom"] = custom_cnn
CLASSES["custom"] = 4


def data(name, n=48, seed=0):
    g = np.random.default_rng(seed)
    x = g.random((n, 12, 12, 1), dtype=np.float32) * (255 if name == "nested" else 1)
    return x, g.integers(0, CLASSES[name], n)


def record(name, direction, diff):
    RESULTS[(name, direction)] = float(diff)
    print(f"\n  {name:10s} {direction:38s} worst |diff| {diff:.3g}")


def keras_trained(name, tmp_path):
    keras.utils.set_random_seed(3)
    model = MODELS[name](keras)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    x, y = data(name)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.save(tmp_path / "k.keras")
    model.save_weights(tmp_path / "k.weights.h5")
    return model, x, y


def minicnn_trained(name, tmp_path):
    minicnn.utils.set_random_seed(3)
    model = MODELS[name](minicnn)
    model.compile(minicnn.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    x, y = data(name)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    return model, x, y


def keras_optimizer_arrays(model):
    return [np.asarray(v.numpy()) for v in model.optimizer.variables]


def minicnn_optimizer_arrays(model):
    """minicnn's optimizer state in Keras's order (iterations, learning rate, m/v per weight)."""
    opt = model.optimizer
    out = [np.asarray(opt.iterations), np.asarray(opt.learning_rate, dtype=np.float32)]
    for slots in opt.slots:
        out += [slots["m"], slots["v"]]
    return out


@pytest.mark.parametrize("name", MODELS)
def test_minicnn_file_loads_in_keras_and_predicts_the_same(name, tmp_path):
    model, x, y = minicnn_trained(name, tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Ss]kipping")  # Keras skipped variables
        loaded = keras.models.load_model(tmp_path / "m.keras")
    diff = np.abs(np.asarray(loaded.predict(x, verbose=0)) - model.predict(x, verbose=0)).max()
    record(name, "minicnn .keras -> Keras load_model", diff)
    assert diff < 1e-5
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in model.get_weights()]
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the weights themselves travel bit for bit
    for a, b in zip(keras_optimizer_arrays(loaded), minicnn_optimizer_arrays(model)):
        np.testing.assert_array_equal(a, np.asarray(b).astype(a.dtype))
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations == 6
    assert type(loaded.optimizer).__name__ == "Adam" and loaded.loss == "sparse_categorical_crossentropy"  # fmt: skip


@pytest.mark.parametrize("name", MODELS)
def test_keras_file_loads_in_minicnn_and_predicts_the_same(name, tmp_path):
    model, x, y = keras_trained(name, tmp_path)
    want = np.asarray(model.predict(x, verbose=0))
    loaded = minicnn.models.load_model(tmp_path / "k.keras")
    diff = np.abs(loaded.predict(x, verbose=0) - want).max()
    record(name, "Keras .keras -> minicnn load_model", diff)
    assert diff < 1e-5
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for a, b in zip(minicnn_optimizer_arrays(loaded), keras_optimizer_arrays(model)):
        np.testing.assert_array_equal(np.asarray(a).astype(b.dtype), b)
    assert loaded.optimizer.name == "adam" and loaded.metrics[0].name == "accuracy"
    fresh = MODELS[name](
        minicnn
    )  # the same architecture, built apart: its weights from Keras's file
    fresh.load_weights(tmp_path / "k.weights.h5")
    diff = np.abs(fresh.predict(x, verbose=0) - want).max()
    record(name, "Keras .weights.h5 -> minicnn load_weights", diff)
    assert diff < 1e-5


@pytest.mark.parametrize("name", MODELS)
def test_minicnn_weights_load_in_keras(name, tmp_path):
    model, x, _ = minicnn_trained(name, tmp_path)
    model.save_weights(tmp_path / "m.weights.h5")
    other = MODELS[name](keras)
    other.load_weights(tmp_path / "m.weights.h5")
    diff = np.abs(np.asarray(other.predict(x, verbose=0)) - model.predict(x, verbose=0)).max()
    record(name, "minicnn .weights.h5 -> Keras load_weights", diff)
    assert diff < 1e-5


def _first_difference(a, b, path="") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            return f"{path}: keys {list(a)} != {list(b)}"
        return next((d for k in a if (d := _first_difference(a[k], b[k], f"{path}/{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _first_difference(x, y, f"{path}[{i}]"))), None)  # fmt: skip
    return None if a == b else f"{path}: {a!r} != {b!r}"


def _shape_of(value):
    """The structure of a config: keys and types, with names, ids and float rounding left out."""
    if isinstance(value, dict):
        return {k: _shape_of(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [_shape_of(v) for v in value]
    return type(value).__name__ if not isinstance(value, (bool, type(None))) else value


@pytest.mark.parametrize("name", MODELS)
def test_config_json_is_kerass_key_for_key(name, tmp_path):
    """The same architecture saved by both: config.json has the same keys in the same places,
    the same classes, modules and flags; h5 files the same groups and dataset shapes."""
    import h5py

    keras_trained(name, tmp_path)
    minicnn_trained(name, tmp_path)
    files = {who: zipfile.ZipFile(tmp_path / f"{who}.keras") for who in "km"}
    ours, theirs = (json.loads(files[w].read("config.json")) for w in "mk")
    ours["compile_config"]["optimizer"].pop("module")  # Keras names its backend's own class
    theirs["compile_config"]["optimizer"].pop("module")
    theirs["compile_config"]["optimizer"]["registered_name"] = None
    assert _first_difference(_shape_of(ours), _shape_of(theirs)) is None
    for a, b in zip(ours["config"]["layers"], theirs["config"]["layers"]):
        assert (a["class_name"], a["module"], a.get("inbound_nodes") is not None) == (b["class_name"], b["module"], b.get("inbound_nodes") is not None)  # fmt: skip
    assert set(json.loads(files["m"].read("metadata.json"))) == set(json.loads(files["k"].read("metadata.json")))  # fmt: skip

    def layout(who):
        found = {}
        with files[who].open("model.weights.h5") as raw, h5py.File(raw, "r") as f:
            f.visititems(lambda n, o: found.setdefault(n, getattr(o, "shape", None)))
        return found

    assert layout("m") == layout("k")


def test_minicnn_checkpoint_resumes_in_keras_as_in_minicnn(tmp_path):
    """One more Adam step on the same batch, from the state minicnn saved: in minicnn, and in
    Keras after loading minicnn's file, the weights move the same way."""
    model, x, y = minicnn_trained("residual", tmp_path)
    loaded = keras.models.load_model(tmp_path / "m.keras")
    model.train_on_batch(x[:16], y[:16])
    loaded.train_on_batch(x[:16], y[:16])
    diff = max(np.abs(np.asarray(a) - b).max() for a, b in zip(loaded.get_weights(), model.get_weights()))  # fmt: skip
    record("residual", "one more Adam step, Keras vs minicnn", diff)
    assert diff < 1e-5
    assert loaded.optimizer.iterations.numpy() == model.optimizer.iterations == 7


def two_heads(k):
    L = k.layers
    inputs = k.Input((12, 12, 1))
    x = L.Flatten()(L.MaxPooling2D()(L.Conv2D(4, 3, activation="relu")(inputs)))
    return k.Model(inputs, [L.Dense(3, activation="softmax", name="cls")(x), L.Dense(2, activation="softmax", name="aux")(x)])  # fmt: skip


@pytest.mark.parametrize("maker", ["keras", "minicnn"])
def test_two_outputs_with_their_losses_weights_and_metrics_both_ways(maker, tmp_path):
    """Losses by output name, loss weights and per-output metrics, SGD with momentum: compiled
    in one, saved, loaded in the other with the same compile settings and predictions."""
    k, other = (keras, minicnn) if maker == "keras" else (minicnn, keras)
    k.utils.set_random_seed(5)
    model = two_heads(k)
    loss = {"cls": "sparse_categorical_crossentropy", "aux": "categorical_crossentropy"}
    model.compile(k.optimizers.SGD(0.05, momentum=0.9), loss, loss_weights={"cls": 1.0, "aux": 0.5}, metrics={"cls": ["accuracy"]})  # fmt: skip
    x, y = data("sequential")
    model.fit(x, {"cls": y % 3, "aux": np.eye(2, dtype=np.float32)[y % 2]}, batch_size=16, epochs=1, verbose=0)  # fmt: skip
    model.save(tmp_path / "two.keras")
    loaded = other.models.load_model(tmp_path / "two.keras")
    diff = max(np.abs(np.asarray(a) - b).max() for a, b in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)))  # fmt: skip
    record("two heads", f"{maker} .keras -> {other.__name__} load_model", diff)
    assert diff < 1e-5
    assert loaded.optimizer.momentum == pytest.approx(0.9)
    if other is minicnn:
        assert [type(lo).__name__ for lo in loaded.objectives.losses] == ["SparseCategoricalCrossentropy", "CategoricalCrossentropy"]  # fmt: skip
        assert loaded.objectives.weights == [1.0, 0.5]
        assert loaded.objectives.metric_names() == ["cls_accuracy"]
    compiled = loaded.get_compile_config()  # compile's arguments as given, in either
    assert compiled["loss"] == loss and compiled["loss_weights"] == {"cls": 1.0, "aux": 0.5}
    assert compiled["metrics"] == {"cls": ["accuracy"]} and compiled["weighted_metrics"] is None


@pytest.mark.parametrize("maker", ["keras", "minicnn"])
def test_loss_and_metric_objects_and_weighted_metrics_both_ways(maker, tmp_path):
    """compile's arguments as given (objects with settings, a function, weighted metrics):
    the same compile_config read back, the same evaluation with sample weights."""
    k, other = (keras, minicnn) if maker == "keras" else (minicnn, keras)
    k.utils.set_random_seed(6)
    model = MODELS["sequential"](k)
    loss = k.losses.CategoricalCrossentropy(label_smoothing=0.1)
    metrics = ["accuracy", k.metrics.AUC(num_thresholds=50), k.metrics.mean_squared_error]
    model.compile(k.optimizers.Adam(0.01), loss, loss_weights=0.5, metrics=metrics, weighted_metrics=["mae", k.metrics.Precision(name="p")])  # fmt: skip
    x, y = data("sequential")
    y = np.eye(CLASSES["sequential"], dtype=np.float32)[y]
    w = np.linspace(0.1, 2.0, len(x)).astype(np.float32)
    model.fit(x, y, sample_weight=w, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "c.keras")
    loaded = other.models.load_model(tmp_path / "c.keras")
    ours, theirs = loaded.get_compile_config(), model.get_compile_config()
    for c in (ours, theirs):
        c.pop("optimizer")
    assert json.loads(json.dumps(ours)) == json.loads(json.dumps(theirs))
    want = model.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-5), key


def test_a_compile_config_minicnn_cannot_make_names_what(tmp_path):
    """An unknown loss or metric class, a custom one not named, or a bad weight: a
    ModelFileError naming it; compile=False loads the model all the same."""
    model = MODELS["sequential"](minicnn)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "m.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))
    cases = [
        (
            "loss",
            {
                "module": "keras.losses",
                "class_name": "Tversky",
                "config": {},
                "registered_name": None,
            },
            "loss 'Tversky' is not one minicnn has",
        ),  # fmt: skip
        (
            "metrics",
            [
                {
                    "module": "mine",
                    "class_name": "MyMetric",
                    "config": {},
                    "registered_name": "Custom>MyMetric",
                }
            ],
            "metric 'MyMetric' is not one minicnn has",
        ),  # fmt: skip
        (
            "metrics",
            [
                {
                    "module": "builtins",
                    "class_name": "function",
                    "config": "frob",
                    "registered_name": "function",
                }
            ],
            "metric function 'frob'",
        ),  # fmt: skip
        ("loss_weights", "heavy", "loss_weights must be numbers"),
        ("weighted_metrics", ["no_such_metric"], "no_such_metric"),
    ]
    for key, value, message in cases:
        bad = json.loads(json.dumps(config))
        bad["compile_config"][key] = value
        with zipfile.ZipFile(tmp_path / "m.keras") as zin, zipfile.ZipFile(tmp_path / "bad.keras", "w") as zout:  # fmt: skip
            for item in zin.infolist():
                zout.writestr(item, json.dumps(bad) if item.filename == "config.json" else zin.read(item))  # fmt: skip
        with pytest.raises(minicnn.saving.ModelFileError, match=re.escape(message)):
            minicnn.models.load_model(tmp_path / "bad.keras")
        assert minicnn.models.load_model(tmp_path / "bad.keras", compile=False).optimizer is None


def test_a_custom_loss_and_metric_travel_by_custom_objects(tmp_path):
    class Scaled(minicnn.losses.MeanSquaredError):
        def __init__(self, scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.scale = scale

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    model = MODELS["sequential"](minicnn)
    model.compile("adam", Scaled(2.0), metrics=[minicnn.metrics.MeanAbsoluteError(name="m")])
    model.save(tmp_path / "m.keras")
    with pytest.raises(minicnn.saving.ModelFileError, match="Scaled"):
        minicnn.models.load_model(tmp_path / "m.keras")
    loaded = minicnn.models.load_model(tmp_path / "m.keras", custom_objects={"Scaled": Scaled})
    assert type(loaded.loss) is Scaled and loaded.loss.scale == 2.0
    assert loaded.get_compile_config()["loss"]["config"]["scale"] == 2.0


def halved_mse(y_true, y_pred):
    return minicnn.ops.mean(minicnn.ops.square(y_true - y_pred), axis=-1) * 0.5


def test_a_loss_function_of_the_users_travels_by_name(tmp_path):
    """A function loss is written as Keras writes one ({class_name: "function", config: its
    name}) and found again only in custom_objects: the loaded model trains the same."""
    model = MODELS["sequential"](minicnn)
    model.compile("sgd", halved_mse, loss_weights=np.float32(2.0))
    model.save(tmp_path / "f.keras")
    entry = model.get_compile_config()["loss"]
    assert (entry["class_name"], entry["config"], entry["registered_name"]) == ("function", "halved_mse", "halved_mse")  # fmt: skip
    assert model.get_compile_config()["loss_weights"] == 2.0
    with pytest.raises(minicnn.saving.ModelFileError, match="loss function 'halved_mse'"):
        minicnn.models.load_model(tmp_path / "f.keras")
    loaded = minicnn.models.load_model(tmp_path / "f.keras", custom_objects={"halved_mse": halved_mse})  # fmt: skip
    x, y = data("sequential")
    y = np.eye(CLASSES["sequential"], dtype=np.float32)[y]
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)  # fmt: skip


def test_keras_loads_to_json_and_minicnn_loads_kerass(tmp_path):
    model = residual_cnn(minicnn)
    again = keras.models.model_from_json(model.to_json())
    assert [type(x).__name__ for x in again.layers] == [type(x).__name__ for x in model.layers]
    theirs = residual_cnn(keras)
    ours = minicnn.models.model_from_json(theirs.to_json())
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda L: L.Conv2D(4, 3, dilation_rate=2), "dilation_rate=[2, 2]"),
        (lambda L: L.MaxPooling2D(data_format="channels_first"), "data_format='channels_first'"),
        (lambda L: L.GroupNormalization(groups=2), "minicnn has no such layer"),
    ],
)
def test_a_keras_file_minicnn_cannot_honour_fails_naming_the_layer_and_argument(make, argument, tmp_path):  # fmt: skip
    L = keras.layers
    inputs = keras.Input((8, 8, 2))
    x = make(L)(inputs)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x) if len(x.shape) > 2 else x))
    model.save(tmp_path / "k.keras")
    layer_name = model.layers[1].name
    state = minicnn.backend.rng().bit_generator.state
    with pytest.raises(minicnn.saving.ModelFileError, match=rf'Layer "{layer_name}".*{re.escape(argument)}'):  # fmt: skip
        minicnn.models.load_model(tmp_path / "k.keras")
    assert minicnn.backend.rng().bit_generator.state == state


def newer_layers(k):
    """Every layer the first Keras files did not know, with regularizers and constraints."""
    L = k.layers
    inputs = k.Input((12, 12, 2))
    x = L.Conv2D(4, 3, kernel_regularizer=k.regularizers.L2(0.01), kernel_constraint=k.constraints.MaxNorm(2.0), activity_regularizer=k.regularizers.L1(0.01))(inputs)  # fmt: skip
    x = L.LeakyReLU(0.2)(L.ZeroPadding2D(1)(x))
    x = L.DepthwiseConv2D(3, depthwise_regularizer="l1", bias_constraint="non_neg")(x)
    x = L.SeparableConv2D(4, 3, padding="same", pointwise_regularizer=k.regularizers.L1L2(0.01, 0.02))(x)  # fmt: skip
    x = L.ELU(0.5)(L.LayerNormalization(epsilon=1e-4)(x))
    x = L.Conv2DTranspose(3, 3, strides=2)(L.PReLU(shared_axes=[1, 2])(x))
    x = L.SpatialDropout2D(0.3)(L.UpSampling2D(2, interpolation="bilinear")(L.Cropping2D(((1, 2), (0, 1)))(x)))  # fmt: skip
    return k.Model(inputs, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize("maker", ["keras", "minicnn"])
def test_newer_layers_and_their_regularizers_travel_both_ways(maker, tmp_path):
    """Saved by one, loaded by the other: the same configs (regularizers and constraints as
    Keras writes them), the same weights bit for bit, the same predictions."""
    k, other = (keras, minicnn) if maker == "keras" else (minicnn, keras)
    k.utils.set_random_seed(4)
    model = newer_layers(k)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((8, 12, 12, 2), dtype=np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "new.keras")
    loaded = other.models.load_model(tmp_path / "new.keras")
    diff = np.abs(np.asarray(loaded.predict(x, verbose=0)) - np.asarray(model.predict(x, verbose=0))).max()  # fmt: skip
    record("newer", f"{maker} .keras -> {other.__name__} load_model", diff)
    assert diff < 1e-5
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    def setting(layer, key):
        value = json.loads(json.dumps(layer.get_config().get(key)))
        if isinstance(value, dict):  # Keras keeps a regularizer's factor as a float32
            return value["class_name"], {k: np.float32(v) if isinstance(v, float) else v for k, v in value["config"].items()}  # fmt: skip
        return value

    keys = ("kernel_regularizer", "activity_regularizer", "depthwise_regularizer", "pointwise_regularizer", "kernel_constraint", "bias_constraint", "alpha", "negative_slope", "cropping", "interpolation", "shared_axes", "epsilon", "rate")  # fmt: skip
    for a, b in zip(loaded.layers, model.layers):
        assert [setting(a, key) for key in keys] == [setting(b, key) for key in keys], a.name
    assert setting(model.layers[1], "kernel_constraint") == ("MaxNorm", {"max_value": 2.0, "axis": 0})  # fmt: skip
    assert setting(loaded.layers[1], "activity_regularizer") == ("L1", {"l1": np.float32(0.01)})
    loss = [m.evaluate(x, np.arange(8) % 3, verbose=0) for m in (model, loaded)]  # the penalty too
    np.testing.assert_allclose(loss[0], loss[1], rtol=1e-5)


KERAS_ARGS = {"Conv2D": (1, 1), "Conv2DTranspose": (1, 1), "DepthwiseConv2D": (1,), "SeparableConv2D": (1, 1), "SpatialDropout2D": (0.5,), "Dense": (1,), "Reshape": ((1,),), "Activation": ("relu",), "Dropout": (0.5,), "GaussianNoise": (0.1,), "Permute": ((1,),), "CenterCrop": (2, 2), "AveragePooling2D": (2,), "Rescaling": (1.0,), "RandomRotation": (0.1,), "RandomFlip": (), "RandomContrast": (0.2,), "RandomBrightness": (0.2,), "RandomTranslation": (0.1, 0.1), "RandomZoom": (0.1,)}  # fmt: skip


def test_every_layer_has_kerass_keys_in_kerass_order():
    """minicnn's table of each layer's Keras keys, against the layer's own get_config in Keras;
    and every built-in minicnn layer has a row (a new layer cannot be saved without one)."""
    from minicnn.keras_format.layers import KERAS_LAYERS

    for kind, spec in KERAS_LAYERS.items():
        config = getattr(keras.layers, kind)(*KERAS_ARGS.get(kind, ())).get_config()
        want = [k for k in config if k not in ("name", "trainable", "dtype")]
        assert [k if isinstance(k, str) else k[0] for k in spec.keys] == want, kind
        for key, value in (k for k in spec.keys if isinstance(k, tuple)):
            assert json.loads(json.dumps(config[key])) == value, (kind, key)  # Keras's default
    assert set(minicnn.layers._REGISTRY) - {"InputLayer"} <= set(KERAS_LAYERS)


def test_the_differences_recorded():
    """Runs last: prints every difference measured above (pytest -s shows them)."""
    for (name, direction), diff in sorted(RESULTS.items()):
        print(f"  {name:10s} {direction:42s} {diff:.3g}")
    assert all(d < 1e-5 for d in RESULTS.values())


@pytest.mark.parametrize("maker", ["keras", "minicnn"])
def test_softmax_axes_and_relu_settings_travel_both_ways(maker, tmp_path):
    k, other = (keras, minicnn) if maker == "keras" else (minicnn, keras)
    model = k.Sequential([k.Input((3, 4, 5)), k.layers.Softmax(axis=1), k.layers.ReLU(max_value=0.5, negative_slope=0.1, threshold=0.2)])  # fmt: skip
    model.save(tmp_path / "s.keras")
    loaded = other.models.load_model(tmp_path / "s.keras")
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    diff = np.abs(np.asarray(loaded.predict(x, verbose=0)) - np.asarray(model.predict(x, verbose=0))).max()  # fmt: skip
    assert diff < 1e-6
    assert loaded.layers[0].axis == 1 and loaded.layers[1].max_value == 0.5
