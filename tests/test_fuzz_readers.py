"""Random, truncated and mutated bytes into the file readers: they raise only minicnn's documented
error types (DataError for data files, ModelFileError for model and checkpoint files, ImageError
for images), never anything else, and never allocate out of proportion to the input (a header
may claim any size; an image is never decoded beyond MAX_PIXELS, whatever its header says)."""

import io
import struct
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


# -- images: formats and header lies -------------------------------------------------------------


def _image_bytes(fmt, mode="L", size=(40, 32)):
    from PIL import Image, ImageDraw

    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).line([(8, 6), (30, 6), (14, 28)], fill=0, width=4)
    buf = io.BytesIO()
    img.convert(mode).save(buf, fmt)
    return buf.getvalue()


IMAGES = {
    "png": _image_bytes("PNG"),
    "png rgba": _image_bytes("PNG", "RGBA"),
    "png palette": _image_bytes("PNG", "P"),
    "png 16-bit": _image_bytes("PNG", "I;16"),
    "jpeg": _image_bytes("JPEG"),
    "jpeg progressive": _image_bytes("JPEG", "RGB"),
    "gif": _image_bytes("GIF"),
    "tiff": _image_bytes("TIFF"),
    "ico": _image_bytes("ICO", "RGBA"),
    "bmp": _image_bytes("BMP"),
    "webp": _image_bytes("WEBP", "RGB"),
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


CHUNK_KINDS = [b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"zTXt", b"iTXt", b"iCCP", b"tEXt",
               b"acTL", b"fcTL", b"fdAT", b"gAMA", b"eXIf"]  # fmt: skip


@st.composite
def lying_pngs(draw):
    """PNGs whose IHDR claims any size, depth and colour type, followed by chunks of any kind
    whose length fields may lie (too long, too short) about their data."""
    import zlib

    w, h = draw(st.integers(0, 20_000)), draw(st.integers(0, 20_000))
    depth, colour = draw(st.sampled_from([1, 2, 4, 8, 16, 3, 0])), draw(st.sampled_from([0, 2, 3, 4, 6, 1]))  # fmt: skip
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))  # fmt: skip
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(CHUNK_KINDS))
        data = zlib.compress(b"\0" * draw(st.integers(0, 5000))) if kind in (b"IDAT", b"zTXt") else draw(st.binary(max_size=64))  # fmt: skip
        piece = _chunk(kind, data)
        if draw(st.booleans()):  # the length field lies
            piece = struct.pack(">I", draw(st.integers(0, 2**32 - 1))) + piece[4:]
        out += piece
    return out + _chunk(b"IEND", b"")


@st.composite
def lying_jpegs(draw):
    """A real JPEG whose frame header claims any size, with segments added, cut or repeated."""
    data = bytearray(IMAGES["jpeg"])
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))  # fmt: skip
    extra = draw(st.sampled_from([b"", b"\xff\xc0\x00\x0b\x08\xff\xff\xff\xff\x01\x01\x11\x00",
                                  b"\xff\xfe\xff\xff" + b"x" * 8, b"\x00\x00junk", b"\xff\xff\xff"]))  # fmt: skip
    cut = draw(st.integers(at, len(data)))
    return bytes(data[:at]) + extra + bytes(data[at:cut])


@pytest.fixture
def decoded_sizes(monkeypatch):
    """The size of every image Pillow decodes pixels for (C memory, which tracemalloc misses)."""
    from PIL import ImageFile

    sizes = []
    load = ImageFile.ImageFile.load

    def watched(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", watched)
    return sizes


def _read_any(data, decoded_sizes):
    """read_image and prepare_digit on ``data``: only ImageError, never a decode beyond
    MAX_PIXELS, Python's own allocations bounded, anything accepted shrunk to the working size."""
    from minicnn import preprocessing as pp

    decoded_sizes.clear()
    try:
        img = bounded(lambda: pp.read_image(data, "fuzzed"), len(data))
        assert max(img.size) <= pp.WORKING_SIDE
        x = pp.prepare_digit(img)
        assert x.shape == (28, 28) and np.isfinite(x).all()
    except pp.ImageError:
        pass
    assert all(w * h <= pp.MAX_PIXELS for w, h in decoded_sizes), decoded_sizes


@FUZZ
@given(st.sampled_from(sorted(IMAGES)).flatmap(lambda k: mutations(IMAGES[k])))
def test_image_reader(decoded_sizes, data):
    _read_any(data, decoded_sizes)


@FUZZ
@given(st.one_of(lying_pngs(), lying_jpegs()))
def test_image_reader_header_lies(decoded_sizes, data):
    _read_any(data, decoded_sizes)


@pytest.mark.parametrize("name", ["gif", "tiff", "ico", "bmp", "webp"])
def test_other_formats_never_reach_pillow(name, decoded_sizes):
    from minicnn.preprocessing import ImageError, read_image

    with pytest.raises(ImageError, match="only PNG and JPEG images are read"):
        read_image(IMAGES[name])
    assert decoded_sizes == []
