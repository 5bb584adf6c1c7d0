"""Issue 25's model-file and fit defects, each fed as a hostile or careless user would: a file
that asks for unbounded work (2), load errors that were not ModelFileError (3), non-finite
weights (10), a validation split with nothing left (11), and the minor ones (complex or
string targets, duplicate and extra zip members, format_version true, NumPy integers)."""

import contextlib
import io
import json
import math
import zipfile

import numpy as np
import pytest
from test_faults import rewrite

import minicnn
from minicnn import layers, load_checkpoint, load_model
from minicnn.callbacks import ModelCheckpoint
from minicnn.saving import ModelFileError


def saved(tmp_path, *body, shape=(28, 28, 1), name="m.minicnn", compile=True):
    model = minicnn.Sequential([minicnn.Input(shape), *body])
    if compile:
        model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / name)
    return tmp_path / name


def entry(meta, k):
    return meta["architecture"]["config"]["layers"][k]  # 0 is the InputLayer


def npy(a) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda m, b: entry(m, 1)["config"].update(pool_size=[1, 10**9]),
            r"pool_size \(1, 1000000000\) does not fit",
        ),  # fmt: skip
        (
            lambda m, b: entry(m, 1)["config"].update(pool_size=[2000, 2000]),
            r"pool_size \(2000, 2000\) does not fit",
        ),  # fmt: skip
    ],
)
def test_a_pool_larger_than_its_map_is_refused_before_it_runs(tmp_path, change, match):
    """Defect 2: a 457-byte file with MaxPooling2D(pool_size=(1, 10**9), padding="same") made
    predict run for ever; AveragePooling 2000x2000 took 8.6 s an image."""
    src = saved(tmp_path, layers.MaxPooling2D(2, padding="same"), layers.Flatten(), layers.Dense(2))
    rewrite(src, tmp_path / "bad.minicnn", change)
    with pytest.raises(ModelFileError, match=match):
        load_model(tmp_path / "bad.minicnn")


def test_a_kernel_reading_only_padding_is_refused(tmp_path):
    """Defect 2: a Conv2D 1x62500 "same" ran for > 30 s. Its weights are in the file (the
    bytes check passes); the kernel is more than twice the map it convolves."""
    src = saved(
        tmp_path, layers.Conv2D(1, (1, 3), padding="same"), layers.Flatten(), layers.Dense(2)
    )

    def change(meta, members):
        entry(meta, 1)["config"]["kernel_size"] = [1, 62500]
        meta["weights"][0]["shape"] = [1, 62500, 1, 1]
        members["weights/0.npy"] = npy(np.zeros((1, 62500, 1, 1), np.float32))

    rewrite(src, tmp_path / "bad.minicnn", change)
    with pytest.raises(ModelFileError, match=r"kernel is more than twice the 28x28 map"):
        load_model(tmp_path / "bad.minicnn")


def test_more_work_per_image_than_a_file_may_ask_for(tmp_path):
    """A big input with small weights: bytes are not the bound, work per image is."""
    src = saved(tmp_path, *[layers.Conv2D(16, 3, padding="same") for _ in range(3)], layers.GlobalAveragePooling2D(), layers.Dense(2), shape=(8, 8, 1))  # fmt: skip
    rewrite(src, tmp_path / "big.minicnn", lambda m, b: entry(m, 0)["config"].update(shape=[4000, 4000, 1]))  # fmt: skip
    with pytest.raises(ModelFileError, match=r"asks for .* operations per image; a model file may ask for at most 1e\+10"):  # fmt: skip
        load_model(tmp_path / "big.minicnn")


def _legacy(tmp_path, input_shape):
    """A format-1 file (a Sequential's own config) with ``input_shape``."""
    path = tmp_path / "v1.minicnn"
    meta = {"format": "minicnn.model", "format_version": 1, "architecture": {"name": "s", "input_shape": input_shape, "layers": [{"class_name": "Flatten", "config": {"name": "f"}}]}, "compile": None, "weights": []}  # fmt: skip
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.json", json.dumps(meta))
    return path


@pytest.mark.parametrize("shape", [[], {}, "", [float("nan"), 1], [float("inf")]], ids=["list", "dict", "str", "nan", "inf"])  # fmt: skip
def test_broken_input_shapes_are_model_file_errors(tmp_path, shape):
    """Defect 3: [], {} or "" raised IndexError, NaN/Infinity an OverflowError."""
    with pytest.raises(ModelFileError):
        load_model(_legacy(tmp_path, shape))


