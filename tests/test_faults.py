"""Faults a user meets, and what minicnn guarantees for each.

Each test names a fault and checks the promise made about it:
- a run stopped after epoch k and resumed from its checkpoint ends bit-for-bit where the
  unbroken run ends (Adam moments, step count, history and random generator all restored);
- a crash while a checkpoint is written leaves the previous file whole and no temp file behind;
- Ctrl-C stops fit at the end of the step under way, names the last checkpoint and returns the
  History; the CLI then says how to resume;
- a non-finite loss stops training before the bad step is applied, naming the epoch, the step and
  the first layer whose output went non-finite;
- predict/evaluate on 60,000 images hold memory to a few batches, not the data set.
File readers under random and mutated bytes are in test_fuzz_readers.py; bad arguments and inputs
in test_errors.py.
"""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from test_model import quadrants, small_model

import minicnn
from minicnn import load_checkpoint, load_model
from minicnn.callbacks import Callback, ModelCheckpoint, TerminateOnNaN
from minicnn.layers import Conv2D, Dense, Flatten
from minicnn.optimizers import Adam
from minicnn.saving import ModelFileError
from minicnn.utils import set_random_seed, to_categorical

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # the faults


def data(n=192):
    x, labels = quadrants(n, np.random.default_rng(0))
    return x, to_categorical(labels, 4)


def new_model():
    """Dropout in the model, so resuming must also restore the random generator."""
    model = small_model(dropout=0.25)
    model.compile(Adam(learning_rate=3e-3), "categorical_crossentropy", metrics=["accuracy"])
    return model


def weights_equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


# -- checkpoints and resume --------------------------------------------------------------------


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resumed_run_is_bit_exact(tmp_path, stop_after):
    x, y = data()
    set_random_seed(7)
    full = new_model()
    full_history = full.fit(x, y, batch_size=32, epochs=3, validation_split=0.25, verbose=0)

    set_random_seed(7)
    part = new_model()
    path = tmp_path / "ckpt.minicnn"
    part.fit(
        x,
        y,
        batch_size=32,
        epochs=stop_after,
        validation_split=0.25,
        verbose=0,
        callbacks=[ModelCheckpoint(path)],
    )
    del part
    set_random_seed(999)  # a new process: whatever the generator holds now must not matter
    checkpoint = load_checkpoint(path)
    assert checkpoint.epoch == stop_after
    resumed = checkpoint.model
    history = resumed.fit(
        x,
        y,
        batch_size=32,
        epochs=3,
        validation_split=0.25,
        verbose=0,
        initial_epoch=checkpoint.epoch,
    )

    assert weights_equal(resumed, full)
    assert resumed.optimizer.iterations == full.optimizer.iterations == 3 * 5
    for ms, mf in zip(resumed.optimizer.slots, full.optimizer.slots):
        assert all(np.array_equal(ms[k], mf[k]) for k in ("m", "v"))
    assert history.history == full_history.history  # the History covers the whole run
    assert history.epoch == [0, 1, 2]


def test_resume_without_the_generator_state_would_differ(tmp_path):
    """The control for the test above: load_model restores weights and Adam but not the random
    generator, and the run then drifts, so the bit-exact test really checks the generator."""
    x, y = data()
    set_random_seed(7)
    full = new_model()
    full.fit(x, y, batch_size=32, epochs=2, verbose=0)
    set_random_seed(7)
    part = new_model()
    part.fit(
        x,
        y,
        batch_size=32,
        epochs=1,
        verbose=0,
        callbacks=[ModelCheckpoint(tmp_path / "c.minicnn")],
    )
    set_random_seed(999)
    model = load_model(tmp_path / "c.minicnn")
    assert model.optimizer.iterations == 6  # Adam's state does come back
    model.fit(x, y, batch_size=32, epochs=2, initial_epoch=1, verbose=0)
    assert not weights_equal(model, full)


def test_checkpoint_names_and_save_best_only(tmp_path):
    model = new_model()
    model.build((None, 8, 8, 1))
    cb = ModelCheckpoint(tmp_path / "best-{epoch:02d}-{val_loss:.2f}.minicnn", save_best_only=True)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, val_loss in enumerate([1.0, 2.0, 0.5, 0.5]):
        cb.on_epoch_end(epoch, {"loss": 0.0, "val_loss": val_loss})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best-01-1.00.minicnn",
        "best-03-0.50.minicnn",
    ]
    assert cb.best == 0.5 and cb.last_saved.endswith("best-03-0.50.minicnn")

    acc = ModelCheckpoint(tmp_path / "acc.minicnn", monitor="val_accuracy", save_best_only=True)
    assert acc.mode == "max"
    missing = ModelCheckpoint(tmp_path / "none.minicnn", monitor="val_loss", save_best_only=True)
    missing.set_model(model)
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        missing.on_epoch_end(0, {"loss": 1.0})
    assert (tmp_path / "none.minicnn").exists()  # Keras warns and saves all the same


