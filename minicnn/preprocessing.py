"""Turning a photo or drawing of one digit into an MNIST-like 28x28 input.

MNIST's own recipe (LeCun et al.): grayscale; light ink on a dark background; the digit's
bounding box scaled to fit 20x20 keeping its aspect ratio (with anti-aliasing); placed in a 28x28
field so that its centre of mass is at the centre; then scaled like the training data ([0, 1]).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

INK_THRESHOLD = 0.2  # a pixel with at least this fraction of the darkest ink counts as ink


class ImageError(ValueError):
    """An image that cannot be read or holds no digit."""


def load_image(path) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except (Image.UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"{path}: not an image Pillow can read ({type(e).__name__})") from None


def to_ink(img: Image.Image) -> np.ndarray:
    """Grayscale ink in [0, 1] on a 0 background, whatever the input's polarity.

    The background is the median of the border pixels: a light one (paper) means dark ink, so
    the image is inverted. Transparent pixels count as background."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        gray = np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float64)
    else:
        gray = np.asarray(img.convert("L"), dtype=np.float64)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = background - gray if background > 127 else gray - background
    ink = np.clip(ink, 0, None)
    peak = ink.max()
    if peak < 20:  # less than 8% contrast with the background: nothing drawn
        raise ImageError("the image is empty: no ink stands out from the background")
    return ink / peak


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
