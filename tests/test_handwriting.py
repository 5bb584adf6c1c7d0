"""People's handwriting: the repo's set (tests/data/handwriting) and the preparation step that
both ``minicnn predict`` and the web page read digits through."""

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from minicnn import preprocessing
from minicnn.preprocessing import bounding_box, center_of_mass, main_strokes, prepare_digit

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("handwriting", ROOT / "examples" / "handwriting.py")
handwriting = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(handwriting)


def _blurred(x):
    """Compare shapes, not pixels: a 1-pixel shift of a thin stroke should not count."""
    img = Image.fromarray((x * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    return np.asarray(img, dtype=np.float64).ravel()


def test_a_photographed_digit_is_prepared_like_the_drawing_itself():
    """The same strokes, clean and as a phone photo (tinted paper, uneven light, a shadow,
    ruled lines, the page's edge, blur, noise, JPEG), must give the model the same input.
    One level of paper for the whole page read shadows as ink: median agreement 0.50."""
    rng = np.random.default_rng(1)
    agree = []
    for i in range(30):
        drawing = handwriting.draw_strokes(i % 10, rng)
        photo = Image.open(io.BytesIO(handwriting.photograph(drawing, rng)))
        a, b = _blurred(prepare_digit(drawing)), _blurred(prepare_digit(photo))
        agree.append(np.corrcoef(a, b)[0, 1])
    assert np.median(agree) >= 0.9 and min(agree) >= 0.75, np.round(sorted(agree), 2)


def test_marks_around_a_digit_are_dropped_and_a_broken_digit_kept():
    ink = np.zeros((100, 120))
    ink[20:80, 40:44] = 1.0  # the stroke of a 1
    ink[25:27, 55:75] = 1.0  # a 7's bar, detached: a tenth of the stroke's ink or more
    ink[90, 10] = 1.0  # a speck
    ink[5:60, 118] = 1.0  # the page's edge, near the picture's
    kept = main_strokes(ink > 0.5, ink)
    assert kept[20:80, 40:44].all() and kept[25:27, 55:75].all()
    assert not kept[90, 10] and not kept[5:60, 118].any()
    edge_only = np.zeros((50, 50))
    edge_only[0:40, 0:3] = 1.0  # all the ink runs off the picture: keep it rather than nothing
    assert main_strokes(edge_only > 0.5, edge_only).sum() == 120


def test_the_set_is_complete_and_every_image_prepares_like_mnist():
    items = handwriting.labelled_set()
    assert len(items) == 300
    for digit in range(10):
        for source in ("stroke", "font", "photo"):
            assert sum(1 for _, d, s in items if (d, s) == (digit, source)) == 10
    for path, _, _ in items:
        x = prepare_digit(Image.open(path))
        assert x.shape == (28, 28) and x.dtype == np.float32
        top, bottom, left, right = bounding_box(x)
        assert 18 <= max(bottom - top, right - left) <= 21, path.name  # MNIST's 20-pixel box
        cy, cx = center_of_mass(x)
        assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1, path.name


def _paper(shape, rng, sigma, tilt=0.0):
    """Paper at level 220, light falling off by ``tilt`` of it across the width, sensor noise
    of standard deviation ``sigma``, as 8-bit levels."""
    h, w = shape
    light = 1 + tilt * (np.arange(w) / w - 0.5)
    page = 220 * light[None, :] + rng.normal(0, sigma, (h, w))
    return np.clip(page, 0, 255).round()


def test_noise_alone_does_not_read_as_uneven_light():
    """The border's pixel spread read sensor noise of sigma 6 as 14-16 levels of shading and
    sent evenly lit noisy paper through the paper-level path; the blocks' medians do not."""
    rng = np.random.default_rng(3)
    for side in (28, 64, 200, 640):
        for sigma in (3, 6, 9, 12):
            gray = _paper((side, side * 4 // 3), rng, sigma)
            shading, noise = preprocessing.border_light(gray)
            assert shading <= preprocessing.UNEVEN_LIGHT, (side, sigma, shading)
            assert noise > preprocessing.NOISY and abs(noise - sigma) < 0.2 * sigma + 1, (side, sigma, noise)  # fmt: skip
        shading, noise = preprocessing.border_light(_paper((side, side), rng, 0))
        assert shading == 0 and noise == 0


def test_uneven_light_still_reads_as_uneven_light_through_noise():
    rng = np.random.default_rng(4)
    for side in (64, 200, 640):
        for tilt in (0.06, 0.1, 0.25):  # 13, 22 and 55 levels from one side to the other
            shading, _ = preprocessing.border_light(_paper((side, side), rng, 6, tilt))
            assert shading > preprocessing.UNEVEN_LIGHT, (side, tilt, shading)


def test_a_digit_on_noisy_evenly_lit_paper_skips_the_paper_level(monkeypatch):
    """Noise is smoothed and specks dropped, but the page keeps one level: the closing that
    estimates a level per pixel is for shadows, and it lifts thick strokes off small photos."""

    def refuse(*args, **kwargs):
        raise AssertionError("paper_level ran on evenly lit paper")

    monkeypatch.setattr(preprocessing, "paper_level", refuse)
    rng = np.random.default_rng(5)
    agree = []
    for digit in range(10):
        drawing = handwriting.draw_strokes(digit, rng)
        ink = 1 - np.asarray(drawing.convert("L"), dtype=np.float64) / 255
        page = _paper(ink.shape, rng, 9) * (1 - 0.8 * ink)  # dark ink, 80% of the paper's light
        x = prepare_digit(np.clip(page, 0, 255).astype(np.uint8))
        agree.append(np.corrcoef(_blurred(prepare_digit(drawing)), _blurred(x))[0, 1])
    assert min(agree) >= 0.9, np.round(agree, 2)


def test_a_tiny_scan_cropped_close_is_read_as_a_scan():
    """Ink on a close crop's border read as uneven light, and the paper-level closing and the
    median then wiped out an 8-16 pixel digit's strokes (median agreement 0.20-0.86)."""
    rng = np.random.default_rng(11)
    for side in (8, 12, 16):
        agree = []
        for i in range(30):
            drawing = handwriting.draw_strokes(i % 10, rng)
            ink = 255 - np.asarray(drawing.convert("L"), dtype=np.float64)
            top, bottom, left, right = bounding_box(ink / ink.max())
            m = max(1, (bottom - top) // 20)  # a 5% margin
            crop = Image.fromarray((255 - np.pad(ink, m)[top : bottom + 2 * m, left : right + 2 * m]).astype(np.uint8))  # fmt: skip
            scale = side / max(crop.size)
            small = crop.resize([max(1, round(d * scale)) for d in crop.size], Image.Resampling.BOX)
            agree.append(np.corrcoef(_blurred(prepare_digit(drawing)), _blurred(prepare_digit(small)))[0, 1])  # fmt: skip
        assert np.median(agree) >= 0.9 and min(agree) >= 0.7, (side, np.round(sorted(agree), 2))


def test_the_held_out_writers_prepare_like_mnist():
    """UCI's 1,797 digits by 13 writers (scikit-learn's copy), 8x8 scans of 0-16 ink counts:
    each is read at its own size, dark ink on white, into MNIST's 20-pixel box, centred."""
    images, digits = handwriting.uci_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert np.bincount(digits).min() >= 170  # every digit, about 180 each
    boxes, offsets = [], []
    for img in images:
        x = prepare_digit(img)
        top, bottom, left, right = bounding_box(x)
        boxes.append(max(bottom - top, right - left))
        offsets.append(np.abs(np.subtract(center_of_mass(x), 13.5)).max())
    boxes, offsets = np.array(boxes), np.array(offsets)
    # Before the small-picture rule, 63 of them went through the photo path (their ink on the
    # border read as shading) and came out 5-19 pixels high; now every one fills the box.
    assert ((boxes >= 18) & (boxes <= 21)).all(), np.bincount(boxes)
    assert (offsets <= 1).all(), np.percentile(offsets, [50, 99, 100])