def test_resumed_run_keeps_its_best_value(tmp_path):
    x, y = data(96)
    model = new_model()
    model.fit(
        x,
        y,
        epochs=1,
        validation_split=0.25,
        verbose=0,
        callbacks=[ModelCheckpoint(tmp_path / "c.minicnn", save_best_only=True)],
    )
    first = model.history.history["val_loss"][0]
    checkpoint = load_checkpoint(tmp_path / "c.minicnn")
    cb = ModelCheckpoint(tmp_path / "c.minicnn", save_best_only=True)
    checkpoint.model.fit(x, y, epochs=1, initial_epoch=1, verbose=0, callbacks=[cb])  # no epochs
    assert cb.best == first


def test_model_file_is_not_a_checkpoint(tmp_path):
    model = new_model()
    model.build((None, 8, 8, 1))
    model.save(tmp_path / "m.minicnn")
    with pytest.raises(ModelFileError, match="is a model file, not a checkpoint"):
        load_checkpoint(tmp_path / "m.minicnn")


def rewrite(src, dst, change):
    """Copy a model file, letting ``change(meta, members)`` edit its JSON and member bytes."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(members.pop("model.json"))
    change(meta, members)
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("model.json", json.dumps(meta))
        for n, b in members.items():
            zf.writestr(n, b)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m, b: m["training"].update(epoch=-1), "training state is invalid"),
        (lambda m, b: m["training"].update(rng={"bit_generator": "MT19937"}), "training state"),
        (lambda m, b: m["training"]["history"].update(loss=[1.0] * 5), "must hold 1 values"),
        (
            lambda m, b: m["optimizer_state"]["slots"].pop(),
            "keeps 8 slot arrays for this model, the file 7",
        ),
        (lambda m, b: m["optimizer_state"].update(iterations="7"), "step count '7' is invalid"),
        (lambda m, b: m["optimizer_state"]["slots"][0].update(slot="v"), "expected conv2d"),
        (lambda m, b: b.pop("optimizer/3.npy"), "optimizer/3.npy is missing"),
        (lambda m, b: b.update({"optimizer/0.npy": b["optimizer/2.npy"]}), "should be a float32"),
    ],
)
def test_damaged_checkpoints_are_refused_before_anything_changes(tmp_path, change, match):
    x, y = data(64)
    model = new_model()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c.minicnn")])
    rewrite(tmp_path / "c.minicnn", tmp_path / "bad.minicnn", change)
    state = minicnn.backend.rng().bit_generator.state
    with pytest.raises(ModelFileError, match=match):
        load_checkpoint(tmp_path / "bad.minicnn")
    assert minicnn.backend.rng().bit_generator.state == state  # the generator was not touched


def int_npy(shape):
    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, dtype=np.int32))
    return buf.getvalue()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m, b: m["architecture"]["config"]["layers"][1].update(class_name="Conv3D"),
         "Unknown layer.*Conv3D"),
        (lambda m, b: b.pop("weights/1.npy"), "weights/1.npy is missing"),
        (lambda m, b: m["weights"].append(dict(m["weights"][-1])),
         "the architecture has 4 weight arrays, the file 5"),
        (lambda m, b: b.update({"weights/1.npy": int_npy((8,))}),
         r"weights/1.npy should be a float32 or float64 array of shape \(8,\). Received: int32"),
        (lambda m, b: m.update(format_version=3), "format version 3.*upgrade minicnn"),
        (lambda m, b: m.update(format="something.else"), "is not a minicnn model file"),
        (lambda m, b: m["weights"][0].update(name="bias"), "weight 0 is .*/bias, expected .*/kernel"),
    ],
)  # fmt: skip
def test_damaged_model_files_get_their_own_errors(tmp_path, change, match):
    model = new_model()
    model.build((None, 8, 8, 1))
    model.save(tmp_path / "m.minicnn")
    rewrite(tmp_path / "m.minicnn", tmp_path / "bad.minicnn", change)
    with pytest.raises(ModelFileError, match=match):
        load_model(tmp_path / "bad.minicnn")


@pytest.mark.parametrize(
    "offset, value, match",
    [
        (8, 0x01, "stored uncompressed and unencrypted"),  # flag bits: encrypted
        (8, 0x40, "stored uncompressed and unencrypted"),  # strong encryption
        (10, 99, "stored uncompressed and unencrypted"),  # an unknown compression method
        (6, 99, "is not a minicnn model file"),  # "needs zip version 9.9"
    ],
)
def test_zip_features_minicnn_never_writes_are_refused(tmp_path, offset, value, match):
    """Found by fuzzing: zipfile answers these with NotImplementedError or RuntimeError."""
    model = new_model()
    model.build((None, 8, 8, 1))
    model.save(tmp_path / "m.minicnn")
    data = bytearray((tmp_path / "m.minicnn").read_bytes())
    entry = data.index(b"PK\x01\x02")  # model.json's central directory entry comes first
    data[entry + offset : entry + offset + 2] = value.to_bytes(2, "little")
    (tmp_path / "bad.minicnn").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=match):
        load_model(tmp_path / "bad.minicnn")


def test_crash_while_writing_leaves_the_last_checkpoint_whole(tmp_path, monkeypatch):
    x, y = data(64)
    model = new_model()
    path = tmp_path / "c.minicnn"
    model.fit(x, y, epochs=1, verbose=0, callbacks=[ModelCheckpoint(path)])
    before = path.read_bytes()

    calls = []

    def dies_on_third_array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("No space left on device")
        return write_array(*args, **kwargs)

    write_array = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", dies_on_third_array)
    with pytest.raises(OSError, match="No space left"):
        model.fit(x, y, epochs=2, initial_epoch=1, verbose=0, callbacks=[ModelCheckpoint(path)])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.minicnn"]  # no temp file left
    assert load_checkpoint(path).epoch == 1


# -- Ctrl-C --------------------------------------------------------------------------------------

CTRL_C_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    from test_faults import data, new_model
    from minicnn.callbacks import Callback, ModelCheckpoint

    class Announce(Callback):
        def on_epoch_end(self, epoch, logs=None):
            print("epoch done", epoch + 1, flush=True)

    x, y = data(4096)
    model = new_model()
    history = model.fit(x, y, batch_size=8, epochs=1000, verbose=0,
                        callbacks=[ModelCheckpoint({ckpt!r}), Announce()])
    print("returned", len(history.epoch), history.stopped, flush=True)
    print("finite", all(np.isfinite(w).all() for w in model.get_weights()), flush=True)
""")


