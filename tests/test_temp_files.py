"""A save killed mid-write (SIGKILL: no handler runs) leaves a temporary file; the next save of
the same target removes it, and removes nothing else (minicnn.fileio)."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from minicnn import load_model
from minicnn.fileio import atomic_write, remove_stale_temps, temp_pattern

# Saves the seed model to argv[1], announcing and then hanging inside the write (after the
# temporary file exists and holds part of the model), so that the parent kills it mid-save.
KILLED_SAVE = textwrap.dedent("""
    import sys, time
    import numpy as np
    from minicnn.recipes import seed_model

    write_array, calls = np.lib.format.write_array, []

    def hangs_on_second_array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            print("writing", flush=True)
            time.sleep(600)
        return write_array(*args, **kwargs)

    np.lib.format.write_array = hangs_on_second_array
    seed_model().save(sys.argv[1])
""")


def temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def test_kill_during_save_loop_leaves_at_most_the_last_temp_file(tmp_path):
    """Ten saves killed mid-write: after each, exactly one temp file is there (the one just
    killed; each save removed its predecessor's), the model file stays whole, and a save that
    completes leaves none. Before the fix the count grew by one per kill."""
    path = tmp_path / "model.minicnn"
    from minicnn.recipes import seed_model

    seed_model().save(path)
    counts = []
    for _ in range(10):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_SAVE, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            line = proc.stdout.readline()
            assert line == "writing\n", line + proc.stderr.read()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        counts.append(len(temps(tmp_path)))
        assert load_model(path).input_shape == (None, 28, 28, 1)  # the last good file, whole
    assert counts == [1] * 10, counts
    seed_model().save(path)
    assert temps(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["model.minicnn"]


def test_only_dead_writers_temp_files_of_this_target_are_removed(tmp_path):
    target = tmp_path / "ckpt.minicnn"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        names = {
            "dead": f".tmp-{dead.pid}-abcd1234-ckpt.minicnn",
            "alive": f".tmp-{alive.pid}-abcd1234-ckpt.minicnn",
            "mine": f".tmp-{os.getpid()}-abcd1234-ckpt.minicnn",
            "other target": f".tmp-{dead.pid}-abcd1234-other.minicnn",
            "suffix differs": f".tmp-{dead.pid}-abcd1234-ckpt.minicnn.bak",
            "not ours": f"tmp-{dead.pid}-abcd1234-ckpt.minicnn",
            "legacy, young": ".tmp-abcd1234-ckpt.minicnn",
            "legacy, old": ".tmp-zzzz9999-ckpt.minicnn",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        old = time.time() - 2 * 3600
        os.utime(tmp_path / names["legacy, old"], (old, old))
        atomic_write(target, lambda f: f.write(b"whole"))
        left = set(os.listdir(tmp_path))
    finally:
        alive.kill()
        alive.wait()
    assert target.read_bytes() == b"whole"
    gone = {k for k, v in names.items() if v not in left}
    assert gone == {"dead", "legacy, old"}
    assert left - set(names.values()) == {"ckpt.minicnn"}


def test_the_pattern_is_the_one_atomic_write_uses(tmp_path, monkeypatch):
    """The cleaner's pattern matches the names atomic_write really creates (checked from inside
    the write, while the temp file exists)."""
    seen = []

    def write(f):
        seen.extend(n for n in os.listdir(tmp_path) if n.startswith(".tmp-"))
        f.write(b"x")

    atomic_write(tmp_path / "a.bin", write)
    assert len(seen) == 1 and temp_pattern("a.bin").fullmatch(seen[0])
    assert temp_pattern("a.bin").fullmatch(seen[0]).group(1) == str(os.getpid())
    assert remove_stale_temps(tmp_path / "a.bin") == []


def test_a_write_error_names_the_target_not_the_temp_file(tmp_path):
    """A full disk (ENOSPC from inside the write) is reported about the file being saved, and
    leaves no temp file."""

    def fills_the_disk(f):
        f.write(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as e:
        atomic_write(tmp_path / "model.minicnn", fills_the_disk)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "model.minicnn")
    assert os.listdir(tmp_path) == []
