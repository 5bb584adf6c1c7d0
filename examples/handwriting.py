"""Digits as people write them, not as MNIST prints them: a small test set, and how well each
model reads it through ``minicnn predict``'s own path (minicnn.preprocessing.classify).

The set (tests/data/handwriting/, 300 images, 30 of each digit) has three sources, none of them
MNIST:
- stroke: digits drawn stroke by stroke with Pillow, as a hand would, from a skeleton of lines
  and arcs: jittered, slanted, rotated, off-centre, thin to thick pens, on white;
- font: handwriting fonts from Debian (fonts-humor-sans, fonts-comic-neue, fonts-dkg-handwriting,
  fonts-breip, fonts-bwht, fonts-dancingscript, fonts-kaushanscript,
  fonts-kristi, fonts-klee), turned and shifted;
- photo: stroke digits as a phone sees them on paper: tinted paper, uneven light, a shadow,
  faint ruled lines, blue or pencil ink, a slight perspective, blur, sensor noise, JPEG.
Each file is named ``<digit>-<source>-<n>``.

A second set, held out of every choice, comes from writers this project never saw: the 1,797
test digits of UCI's "Optical Recognition of Handwritten Digits" (Alpaydin and Kaynak, 1998; 13
people who filled in NIST's forms), as scikit-learn ships them (``sklearn.datasets.load_digits``,
``pip install scikit-learn``). Each is an 8x8 image of 0-16 ink counts (a 32x32 scan of the
form, 4x4 pixels a cell), given to the preparation step as a user would give a tiny scan: dark
ink on white paper, 8 bits, at its own size.

    python examples/handwriting.py runs/mnist/model.minicnn runs/mnist_best/model.minicnn
    python examples/handwriting.py --uci runs/mnist_best/model.minicnn   # the held-out set too
    python examples/handwriting.py --make tests/data/handwriting   # draw the set again
"""

from __future__ import annotations

import argparse
import glob
import io
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SET = Path(__file__).resolve().parent.parent / "tests" / "data" / "handwriting"
PER_SOURCE = 10  # images of each digit from each source
FONT_GLOBS = [
    "/usr/share/fonts/truetype/humor-sans/*.ttf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Bold.otf",
    "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "/usr/share/fonts/truetype/breip/Breip.ttf",
    "/usr/share/fonts/opentype/bwht/*.otf",
    "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
    "/usr/share/fonts/opentype/kaushanscript/*.otf",
    "/usr/share/fonts/truetype/kristi/Kristi.ttf",
    "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf",
]


# -- drawing a digit as strokes -------------------------------------------------------------------


def arc(cx, cy, rx, ry, a0, a1, n=24):
    """Points along an ellipse from angle a0 to a1 (degrees; y points down, so increasing
    angles turn clockwise on screen)."""
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def skeleton(digit: int, rng) -> list[list[tuple[float, float]]]:
    """The strokes of ``digit`` in a unit box, with a hand's choices (a flag on the 1, a bar
    through the 7, a straight or curved tail on the 9)."""
    if digit == 0:
        return [arc(0.5, 0.5, 0.32, 0.46, -100, 265)]
    if digit == 1:
        stem = [(0.55, 0.04), (0.5, 0.96)]
        return [[(0.3, 0.25), *stem]] if rng.random() < 0.5 else [stem]
    if digit == 2:
        return [arc(0.5, 0.3, 0.3, 0.26, 190, 395) + [(0.15, 0.95), (0.88, 0.93)]]
    if digit == 3:
        return [arc(0.5, 0.27, 0.28, 0.23, 200, 450) + arc(0.5, 0.72, 0.32, 0.24, 270, 520)]
    if digit == 4:
        return [[(0.62, 0.04), (0.12, 0.66), (0.9, 0.66)], [(0.66, 0.3), (0.66, 0.97)]]
    if digit == 5:
        return [[(0.82, 0.05), (0.3, 0.05), (0.25, 0.45)] + arc(0.5, 0.68, 0.32, 0.28, 235, 505)]
    if digit == 6:
        return [arc(0.6, 0.55, 0.42, 0.5, 290, 180) + arc(0.48, 0.72, 0.3, 0.24, 180, 540)]
    if digit == 7:
        strokes = [[(0.12, 0.05), (0.88, 0.05), (0.38, 0.96)]]
        return strokes + [[(0.38, 0.5), (0.78, 0.5)]] if rng.random() < 0.3 else strokes
    if digit == 8:
        return [arc(0.5, 0.27, 0.25, 0.22, 90, 450), arc(0.5, 0.72, 0.31, 0.25, -90, 270)]
    loop = arc(0.5, 0.3, 0.3, 0.26, 0, 360)
    tail = [(0.8, 0.3), (0.72, 0.96)] if rng.random() < 0.5 else arc(0.3, 0.3, 0.5, 0.66, 0, 95)
    return [loop, tail]


