"""Random, truncated and mutated bytes into the file readers: they raise only minicnn's documented
error types (DataError for data files, ModelFileError for model and checkpoint files), never
anything else, and never allocate out of proportion to the input (a header may claim any size)."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minicnn.callbacks import ModelCheckpoint
from minicnn.datasets import mnist
from minicnn.saving import ModelFileError, load_checkpoint, load_model

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def mutations(base: bytes):
    """Truncations, byte flips, insertions and deletions of ``base``, plus pure noise."""
    n = len(base)
    truncated = st.integers(0, n).map(lambda k: base[:k])
    flipped = st.lists(
        st.tuples(st.integers(0, n - 1), st.integers(0, 255)), min_size=1, max_size=8
    ).map(lambda edits: bytes(_apply(bytearray(base), edits)))
    spliced = st.tuples(st.integers(0, n), st.integers(0, n), st.binary(max_size=64)).map(
        lambda t: base[: min(t[0], t[1])] + t[2] + base[max(t[0], t[1]) :]
    )
    return st.one_of(truncated, flipped, spliced, st.binary(max_size=4096))


def bounded(read, data_size, fixed=16 << 20):
    """Run ``read()`` under tracemalloc; its peak must stay within a few times the input plus a
    fixed allowance (a model's own weights), so a lying header cannot make it allocate more."""
    tracemalloc.start()
    try:
        return read()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= 8 * data_size + fixed, f"{peak:,} bytes for {data_size:,} of input"


def _apply(buf, edits):
    for i, v in edits:
        buf[i] = v
    return buf


_rng = np.random.default_rng(0)
IDX_IMAGES = mnist.idx_bytes(_rng.integers(0, 256, (3, 28, 28), dtype=np.uint8))
IDX_LABELS = mnist.idx_bytes(_rng.integers(0, 10, 3).astype(np.uint8))
CSV = (
    b"label,"
    + b",".join(b"p%d" % i for i in range(784))
    + b"\n"
    + b"\n".join(
        b",".join(str(v).encode() for v in [3, *_rng.integers(0, 256, 784)]) for _ in range(2)
    )
    + b"\n"
)


@FUZZ
@given(st.one_of(mutations(IDX_IMAGES), mutations(IDX_LABELS)))
def test_idx_reader(data):
    try:
        a = bounded(lambda: mnist.parse_idx(data, "fuzzed"), len(data))
    except mnist.DataError:
        return
    assert a.dtype == np.uint8  # what it accepts is a well-formed array


@FUZZ
@given(mutations(CSV))
def test_csv_reader(data):
    try:
        x, y = bounded(lambda: mnist.parse_csv(data, "fuzzed", verbose=False), len(data))
    except mnist.DataError:
        return
    assert x.shape[1:] == (28, 28) and len(x) == len(y)


@pytest.fixture
def model_bytes(seed_model_file):
    return seed_model_file.read_bytes()


def fuzz_model_loader(path, strategy, to_file_bytes=lambda data: data, load=load_model):
    """``load`` on every example: it may refuse the file only with ModelFileError."""
    tried = []

    @FUZZ
    @given(strategy)
    def run(data):
        tried.append(1)
        file_bytes = to_file_bytes(data)
        path.write_bytes(file_bytes)
        try:
            bounded(lambda: load(path), len(file_bytes))
        except ModelFileError:
            pass

    run()
    assert len(tried) >= 100


def test_model_reader(model_bytes, tmp_path):
    fuzz_model_loader(tmp_path / "fuzzed.minicnn", mutations(model_bytes))


def rezip_with(file_bytes):
    """(model.json's bytes, a function putting a mutated model.json back into the same zip)."""
    with zipfile.ZipFile(io.BytesIO(file_bytes)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}

    def rezip(text):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, text if name == "model.json" else data)
        return buf.getvalue()

    return members["model.json"], rezip


def test_model_reader_mutated_json(model_bytes, tmp_path):
    """Mutations inside model.json, which a byte flip in the zip would mostly just break."""
    text, rezip = rezip_with(model_bytes)
    fuzz_model_loader(tmp_path / "fuzzed.minicnn", mutations(text), rezip)


def test_checkpoint_reader(tmp_path):
    """A checkpoint adds the optimizer's arrays and the training state (epoch, history,
    generator): mutated bytes and mutated JSON into load_checkpoint."""
    from minicnn import Sequential
    from minicnn.layers import Conv2D, Dense, Flatten

    model = Sequential([Conv2D(2, 3, input_shape=(5, 5, 1)), Flatten(), Dense(3)])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((4, 5, 5, 1), dtype=np.float32)
    model.fit(x, np.arange(4) % 3, verbose=0, callbacks=[ModelCheckpoint(tmp_path / "c.minicnn")])
    file_bytes = (tmp_path / "c.minicnn").read_bytes()
    path = tmp_path / "fuzzed.minicnn"
    fuzz_model_loader(path, mutations(file_bytes), load=load_checkpoint)
    text, rezip = rezip_with(file_bytes)
    fuzz_model_loader(path, mutations(text), rezip, load=load_checkpoint)
