"""Data-parallel training over MPI (minicnn.distributed). Every MPI job runs as a subprocess of
an ordinary test, under a timeout, so a failing rank can never hang pytest.

Skipped without mpi4py and mpiexec, unless MINICNN_REQUIRE_MPI=1 (CI sets it)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from minicnn.datasets import mnist

BIN = Path(sys.executable).parent
MPIEXEC = shutil.which("mpiexec", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def _mpi_missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e '.[distributed]')"
    return None if MPIEXEC else "no mpiexec on PATH"


@pytest.fixture(autouse=True)
def _need_mpi():
    reason = _mpi_missing()
    if reason and os.environ.get("MINICNN_REQUIRE_MPI") == "1":
        pytest.fail(f"MINICNN_REQUIRE_MPI=1 but {reason}")
    if reason:
        pytest.skip(reason)


def launch(n, args, tmp_path, timeout=120, env=None):
    """``mpiexec -n n python args...`` (n=0: no mpiexec at all) -> (returncode, output, seconds)."""
    cmd = [sys.executable, *args] if n == 0 else [MPIEXEC, "-n", str(n), sys.executable, *args]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def script(tmp_path, body: str) -> str:
    """A job file: imports, MODEL's helpers, then ``body``."""
    path = tmp_path / "job.py"
    head = "import json, os, sys\nimport numpy as np\nimport minicnn\n"
    head += "from minicnn.distributed import DataParallel, install_excepthook\n"
    path.write_text(head + MODEL + textwrap.dedent(body))
    return str(path)


def reports(folder):
    """The rows each rank's ``report`` wrote, by rank; the files are removed after reading."""
    rows = []
    for path in sorted(folder.glob("report*.json")):
        rows.append(json.loads(path.read_text()))
        path.unlink()
    return sorted(rows, key=lambda r: r["rank"])


MODEL = """
import json
import numpy as np
import minicnn
from minicnn import Sequential
from minicnn.layers import Conv2D, Dense, Dropout, Flatten
from minicnn.utils import set_random_seed

def build(dropout=0.0):
    set_random_seed(3)
    m = Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), Flatten(),
                    Dropout(dropout), Dense(5, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m

def build_graph():  # a functional model: two branches and an add (no BatchNorm: its batch
    set_random_seed(3)  # statistics are each rank's own share's, as in Keras without SyncBN)
    inputs = minicnn.Input((8, 8, 1))
    a = Conv2D(4, 3, padding="same", name="a")(inputs)
    b = Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = Flatten()(minicnn.layers.add([a, b]))
    m = minicnn.Model(inputs, Dense(5, activation="softmax")(x))
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m

def report(rank, row):  # one file per rank: their stdout lines would interleave
    with open(f"report{rank}.json", "w") as f:
        json.dump({"rank": rank, **row}, f)

def data(n):
    g = np.random.default_rng(7)
    return g.random((n, 8, 8, 1)), g.integers(0, 5, n)
"""


@pytest.mark.parametrize("ranks", [1, 2])
def test_gradient_average_is_exact(tmp_path, ranks):
    """Rank r holds gradients full(r + 1), a loss r + 1 and n_r samples (one rank none at all):
    every rank ends with exactly sum(g_r n_r) / sum(n_r)."""
    job = script(
        tmp_path,
        """
        minicnn.set_floatx("float64")
        strategy = DataParallel()
        install_excepthook(strategy.comm)
        model = build()
        model.build((8, 8, 1))
        step = strategy.make_step(model, False)
        r = strategy.rank
        n = [1, 3][r] if strategy.size == 2 else 2
        shapes = [p.shape for p in (l.params[k] for l, k in model.trainable_params())]
        grads = [np.full(s, float(r + 1)) * (i + 1) for i, s in enumerate(shapes)]
        loss, avg = step.reduce_gradients(grads, np.float64(r + 1), n)
        report(r, {"loss": float(loss), "avg": [float(a.flat[0]) for a in avg],
                   "uniform": all(bool((a == a.flat[0]).all()) for a in avg)})
        """,
    )
    code, out, _ = launch(ranks, [job], tmp_path)
    assert code == 0, out
    rows = reports(tmp_path)
    assert len(rows) == ranks
    counts = [1, 3] if ranks == 2 else [2]
    for row in rows:
        expected_loss = sum((r + 1) * n for r, n in enumerate(counts)) / sum(counts)
        assert row["loss"] == expected_loss and row["uniform"]
        for i, a in enumerate(row["avg"]):
            g = [(r + 1) * (i + 1) for r in range(ranks)]
            assert a == sum(gr * n for gr, n in zip(g, counts)) / sum(counts)  # exact


