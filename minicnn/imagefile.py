"""Reading one image from its bytes, with the memory it takes bounded whatever the file claims.

Only PNG and JPEG are read (``FORMATS``): the format is told from the bytes themselves, never
from a file's name or a request's Content-Type, and Pillow is asked to open that one format
only. Pillow's readers for other formats do work before ``load`` (its ICO reader decodes the
PNG inside in ``open``), so they are never reached. Before Pillow sees a byte, the header is
read here:

- PNG: the IHDR chunk (width, height), which the format puts first; then every chunk's length
  and type, for the compressed text chunks (zTXt, iTXt, iCCP) that Pillow inflates as it opens
  (up to 1 MB each): at most ``MAX_COMPRESSED_CHUNKS``, so a 60 KB file cannot ask for 64 MB;
- JPEG: every frame header (SOFn) before the first scan, the one whose size the decoder uses.

Either is refused above ``MAX_PIXELS`` before any pixel is decoded, and the size Pillow reports
is checked again after it opens. A JPEG is decoded at a reduced scale where it is large
(``draft``), and any image is shrunk to at most ``WORKING_SIDE`` a side once decoded.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

FORMATS = ("PNG", "JPEG")
MAX_PIXELS = 12_000_000  # a 12-megapixel phone photo; more is refused before it is decoded
WORKING_SIDE = 1024  # larger images are shrunk to this before the ink is found
MAX_COMPRESSED_CHUNKS = 4  # zTXt, iTXt and iCCP chunks in one PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# What other files start with, to say what was sent instead (first bytes -> name)
OTHER_FORMATS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x01\x00": "ICO",
    b"\x00\x00\x02\x00": "CUR",
    b"8BPS": "PSD",
    b"%PDF": "PDF",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
    b"\xff\x4f\xff\x51": "JPEG 2000",
    b"qoif": "QOI",
}
JPEG_STRAY = 1024  # bytes between segments that are not markers (Pillow skips them)
JPEG_SEGMENTS = 1024  # before the first scan: a camera's photo has a few dozen
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class ImageError(ValueError):
    """An image that cannot be read or holds no digit."""


class ImageTooLargeError(ImageError):
    """An image whose pixel dimensions are too large to decode (a decompression bomb, say)."""


def load_image(path) -> Image.Image:
    """The image in the file at ``path``, read as ``read_image`` reads bytes. A path that cannot
    be opened (missing, a folder, too long, running through a file, not readable) is an
    ImageError naming it."""
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot open it ({e.strerror or e})") from None
    with f:
        try:
            return _decode(f, str(path))
        except OSError as e:  # the file itself failed under us: a read error, say
            raise ImageError(f"{path}: cannot read it ({e.strerror or e})") from None


def read_image(data: bytes, name: str = "the image") -> Image.Image:
    """The image whose encoded bytes (PNG or JPEG) are ``data``."""
    return _decode(io.BytesIO(data), name)


def sniff(head: bytes, name: str) -> str:
    """The format ("PNG" or "JPEG") from the first bytes; anything else is an ImageError."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(JPEG_SIGNATURE):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "a WebP image"
    elif head[4:8] == b"ftyp":
        kind = "a HEIF/AVIF image"
    else:
        other = next((v for k, v in OTHER_FORMATS.items() if head.startswith(k)), None)
        kind = other and f"{'an' if other[0] in 'AEIO' else 'a'} {other} image"
    kind = kind or ("empty" if not head else "not an image")
    raise ImageError(f"{name} is {kind}; only {' and '.join(FORMATS)} images are read")


def _check_pixels(w: int, h: int, name: str) -> None:
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: its header gives a {w}x{h} image")
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name} is {w}x{h} pixels; at most {MAX_PIXELS:,} pixels are read"
        )