def test_other_load_errors_are_model_file_errors(tmp_path):
    """Defect 3: a .npy header holding Python source (tokenize.TokenError), JSON nested
    200,000 deep (RecursionError), a checkpoint's generator field of 10^20 (OverflowError)."""
    src = saved(tmp_path, layers.Flatten(), layers.Dense(2))
    header = b"\x93NUMPY\x01\x00" + (("{'descr': '<f4', 'fortran_order': False, 'shape': (1568, 2), } (" + " " * 40).encode() + b"\n")  # fmt: skip
    data = header + bytes(784 * 2 * 4)  # the file as large as its weights: past the size check
    rewrite(src, tmp_path / "src.minicnn", lambda m, b: b.update({"weights/0.npy": data}))
    with pytest.raises(ModelFileError, match="damaged array header"):
        load_model(tmp_path / "src.minicnn")
    deep = tmp_path / "deep.minicnn"
    with zipfile.ZipFile(deep, "w") as zf:
        zf.writestr("model.json", "[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelFileError, match="model.json is damaged"):
        load_model(deep)
    model = minicnn.Sequential([minicnn.Input((4,)), layers.Dense(2)])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.ones((4, 4)), np.zeros(4), verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c.minicnn")])  # fmt: skip

    def huge(meta, members):
        meta["training"]["rng"]["state"]["state"] = 10**20 * 10**20

    rewrite(tmp_path / "c.minicnn", tmp_path / "c2.minicnn", huge)
    with pytest.raises(ModelFileError, match="training state is invalid"):
        load_checkpoint(tmp_path / "c2.minicnn")


def test_non_finite_weights_are_refused_at_load(tmp_path):
    """Defect 10: NaN/inf weights loaded, then serve answered bare NaN tokens."""
    src = saved(tmp_path, layers.Flatten(), layers.Dense(2))
    w = np.zeros((784, 2), np.float32)
    w[3, 1] = np.nan
    rewrite(src, tmp_path / "nan.minicnn", lambda m, b: b.update({"weights/0.npy": npy(w)}))
    with pytest.raises(ModelFileError, match=r"weights/0.npy holds 1 NaN or infinite values"):
        load_model(tmp_path / "nan.minicnn")


def test_a_validation_split_that_leaves_nothing_is_refused_before_anything_changes():
    """Defect 11: validation_split=0.95 on 10 samples raised ZeroDivisionError after the
    model's History had been replaced."""
    model = minicnn.Sequential([minicnn.Input((3,)), layers.Dense(2)])
    model.compile("adam", "sparse_categorical_crossentropy")
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"validation_split=0.95 of 10 samples leaves 0 to train on and 10 to validate"):  # fmt: skip
        model.fit(np.ones((10, 3)), np.zeros(10), validation_split=0.95, verbose=0)
    assert model.history is None and model.optimizer.iterations == 0
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_minor_defects(tmp_path):
    model = minicnn.Sequential([minicnn.Input((3,)), layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.ones((6, 3), np.float32)
    for y, what in ((np.zeros(6, complex), "complex"), (np.zeros(6, bool), "bool"), (np.array(["a"] * 6), "<U")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"y must hold real numbers.*Received: dtype {what}"):
            model.fit(x, y, verbose=0)
    history = model.fit(x, np.zeros(6), epochs=np.int64(2), batch_size=np.int64(3), verbose=0)
    assert len(history.history["loss"]) == 2  # NumPy integers, as Keras takes them
    src = saved(tmp_path, layers.Flatten(), layers.Dense(2))
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    for extra, match in (("weights/0.npy", r"members \['weights/0.npy'\] appear more than once"), ("notes.txt", r"members minicnn did not write for this model: \['notes.txt'\]")):  # fmt: skip
        bad = tmp_path / "extra.minicnn"
        with zipfile.ZipFile(bad, "w") as zf, pytest.warns(UserWarning) if extra in members else contextlib.nullcontext():  # fmt: skip
            for n, b in members.items():
                zf.writestr(n, b)
            zf.writestr(extra, members.get(extra, b"hello"))
        with pytest.raises(ModelFileError, match=match):
            load_model(bad)
    rewrite(src, tmp_path / "v.minicnn", lambda m, b: m.update(format_version=True))
    with pytest.raises(ModelFileError, match="format version True"):
        load_model(tmp_path / "v.minicnn")
    assert math.isfinite(load_model(src).predict(np.ones((1, 28, 28, 1)), verbose=0).sum())


def test_the_size_check_counts_every_layer_of_a_long_chain():
    """The bytes an architecture needs, worked out from fresh unbuilt layers: each is counted
    (a freed layer's id, reused by the next, once hid its weights from the count, so a file
    could be smaller than its weights and pass the size check by chance)."""
    from minicnn.models import config as model_config

    model = minicnn.Sequential([minicnn.Input((6,)), *(layers.Dense(5) for _ in range(40)), layers.Flatten()])  # fmt: skip
    need, _, _ = model_config.cost({"class_name": "Sequential", "config": model.get_config()})
    assert need == model.count_params() * 4