@pytest.mark.parametrize("builder", ["build", "build_graph"])
@pytest.mark.parametrize("n", [51, 49], ids=["last-split-1-2", "last-split-0-1"])
def test_two_ranks_match_one_process_with_twice_the_batch(tmp_path, n, builder):
    """2 ranks with batch 4 each against 1 process with batch 8, no shuffle, no Dropout, two
    epochs: the same weights to float64 rounding. 51 and 49 samples leave a last global batch
    of 3 and 1 (split 1 + 2, and 0 + 1: one rank has nothing)."""
    job = script(
        tmp_path,
        f"""
        minicnn.set_floatx("float64")
        strategy = DataParallel()
        install_excepthook(strategy.comm)
        model = {builder}()
        x, y = data({n})
        h = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, distribute=strategy)
        np.savez(f"w{{strategy.rank}}.npz", *model.get_weights())
        report(strategy.rank, {{"loss": h.history["loss"], "acc": h.history["accuracy"]}})
        """,
    )
    code, out, _ = launch(2, [job], tmp_path)
    assert code == 0, out
    rows = {r["rank"]: r for r in reports(tmp_path)}
    import minicnn

    minicnn.set_floatx("float64")
    ns = {}
    exec(MODEL, ns)
    model = ns[builder]()
    x, y = ns["data"](n)
    h = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for rank in (0, 1):
        got = np.load(tmp_path / f"w{rank}.npz")
        for i, w in enumerate(model.get_weights()):
            np.testing.assert_allclose(got[f"arr_{i}"], w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(rows[rank]["loss"], h.history["loss"], rtol=1e-9)
        assert rows[rank]["acc"] == h.history["accuracy"]  # (sum, count): exact


def test_ranks_end_identical_and_draw_their_own_dropout(tmp_path):
    """With shuffling and Dropout, both ranks end with bit-identical weights; their Dropout
    streams differ from each other, and are the same again in a second run."""
    job = script(
        tmp_path,
        """
        strategy = DataParallel()
        install_excepthook(strategy.comm)
        model = build(dropout=0.5)
        x, y = data(64)
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, distribute=strategy)
        w = np.concatenate([a.ravel() for a in model.get_weights()])
        draws = minicnn.backend.rng().random(3).tolist()  # this rank's stream after training
        report(strategy.rank, {"w": w.tobytes().hex(), "draws": draws})
        """,
    )
    runs = []
    for _ in range(2):
        code, out, _ = launch(2, [job], tmp_path)
        assert code == 0, out
        runs.append(reports(tmp_path))
    first = runs[0]
    assert first[0]["w"] == first[1]["w"]
    assert first[0]["draws"] != first[1]["draws"]
    assert [r["draws"] for r in runs[0]] == [r["draws"] for r in runs[1]]
    assert [r["w"] for r in runs[0]] == [r["w"] for r in runs[1]]


@pytest.mark.parametrize("how", ["raises", "killed"])
def test_a_failing_rank_ends_the_job_fast(tmp_path, how):
    act = "raise RuntimeError('rank 1 fails')" if how == "raises" else "os.kill(os.getpid(), 9)"
    job = script(
        tmp_path,
        f"""
        from minicnn.callbacks import Callback
        strategy = DataParallel()
        install_excepthook(strategy.comm)

        class Fail(Callback):
            def on_train_batch_end(self, batch, logs=None):
                if strategy.rank == 1 and batch == 2:
                    {act}

        model = build()
        x, y = data(4000)
        model.fit(x, y, batch_size=4, epochs=50, verbose=0, callbacks=[Fail()], distribute=strategy)
        """,
    )
    # a job left waiting on the dead rank would run 50 epochs: the timeout (TimeoutExpired)
    # fails the test then; the job measured ends in about a second
    code, out, _ = launch(2, [job], tmp_path, timeout=30)
    assert code != 0
    if how == "raises":
        assert "rank 1 fails" in out


def test_only_rank_0_writes_files(tmp_path):
    job = script(
        tmp_path,
        """
        from minicnn.callbacks import ModelCheckpoint
        strategy = DataParallel()
        install_excepthook(strategy.comm)
        model = build()
        x, y = data(40)
        path = f"ckpt-rank{strategy.rank}-{{epoch}}.minicnn"
        model.fit(x, y, batch_size=4, epochs=2, verbose=1, callbacks=[ModelCheckpoint(path)],
                  distribute=strategy)
        """,
    )
    code, out, _ = launch(2, [job], tmp_path)
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == [
        "ckpt-rank0-1.minicnn",
        "ckpt-rank0-2.minicnn",
    ]
    assert out.count("Epoch 1/2") == 1  # only rank 0 draws the progress bar


def _fake_mnist(folder: Path, n_train=96, n_test=20):
    g = np.random.default_rng(0)
    folder.mkdir()
    for key, stem in mnist.IDX_NAMES.items():
        shape = ((n_train if "train" in key else n_test),)
        a = g.integers(0, 256, (*shape, 28, 28)) if key.startswith("x") else g.integers(0, 10, shape)  # fmt: skip
        (folder / stem).write_bytes(mnist.idx_bytes(a.astype(np.uint8)))


def test_command_line_job_and_resume(tmp_path):
    """mpiexec -n 2 minicnn train --distributed: rank 0 alone prints and writes the model, its
    history and plots; a second run resumes from the checkpoint under MPI."""
    _fake_mnist(tmp_path / "idx")
    env = {"MINICNN_DATA": str(tmp_path / "cache")}
    args = ["-m", "minicnn.cli", "train", "--distributed", "--data", "idx", "--out", "out"]
    code, out, _ = launch(2, [*args, "--epochs", "1", "--batch-size", "8"], tmp_path, env=env)
    assert code == 0, out
    assert out.count("Test accuracy") == 1 and out.count("Wrote ") == 1
    assert "2 processes" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"model.minicnn", "checkpoint.minicnn", "history.json"}  # fmt: skip
    resume = [*args, "--epochs", "2", "--batch-size", "8", "--resume", "out/checkpoint.minicnn"]
    code, out, _ = launch(2, resume, tmp_path, env=env)
    assert code == 0, out
    assert out.count("Resuming out/checkpoint.minicnn after epoch 1") == 1
    history = json.loads((tmp_path / "out/history.json").read_text())
    assert len(history["loss"]) == 2 and history["resumed_after_epoch"] == 1


