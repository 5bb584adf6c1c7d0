"""Hostile Keras files (test_fuzz_readers.py's style): mutated, truncated and spliced .keras and
.weights.h5 bytes, configs with any JSON put anywhere, zip names that climb out of their folder,
members and datasets that lie about their sizes, and architectures that would need terabytes.
The readers raise only ModelFileError, allocate in proportion to their input, write nothing to
disk, and change no weight of a model when they refuse its file."""

import io
import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from referee import need
from test_fuzz_readers import FUZZ, bounded, mutations

import minicnn
from minicnn import layers
from minicnn.saving import ModelFileError

h5py = need("h5py")


def _model():
    inputs = minicnn.Input((5, 5, 1), name="img")
    x = layers.Conv2D(2, 3, activation="relu")(inputs)
    y = layers.BatchNormalization()(x)
    x = layers.Flatten()(layers.Add()([x, y]))
    return minicnn.Model(inputs, layers.Dense(2, activation="softmax")(x))


def _saved(tmp_dir):
    model = _model()
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.ones((4, 5, 5, 1), np.float32), np.eye(2)[[0, 1, 0, 1]], verbose=0)
    model.save(os.path.join(tmp_dir, "base.keras"))
    model.save_weights(os.path.join(tmp_dir, "base.weights.h5"))
    with open(os.path.join(tmp_dir, "base.keras"), "rb") as f:
        keras_bytes = f.read()
    with open(os.path.join(tmp_dir, "base.weights.h5"), "rb") as f:
        return model, keras_bytes, f.read()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return _saved(str(tmp_path_factory.mktemp("base")))


def _members(keras_bytes):
    with zipfile.ZipFile(io.BytesIO(keras_bytes)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _zip(members, path, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _load(path, size):
    try:
        return bounded(lambda: minicnn.models.load_model(path), size)
    except ModelFileError:
        return None


@FUZZ
@given(data=st.data())
def test_mutated_keras_files(base, tmp_path, data):
    _, keras_bytes, _ = base
    mutated = data.draw(mutations(keras_bytes))
    path = tmp_path / "m.keras"
    path.write_bytes(mutated)
    model = _load(path, len(mutated))
    if model is not None:  # what it accepts is a whole model
        assert model.predict(np.ones((1, 5, 5, 1), np.float32), verbose=0).shape == (1, 2)
    assert sorted(os.listdir(tmp_path)) == ["m.keras"]  # nothing extracted, nothing left


@FUZZ
@given(data=st.data())
def test_mutated_members_inside_a_sound_zip(base, tmp_path, data):
    _, keras_bytes, _ = base
    members = _members(keras_bytes)
    name = data.draw(st.sampled_from(sorted(members)))
    members[name] = data.draw(mutations(members[name]))
    _zip(members, tmp_path / "m.keras")
    _load(tmp_path / "m.keras", sum(len(v) for v in members.values()))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),  # fmt: skip
    max_leaves=12,
)


def _paths(value, at=()):
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*at, i))


@FUZZ
@given(data=st.data())
def test_any_json_anywhere_in_the_config(base, tmp_path, data):
    _, keras_bytes, _ = base
    members = _members(keras_bytes)
    config = json.loads(members["config.json"])
    paths = list(_paths(config))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.sampled_from(paths))
        if not at:
            continue
        node = config
        try:
            for k in at[:-1]:
                node = node[k]
            node[at[-1]] = data.draw(JSON)
        except (KeyError, IndexError, TypeError):
            continue
    members["config.json"] = json.dumps(config).encode()
    _zip(members, tmp_path / "m.keras")
    _load(tmp_path / "m.keras", sum(len(v) for v in members.values()))


@FUZZ
@given(data=st.data())
def test_mutated_weights_files(base, tmp_path, data):
    _, _, weights_bytes = base
    model = _model()
    before = model.get_weights()
    mutated = data.draw(mutations(weights_bytes))
    path = tmp_path / "m.weights.h5"
    path.write_bytes(mutated)
    try:
        bounded(lambda: model.load_weights(path), len(mutated))
    except ModelFileError:
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("name", ["../escaped.json", "/tmp/absolute.json", "assets/../../x", "config.json/../../y", "model.weights.h5\\..\\z"])  # fmt: skip
def test_zip_names_never_reach_the_disk(base, tmp_path, name):
    _, keras_bytes, _ = base
    members = _members(keras_bytes)
    members[name] = b"{}"
    (tmp_path / "in").mkdir()
    _zip(members, tmp_path / "in" / "m.keras")
    with pytest.raises(ModelFileError, match="unexpected member"):
        minicnn.models.load_model(tmp_path / "in" / "m.keras")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["in", "m.keras"]


