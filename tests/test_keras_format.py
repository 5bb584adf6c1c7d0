"""Keras's file formats without Keras: custom objects by registration, custom_objects= and
scopes; configs that name what minicnn does not have (refused by name, nothing imported, nothing
half-loaded, no global state moved); to_json / model_from_json; clone_model; load_weights into
another architecture; float64; h5py imported only for these files. The round trips against real
Keras are in test_keras_files.py."""

import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from referee import need

import minicnn
from minicnn import layers
from minicnn.layers import base as layer_base
from minicnn.saving import ModelFileError

need("h5py")


class Scale(layers.Layer):
    """A custom layer: y = factor * x, with its own config."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def forward(self, x, training=False):
        return x * x.dtype.type(self.factor), None

    def backward(self, gy, ctx, need_gx=True):
        return gy * gy.dtype.type(self.factor), {}

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@pytest.fixture
def f64():
    minicnn.set_floatx("float64")
    yield
    minicnn.set_floatx("float32")


def small(custom=False):
    inputs = minicnn.Input((6, 6, 1), name="img")
    x = layers.Conv2D(3, 3, activation="relu")(inputs)
    x = Scale(0.5, name="scale")(x) if custom else x
    x = layers.Flatten()(x)
    return minicnn.Model(inputs, layers.Dense(2, activation="softmax")(x), name="small")


X = np.random.default_rng(0).random((5, 6, 6, 1), dtype=np.float32)


def rewrite(path, change):
    """The .keras file at ``path`` with its config.json passed through ``change``."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def test_importing_minicnn_does_not_import_h5py():
    code = "import sys, minicnn, minicnn.saving, minicnn.models; print('h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_h5py_a_keras_file_fails_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    model = small()
    with pytest.raises(ImportError, match=r"minicnn\[keras\]"):
        model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.minicnn")  # minicnn's own format needs no h5py
    assert not (tmp_path / "m.keras").exists()


def test_a_registered_custom_layer_round_trips(tmp_path):
    model = small(custom=True)
    model.save(tmp_path / "c.keras")
    with pytest.raises(ModelFileError, match=r'Layer "scale" \(Scale\).*register'):
        minicnn.models.load_model(tmp_path / "c.keras")
    again = minicnn.models.load_model(tmp_path / "c.keras", custom_objects={"Scale": Scale})
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    assert again.get_layer("scale").factor == 0.5
    with minicnn.utils.custom_object_scope({"Scale": Scale}):
        assert minicnn.models.load_model(tmp_path / "c.keras").get_layer("scale").factor == 0.5
    with pytest.raises(ModelFileError, match="Scale"):  # the scope is gone after its block
        minicnn.models.load_model(tmp_path / "c.keras")
    registered = minicnn.saving.register_keras_serializable("tests", "Scale")(Scale)
    try:
        model = small(custom=True)
        model.save(tmp_path / "r.keras")
        with zipfile.ZipFile(tmp_path / "r.keras") as zf:
            entry = json.loads(zf.read("config.json"))["config"]["layers"][2]
        assert entry["registered_name"] == "tests>Scale" and entry["config"]["factor"] == 0.5
        again = minicnn.models.load_model(tmp_path / "r.keras")
        assert type(again.get_layer("scale")) is registered
    finally:
        minicnn.saving.get_custom_objects().pop("tests>Scale")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c["config"]["layers"][1].update(module="os", class_name="system"),
            r'Layer "conv2d.*" \(system\): minicnn has no such layer',
        ),  # fmt: skip
        (
            lambda c: c["config"]["layers"][1].update(class_name="Lambda", module="keras.layers"),
            r"\(Lambda\): minicnn has no such layer",
        ),  # fmt: skip
        (
            lambda c: c.update(module="minicnn_no_such_module", class_name="Evil"),
            "Sequential and functional models",
        ),  # fmt: skip
        (
            lambda c: c["config"]["layers"][1]["config"].update(groups=2),
            r"groups other than 1 is not supported by minicnn. Received: groups=2",
        ),  # fmt: skip
        (
            lambda c: c["config"]["layers"][1]["config"].update(frobnicate=1),
            r"unknown argument frobnicate=1",
        ),  # fmt: skip
        (
            lambda c: c["config"]["layers"][1]["config"].update(
                kernel_initializer={"class_name": "Orthogonal", "config": {}}
            ),
            r"kernel_initializer .*Orthogonal",
        ),  # fmt: skip
        (
            lambda c: c["config"]["layers"][1]["inbound_nodes"][0]["kwargs"].update(mask=[1]),
            "call argument mask",
        ),  # fmt: skip
        (lambda c: c["compile_config"].update(loss="frobnicate_loss"), "compile=False"),
        (
            lambda c: c["compile_config"]["optimizer"].update(class_name="Lion"),
            "optimizer 'Lion' is not one minicnn has",
        ),  # fmt: skip
    ],
)
def test_a_config_minicnn_cannot_honour_is_refused_by_name(tmp_path, change, message):
    model = small()
    model.compile("adam", "categorical_crossentropy")
    model.save(tmp_path / "m.keras")
    rewrite(tmp_path / "m.keras", change)
    modules, counters = set(sys.modules), {k: repr(v) for k, v in layer_base._counters.items()}
    state = minicnn.backend.rng().bit_generator.state
    with pytest.raises(ModelFileError, match=message):
        minicnn.models.load_model(tmp_path / "m.keras")
    assert set(sys.modules) == modules  # nothing named by the file was imported
    assert {k: repr(v) for k, v in layer_base._counters.items()} == counters  # no name used up
    assert minicnn.backend.rng().bit_generator.state == state


