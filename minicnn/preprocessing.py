"""Turning a photo or drawing of one digit into an MNIST-like 28x28 input.

MNIST's own recipe (LeCun et al.): grayscale; light ink on a dark background; the digit's
bounding box scaled to fit 20x20 keeping its aspect ratio (with anti-aliasing); placed in a 28x28
field so that its centre of mass is at the centre; then scaled like the training data ([0, 1]).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

INK_THRESHOLD = 0.2  # a pixel with at least this fraction of the darkest ink counts as ink
MAX_PIXELS = 12_000_000  # a 12-megapixel phone photo; more is refused before it is decoded
WORKING_SIDE = 1024  # larger images are shrunk to this before the ink is found


class ImageError(ValueError):
    """An image that cannot be read or holds no digit."""


class NoInkError(ImageError):
    """An image that holds nothing drawn: blank, or one flat colour."""


class ImageTooLargeError(ImageError):
    """An image whose pixel dimensions are too large to decode (a decompression bomb, say)."""


def load_image(path) -> Image.Image:
    """The image in the file at ``path``, read as ``read_image`` reads bytes."""
    try:
        with open(path, "rb") as f:
            return _decode(f, str(path))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None


def read_image(data: bytes, name: str = "the image") -> Image.Image:
    """The image whose encoded bytes (PNG, JPEG, ...) are ``data``."""
    return _decode(io.BytesIO(data), name)


def _decode(f, name: str) -> Image.Image:
    """Open from the header, refuse more than MAX_PIXELS before decoding a byte of pixel data,
    then decode and shrink to at most WORKING_SIDE a side: the memory one image takes is bounded
    whatever it claims to be."""
    try:
        with Image.open(f) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageTooLargeError(
                    f"{name} is {w}x{h} pixels; at most {MAX_PIXELS:,} pixels are read"
                )
            img.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decode at a fraction of the size
            img.load()
            img = img.copy()
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, checked as it opens: far above ours
        raise ImageTooLargeError(f"{name} has more than {MAX_PIXELS:,} pixels") from None
    except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: not an image Pillow can read ({type(e).__name__})") from None
    if max(img.size) > WORKING_SIDE:
        img.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    return img


def to_ink(img: Image.Image) -> np.ndarray:
    """Grayscale ink in [0, 1] on a 0 background, whatever the input's polarity and lighting.

    The background is the median of the border pixels: a light one (paper) means dark ink, so
    the image is inverted. Transparent pixels count as background. When the border is unevenly
    lit (a photo: a shadow, light falling off across the page), one level for the whole page
    would read the shade as ink, so the paper's level is estimated around each pixel instead
    (``paper_level``)."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        gray = np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float64)
    else:
        gray = np.asarray(img.convert("L"), dtype=np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    low, high = np.percentile(border, [10, 90])
    photo = high - low > UNEVEN_LIGHT
    if photo:  # and so sensor noise too: a 3x3 median keeps lone specks from counting as ink
        gray = np.asarray(Image.fromarray(gray.astype(np.float32), "F").filter(ImageFilter.MedianFilter(3)), dtype=np.float64)  # fmt: skip
        background = paper_level(gray, dark_ink=background > 127)
    ink = background - gray if np.mean(background) > 127 else gray - background
    ink = np.clip(ink, 0, None)
    peak = ink.max()
    if peak < 20:  # less than 8% contrast with the background: nothing drawn
        raise NoInkError("the image is empty: no ink stands out from the background")
    ink /= peak
    if photo:  # specks, a ruled line's dash, the page's edge, a dark corner: not the digit
        ink[~main_strokes(ink >= INK_THRESHOLD, ink)] = 0
        ink /= ink.max()
    return ink


UNEVEN_LIGHT = 8  # gray levels between the border's 10th and 90th percentiles: a photo's shading


def paper_level(gray: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The page's own level at each pixel, as if the ink were lifted off: a morphological
    closing (dark ink; an opening for light ink) over a window wider than a thick pen's stroke
    and its junctions, a sixth of the image's short side, computed on a 64-pixel thumbnail and
    scaled back up. A stroke is narrower than the window and disappears; a shadow is wider and
    stays, edge included."""
    h, w = gray.shape
    scale = 64 / min(h, w)
    small_size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(
        Image.fromarray(gray.astype(np.float32), "F").resize(small_size, Image.Resampling.BOX)
    )
    grow, shrink = (np.max, np.min) if dark_ink else (np.min, np.max)
    level = _filter(_filter(small, grow, 11), shrink, 11)
    level = np.asarray(
        Image.fromarray(level.astype(np.float32), "F").resize((w, h), Image.Resampling.BILINEAR)
    )
    return level.astype(np.float64)


def _filter(a: np.ndarray, reduce, size: int) -> np.ndarray:
    """``reduce`` (np.max or np.min) over a size x size window around each pixel, edges repeated."""
    from numpy.lib.stride_tricks import sliding_window_view

    r = size // 2
    a = np.pad(a, r, mode="edge")
    a = reduce(sliding_window_view(a, size, axis=0), axis=-1)
    return reduce(sliding_window_view(a, size, axis=1), axis=-1)


def main_strokes(mask: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The pixels of the parts of ``mask`` (connected, 8-neighbours) that carry at least a tenth
    of the ink the heaviest part does and do not run off the picture: a digit's one or two
    strokes, without the marks around it. All of it when nothing would be left. Parts are
    found at most 256 pixels a side (blocks of f x f pixels count as one)."""
    h, w = mask.shape
    f = -(-max(h, w) // 256)
    pad = ((0, -h % f), (0, -w % f))
    blocks = lambda a: np.pad(a, pad).reshape((h + pad[0][1]) // f, f, -1, f)  # noqa: E731
    small = blocks(mask).any(axis=(1, 3))
    labels = _components(small)
    ids, where = np.unique(labels[small], return_inverse=True)
    mass = np.bincount(where, weights=blocks(weight * mask).sum(axis=(1, 3))[small])
    band = max(2, round(0.03 * min(small.shape)))  # a page's edge seldom runs exactly along it
    inner = np.ones_like(small)
    inner[band:-band, band:-band] = False
    edge = np.isin(ids, np.unique(labels[small & inner]))
    keep = (mass >= 0.1 * mass.max()) & ~edge
    if not keep.any():
        keep = mass >= 0.1 * mass.max()
    kept = np.isin(labels, ids[keep]).repeat(f, axis=0).repeat(f, axis=1)
    return mask & kept[:h, :w]


def _components(mask: np.ndarray) -> np.ndarray:
    """A label per pixel of ``mask``, the same across each 8-connected part (the smallest flat
    index in it), -1 off the mask: neighbours' labels spread by minimum, with pointer jumping
    so that a long stroke takes a few rounds, not one per pixel."""
    h, w = mask.shape
    big = h * w
    flat = np.where(mask.ravel(), np.arange(big), big)
    while True:
        lab = np.pad(flat.reshape(h, w), 1, constant_values=big)
        low = lab[1:-1, 1:-1].copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.minimum(low, lab[dy : dy + h, dx : dx + w], out=low)
        low = np.where(mask, low, big).ravel()
        ok = low < big
        low[ok] = np.minimum(low[ok], flat[low[ok]])  # jump: take the label's own label
        while True:
            jumped = low.copy()
            jumped[ok] = low[low[ok]]
            if np.array_equal(jumped, low):
                break
            low = jumped
        if np.array_equal(low, flat):
            return np.where(mask, flat.reshape(h, w), -1)
        flat = low


def bounding_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), inclusive-exclusive, of the pixels that count as ink."""
    rows = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink >= INK_THRESHOLD).any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def center_of_mass(a: np.ndarray) -> tuple[float, float]:
    total = a.sum()
    rows, cols = np.indices(a.shape)
    return float((rows * a).sum() / total), float((cols * a).sum() / total)


def prepare_digit(img) -> np.ndarray:
    """An image (PIL or a 2-D array) -> a (28, 28) float32 array in [0, 1], prepared like MNIST."""
    if isinstance(img, np.ndarray):
        img = Image.fromarray(np.asarray(img, dtype=np.uint8))
    ink = to_ink(img)
    top, bottom, left, right = bounding_box(ink)
    ink = np.where(ink >= INK_THRESHOLD / 2, ink, 0)[top:bottom, left:right]  # drop faint noise
    h, w = ink.shape
    scale = 20 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL sizes are (width, height)
    box = Image.fromarray((ink * 255).astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    box = np.asarray(box, dtype=np.float64)
    box /= box.max()  # thin strokes fade when shrunk; MNIST's ink peaks at full intensity
    cy, cx = center_of_mass(box)
    # Integer shift that puts the centre of mass nearest the field's centre, (13.5, 13.5)
    oy, ox = int(round(13.5 - cy)), int(round(13.5 - cx))
    field = np.zeros((28, 28))
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + box.shape[0], 28), min(ox + box.shape[1], 28)
    field[y0:y1, x0:x1] = box[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    return np.clip(field, 0, 1).astype(np.float32)


def classify(model, img) -> tuple[np.ndarray, np.ndarray]:
    """What ``model`` reads in the image: (probabilities (K,), the prepared (28, 28) input).
    ``minicnn predict`` and ``minicnn serve`` both answer through this one function."""
    x = prepare_digit(img)
    return model.predict(x[None, :, :, None], verbose=0)[0], x
