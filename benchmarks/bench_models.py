"""Training speed of the models beyond the seed one, minicnn against PyTorch eager CPU, as a
same-run ratio: keras.io's simple convnet, and a BatchNorm + augmentation CNN.

    python benchmarks/bench_models.py [--repeats 3] [--images 4096] [--batch 128]

Each measure runs in a fresh process (minicnn's after ``import numpy``, as user scripts start),
round-robin between the contenders; each times its own training loop (shuffle, gather, forward,
backward, Adam) over the same random MNIST-shaped images after one warm-up epoch. Median of the
rounds. Writes results/models.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

MODELS = ("convnet", "bn_augment")

MINICNN = r"""
import numpy as np  # first, as user scripts do
import time, sys, json
import minicnn as keras
from minicnn import layers

name, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(0)
if name == "convnet":
    model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
else:
    model = keras.Sequential([keras.Input(shape=(28, 28, 1)),
        layers.RandomRotation(0.03), layers.RandomZoom(0.1), layers.RandomTranslation(0.1, 0.1),
        layers.Conv2D(32, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.Conv2D(32, 5, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.4),
        layers.Conv2D(64, 3, use_bias=False), layers.BatchNormalization(), layers.ReLU(),
        layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")])
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
g = np.random.default_rng(0)
x = g.random((n, 28, 28, 1), dtype=np.float32)
y = g.integers(0, 10, n)
model.fit(x[: 4 * batch], y[: 4 * batch], batch_size=batch, epochs=1, verbose=0)
start = time.perf_counter()
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
print(json.dumps(n / (time.perf_counter() - start)))
"""

TORCH = r"""
import numpy as np
import time, sys, json, math
import torch
from torch import nn
import torch.nn.functional as F

name, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
if name == "convnet":
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(1600, 10))
else:
    model = nn.Sequential(nn.Conv2d(1, 32, 3, bias=False), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU(),
        nn.Conv2d(32, 32, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(32, eps=1e-3),
        nn.ReLU(), nn.Dropout(0.4), nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64, eps=1e-3),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

def augment(xb):  # rotation, zoom and shift per image, resampled in one call, as minicnn does
    k = xb.shape[0]
    angle = (torch.rand(k) * 2 - 1) * 0.03 * 2 * math.pi
    zoom = 1 + (torch.rand(k) * 2 - 1) * 0.1
    shift = (torch.rand(k, 2) * 2 - 1) * 0.2
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, xb.shape, align_corners=False)
    return F.grid_sample(xb, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

opt = torch.optim.Adam(model.parameters(), 1e-3)
g = np.random.default_rng(0)
X = torch.tensor(g.random((n, 1, 28, 28), dtype=np.float32))
Y = torch.tensor(g.integers(0, 10, n))

def epoch(count):
    model.train()
    order = torch.randperm(count)
    for lo in range(0, count, batch):
        idx = order[lo: lo + batch]
        xb = X[idx]
        if name != "convnet":
            xb = augment(xb)
        loss = F.cross_entropy(model(xb), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss.item()

epoch(4 * batch)
start = time.perf_counter()
epoch(n)
print(json.dumps(n / (time.perf_counter() - start)))
"""


def measure(code: str, model: str, n: int, batch: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code, model, str(n), str(batch)],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    try:
        import torch  # noqa: F401

        contenders = {"minicnn": MINICNN, "torch": TORCH}
    except ImportError:
        print("PyTorch is not installed (pip install -e '.[bench]'): minicnn alone")
        contenders = {"minicnn": MINICNN}
    record = {}
    print(f"training images/s, batch {args.batch}, {args.images} images, median of {args.repeats}")  # fmt: skip
    print("| model | minicnn | PyTorch eager | minicnn/PyTorch |")
    print("|---|---|---|---|")
    for model in MODELS:
        runs = {k: [] for k in contenders}
        for _ in range(args.repeats):
            for name, code in contenders.items():
                runs[name].append(measure(code, model, args.images, args.batch))
        med = {k: statistics.median(v) for k, v in runs.items()}
        record[model] = {"runs": runs, "median": med}
        theirs = med.get("torch")
        ratio = f"{med['minicnn'] / theirs:.2f}x" if theirs else "-"
        print(f"| {model} | {med['minicnn']:,.0f} | {f'{theirs:,.0f}' if theirs else '-'} | {ratio} |", flush=True)  # fmt: skip
    path = Path(__file__).parent / "results" / "models.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