def test_compile_false_loads_what_cannot_be_compiled(tmp_path):
    model = small()
    model.compile("adam", "categorical_crossentropy")
    model.save(tmp_path / "m.keras")
    rewrite(tmp_path / "m.keras", lambda c: c["compile_config"].update(loss="frobnicate_loss"))
    again = minicnn.models.load_model(tmp_path / "m.keras", compile=False)
    assert again.optimizer is None
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))


def test_a_weight_of_the_wrong_shape_fails_before_anything_is_returned(tmp_path):
    import h5py

    model = small()
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = np.zeros((4, 2), np.float32)
    members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    with pytest.raises(ModelFileError, match=r"layers/dense/vars/0 should be .*\(48, 2\). Received: float32 \(4, 2\)"):  # fmt: skip
        minicnn.models.load_model(tmp_path / "m.keras")


def test_load_weights_checks_everything_before_changing_anything(tmp_path):
    model = small()
    model.save_weights(tmp_path / "s.weights.h5")
    other = minicnn.Sequential([minicnn.Input((6, 6, 1)), layers.Conv2D(3, 3), layers.Flatten(), layers.Dense(3)])  # fmt: skip
    before = other.get_weights()
    with pytest.raises(ModelFileError, match=r"layers/dense/vars/0 should be .*\(48, 3\)"):
        other.load_weights(tmp_path / "s.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(before, other.get_weights()))
    twin = small()
    twin.load_weights(tmp_path / "s.weights.h5")
    np.testing.assert_array_equal(twin.predict(X, verbose=0), model.predict(X, verbose=0))
    with pytest.raises(ValueError, match=r"must end in `.weights.h5`"):
        model.save_weights(tmp_path / "s.h5")
    with pytest.raises(FileNotFoundError):
        twin.load_weights(tmp_path / "none.weights.h5")


def test_optimizer_state_travels_in_weights_files(tmp_path):
    minicnn.utils.set_random_seed(1)
    model = small()
    model.compile(minicnn.optimizers.RMSprop(momentum=0.5, centered=True), "categorical_crossentropy")  # fmt: skip
    y = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 1]]
    model.fit(X, y, epochs=2, batch_size=2, verbose=0)
    model.save_weights(tmp_path / "s.weights.h5")
    twin = small()
    twin.compile(minicnn.optimizers.RMSprop(momentum=0.5, centered=True), "categorical_crossentropy")  # fmt: skip
    twin.load_weights(tmp_path / "s.weights.h5")
    assert twin.optimizer.iterations == model.optimizer.iterations == 6
    for a, b in zip(twin.optimizer.slots, model.optimizer.slots):
        assert list(a) == list(b) == ["velocity", "momentum", "average_gradient"]
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_to_json_and_model_from_json(tmp_path):
    model = small()
    model.compile(minicnn.optimizers.SGD(0.1, momentum=0.9), "categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    text = model.to_json()
    again = minicnn.models.model_from_json(text)
    assert again.to_json() == text and again.name == "small"
    assert again.optimizer.momentum == 0.9 and again.metrics[0].name == "accuracy"
    again.set_weights(model.get_weights())
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    with pytest.raises(ModelFileError, match="nests deeper than"):
        minicnn.models.model_from_json("[" * 5000 + "]" * 5000)
    with pytest.raises(ModelFileError, match="Scale"):
        minicnn.models.model_from_json(small(custom=True).to_json())
    assert minicnn.models.model_from_json(small(custom=True).to_json(), custom_objects={"Scale": Scale})  # fmt: skip


def test_clone_model_copies_the_architecture_with_new_weights():
    model = small(custom=True)
    model.compile("adam", "categorical_crossentropy")
    clone = minicnn.models.clone_model(model)
    assert clone.optimizer is None and clone.objectives is None
    assert json.loads(clone.to_json())["config"] == json.loads(model.to_json())["config"]
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])
    assert clone.get_layer("scale") is not model.get_layer("scale")
    with pytest.raises(ValueError, match="clone_function is not supported"):
        minicnn.models.clone_model(model, clone_function=lambda layer: layer)


def test_float64_models_and_checkpoints_use_keras_format(tmp_path, f64):
    model = minicnn.Sequential([minicnn.Input((6, 6, 1)), layers.Conv2D(2, 3), layers.BatchNormalization(), layers.Flatten(), layers.Dense(2)])  # fmt: skip
    model.compile("adam", "categorical_crossentropy")
    model.fit(X.astype(np.float64), np.eye(2)[[0, 1, 0, 1, 1]], verbose=0)
    model.save(tmp_path / "d.keras")
    again = minicnn.models.load_model(tmp_path / "d.keras")
    assert again.get_weights()[0].dtype == np.float64
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), model.get_weights()))
    for a, b in zip(again.optimizer.slots, model.optimizer.slots):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_legacy_h5_model_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"legacy HDF5 .*\.keras"):
        small().save(tmp_path / "m.h5")


def test_model_checkpoint_saves_weights_only_in_kerass_layout(tmp_path):
    model = small()
    model.compile("adam", "categorical_crossentropy")
    y = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 1]]
    checkpoint = minicnn.callbacks.ModelCheckpoint(tmp_path / "w-{epoch}.weights.h5", save_weights_only=True)  # fmt: skip
    model.fit(X, y, epochs=2, batch_size=5, verbose=0, callbacks=[checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-1.weights.h5", "w-2.weights.h5"]
    twin = small()
    twin.compile("adam", "categorical_crossentropy")
    twin.load_weights(tmp_path / "w-2.weights.h5")
    np.testing.assert_array_equal(twin.predict(X, verbose=0), model.predict(X, verbose=0))
    assert twin.optimizer.iterations == 2
    with pytest.raises(ValueError, match=r"must end in `.weights.h5`"):
        minicnn.callbacks.ModelCheckpoint(tmp_path / "w.keras", save_weights_only=True)