def draw_strokes(digit: int, rng, side: int = 128) -> Image.Image:
    """One hand-drawn digit, dark on white, ``side`` pixels square."""
    slant = rng.uniform(-0.35, 0.15)  # most hands lean right: x shifts with height
    turn = math.radians(rng.uniform(-15, 15))
    height = rng.uniform(0.45, 0.85) * side
    width = height * rng.uniform(0.55, 0.85)
    cx = side * rng.uniform(0.35, 0.65)
    cy = side * rng.uniform(0.38, 0.62)
    pen = max(1, round(side * rng.choice([0.02, 0.04, 0.07, 0.11])))
    img = Image.new("L", (side, side), 255)
    draw = ImageDraw.Draw(img)
    for stroke in skeleton(digit, rng):
        p = np.array(stroke) + rng.normal(0, 0.015, (len(stroke), 2))
        x, y = (p[:, 0] - 0.5) * width, (p[:, 1] - 0.5) * height
        x = x - slant * y
        xr = cx + x * math.cos(turn) - y * math.sin(turn)
        yr = cy + x * math.sin(turn) + y * math.cos(turn)
        pts = list(zip(xr.tolist(), yr.tolist()))
        draw.line(pts, fill=0, width=pen, joint="curve")
        for px, py in (pts[0], pts[-1]):  # round pen ends
            draw.ellipse([px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2], fill=0)
    return img


def draw_font(digit: int, font_path: str, rng, side: int = 128) -> Image.Image:
    """``digit`` in a handwriting font, turned and shifted, dark on white."""
    font = ImageFont.truetype(font_path, size=round(side * rng.uniform(0.5, 0.8)))
    img = Image.new("L", (side * 2, side * 2), 255)
    ImageDraw.Draw(img).text((side, side), str(digit), fill=0, font=font, anchor="mm")
    img = img.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC, fillcolor=255)
    dx, dy = rng.integers(-side // 6, side // 6 + 1, 2)
    return img.crop((side // 2 + dx, side // 2 + dy, side // 2 + dx + side, side // 2 + dy + side))


def photograph(ink: Image.Image, rng) -> bytes:
    """A JPEG of ``ink`` (dark on white) as if written on paper and photographed."""
    w, h = 192, 160
    a = np.asarray(ink.resize((128, 128), Image.Resampling.BILINEAR), dtype=np.float64) / 255
    coverage = np.zeros((h, w))
    y0, x0 = rng.integers(4, h - 132), rng.integers(8, w - 136)
    coverage[y0 : y0 + 128, x0 : x0 + 128] = 1 - a  # 1 where ink
    paper = np.array([rng.uniform(200, 245), rng.uniform(195, 240), rng.uniform(180, 230)])
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    light = 1 + gx * (xx - 0.5) + gy * (yy - 0.5)  # uneven light across the page
    if rng.random() < 0.5:  # the phone's shadow over one corner, soft-edged
        corner = (rng.integers(0, 2) * w, rng.integers(0, 2) * h)
        d = np.hypot(xx * max(h, w) - corner[0], yy * max(h, w) - corner[1]) / max(h, w)
        light *= 1 - 0.3 / (1 + np.exp((d - rng.uniform(0.3, 0.6)) * 20))
    rgb = paper[None, None, :] * light[..., None]
    if rng.random() < 0.5:  # faint ruled lines
        gap = rng.integers(22, 34)
        rows = (np.arange(h) + rng.integers(0, gap)) % gap == 0
        rgb[rows] *= np.array([0.93, 0.95, 1.0])
    ink_rgb = np.array(
        rng.choice([[30, 40, 120], [40, 40, 45], [90, 90, 95]])
    )  # blue, black, pencil
    strength = rng.uniform(0.75, 1.0)
    cov = coverage[..., None] * strength
    rgb = rgb * (1 - cov) + ink_rgb[None, None, :] * light[..., None] * cov
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    k = rng.uniform(-0.0006, 0.0006, 2)  # a slight tilt of the phone
    img = img.transform(
        (w, h), Image.Transform.PERSPECTIVE, (1, 0, 0, 0, 1, 0, *k), Image.Resampling.BILINEAR,
        fillcolor=tuple(int(c) for c in paper),
    )  # fmt: skip
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.6)))
    noisy = np.asarray(img, dtype=np.float64) + rng.normal(0, rng.uniform(3, 9), (h, w, 3))
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=int(rng.integers(55, 85)))
    return out.getvalue()