def test_ctrl_c_stops_at_a_step_end_and_returns_the_history(tmp_path):
    ckpt = tmp_path / "c.minicnn"
    script = CTRL_C_SCRIPT.format(tests=os.path.dirname(__file__), ckpt=str(ckpt))
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        line = proc.stdout.readline()  # blocks until the first epoch's checkpoint is written
        assert line.startswith("epoch done 1"), line + proc.stderr.read()
        time.sleep(0.02)  # into the second epoch (an epoch takes ~0.3 s here now)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "returned 1 interrupted" in out or "returned 2 interrupted" in out, out
    assert "finite True" in out
    assert "Training stopped: interrupted after" in err and f"last checkpoint is {ckpt}" in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["c.minicnn"]  # nothing half-written
    assert load_checkpoint(ckpt).epoch >= 1


def test_ctrl_c_in_the_cli_says_how_to_resume(tmp_path, mnist_npz):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "minicnn.cli",
            "train",
            "--data",
            str(mnist_npz),
            "--epochs",
            "50",
            "--out",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MINICNN_DATA": str(tmp_path / "cache")},
    )
    try:
        while not (tmp_path / "run" / "checkpoint.minicnn").exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "resume with: minicnn train --recipe seed" in err and "Traceback" not in err
    assert f"--out {tmp_path / 'run'} --resume {tmp_path / 'run' / 'checkpoint.minicnn'}" in err
    assert not (tmp_path / "run" / "model.minicnn").exists()  # no final model from a cut run


@pytest.fixture
def mnist_npz(tmp_path):
    """A small stand-in for MNIST (random digits), as a file the loader reads."""
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (256, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 256, dtype=np.uint8),
        x_test=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 64, dtype=np.uint8),
    )
    return path


def test_cli_resume_matches_an_unbroken_run(tmp_path, mnist_npz):
    def train(*args):
        r = subprocess.run(
            [sys.executable, "-m", "minicnn.cli", "train", "--data", str(mnist_npz), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "MINICNN_DATA": str(tmp_path / "cache")},
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    train("--epochs", "2", "--out", str(tmp_path / "a"))
    train("--epochs", "1", "--out", str(tmp_path / "b"))
    out = train(
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "b"),
        "--resume",
        str(tmp_path / "b" / "checkpoint.minicnn"),
    )
    assert "Resuming" in out and "after epoch 1" in out
    a, b = (
        load_model(tmp_path / "a" / "model.minicnn"),
        load_model(tmp_path / "b" / "model.minicnn"),
    )
    assert weights_equal(a, b)
    ha = json.loads((tmp_path / "a" / "history.json").read_text())
    hb = json.loads((tmp_path / "b" / "history.json").read_text())
    assert ha["val_loss"] == hb["val_loss"] and len(hb["loss"]) == 2


