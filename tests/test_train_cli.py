"""``minicnn train`` refuses, in one line and before anything is written, the runs it cannot
finish (issue 25, defects 5 and 8), and prints a resume command that reproduces the run, or
none when the run wrote no checkpoint (defect 7)."""

import argparse
import contextlib
import errno
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from minicnn import load_model
from minicnn.cli import main
from minicnn.runs import resume_command


@pytest.fixture
def data(tmp_path, monkeypatch):
    """A small stand-in for MNIST (random digits) as a .npz, and a private cache."""
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "cache"))
    return write_npz(tmp_path / "mnist.npz", 256)


def write_npz(path, n_train, n_test=64):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train, dtype=np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    return path


def train(capsys, *args):
    """(exit code, stdout, stderr) of ``minicnn train ARGS``."""
    code = main(["train", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The error line; the loader's own 'MNIST: ...' progress lines aside, there is only it."""
    lines = [line for line in err.splitlines() if not line.startswith("MNIST:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


# -- defect 5: epochs that train nothing ---------------------------------------------------------


def test_zero_epochs_is_refused_before_anything_is_written(tmp_path, data, capsys):
    """It overwrote model.minicnn with untrained weights, then crashed with KeyError 'loss'."""
    code, _, err = train(capsys, "--epochs", 0, "--data", data, "--out", tmp_path / "run")
    assert code == 2 and "--epochs must be positive. Received: 0" in one_line(err)
    assert not (tmp_path / "run").exists()


@pytest.fixture
def trained(tmp_path, data, capsys):
    """A finished 2-epoch run of the seed recipe on 64 images: its folder."""
    out = tmp_path / "run"
    code, _, err = train(capsys, "--epochs", 2, "--limit", 64, "--data", data, "--out", out)
    assert code == 0, err
    return out


@pytest.mark.parametrize("epochs", [1, 2])
def test_resume_with_epochs_at_or_below_the_checkpoint_is_refused(trained, data, capsys, epochs):
    before = snapshot(trained)
    code, _, err = train(capsys, "--epochs", epochs, "--limit", 64, "--data", data,
                         "--out", trained, "--resume", trained / "checkpoint.minicnn")  # fmt: skip
    line = one_line(err)
    assert code == 1 and "stands after epoch 2" in line and "give more than 2" in line
    assert snapshot(trained) == before  # model.minicnn, history.json, plots: untouched


def test_a_checkpoint_of_another_recipe_is_refused(trained, data, capsys):
    """A seed checkpoint resumed as the best recipe was accepted, then crashed in the plots."""
    before = snapshot(trained)
    code, _, err = train(capsys, "--recipe", "best", "--epochs", 3, "--limit", 64, "--data", data,
                         "--out", trained, "--resume", trained / "checkpoint.minicnn")  # fmt: skip
    line = one_line(err)
    assert code == 1 and "holds another network than --recipe best builds" in line
    assert "it is a --recipe seed checkpoint" in line
    assert snapshot(trained) == before


# -- defect 8: where the run writes --------------------------------------------------------------


def test_out_pointing_at_a_file_is_refused_before_training(tmp_path, data, capsys):
    (tmp_path / "file").write_text("not a folder")
    code, out, err = train(capsys, "--data", data, "--out", tmp_path / "file")
    assert code == 1 and "is a file" in one_line(err) and "Training on" not in out
    code, out, err = train(capsys, "--data", data, "--out", tmp_path / "file" / "run")
    assert code == 1 and "cannot write there" in one_line(err) and "Training on" not in out


@contextlib.contextmanager
def tiny_disk(folder, options):
    """A tmpfs mounted at ``folder`` (root only); skips the test where mounting is not allowed."""
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_out_folder_is_refused_before_training(tmp_path, data, capsys):
    ro = tmp_path / "ro"
    if os.geteuid() != 0:
        ro.mkdir()
        ro.chmod(0o500)
        context = contextlib.nullcontext(ro)
    else:  # root writes through permissions: a read-only file system
        context = tiny_disk(ro, "ro,size=1m")
    with context:
        code, out, err = train(capsys, "--data", data, "--out", ro / "run")
        line = one_line(err)
    assert code == 1 and f"--out {ro / 'run'}: cannot write there" in line
    assert "Training on" not in out


def test_a_full_disk_is_refused_before_training(tmp_path, data, capsys):
    """A 2 MB disk: the probe fits, the seed run's ~11 MB (model, checkpoint, plots) do not."""
    with tiny_disk(tmp_path / "small", "size=2m") as small:
        code, out, err = train(capsys, "--data", data, "--out", small / "run")
        line = one_line(err)
        assert code == 1 and "MB free; this run writes about" in line
        assert "Training on" not in out and os.listdir(small / "run") == []


def test_a_disk_filling_mid_run_is_one_line(tmp_path, data, capsys, monkeypatch):
    """The checkpoint's fsync fails with ENOSPC: the error names the checkpoint, no traceback."""
    fsync = os.fsync

    def full_for_checkpoints(fd):
        if "checkpoint.minicnn" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_checkpoints)
    out = tmp_path / "run"
    code, _, err = train(capsys, "--epochs", 1, "--limit", 32, "--data", data, "--out", out)
    line = one_line(err)
    assert code == 1 and "training stopped:" in line
    assert f"{out / 'checkpoint.minicnn'}: No space left on device" in line
    assert [p.name for p in out.iterdir()] == []  # no temp file either


# -- defect 7: the resume command ----------------------------------------------------------------


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "minicnn.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # fmt: skip


def interrupt_after(proc, ready):
    """SIGINT once ``ready()`` is true (polled, bounded by the process's own end)."""
    try:
        while not ready():
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=120)
    finally:
        proc.kill()


RUN = ["--limit", 48, "--batch-size", 8, "--seed", 5, "--epochs", 12]


def test_the_printed_resume_command_reproduces_the_run(tmp_path, data):
    """It dropped --out, --limit, --seed and --batch-size: run as printed, it trained
    ./runs/mnist on all the images. Now the command, run as printed, ends where the unbroken
    run ends, bit for bit."""
    env = {**os.environ}
    a, b = tmp_path / "a", tmp_path / "b"
    unbroken = cli("train", "--data", data, *RUN, "--out", a, env=env)
    assert unbroken.wait(timeout=600) == 0, unbroken.stderr.read()
    proc = cli("train", "--data", data, *RUN, "--out", b, env=env)
    _, err = interrupt_after(proc, lambda: (b / "checkpoint.minicnn").exists())
    assert proc.returncode == 130, err
    command = err.strip().splitlines()[-1].split("resume with: ", 1)[1]
    words = shlex.split(command)
    assert words[:2] == ["minicnn", "train"]
    for flag, value in [("--out", b), ("--limit", 48), ("--batch-size", 8), ("--seed", 5),
                        ("--epochs", 12), ("--data", data),
                        ("--resume", b / "checkpoint.minicnn")]:  # fmt: skip
        assert words[words.index(flag) + 1] == str(value), command
    resumed = subprocess.run([sys.executable, "-m", "minicnn.cli", *words[1:]],
                             capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    wa = load_model(a / "model.minicnn").get_weights()
    wb = load_model(b / "model.minicnn").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))


def test_no_resume_command_when_this_run_wrote_no_checkpoint(tmp_path, monkeypatch):
    """After 'No checkpoint was written' it named another run's old checkpoint in the same
    folder. Stopped inside its first epoch (2,048 images at batch 1), this run says there is
    nothing to resume and leaves the old file as it was."""
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "cache"))
    big = write_npz(tmp_path / "big.npz", 2048)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.minicnn").write_bytes(b"another run's old checkpoint")
    proc = cli("train", "--data", big, "--batch-size", 1, "--out", out,
               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    for _ in range(200):  # up to fit's first line: its Ctrl-C handling is in place
        if proc.stdout.readline().startswith("Epoch 1/"):
            break
    _, err = interrupt_after(proc, lambda: True)
    assert proc.returncode == 130, err
    assert "No checkpoint was written" in err, err
    assert "no epoch finished and no checkpoint was written, so there is nothing to resume" in err
    assert "resume with" not in err
    assert (out / "checkpoint.minicnn").read_bytes() == b"another run's old checkpoint"


def test_the_command_quotes_paths_and_launches_every_process():
    args = argparse.Namespace(recipe="best", data="my data/mnist.npz", limit=None, seed=0,
                              batch_size=64, epochs=15, backend=None, out="runs/my run")  # fmt: skip
    command = resume_command(args, "runs/my run/checkpoint.minicnn", processes=2)
    assert shlex.split(command) == [
        "mpiexec", "-n", "2", "minicnn", "train", "--distributed", "--recipe", "best",
        "--data", "my data/mnist.npz", "--seed", "0", "--batch-size", "64", "--epochs", "15",
        "--out", "runs/my run", "--resume", "runs/my run/checkpoint.minicnn",
    ]  # fmt: skip
