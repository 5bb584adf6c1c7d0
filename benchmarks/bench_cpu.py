"""minicnn on the CPU (numba kernels, and the pure NumPy path) against PyTorch CPU on the seed
model, in one interleaved run.

    python benchmarks/bench_cpu.py [--repeats 3] [--no-memory]

Training images/s at batch 32 and 128, inference at batch 128 and 1000, a per-layer breakdown,
achieved GFLOP/s against this machine's float32 GEMM peak (measured here, now), and the peak
memory of ``examples/mnist.py`` (one epoch: nothing accumulates across epochs, so the peak is the
full run's). Writes benchmarks/results/cpu.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
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

from minicnn import kernels


def gemm_peak() -> float:
    """Best float32 GFLOP/s of NumPy's BLAS on a square 2048 product, as the machine's peak."""
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


class pure_numpy:  # noqa: N801  (a context manager read as a phrase)
    """Inside: the engine ignores the kernels, as MINICNN_KERNELS=numpy makes it."""

    def __enter__(self):
        self.old = os.environ.get("MINICNN_KERNELS")
        os.environ["MINICNN_KERNELS"] = "numpy"

    def __exit__(self, *exc):
        if self.old is None:
            del os.environ["MINICNN_KERNELS"]
        else:
            os.environ["MINICNN_KERNELS"] = self.old


def numpy_path(fn):
    def run():
        with pure_numpy():
            return fn()

    return run


def contenders(kind: str, batch: int, x, y, X, Y) -> dict:
    """Warmed-up measures of one case: minicnn with kernels, minicnn on plain NumPy, PyTorch."""
    fast, slow = minicnn_model("numpy"), minicnn_model("numpy")

    def run(model, data_x=x, data_y=y):
        if kind == "train":
            return minicnn_train(model, data_x, data_y, batch)
        return minicnn_predict(model, data_x, batch)

    run(fast, x[: 2 * batch], y[: 2 * batch])  # warm-up: numba loads its cache, BLAS spins up
    numpy_path(lambda: run(slow, x[: 2 * batch], y[: 2 * batch]))()
    measures = {"kernels": lambda: run(fast), "numpy": numpy_path(lambda: run(slow))}
    if X is not None:
        t = torch_model("cpu")
        if kind == "train":
            torch_train(t, X[: 2 * batch], Y[: 2 * batch], batch)
            measures["torch"] = lambda: torch_train(t, X, Y, batch)
        else:
            torch_predict(t, X[:batch], batch)
            measures["torch"] = lambda: torch_predict(t, X, batch)
    return measures


# The example runs in a child that reports its own high-water mark. The child's ru_maxrss
# would not do: Linux carries the parent's peak into a child across fork/vfork and exec, so it
# read 1.43 GiB here (this process's own peak, with PyTorch loaded) for a 0.55 GiB run.
_PEAK_OF = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
    print("peak_rss_kib", status, flush=True)
"""


def example_memory() -> dict:
    """Peak RSS of ``examples/mnist.py --epochs 1`` (its own VmHWM), in a child process."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_OF, str(root / "examples" / "mnist.py"),
             "--epochs", "1", "--out", out],
            capture_output=True,
            text=True,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    found = re.search(r"Test accuracy: ([\d.]+)%", done.stdout)
    peak = re.search(r"peak_rss_kib (\d+)", done.stdout)
    if done.returncode or not found or not peak:
        return {"error": (done.stderr or done.stdout)[-500:]}
    return {
        "peak_rss_bytes": int(peak[1]) * 1024,
        "test_accuracy_1_epoch": float(found[1]) / 100,
        "seconds": seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the examples/mnist.py memory run")
    args = p.parse_args()
    if not kernels.available("cpu"):
        print("note: numba kernels unavailable; both minicnn rows use the NumPy path")
    have_torch = torch_available()
    if have_torch:
        import torch

        threads = torch.get_num_threads()
    peak = gemm_peak()
    print(
        f"float32 GEMM peak here (NumPy BLAS, 2048^3): {peak:.0f} GFLOP/s; PyTorch threads: {threads if have_torch else '-'}"
    )

    x, y, labels = mnist_like(8192)
    if have_torch:
        X = torch.tensor(x).permute(0, 3, 1, 2).contiguous()
        Y = torch.tensor(labels)
    rows, record = [], {"gemm_peak_gflops": peak, "train": {}, "inference": {}}
    cases = [("train", b, min(len(x), 100 * b)) for b in (32, 128)] + [
        ("inference", b, 5000) for b in (128, 1000)
    ]
    for kind, batch, n in cases:
        measures = contenders(
            kind, batch, x[:n], y[:n], X[:n] if have_torch else None, Y[:n] if have_torch else None
        )
        r = interleaved(measures, args.repeats)
        record[kind][batch] = r
        flop = TRAIN_FLOP_PER_IMAGE if kind == "train" else INFER_FLOP_PER_IMAGE
        ours, pure = r["kernels"]["median"], r["numpy"]["median"]
        theirs = r.get("torch", {}).get("median")
        rows.append(
            (
                f"{kind}, batch {batch}",
                f"{ours:,.0f}",
                f"{pure:,.0f}",
                f"{theirs:,.0f}" if theirs else "-",
                f"{ours / theirs:.2f}x" if theirs else "-",
                f"{ours * flop / 1e9:.0f} ({ours * flop / 1e9 / peak:.0%})",
            )
        )
        print(
            f"  {rows[-1][0]}: {rows[-1][1]} img/s (kernels), {rows[-1][2]} (NumPy), {rows[-1][3]} (PyTorch)",
            flush=True,
        )
    print()
    print(
        table(
            rows,
            (
                "seed model, images/s",
                "minicnn",
                "minicnn NumPy only",
                "PyTorch CPU",
                "minicnn/PyTorch",
                "minicnn GFLOP/s (of peak)",
            ),
        )
    )
    breakdown = layer_breakdown(minicnn_model("numpy"), x, y, 32)
    record["breakdown_batch_32"] = breakdown
    print()
    print(breakdown_table(breakdown, 32))
    if not args.no_memory:
        record["example"] = example_memory()
        m = record["example"]
        if "peak_rss_bytes" in m:
            print(
                f"\nexamples/mnist.py (1 epoch): peak RSS {m['peak_rss_bytes'] / 2**30:.2f} GiB, "
                f"{m['seconds']:.0f} s, test accuracy {m['test_accuracy_1_epoch']:.2%}"
            )
        else:
            print(f"\nexamples/mnist.py failed: {m['error']}")
    print(f"\nwrote {write_json('cpu', record)}")


if __name__ == "__main__":
    main()