def png_size(f, name: str) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR, after walking its chunks (``f`` is at the signature's
    end): each chunk's length and type are read and its data skipped, so the walk takes no
    memory. A file cut short ends the walk; Pillow reports it when it decodes."""
    length, kind = struct.unpack(">I4s", f.read(8).ljust(8, b"\0"))
    ihdr = f.read(17)  # 13 bytes of data, then the CRC
    if kind != b"IHDR" or length != 13 or len(ihdr) < 8:
        raise ImageError(f"{name}: a damaged PNG image (it must start with its IHDR chunk)")
    w, h = struct.unpack(">II", ihdr[:8])
    compressed = 0
    while kind != b"IEND":
        header = f.read(8)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            raise ImageError(f"{name}: a damaged PNG image (a chunk claims {length:,} bytes)")
        compressed += kind in (b"zTXt", b"iTXt", b"iCCP")
        if compressed > MAX_COMPRESSED_CHUNKS:
            raise ImageError(
                f"{name} holds more than {MAX_COMPRESSED_CHUNKS} compressed text or profile "
                "chunks; a drawing or photo needs none"
            )
        f.seek(length + 4, io.SEEK_CUR)  # the data and its CRC
    return w, h


def jpeg_size(f, name: str) -> tuple[int, int]:
    """(width, height) from a JPEG's frame headers (``f`` is after the SOI marker): the segments
    before the first scan are walked by their lengths; the largest frame found is the bound.
    Pillow's reader skips stray bytes between segments one at a time, in Python: at most
    JPEG_STRAY of them and JPEG_SEGMENTS segments are let through, so 2 MB of them cannot cost
    seconds here or there."""
    sizes, stray, segments = [], 0, 0
    byte = f.read(1)
    while byte:
        if byte != b"\xff" or (marker := f.read(1)) == b"\x00":  # not a marker: a stray byte
            stray += 1
            if stray > JPEG_STRAY:
                raise ImageError(f"{name}: a damaged JPEG image (stray bytes between segments)")
            byte = f.read(1)
            continue
        if marker == b"\xff":  # a fill byte: the marker is next
            continue
        if not marker or marker[0] in (0xDA, 0xD9):  # the end, the start of scan, end of image
            break
        segments += 1
        if segments > JPEG_SEGMENTS:
            raise ImageError(f"{name}: a JPEG image with more than {JPEG_SEGMENTS} segments")
        byte = f.read(1)
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # no length follows these
            continue
        raw = byte + f.read(1)
        if len(raw) < 2:
            break
        length = struct.unpack(">H", raw)[0]
        if length < 2:
            raise ImageError(f"{name}: a damaged JPEG image (a segment of length {length})")
        if marker[0] in JPEG_SOF:
            data = f.read(length - 2)
            if len(data) >= 5:
                h, w = struct.unpack(">HH", data[1:5])
                sizes.append((w, h))
        else:
            f.seek(length - 2, io.SEEK_CUR)
        byte = f.read(1)
    if not sizes:
        raise ImageError(f"{name}: a damaged JPEG image (no frame header before its data)")
    return max(sizes, key=lambda s: s[0] * s[1])


def _decode(f, name: str) -> Image.Image:
    """Sniff the format, bound the pixels from the header, open with that format's reader only,
    check again, then decode and shrink to at most WORKING_SIDE a side: the memory one image
    takes is bounded whatever it claims to be."""
    fmt = sniff(f.read(len(PNG_SIGNATURE)), name)
    f.seek(len(PNG_SIGNATURE) if fmt == "PNG" else 2)
    w, h = png_size(f, name) if fmt == "PNG" else jpeg_size(f, name)
    _check_pixels(w, h, name)
    f.seek(0)
    try:
        with Image.open(f, formats=[fmt]) as img:
            _check_pixels(*img.size, name)  # the size Pillow will decode, had it read another
            img.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decode at a fraction of the size
            img.load()
            img = img.copy()
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: never reached
        raise ImageTooLargeError(f"{name} has more than {MAX_PIXELS:,} pixels") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: a damaged {fmt} image (Pillow cannot read it)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        what = str(e).split("\n")[0][:120] or type(e).__name__
        raise ImageError(f"{name}: a damaged {fmt} image ({what})") from None
    if max(img.size) > WORKING_SIDE:
        img.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    return img
