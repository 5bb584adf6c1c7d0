"""minicnn on CuPy against PyTorch CUDA (eager) on the seed model, in one interleaved run.

    python benchmarks/bench_gpu.py [--repeats 3] [--example]

Checks first that the CuPy model computes what the NumPy one does; then times a training epoch
of 60,000 MNIST-shaped images at batch 32, 128 and 1024, and inference on 10,000 at batch 128 and
1000, each next to PyTorch's figure from the same run. ``--example`` also times
``examples/mnist.py --backend cupy`` end to end (it needs the MNIST cache on the machine).
Writes benchmarks/results/gpu.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    INFER_FLOP_PER_IMAGE,
    TRAIN_FLOP_PER_IMAGE,
    breakdown_table,
    interleaved,
    layer_breakdown,
    minicnn_model,
    minicnn_predict,
    minicnn_train,
    mnist_like,
    table,
    torch_available,
    torch_model,
    torch_predict,
    torch_train,
    write_json,
)


def check_agreement(x, y) -> float:
    """One training step from the same start on both backends; returns the weights' relative gap."""
    gaps = []
    weights = []
    for name in ("numpy", "cupy"):
        model = minicnn_model(name)
        model.train_on_batch(x[:32], y[:32])
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        gaps.append(np.linalg.norm(a - b) / np.linalg.norm(a))
    return float(max(gaps))


def run_example() -> dict:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                str(root / "examples" / "mnist.py"),
                "--backend",
                "cupy",
                "--out",
                out,
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
    found = re.search(r"Test accuracy: ([\d.]+)%.*training took ([\d.]+) s", done.stdout)
    if done.returncode or not found:
        return {"error": (done.stderr or done.stdout)[-500:]}
    print(done.stdout[-2000:])
    return {
        "test_accuracy": float(found[1]) / 100,
        "train_seconds": float(found[2]),
        "end_to_end_seconds": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--example", action="store_true", help="also time examples/mnist.py --backend cupy"
    )
    p.add_argument("--profile", action="store_true", help="also print a per-layer time breakdown")
    args = p.parse_args()

    import cupy

    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    x, y, labels = mnist_like(60_000)
    gap = check_agreement(x, y)
    print(f"GPU: {device}. CuPy vs NumPy after one step: max relative weight gap {gap:.1e}")
    assert gap < 1e-4, "the CuPy model does not compute what the NumPy one does"

    have_torch = torch_available()
    x_dev, y_dev = cupy.asarray(x), cupy.asarray(y)
    if have_torch:
        import torch

        X = torch.tensor(x).permute(0, 3, 1, 2).contiguous().cuda()
        Y = torch.tensor(labels).cuda()
    rows, record = [], {"device": device, "agreement_gap": gap, "train": {}, "inference": {}}

    def row(name, r, flop):
        ours = r["minicnn"]["median"]
        cells = [name, f"{ours:,.0f}"]
        for key in ("torch", "torch_fp32"):
            theirs = r.get(key, {}).get("median")
            cells += [f"{theirs:,.0f}", f"{ours / theirs:.2f}x"] if theirs else ["-", "-"]
        return (*cells, f"{ours * flop / 1e12:.2f}")

    for batch in (32, 128, 1024):
        m = minicnn_model("cupy")
        minicnn_train(m, x_dev[: 4 * batch], y_dev[: 4 * batch], batch)  # warm-up: compile, plan
        measures = {"minicnn": lambda m=m, b=batch: minicnn_train(m, x_dev, y_dev, b)}
        if have_torch:
            t, t32 = torch_model("cuda"), torch_model("cuda")
            torch_train(t, X[: 4 * batch], Y[: 4 * batch], batch)
            torch_train(t32, X[: 4 * batch], Y[: 4 * batch], batch, tf32=False)
            measures["torch"] = lambda t=t, b=batch: torch_train(t, X, Y, b)
            measures["torch_fp32"] = lambda t=t32, b=batch: torch_train(t, X, Y, b, tf32=False)
        r = interleaved(measures, args.repeats)
        record["train"][batch] = r
        rows.append(row(f"train, batch {batch}", r, TRAIN_FLOP_PER_IMAGE))
    for batch in (128, 1000):
        m = minicnn_model("cupy")
        xs = x_dev[:10_000]
        minicnn_predict(m, xs[:batch], batch)
        measures = {"minicnn": lambda m=m, b=batch, xs=xs: minicnn_predict(m, xs, b)}
        if have_torch:
            t = torch_model("cuda")
            torch_predict(t, X[:batch], batch)
            measures["torch"] = lambda t=t, b=batch: torch_predict(t, X[:10_000], b)
            measures["torch_fp32"] = lambda t=t, b=batch: torch_predict(
                t, X[:10_000], b, tf32=False
            )
        r = interleaved(measures, args.repeats)
        record["inference"][batch] = r
        rows.append(row(f"inference, batch {batch}", r, INFER_FLOP_PER_IMAGE))
    print()
    headers = (
        "seed model, images/s",
        "minicnn (CuPy, FP32)",
        "PyTorch eager (default: TF32 convs)",
        "ratio",
        "PyTorch eager (FP32)",
        "ratio FP32",
        "minicnn TFLOP/s",
    )
    print(table(rows, headers))
    if args.profile:
        for batch in (32, 1024):
            rows = layer_breakdown(minicnn_model("cupy"), x, y, batch)
            record.setdefault("breakdown", {})[batch] = rows
            print()
            print(breakdown_table(rows, batch))
    if args.example:
        record["example"] = run_example()
        print(f"examples/mnist.py --backend cupy: {record['example']}")
    print(f"\nwrote {write_json('gpu', record)}")


if __name__ == "__main__":
    main()
