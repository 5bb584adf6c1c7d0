"""Image files as a hostile or careless sender makes them: other formats under a PNG label,
headers that lie about the size, text chunks that inflate, and samples deeper than 8 bits
(minicnn.imagefile reads the bytes, minicnn.preprocessing the ink)."""

import io
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile, PngImagePlugin

from minicnn.preprocessing import (
    MAX_PIXELS,
    ImageError,
    ImageTooLargeError,
    NoInkError,
    gray_levels,
    load_image,
    prepare_digit,
    read_image,
)


def encode(img, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def seven(size=(120, 120)) -> Image.Image:
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).line([(30, 25), (90, 25), (50, 100)], fill=0, width=9)
    return img


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width, height, rows=b"") -> bytes:
    """An 8-bit grayscale PNG whose IHDR says width x height, with ``rows`` as its pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(rows or b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def peak_bytes(fn):
    """Peak of Python's own allocations (text chunks, say) while ``fn`` runs. Pillow's pixel
    buffers are C memory that tracemalloc does not see: ``decoded`` watches those."""
    tracemalloc.start()
    try:
        fn()
    except ImageError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.fixture
def decoded(monkeypatch):
    """The (width, height) of every image Pillow decodes pixels for while the test runs."""
    sizes = []
    load = ImageFile.ImageFile.load

    def watched(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", watched)
    return sizes


def ico_holding(png: bytes, claimed=16) -> bytes:
    """An ICO whose directory says claimed x claimed, holding ``png`` as its one image."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", claimed, claimed, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


ICO_BOMB = ico_holding(png_claiming(8000, 8000, b"\0" * (8001 * 8000)))


def test_an_ico_holding_a_huge_png_is_refused_before_decoding(decoded):
    """Issue 25, defect 1: Pillow's ICO reader decodes the PNG inside as it opens, so an ICO
    whose header says 16x16 but holds an 8000x8000 PNG (a ~70 KB file) cost ~200 MB per
    request. Now it is refused by its first bytes: no pixel is decoded."""
    assert len(ICO_BOMB) < 200_000
    with pytest.raises(ImageError, match="is an ICO image; only PNG and JPEG images are read"):
        read_image(ICO_BOMB)
    assert decoded == []


def test_the_ico_bomb_costs_no_memory(tmp_path):
    """The same, as memory: a process that reads it peaks where one that reads a small PNG
    does (the 8000x8000 decode alone is 64 MB)."""
    script = (  # VmHWM: this process's peak (ru_maxrss would carry the parent's over exec)
        "import re, sys\n"
        "from minicnn.preprocessing import ImageError, read_image\n"
        "try:\n    read_image(open(sys.argv[1], 'rb').read())\nexcept ImageError:\n    pass\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
    )
    peaks = {}
    for name, data in (("bomb", ICO_BOMB), ("small", encode(seven()))):
        (tmp_path / name).write_bytes(data)
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / name)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        peaks[name] = int(done.stdout) / 1024  # KiB -> MiB
    assert peaks["bomb"] - peaks["small"] < 32, peaks


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP", "ICO", "PPM", "TGA", "PCX"])
def test_other_formats_are_refused_by_their_bytes_whatever_their_label(fmt, tmp_path):
    data = encode(seven().convert("RGB"), fmt)
    with pytest.raises(ImageError, match="only PNG and JPEG images are read"):
        read_image(data, "upload.png")
    path = tmp_path / "digit.png"  # the name says PNG; the bytes decide
    path.write_bytes(data)
    with pytest.raises(ImageError, match=r"digit\.png is .*only PNG and JPEG"):
        load_image(path)


def test_a_lab_tiff_is_refused_not_a_traceback():
    """Defect 4's LAB TIFF raised a bare ValueError inside Pillow's conversion."""
    data = encode(seven().convert("RGB").convert("LAB"), "TIFF")
    with pytest.raises(ImageError, match="a TIFF image"):
        read_image(data)