def make(folder: Path, seed: int = 2026) -> None:
    fonts = sorted({p for pattern in FONT_GLOBS for p in glob.glob(pattern)})
    if len(fonts) < 10:
        raise SystemExit(f"found {len(fonts)} handwriting fonts; install the Debian packages named in this file")  # fmt: skip
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for n in range(PER_SOURCE):
            draw_strokes(digit, rng).save(folder / f"{digit}-stroke-{n}.png", optimize=True)
            font = fonts[(digit * PER_SOURCE + n) % len(fonts)]
            draw_font(digit, font, rng).save(folder / f"{digit}-font-{n}.png", optimize=True)
            (folder / f"{digit}-photo-{n}.jpg").write_bytes(photograph(draw_strokes(digit, rng), rng))  # fmt: skip
    print(f"wrote {10 * 3 * PER_SOURCE} images to {folder} ({len(fonts)} fonts)")


# -- reading it -----------------------------------------------------------------------------------


def labelled_set(folder: Path = SET) -> list[tuple[Path, int, str]]:
    """(path, digit, source) for every image in the set."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix in (".png", ".jpg"):
            digit, source, _ = path.stem.split("-")
            out.append((path, int(digit), source))
    return out


def score(model_path: str, folder: Path = SET) -> dict[str, tuple[int, int]]:
    """Correct and total per source, each image read as ``minicnn predict`` reads it."""
    from minicnn.cli import _load
    from minicnn.preprocessing import classify, load_image

    model = _load(model_path)
    tally: dict[str, list[int]] = {}
    for path, digit, source in labelled_set(folder):
        p, _ = classify(model, load_image(path))
        for key in (source, "all"):
            tally.setdefault(key, [0, 0])
            tally[key][0] += int(np.argmax(p) == digit)
            tally[key][1] += 1
    return {k: (c, n) for k, (c, n) in tally.items()}


def uci_digits() -> tuple[np.ndarray, np.ndarray]:
    """UCI's held-out writers, as images a user would give: (1797, 8, 8) uint8 dark ink on
    white, and their digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "the UCI digits come with scikit-learn: pip install scikit-learn"
        ) from None
    data = load_digits()
    images = np.round(255 - data.images * (255 / 16)).astype(np.uint8)
    return images, data.target.astype(np.int64)


def score_uci(model_path: str) -> tuple[int, int]:
    """Correct and total on the UCI digits, each read as ``minicnn predict`` reads an image."""
    from minicnn.cli import _load
    from minicnn.preprocessing import digit_input, prepare_digit

    model = _load(model_path)
    images, digits = uci_digits()
    x = np.stack([prepare_digit(img) for img in images])
    p = np.asarray(model.predict(x.reshape(len(x), *digit_input(model)), batch_size=256, verbose=0))
    return int((p.argmax(axis=1) == digits).sum()), len(digits)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="model files to score on the set")
    ap.add_argument("--make", metavar="DIR", help="draw the set into DIR instead")
    ap.add_argument("--uci", action="store_true", help="score UCI's held-out writers too (scikit-learn)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.make:
        make(Path(args.make))
        return 0
    if not args.models:
        ap.error("name at least one model file, or --make DIR")
    sources = ["stroke", "font", "photo", "all"]
    heads = sources + ["UCI writers (held out)"] * args.uci
    keys = sources + ["uci"] * args.uci
    print(f"| model | {' | '.join(heads)} |\n|---|{'---|' * len(heads)}")
    for m in args.models:
        if not os.path.isfile(m):
            print(f"no model at {m}", file=sys.stderr)
            return 1
        s = score(m)
        if args.uci:
            s["uci"] = score_uci(m)
        print(f"| {m} | " + " | ".join(f"{s[k][0] / s[k][1]:.1%} ({s[k][0]}/{s[k][1]})" for k in keys) + " |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
