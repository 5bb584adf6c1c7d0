"""Callbacks as Keras 3 runs them: every hook, in Keras's order, with Keras's ``logs``.

The expected sequences are written from Keras 3.15.1's source (tag v3.15.1):
- keras/src/backend/torch/trainer.py, ``fit`` lines 251-324: ``on_train_begin()``; per epoch
  ``on_epoch_begin(epoch)``, per batch ``on_train_batch_begin(step)`` and
  ``on_train_batch_end(step, logs)`` (a ``stop_training`` set there breaks out of the epoch,
  which still validates and ends), validation through ``evaluate(callbacks=callbacks)`` when
  ``_should_eval``, ``on_epoch_end(epoch, epoch_logs)``; then
  ``on_train_end(logs=training_logs)``, the last epoch's logs;
- the same file, ``evaluate`` lines 378-388 and ``predict`` lines 438-447 (the test and predict
  hooks; predict's batch logs are ``{"outputs": batch_outputs}``);
- keras/src/callbacks/callback_list.py: every hook passes its logs through
  ``python_utils.pythonify_logs`` (keras/src/utils/python_utils.py lines 165-194), which makes
  ``None`` an empty dict, sorts the keys and turns values into floats, so a callback is handed
  ``{}`` where the trainer passes no logs;
- keras/src/callbacks/callback.py lines 140-172: ``on_train_batch_begin/end`` call the
  ``on_batch_begin/end`` aliases (the keras.io guide's ``LossHistory`` overrides those).
"""

import numpy as np
import pytest
from test_model import quadrants, small_model

from minicnn import callbacks as cbm
from minicnn.callbacks import Callback, CallbackList, LambdaCallback
from minicnn.training import scoring
from minicnn.utils import set_random_seed

HOOKS = [
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_begin",
    "on_predict_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
]
METRICS = ["accuracy", "loss"]


class Recorder(Callback):
    """Records (hook, index or None, logs) for every hook."""

    def __init__(self):
        super().__init__()
        self.calls = []


def _recording(hook):
    def record(self, *args, logs="missing"):
        *index, given = args if logs == "missing" else (*args, logs)
        self.calls.append((hook, index[0] if index else None, given))

    return record


for _hook in HOOKS:
    setattr(Recorder, _hook, _recording(_hook))


def keys(logs):
    if logs is None:
        return None
    return sorted(logs)


def fit_expected(epochs, train_steps, val_steps):
    """Keras's sequence for fit with validation each epoch (the docstring's sources)."""
    train, val = METRICS, ["accuracy", "loss", "val_accuracy", "val_loss"]
    seq = [("on_train_begin", None, [])]
    for e in range(epochs):
        seq.append(("on_epoch_begin", e, []))
        for b in range(train_steps):
            seq += [("on_train_batch_begin", b, []), ("on_train_batch_end", b, train)]
        seq.append(("on_test_begin", None, []))
        for b in range(val_steps):
            seq += [("on_test_batch_begin", b, []), ("on_test_batch_end", b, METRICS)]
        seq.append(("on_test_end", None, METRICS))
        seq.append(("on_epoch_end", e, val))
    seq.append(("on_train_end", None, val))
    return seq


def compiled():
    set_random_seed(0)
    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def toy():
    return quadrants(40, np.random.default_rng(0))


def test_fit_calls_every_hook_in_keras_order_with_keras_logs(toy):
    x, y = toy
    model, rec = compiled(), Recorder()
    history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=0, callbacks=[rec])  # fmt: skip
    got = [(h, i, keys(logs)) for h, i, logs in rec.calls]
    assert got == fit_expected(2, 2, 1)  # 32 samples to train (2 batches), 8 to validate
    assert all(isinstance(logs, dict) for _, _, logs in rec.calls)  # {} where Keras has no logs
    ends = [logs for h, _, logs in rec.calls if h == "on_epoch_end"]
    assert [e["loss"] for e in ends] == history.history["loss"]
    # a batch's logs are the running means of the epoch so far: after its last batch, the epoch's
    last_batch = [logs for h, i, logs in rec.calls if h == "on_train_batch_end" and i == 1]
    assert [b["loss"] for b in last_batch] == [e["loss"] for e in ends]
    assert all(isinstance(v, float) for _, _, logs in rec.calls for v in logs.values())
    assert rec.calls[-1][2] == ends[-1]  # on_train_end gets the last epoch's logs
    assert rec.params == {"verbose": 0, "epochs": 2, "steps": 2}