def test_png_and_jpeg_are_read():
    for fmt in ("PNG", "JPEG"):
        img = read_image(encode(seven(), fmt))
        assert img.size == (120, 120)
        assert prepare_digit(img).max() > 0.9


def test_png_size_is_bounded_from_ihdr_before_pillow_opens_it(decoded):
    with pytest.raises(ImageTooLargeError, match="4000x3001 pixels"):
        read_image(png_claiming(4000, 3001))
    assert decoded == []
    with pytest.raises(ImageError, match="0x10 image"):
        read_image(png_claiming(0, 10))


def test_a_png_whose_first_chunk_is_not_ihdr_is_refused():
    good = png_claiming(10, 10)
    swapped = good[:8] + chunk(b"tEXt", b"k\0v") + good[8:]
    with pytest.raises(ImageError, match="must start with its IHDR"):
        read_image(swapped)


def test_compressed_text_chunks_cannot_inflate_memory():
    """Pillow inflates zTXt chunks (up to 1 MB each, 64 MB in all) while it opens a PNG: a
    60 KB file held 60 MB. More than four such chunks are refused from the chunk list."""
    info = PngImagePlugin.PngInfo()
    for i in range(60):
        info.add_text(f"k{i}", "a" * 1_000_000, zip=True)
    data = encode(Image.new("L", (8, 8)), pnginfo=info)
    assert len(data) < 100_000
    with pytest.raises(ImageError, match="more than 4 compressed"):
        read_image(data)
    assert peak_bytes(lambda: read_image(data)) < 2 << 20
    few = PngImagePlugin.PngInfo()
    few.add_text("Software", "a drawing program", zip=True)
    assert read_image(encode(seven(), pnginfo=few)).size == (120, 120)


