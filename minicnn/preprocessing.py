"""Turning a photo or drawing of one digit into an MNIST-like 28x28 input.

MNIST's own recipe (LeCun et al.): grayscale; light ink on a dark background; the digit's
bounding box scaled to fit 20x20 keeping its aspect ratio (with anti-aliasing); placed in a 28x28
field so that its centre of mass is at the centre; then scaled like the training data ([0, 1]).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from minicnn.imagefile import (  # noqa: F401  (the names predict and serve read images by)
    FORMATS,
    MAX_PIXELS,
    WORKING_SIDE,
    ImageError,
    ImageTooLargeError,
    load_image,
    read_image,
)

INK_THRESHOLD = 0.2  # a pixel with at least this fraction of the darkest ink counts as ink
DIGIT_SHAPES = ((28, 28, 1), (28, 28), (784,))  # model inputs a prepared digit is given as


class NoInkError(ImageError):
    """An image that holds nothing drawn: blank, or one flat colour."""


class DigitModelError(ValueError):
    """A model that cannot read a prepared digit: another input shape, or an output that is
    not one finite score per class."""


def to_ink(img) -> np.ndarray:
    """Grayscale ink in [0, 1] on a 0 background, whatever the input's polarity and lighting
    (``img``: a PIL image of any mode, or an array; see ``gray_levels``).

    The background is the median of the border pixels: a light one (paper) means dark ink, so
    the image is inverted. Transparent pixels count as background. When the border is unevenly
    lit (a photo: a shadow, light falling off across the page), one level for the whole page
    would read the shade as ink, so the paper's level is estimated around each pixel instead
    (``paper_level``). A photo's sensor noise, lit evenly or not, is smoothed by a 3x3 median,
    and marks that are not the digit are dropped (``main_strokes``); noise alone does not count
    as uneven light (``border_light``)."""
    gray = gray_levels(img)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    shading, noise = border_light(gray) if min(gray.shape) >= SMALLEST_PHOTO else (0.0, 0.0)
    photo = shading > UNEVEN_LIGHT or noise > NOISY
    if photo:  # a 3x3 median keeps lone specks of sensor noise from counting as ink
        gray = np.asarray(Image.fromarray(gray.astype(np.float32), "F").filter(ImageFilter.MedianFilter(3)), dtype=np.float64)  # fmt: skip
    if shading > UNEVEN_LIGHT:
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


# The ranges 16-bit, 32-bit and float samples are read in, tried in order: the first that holds
# every value is the image's scale; values beyond them all are scaled by their own min-max.
RANGES = {"I;16": (65535,), "I;16L": (65535,), "I;16B": (65535,), "I;16N": (65535,)}
RANGES |= {"I": (255, 65535), "F": (1, 255)}


def gray_levels(img) -> np.ndarray:
    """(H, W) float64 gray levels in [0, 255]: transparent pixels count as white paper, colour
    as its luminance, and 16-bit, 32-bit and float images are scaled by their range (RANGES)
    rather than clipped to 8 bits, where mid-range ink would read as white. Arrays: (H, W),
    (H, W, 1), (H, W, 3) or (H, W, 4), read like the image mode of their dtype."""
    if isinstance(img, np.ndarray):
        return _array_levels(img)
    if img.mode in RANGES:
        a = np.asarray(img, dtype=np.float64)
        if "transparency" in img.info:  # one sample value marks transparent pixels (tRNS)
            a = np.where(a == img.info["transparency"], np.nan, a)
        return np.nan_to_num(_by_range(a, RANGES[img.mode], img.mode), nan=255.0)
    if img.mode == "LAB":  # lightness is the L band: Pillow has no conversion from LAB
        return np.asarray(img.getchannel("L"), dtype=np.float64)
    try:
        if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
            rgba = (img.convert("LA") if img.mode == "La" else img).convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.float64)
        return np.asarray(img.convert("L"), dtype=np.float64)
    except ValueError:  # a mode Pillow cannot convert
        raise ImageError(f"{img.mode} images cannot be read as grayscale") from None


def _by_range(a: np.ndarray, fulls: tuple, what: str) -> np.ndarray:
    """``a`` scaled to [0, 255] by the first of ``fulls`` that holds it (NaN: transparent)."""
    finite = a[~np.isnan(a)]
    if finite.size == 0 or np.isinf(finite).any():
        raise ImageError(f"a {what} image whose values are not all finite")
    lo, hi = float(finite.min()), float(finite.max())
    for full in fulls:
        if lo >= 0 and hi <= full:
            return a * (255 / full)
    return (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)


def _array_levels(a: np.ndarray) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] in (3, 4) and a.dtype == np.uint8:  # RGB(A)
        return gray_levels(Image.fromarray(a, "RGBA" if a.shape[2] == 4 else "RGB"))
    if a.ndim != 2 or a.dtype.kind not in "biuf" or min(a.shape) == 0:
        raise ImageError(
            "an image array must be (H, W) or (H, W, 1) of numbers, or (H, W, 3) or (H, W, 4) "
            f"of uint8. Received: shape {a.shape}, dtype {a.dtype}"
        )
    kind = a.dtype.kind
    fulls = (np.iinfo(a.dtype).max,) if kind == "u" else {"b": (1,), "i": (255, 65535)}.get(kind, (1, 255))  # fmt: skip
    return _by_range(a.astype(np.float64), fulls, str(a.dtype))


UNEVEN_LIGHT = 8  # gray levels of shading along the border (border_light): a photo's light
NOISY = 2.0  # gray levels of pixel-to-pixel noise along the border: a photo's sensor
# A picture smaller than this on its short side is read as a scan, never as a photo: its pen
# strokes are as wide as the paper-level window (a sixth of the side) and a 3x3 median, and a
# digit cropped close puts ink on the border, which reads as shading. Drawn digits cropped to a
# 5% margin and shrunk to 8, 12 and 16 pixels went through the photo path 28, 22 and 14 times
# in 30 and prepared at a median agreement of 0.20, 0.56 and 0.86 with the drawing; read as
# scans, 0.91, 0.94 and 0.95 (tests/test_handwriting.py).
SMALLEST_PHOTO = 32


def border_light(gray: np.ndarray) -> tuple[float, float]:
    """How the page's border is lit, (shading, noise) in gray levels.

    The border band (a 32nd of the short side deep, at least 2 pixels) is cut along each side
    into blocks (a 16th of the side long, and 64 pixels or more). Shading is the spread between the
    10th and 90th percentiles of the blocks' medians; noise is the median distance of the band's
    pixels from their block's median, scaled to a normal's standard deviation (x 1.4826). A
    shadow or light falling off across the page changes the level over tens of pixels and stays
    in the blocks' medians; sensor noise changes it from one pixel to the next and averages out
    there, so noisy paper lit evenly reads as noisy, not as shaded (the spread of the border's
    pixels themselves, which this replaced, read noise of sigma 5 as 13 levels of shading)."""
    h, w = gray.shape
    depth = max(2, min(h, w) // 32)
    meds, resid = [], []
    for band in (gray[:depth], gray[-depth:], gray[:, :depth].T, gray[:, -depth:].T):
        length = band.shape[1]
        size = max(length // 16, -(-64 // depth))  # 64 pixels or more a block
        n = max(1, length // size)
        size = length // n
        blocks = (
            band[:, : n * size].reshape(band.shape[0], n, size).transpose(1, 0, 2).reshape(n, -1)
        )
        med = np.median(blocks, axis=1)
        meds.append(med)
        resid.append(np.abs(blocks - med[:, None]).ravel())
    low, high = np.percentile(np.concatenate(meds), [10, 90])
    return float(high - low), float(1.4826 * np.median(np.concatenate(resid)))


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
    """An image (PIL or an array) -> a (28, 28) float32 array in [0, 1], prepared like MNIST."""
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


def digit_input(model) -> tuple:
    """The shape a prepared digit is given to ``model`` in: its ``input_shape`` if that is one
    of DIGIT_SHAPES (a free size, None, matches 28); else a DigitModelError naming both."""
    given = model.input_shape  # Keras's: the batch axis first; a list for several inputs
    shape = tuple(given[1:]) if isinstance(given, tuple) else given
    for digit in DIGIT_SHAPES:
        if shape is not None and len(shape) == len(digit):
            if all(s is None or s == d for s, d in zip(shape, digit)):
                return digit
    raise DigitModelError(
        f"the model takes inputs of shape {shape}; a digit is read as a 28x28 grayscale "
        f"image, so it needs {' or '.join(map(str, DIGIT_SHAPES))}"
    )


def predict_digit(model, x: np.ndarray) -> np.ndarray:
    """The model's scores (K,) for one prepared digit ``x`` (28, 28)."""
    p = np.asarray(model.predict(x.reshape(1, *digit_input(model)), verbose=0))
    if p.ndim != 2 or p.shape[0] != 1 or p.shape[1] < 2:
        raise DigitModelError(
            f"the model answers one image with shape {p.shape[1:]}; a digit reader needs a "
            "vector of class scores"
        )
    if not np.isfinite(p).all():
        raise DigitModelError("the model's answer holds NaN or infinity: its weights are broken")
    return p[0]


def classify(model, img) -> tuple[np.ndarray, np.ndarray]:
    """What ``model`` reads in the image: (probabilities (K,), the prepared (28, 28) input).
    ``minicnn predict`` and ``minicnn serve`` both answer through ``predict_digit``."""
    x = prepare_digit(img)
    return predict_digit(model, x), x