def test_a_member_that_lies_about_its_size_is_refused_before_it_is_read(base, tmp_path):
    """A deflated config.json of 64 MB of spaces (a 64 KB member): refused by its declared size."""
    _, keras_bytes, _ = base
    members = _members(keras_bytes)
    members["config.json"] = b" " * (64 << 20) + members["config.json"]
    _zip(members, tmp_path / "m.keras", zipfile.ZIP_DEFLATED)
    assert os.path.getsize(tmp_path / "m.keras") < 1 << 20
    with pytest.raises(ModelFileError, match=r"config.json is 67,1\d\d,\d\d\d bytes, more than"):
        bounded(lambda: minicnn.models.load_model(tmp_path / "m.keras"), 1 << 20)


@pytest.mark.parametrize(
    "units, message",
    [
        (10**8, r"needs 7,600,000,\d\d\d bytes of weights but model.weights.h5 has"),
        (10**9, r"asks for 3.6e\+10 operations per image; a model file may ask for at most 1e\+10"),
    ],
)
def test_an_architecture_of_gigabytes_is_refused_before_anything_is_allocated(base, tmp_path, units, message):  # fmt: skip
    _, keras_bytes, _ = base
    members = _members(keras_bytes)
    config = json.loads(members["config.json"])
    dense = next(e for e in config["config"]["layers"] if e["class_name"] == "Dense")
    dense["config"]["units"] = units
    members["config.json"] = json.dumps(config).encode()
    _zip(members, tmp_path / "m.keras")
    with pytest.raises(ModelFileError, match=message):
        bounded(lambda: minicnn.models.load_model(tmp_path / "m.keras"), 1 << 16)


def test_weights_holding_nan_are_refused(base, tmp_path):
    _, _, weights_bytes = base
    buf = io.BytesIO(weights_bytes)
    with h5py.File(buf, "a") as f:
        f["layers/dense/vars/1"][0] = np.nan
    (tmp_path / "m.weights.h5").write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match=r"dense/vars/1 holds 1 NaN or infinite values"):
        _model().load_weights(tmp_path / "m.weights.h5")


def test_a_dataset_declaring_any_shape_is_refused_unread(base, tmp_path):
    """A dataset of 10^12 floats that stores nothing (HDF5 fills it on read): its shape is
    checked against the architecture before a byte of it is read."""
    _, _, weights_bytes = base
    buf = io.BytesIO(weights_bytes)
    with h5py.File(buf, "a") as f:
        del f["layers/dense/vars/0"]
        f.create_dataset("layers/dense/vars/0", shape=(10**6, 10**6), dtype="f4")
        del f["layers/conv2d/vars/1"]
        f["layers/conv2d/vars/1"] = h5py.SoftLink("/layers/conv2d/vars/0")
    (tmp_path / "m.weights.h5").write_bytes(buf.getvalue())
    model = _model()
    with pytest.raises(ModelFileError, match=r"conv2d/vars/1 is a SoftLink|dense/vars/0 should be"):
        bounded(lambda: model.load_weights(tmp_path / "m.weights.h5"), 1 << 16)


def test_a_dataset_stored_outside_the_file_is_refused(base, tmp_path):
    _, _, weights_bytes = base
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.ones(16, np.float32).tobytes())
    buf = io.BytesIO(weights_bytes)
    with h5py.File(buf, "a") as f:
        del f["layers/dense/vars/1"]
        f.create_dataset("layers/dense/vars/1", shape=(2,), dtype="f4", external=[(str(outside), 0, 8)])  # fmt: skip
    (tmp_path / "m.weights.h5").write_bytes(buf.getvalue())
    with pytest.raises(ModelFileError, match=r"dense/vars/1 must be a contiguous dataset stored in the file"):  # fmt: skip
        _model().load_weights(tmp_path / "m.weights.h5")