def jpeg_with_frame(width, height) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to say width x height."""
    data = bytearray(encode(seven().convert("RGB"), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_size_is_bounded_from_its_frame_header(decoded):
    with pytest.raises(ImageTooLargeError, match="5000x5000 pixels"):
        read_image(jpeg_with_frame(5000, 5000))
    assert decoded == []
    with pytest.raises(ImageTooLargeError, match="65535x65535"):
        read_image(jpeg_with_frame(65535, 65535))


def test_a_second_jpeg_frame_header_cannot_hide_the_size(decoded):
    """Pillow takes the last frame header before the scan; the walk bounds the largest."""
    data = encode(seven().convert("RGB"), "JPEG")
    at = data.index(b"\xff\xc0")
    length = struct.unpack(">H", data[at + 2 : at + 4])[0]
    sof = bytearray(data[at : at + 2 + length])
    sof[5:9] = struct.pack(">HH", 6000, 6000)
    lying = data[:at] + data[at : at + 2 + length] + b"\x00junk" + bytes(sof) + data[at + 2 + length :]  # fmt: skip
    with pytest.raises(ImageTooLargeError, match="6000x6000"):
        read_image(lying)
    assert decoded == []


def test_under_the_limit_is_decoded_and_shrunk():
    side = int(MAX_PIXELS**0.5) - 10
    img = read_image(encode(Image.new("L", (side, side), 255)))
    assert max(img.size) == 1024


# -- deeper than 8 bits (defect 12) ----------------------------------------------------------


def sixteen_bit(paper=60000, ink=20000) -> Image.Image:
    """The seven with 16-bit samples: paper and ink both above 255, so clipping to 8 bits made
    them one flat white."""
    a = np.where(np.asarray(seven()) < 128, ink, paper).astype(np.uint16)
    return Image.fromarray(a)


def test_a_16_bit_png_with_mid_range_ink_is_read():
    img = read_image(encode(sixteen_bit()))
    assert img.mode.startswith("I;16")
    x = prepare_digit(img)
    np.testing.assert_allclose(x, prepare_digit(seven()), atol=0.02)


def test_16_bit_blank_is_still_no_ink():
    flat = Image.fromarray(np.full((50, 50), 40000, np.uint16))
    with pytest.raises(NoInkError):
        prepare_digit(read_image(encode(flat)))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: Image.fromarray((a / 255).astype(np.float32), "F"),  # float in [0, 1]
        lambda a: Image.fromarray(a.astype(np.float32), "F"),  # float in [0, 255]
        lambda a: Image.fromarray(a.astype(np.int32) * 257, "I"),  # 16-bit in 32
        lambda a: Image.fromarray(a.astype(np.int32), "I"),  # 8-bit in 32
        lambda a: Image.frombytes("I;16B", a.shape[::-1], (a * 257).astype(">u2").tobytes()),
        lambda a: a / 255,  # float array in [0, 1]
        lambda a: a.astype(np.uint16) * 257,  # uint16 array
        lambda a: a.astype(np.int64),  # int array of 8-bit values
        lambda a: a[:, :, None].astype(np.uint8),  # (H, W, 1)
        lambda a: np.repeat(a[:, :, None], 3, axis=2).astype(np.uint8),  # RGB array
    ],
    ids=[
        "F01",
        "F255",
        "I16",
        "I8",
        "I;16B",
        "float array",
        "uint16 array",
        "int64 array",
        "HxWx1",
        "HxWx3",
    ],
)
def test_every_depth_reads_as_the_8_bit_image(make):
    a = np.asarray(seven(), dtype=np.float64)
    np.testing.assert_allclose(prepare_digit(make(a)), prepare_digit(seven()), atol=0.02)


@pytest.mark.parametrize("mode", ["1", "P", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr",
                                  "HSV", "LAB", "PA", "I;16", "I", "F"])  # fmt: skip
def test_every_mode_is_read_or_refused_with_image_error(mode):
    """Conversion never raises Pillow's bare ValueError (LAB did): each mode is read as gray."""
    via = {"HSV": "RGB", "LAB": "RGB", "La": "LA", "RGBa": "RGBA", "PA": "RGBA"}.get(mode, "L")
    if mode == "I;16":  # Pillow's conversion keeps 8-bit values; a 16-bit file holds 0-65535
        img = Image.fromarray(np.asarray(seven(), dtype=np.uint16) * 257)
    else:
        img = seven().convert(via).convert(mode)
    x = prepare_digit(img)
    assert x.shape == (28, 28) and x.max() > 0.9


def test_transparent_16_bit_pixels_are_paper():
    a = np.where(np.asarray(seven()) < 128, 20000, 5).astype(np.uint16)
    img = Image.fromarray(a)
    img.info["transparency"] = 5
    np.testing.assert_allclose(prepare_digit(img), prepare_digit(seven()), atol=0.02)


@pytest.mark.parametrize(
    "bad",
    [
        np.full((10, 10), np.nan),
        np.array([[0.0, np.inf]]),
        np.zeros((3, 3, 2)),
        np.zeros((0, 5)),
        np.array([["a"]]),
    ],
    ids=["nan", "inf", "two channels", "empty", "strings"],
)
def test_bad_arrays_are_image_errors(bad):
    with pytest.raises(ImageError):
        gray_levels(bad)


def test_stray_bytes_and_segment_floods_in_a_jpeg_are_refused(decoded):
    """Pillow skips stray bytes between a JPEG's segments one at a time in Python; 2 MB of them
    (or of empty segments) are refused before it starts."""
    for body, match in (
        (b"\x00\xff" * 1_000_000, "stray bytes between segments"),
        (b"\xff\xfe\x00\x02" * 500_000, "more than 1024 segments"),
    ):
        with pytest.raises(ImageError, match=match):
            read_image(b"\xff\xd8\xff\xfe\x00\x02" + body)  # SOI, an empty comment, then body
    assert decoded == []
    data = encode(seven().convert("RGB"), "JPEG")  # a few stray bytes, as some writers leave
    at = data.index(b"\xff\xc0")
    assert read_image(data[:at] + b"\x00junk" + data[at:]).size == (120, 120)