# -- non-finite values ---------------------------------------------------------------------------


class Blowup(Callback):
    """After step ``at``, replaces the Dense kernel with ``w -> change(w)`` (finite values whose
    forward or backward pass overflows) and keeps a copy of the weights it leaves."""

    def __init__(self, at, change):
        super().__init__()
        self.at, self.change, self.saved = at, change, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.at:
            w = self.model.layers[-1].params["kernel"]
            w[...] = self.change(w)
            self.saved = [w.copy() for w in self.model.get_weights()]


HUGE = lambda w: np.sign(w) * np.finfo(np.float32).max  # noqa: E731  (x @ w overflows)
LARGE = lambda w: w * np.float32(1e36)  # noqa: E731  (finite forward, gradients ~1e37)


def test_non_finite_loss_stops_before_the_bad_step(capsys):
    x, y = data(192)
    model = new_model()
    blowup = Blowup(at=2, change=HUGE)
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[blowup])
    err = capsys.readouterr().err
    assert history.stopped == "non-finite" and history.epoch == []
    assert "step 4 of epoch 1" in err and f'layer "{model.layers[-1].name}" (Dense)' in err
    assert "keeps its weights from before this step" in err
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), blowup.saved))
    assert model.optimizer.iterations == 3


def test_an_update_that_overflows_is_undone(capsys):
    """Finite gradients of ~1e37 overflow Adam's squared average; the step is rolled back."""
    x, y = data(192)
    model = new_model()
    history = model.fit(
        x, y, batch_size=32, epochs=3, verbose=0, callbacks=[Blowup(at=2, change=LARGE)]
    )
    assert history.stopped == "non-finite"
    assert "Adam update made" in history.message and "was undone" in history.message
    assert all(np.isfinite(w).all() for w in model.get_weights())
    steps = int(history.message.split("step ")[1].split(" ")[0])
    assert model.optimizer.iterations == steps - 1
    assert all(np.isfinite(a).all() for s in model.optimizer.slots for a in s.values())


def test_without_the_check_the_weights_go_bad():
    """The control: with terminate_on_nan=False the same fault ruins the weights."""
    x, y = data(192)
    model = new_model()
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=1,
        verbose=0,
        callbacks=[Blowup(at=2, change=HUGE)],
        terminate_on_nan=False,
    )
    assert not all(np.isfinite(w).all() for w in model.get_weights())
    model = new_model()
    history = model.fit(
        x,
        y,
        batch_size=32,
        epochs=1,
        verbose=0,
        callbacks=[Blowup(at=2, change=HUGE), TerminateOnNaN()],
        terminate_on_nan=False,
    )
    assert history.stopped == "non-finite"  # Keras's callback turns the check back on


def test_first_non_finite_layer_is_named():
    model = minicnn.Sequential(
        [
            Conv2D(4, 3, activation="relu", input_shape=(6, 6, 1)),
            Conv2D(4, 3, activation="relu"),
            Flatten(),
            Dense(3),
        ]
    )
    model.compile("sgd", "categorical_crossentropy")
    w = model.get_weights()
    w[2][0, 0, 0, 0] = np.inf  # the second convolution's kernel
    model.set_weights(w)
    x = np.random.default_rng(0).random((8, 6, 6, 1), dtype=np.float32)
    history = model.fit(x, to_categorical(np.arange(8) % 3, 3), verbose=0)
    assert 'the output of layer "conv2d' in history.message
    assert model.layers[1].name in history.message and "step 1 of epoch 1" in history.message


# -- memory --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", ["numpy", "auto"])
def test_predict_and_evaluate_memory_is_bounded_by_the_batch(monkeypatch, kernels):
    """60,000 images: im2col of the whole set would be 60,000 x 26 x 26 x 9 floats (1.46 GB).
    tracemalloc sees NumPy's allocations (numba's own buffers are not counted, hence the
    pure-NumPy case too); the bound is a few batches of im2col and activations."""
    monkeypatch.setenv("MINICNN_KERNELS", kernels)
    model = minicnn.Sequential(
        [
            Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)),
            Flatten(),
            Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((60_000, 28, 28, 1), dtype=np.float32)  # 188 MB
    y = np.arange(60_000) % 10
    model.predict(x[:256], verbose=0)  # warm up
    for run in (
        lambda: model.predict(x, batch_size=256, verbose=0),
        lambda: model.evaluate(x, y, batch_size=256, verbose=0),
    ):
        tracemalloc.start()
        run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # predict's output is 60,000 x 10 floats (2.4 MB), kept twice while it is joined
        assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MiB"