def test_bad_launches_get_one_sentence(tmp_path):
    _fake_mnist(tmp_path / "idx")
    args = ["-m", "minicnn.cli", "train", "--distributed", "--data", "idx", "--epochs", "1"]
    # one process: not a data-parallel job
    code, out, _ = launch(0, args, tmp_path)
    assert code == 1 and "--distributed needs 2 or more processes" in out
    assert "Traceback" not in out
    # ranks given different arguments (MPMD launch)
    cmd = [MPIEXEC, "-n", "1", sys.executable, *args, ":", "-n", "1", sys.executable, *args[:-1], "2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "every rank must be given the same epochs" in proc.stderr
    assert "rank 0: 1, rank 1: 2" in proc.stderr
    # no MPI: mpi4py cannot be imported
    fake = tmp_path / "nompi" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no MPI library here')\n")
    code, out, _ = launch(0, args, tmp_path, env={"PYTHONPATH": str(tmp_path / "nompi")})
    assert code == 1 and "needs mpi4py and an MPI runtime" in out and "Traceback" not in out


def test_without_distribute_mpi_is_never_loaded(tmp_path):
    """distribute=None keeps the single-process path: mpi4py is not even imported."""
    code = subprocess.run(
        [sys.executable, "-c", MODEL + textwrap.dedent(
            """
            import sys
            m = build()
            x, y = data(16)
            m.fit(x, y, batch_size=4, verbose=0)
            assert "mpi4py" not in sys.modules, "mpi4py was imported"
            """
        )],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert code.returncode == 0, code.stderr


EMA_JOB = """
from minicnn.optimizers import Adam

def build_ema():
    m = build()
    m.compile(Adam(1e-3, use_ema=True, ema_momentum=0.9), "sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m
"""


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "rank-0-resumes"])
def test_ema_two_ranks_match_one_process(tmp_path, resume):
    """use_ema=True (the best recipe's setting), from an API script: 2 ranks with batch 4 each
    against 1 process with batch 8, in float32; the weights, which fit ends by setting to their
    moving average, agree to float32 rounding. "rank-0-resumes": rank 0 continues a checkpoint
    of 1 epoch while rank 1 starts from a model compiled afresh, with no optimizer state, so it
    must build every slot, the EMA's too, to take rank 0's (it built Adam's alone and the
    broadcasts fell out of step)."""
    import minicnn
    from minicnn.saving import save_checkpoint

    ns = {}
    exec(MODEL + EMA_JOB, ns)
    x, y = ns["data"](48)
    start = 1 if resume else 0
    if resume:
        first = ns["build_ema"]()
        first.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        save_checkpoint(first, tmp_path / "ckpt.minicnn", epoch=1)
    job = script(
        tmp_path,
        EMA_JOB
        + textwrap.dedent(f"""
        strategy = DataParallel()
        install_excepthook(strategy.comm)
        x, y = data(48)
        if {resume} and strategy.rank == 0:
            model = minicnn.load_checkpoint("ckpt.minicnn").model
        else:
            model = build_ema()
        model.fit(x, y, batch_size=4, epochs=3, initial_epoch={start}, shuffle=False, verbose=0,
                  distribute=strategy)
        slots = [sorted(s) for s in model.optimizer.slots]
        np.savez(f"w{{strategy.rank}}.npz", *model.get_weights())
        report(strategy.rank, {{"slots": slots, "iterations": model.optimizer.iterations}})
        """),
    )
    code, out, _ = launch(2, [job], tmp_path, timeout=90)
    assert code == 0, out
    rows = reports(tmp_path)
    if resume:
        one = minicnn.load_checkpoint(tmp_path / "ckpt.minicnn").model
    else:
        one = ns["build_ema"]()
    one.fit(x, y, batch_size=8, epochs=3, initial_epoch=start, shuffle=False, verbose=0)
    for row in rows:
        assert row["slots"] == [["ema", "m", "v"]] * 4 and row["iterations"] == 18
    for rank in (0, 1):
        got = np.load(tmp_path / f"w{rank}.npz")
        for i, w in enumerate(one.get_weights()):
            np.testing.assert_allclose(got[f"arr_{i}"], w, rtol=1e-5, atol=1e-7)