def test_evaluate_and_predict_call_their_hooks(toy):
    x, y = toy
    model, rec = compiled(), Recorder()
    result = model.evaluate(x, y, batch_size=16, verbose=0, callbacks=[rec], return_dict=True)
    got = [(h, i, keys(logs)) for h, i, logs in rec.calls]
    steps = [(h, b, k) for b in range(3) for h, k in (("on_test_batch_begin", []), ("on_test_batch_end", METRICS))]  # fmt: skip
    assert got == [("on_test_begin", None, []), *steps, ("on_test_end", None, METRICS)]
    assert rec.calls[-1][2] == result == rec.calls[-2][2]  # the last batch's running means
    assert rec.params == {"verbose": 0, "epochs": 1, "steps": 3}

    rec = Recorder()
    out = model.predict(x, batch_size=16, verbose=0, callbacks=[rec])
    got = [(h, i, keys(logs)) for h, i, logs in rec.calls]
    steps = [(h, b, k) for b in range(3) for h, k in (("on_predict_batch_begin", []), ("on_predict_batch_end", ["outputs"]))]  # fmt: skip
    assert got == [("on_predict_begin", None, []), *steps, ("on_predict_end", None, [])]
    batches = [logs["outputs"] for h, _, logs in rec.calls if h == "on_predict_batch_end"]
    assert all(isinstance(b, np.ndarray) for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), out)


def test_on_batch_aliases_are_called_for_train_batches_only(toy):
    """The keras.io guide's LossHistory: on_batch_end records each training batch's loss."""
    x, y = toy

    class LossHistory(Callback):
        def on_train_begin(self, logs=None):
            self.losses, self.begun = [], []

        def on_batch_begin(self, batch, logs=None):
            self.begun.append(batch)

        def on_batch_end(self, batch, logs=None):
            self.losses.append(logs.get("loss"))

    model, rec = compiled(), LossHistory()
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=0, callbacks=[rec])
    model.evaluate(x, y, verbose=0, callbacks=[rec])  # test batches do not reach the aliases
    assert rec.begun == [0, 1, 0, 1] and len(rec.losses) == 4
    assert all(isinstance(v, float) for v in rec.losses)


def test_batch_logs_are_read_only_when_a_callback_reads_them(toy, monkeypatch):
    """Reading the running means syncs a GPU; with no batch hook overridden they are read once
    per epoch and once per validation pass, as many as the epochs' own logs need."""
    x, y = toy
    reads = []
    real = scoring.Totals.logs
    monkeypatch.setattr(scoring.Totals, "logs", lambda self: reads.append(1) or real(self))
    epoch_end = LambdaCallback(on_epoch_end=lambda epoch, logs: None)
    compiled().fit(x, y, batch_size=8, epochs=2, validation_split=0.2, verbose=0, callbacks=[epoch_end])  # fmt: skip
    assert len(reads) == 2 * 2  # train + validation logs, per epoch; none for the 4 x 2 batches
    reads.clear()
    batch_end = LambdaCallback(on_train_batch_end=lambda batch, logs: None)
    compiled().fit(x, y, batch_size=8, epochs=2, validation_split=0.2, verbose=0, callbacks=[batch_end])  # fmt: skip
    assert len(reads) == 2 * 2 + 2 * 4


def test_stop_training_from_a_batch_stops_after_that_batch(toy):
    x, y = toy

    class StopAt(Recorder):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs=logs)
            if batch == 1:
                self.model.stop_training = True

    model, rec = compiled(), StopAt()
    history = model.fit(x, y, batch_size=8, epochs=3, validation_split=0.2, verbose=0, callbacks=[rec])  # fmt: skip
    hooks = [h for h, *_ in rec.calls]
    assert hooks.count("on_train_batch_end") == 2 and model.optimizer.iterations == 2
    # as in Keras, the epoch still validates and ends, and training ends after it
    assert hooks[-4:] == ["on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end"]
    assert history.epoch == [0] and set(history.history) == {"accuracy", "loss", "val_accuracy", "val_loss"}  # fmt: skip


def test_lambda_callback_takes_keras_arguments_and_other_hooks(toy):
    x, y = toy
    seen = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: seen.append(("begin", logs)),
        on_epoch_end=lambda epoch, logs: seen.append(("epoch", epoch, sorted(logs))),
        on_train_batch_end=lambda batch, logs: seen.append(("batch", batch, sorted(logs))),
        on_test_end=lambda logs: seen.append(("test", sorted(logs))),
    )
    compiled().fit(x, y, batch_size=32, epochs=1, validation_split=0.2, verbose=0, callbacks=[cb])
    assert seen == [("begin", {}), ("batch", 0, METRICS), ("test", METRICS), ("epoch", 0, ["accuracy", "loss", "val_accuracy", "val_loss"])]  # fmt: skip
    with pytest.raises(ValueError, match="on_epoch_ends"):
        LambdaCallback(on_epoch_ends=print)


