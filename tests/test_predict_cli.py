"""Preparing your own digit like MNIST, and the command line's answers to bad input."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from minicnn.preprocessing import ImageError, bounding_box, center_of_mass, prepare_digit


def draw_seven(size=(200, 160), box=(40, 30, 120, 140), width=12, dark_on_light=True, mode="L"):
    """A '7' drawn with Pillow: a bar and a slanted stroke inside ``box`` (x0, y0, x1, y1)."""
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    img = Image.new("L", size, paper)
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    d.line([(x0, y0), (x1, y0)], fill=ink, width=width)
    d.line([(x1, y0), (x0 + (x1 - x0) // 3, y1)], fill=ink, width=width)
    return img.convert(mode)


CASES = {
    "dark on light": {},
    "light on dark": {"dark_on_light": False},
    "off-centre": {"box": (130, 10, 190, 70)},
    "large": {"size": (600, 600), "box": (50, 40, 560, 580), "width": 40},
    "small": {"box": (10, 120, 22, 150), "width": 2},
    "thin": {"width": 2},
    "thick": {"width": 30},
    "colour": {"mode": "RGB"},
}


@pytest.mark.parametrize("case", CASES)
def test_each_preparation_step(case):
    x = prepare_digit(draw_seven(**CASES[case]))
    assert x.shape == (28, 28) and x.dtype == np.float32
    # range and polarity: background 0, the strongest ink 1, like MNIST scaled to [0, 1]
    assert x.min() == 0 and 0.9 <= x.max() <= 1.0
    assert np.median(x) == 0 and x[:2, :2].max() == x[-2:, -2:].max() == x[:2, -2:].max() == 0
    # the ink's box fits 20x20, its longer side filling it (the '7' is taller than wide)
    top, bottom, left, right = bounding_box(x)
    assert bottom - top in (19, 20, 21) and right - left <= 21
    # centre of mass at the centre of the field, to within the half pixel an integer shift allows
    cy, cx = center_of_mass(x)
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75


def test_polarity_does_not_matter():
    a = prepare_digit(draw_seven(dark_on_light=True))
    b = prepare_digit(draw_seven(dark_on_light=False))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_position_and_scale_do_not_matter():
    a = prepare_digit(draw_seven(box=(40, 30, 120, 140)))
    b = prepare_digit(draw_seven(size=(400, 320), box=(200, 100, 360, 320), width=24))
    assert np.abs(a - b).mean() < 0.05


def test_empty_image_is_refused():
    with pytest.raises(ImageError, match="the image is empty"):
        prepare_digit(Image.new("L", (50, 50), 255))


@pytest.fixture
def model_file(seed_model_file):
    return seed_model_file


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "minicnn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_predict_prints_digit_and_top3(tmp_path, model_file):
    png = tmp_path / "seven.png"
    draw_seven().save(png)
    done = cli("predict", png, png, "--model", model_file)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    name, rest = lines[0].split(": ", 1)
    assert name == str(png)
    digit, top3 = rest.split(maxsplit=1)
    probs = [float(p.split(": ")[1].rstrip("%")) for p in top3.strip("()").split(", ")]
    assert digit.isdigit() and len(probs) == 3 and probs == sorted(probs, reverse=True)


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"not an image at all"), "only PNG and JPEG images are read"),
        (lambda p: Image.new("L", (40, 40), 255).save(p, format="PNG"), "the image is empty"),
        (lambda p: p.mkdir(), "is a folder, not an image"),
    ],
)
def test_predict_bad_images_one_line_no_traceback(tmp_path, model_file, make, expected):
    bad = tmp_path / "input.png"
    make(bad)
    done = cli("predict", bad, "--model", model_file)
    assert done.returncode == 1
    assert (
        done.stderr.count("\n") == 1 and expected in done.stderr and "Traceback" not in done.stderr
    )


def test_missing_or_damaged_model_one_line(tmp_path):
    png = tmp_path / "seven.png"
    draw_seven().save(png)
    done = cli("predict", png, "--model", tmp_path / "none.minicnn")
    assert done.returncode == 1 and "no model at" in done.stderr and "Traceback" not in done.stderr
    broken = tmp_path / "broken.minicnn"
    broken.write_bytes(b"garbage")
    done = cli("predict", png, "--model", broken)
    assert done.returncode == 1 and "is not a minicnn model file" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_bad_flags_are_refused():
    done = cli("train", "--epochs", "-1")
    assert done.returncode == 2 and "--epochs must be positive" in done.stderr


def test_predict_goes_on_after_a_bad_image(tmp_path, model_file):
    """A LAB-mode TIFF raised a bare ValueError: a traceback, and the images after it were
    never read. Each bad image is now one line, and the next one is read."""
    lab = tmp_path / "lab.tif"
    draw_seven().convert("RGB").convert("LAB").save(lab)
    good = tmp_path / "seven.png"
    draw_seven().save(good)
    long_name = tmp_path / ("x" * 300 + ".png")
    through_a_file = good / "inside.png"
    done = cli("predict", lab, long_name, through_a_file, good, "--model", model_file)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    errors = done.stderr.splitlines()
    assert len(errors) == 3
    assert "lab.tif is a TIFF image; only PNG and JPEG images are read" in errors[0]
    assert "cannot open it (File name too long)" in errors[1]
    assert "inside.png: cannot open it (Not a directory)" in errors[2]
    assert done.stdout.startswith(f"{good}: ")  # read after the bad ones


def test_a_model_for_other_inputs_is_one_line(tmp_path):
    """A valid 32x32x3 model: a ValueError traceback from inside predict."""
    from minicnn import Sequential
    from minicnn.layers import Conv2D, Dense, Flatten

    model = Sequential([Conv2D(2, 3, input_shape=(32, 32, 3)), Flatten(), Dense(10)])
    model.compile("adam", "categorical_crossentropy")
    model.save(tmp_path / "rgb.minicnn")
    png = tmp_path / "seven.png"
    draw_seven().save(png)
    for command in ("predict", "evaluate"):
        args = [png] if command == "predict" else ["--data", tmp_path / "none"]
        done = cli(command, *args, "--model", tmp_path / "rgb.minicnn")
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "the model takes inputs of shape (32, 32, 3)" in done.stderr
        assert "(28, 28, 1)" in done.stderr and "Traceback" not in done.stderr


def test_a_model_path_too_long_is_one_line(tmp_path):
    png = tmp_path / "seven.png"
    draw_seven().save(png)
    done = cli("predict", png, "--model", tmp_path / ("m" * 300 + ".minicnn"))
    assert done.returncode == 1 and "File name too long" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