def test_callback_list_adds_history_and_progbar_after_the_users_callbacks():
    rec = Recorder()
    cbs = CallbackList([rec], add_history=True, add_progbar=True, verbose=1, epochs=1, steps=2)
    assert [type(c).__name__ for c in cbs.callbacks] == ["Recorder", "History", "ProgbarLogger"]
    assert rec.params == {"verbose": 1, "epochs": 1, "steps": 2}
    with pytest.raises(ValueError, match="Callback instances"):
        CallbackList([print])


def test_pythonify_logs_is_kerass():
    logs = cbm.base.pythonify_logs({"b": np.float32(0.5), "a": np.ones((2, 3)), "c": {"d": np.array([[2.0]])}})  # fmt: skip
    assert list(logs) == ["a", "b", "d"]  # sorted, the nested dict flattened in its place
    assert logs["b"] == 0.5 and type(logs["b"]) is float and logs["d"] == 2.0
    assert logs["a"].shape == (2, 3)
    assert cbm.base.pythonify_logs(None) == {}


def test_fit_progress_bar_is_a_progbar_logger(toy, capsys):
    x, y = toy
    model = compiled()
    model.fit(x, y, batch_size=16, epochs=1, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        "3/3 ━━━━━━━━━━━━━━━━━━━━ "
    )  # Keras prints "Epoch 1/1" for epochs > 1 only
    model.fit(x, y, batch_size=16, epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[1].startswith("3/3 - ") and "━" not in out[1]
    assert " - loss: " in out[1] and len(out) == 4
    model.evaluate(x, y, batch_size=16, verbose=1)
    assert capsys.readouterr().out.startswith("3/3 ━")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


# -- ModelCheckpoint, BackupAndRestore, TensorBoard ---------------------------------------------


def test_model_checkpoint_every_n_batches(toy, tmp_path):
    from minicnn import load_checkpoint
    from minicnn.callbacks import ModelCheckpoint

    x, y = toy
    cb = ModelCheckpoint(tmp_path / "c-{epoch}-{batch}-{loss:.1f}.minicnn", save_freq=2)
    compiled().fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[cb])  # 5 batches an epoch
    names = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir())
    assert names == ["c-1-2", "c-1-4", "c-2-1", "c-2-3", "c-2-5"]  # Keras counts across epochs
    mid = load_checkpoint(next(tmp_path.glob("c-2-3-*")))
    assert mid.epoch == 1 and mid.model.optimizer.iterations == 8  # 1 epoch done, 3 of the next
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint(tmp_path / "c.minicnn", save_freq="batch")


def test_model_checkpoint_initial_value_threshold_and_mode(toy, tmp_path):
    from minicnn.callbacks import ModelCheckpoint

    x, y = toy
    never = ModelCheckpoint(tmp_path / "never.minicnn", monitor="loss", save_best_only=True, initial_value_threshold=0.0)  # fmt: skip
    high = ModelCheckpoint(tmp_path / "max-{epoch}.minicnn", monitor="loss", mode="max", save_best_only=True)  # fmt: skip
    history = compiled().fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[never, high])
    assert not (tmp_path / "never.minicnn").exists() and never.best == 0.0
    losses = history.history["loss"]
    kept = [e + 1 for e in range(3) if losses[e] == max(losses[: e + 1])]
    assert sorted(p.name for p in tmp_path.glob("max-*")) == [f"max-{e}.minicnn" for e in kept]


BACKUP_SCRIPT = """
import json, os, signal, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_faults import data, new_model
from minicnn.callbacks import BackupAndRestore, Callback, EarlyStopping
from minicnn.utils import set_random_seed

mode, backup, out = sys.argv[1:4]

class Kill(Callback):  # the process dies in the middle of epoch 3
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 2 and batch == 2:
            os.kill(os.getpid(), signal.SIGKILL)

x, y = data()
set_random_seed(7 if mode != "resume" else 99)  # a rerun's own seed must not matter
model = new_model()
stop = EarlyStopping(monitor="val_loss", patience=10)
callbacks = [BackupAndRestore(backup, delete_checkpoint=False), stop] + ([Kill()] if mode == "broken" else [])
history = model.fit(x, y, batch_size=32, epochs=5, validation_split=0.25, verbose=0, callbacks=callbacks)
np.savez(out, *model.get_weights())
json.dump({{"epoch": history.epoch, "history": history.history, "iterations": model.optimizer.iterations, "wait": stop.wait}}, open(out + ".json", "w"))
"""


def test_backup_and_restore_resumes_a_killed_fit_bit_exactly(tmp_path):
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(BACKUP_SCRIPT.format(tests=os.path.dirname(__file__)))

    def run(mode, backup, out):
        return subprocess.run([sys.executable, str(script), mode, str(tmp_path / backup), str(tmp_path / out)], capture_output=True, text=True, timeout=300)  # fmt: skip

    full = run("full", "b-full", "full.npz")
    assert full.returncode == 0, full.stderr
    broken = run("broken", "b", "never.npz")
    assert broken.returncode == -9 and not (tmp_path / "never.npz").exists()
    assert (tmp_path / "b" / "latest.minicnn").exists()
    resumed = run("resume", "b", "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr
    a, b = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resumed.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files) and len(a.files) == 4
    fa, fb = (json.loads((tmp_path / f"{n}.npz.json").read_text()) for n in ("full", "resumed"))
    assert fb["epoch"] == [2, 3, 4] and fa["iterations"] == fb["iterations"] == 5 * 5
    assert {k: v[2:] for k, v in fa["history"].items()} == fb["history"]  # Keras: the epochs run
    assert fa["wait"] == fb["wait"]  # EarlyStopping took up its state too


def test_backup_and_restore_files(toy, tmp_path):
    from minicnn.callbacks import BackupAndRestore

    x, y = toy
    keep = BackupAndRestore(tmp_path / "keep", double_checkpoint=True, delete_checkpoint=False)
    gone = BackupAndRestore(tmp_path / "gone")
    model = compiled()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[keep, gone])
    assert not (tmp_path / "gone").exists()  # removed when fit ends normally, as in Keras
    assert sorted(p.name for p in (tmp_path / "keep").iterdir()) == ["latest.minicnn", "latest.minicnn.bkp"]  # fmt: skip
    # a fit of as many epochs with the same backup has nothing left to run
    again = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[keep])
    assert again.epoch == [] and model.optimizer.iterations == 10
    (tmp_path / "keep" / "latest.minicnn").write_bytes(b"damaged")
    fresh = compiled()
    with pytest.warns(UserWarning, match="restoring the previous backup"):
        history = fresh.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[keep])
    assert history.epoch == [1] and fresh.optimizer.iterations == 10  # from epoch 1's backup
    with pytest.raises(ValueError, match="backup_dir"):
        BackupAndRestore("")


def test_tensorboard_without_its_package_fails_naming_it(monkeypatch, tmp_path):
    import importlib.util

    from minicnn.callbacks import TensorBoard

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))  # fmt: skip
    with pytest.raises(ImportError, match="tensorboard or the tensorboardX package"):
        TensorBoard(tmp_path)
    with pytest.raises(NotImplementedError, match="histogram_freq"):
        TensorBoard(tmp_path, histogram_freq=1)


@pytest.mark.parametrize("package", ["tensorboardX", "tensorboard"])
def test_tensorboard_writes_keras_scalars(toy, tmp_path, monkeypatch, package):
    """Runs where tensorboard (and tensorboardX) are installed: neither is a dependency."""
    import importlib.util

    loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
    pytest.importorskip(package)
    from minicnn.callbacks import TensorBoard, loggers

    other = {"tensorboardX": "tensorboard", "tensorboard": "tensorboardX"}[package]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == other else real(name, *a))  # fmt: skip
    assert loggers._writer_package() == package

    x, y = toy
    model = compiled()
    history = model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=0, callbacks=[TensorBoard(tmp_path, update_freq=1)])  # fmt: skip

    def scalars(folder):
        out = {}
        for path in sorted((tmp_path / folder).iterdir()):
            for event in loader.EventFileLoader(str(path)).Load():
                for v in event.summary.value:
                    value = v.simple_value if v.HasField("simple_value") else None
                    if value is None and v.tensor.float_val:
                        value = v.tensor.float_val[0]
                    if value is not None:
                        out.setdefault(v.tag, []).append((event.step, value))
        return out

    train, val = scalars("train"), scalars("validation")
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(history.history["loss"])
    assert [s for s, _ in train["epoch_loss"]] == [0, 1] and len(train["batch_loss"]) == 4
    assert [v for _, v in val["epoch_accuracy"]] == pytest.approx(history.history["val_accuracy"])
    assert "epoch_learning_rate" in train and "evaluation_loss_vs_iterations" in val
