"""minicnn on the CPU (numba kernels, and the pure NumPy path) against PyTorch CPU on the seed
model, in one interleaved run: each contender in its own worker process, with its own thread and
allocator settings, asked for each measure in turn.

    python benchmarks/bench_cpu.py [--repeats 3] [--no-memory]

Training images/s at batch 32 and 128, inference at batch 128 and 1000, a per-layer breakdown,
achieved GFLOP/s against this machine's float32 GEMM peak (measured here, now), and the peak
memory of ``examples/mnist.py`` (one epoch: nothing accumulates across epochs, so the peak is the
full run's). Writes benchmarks/results/cpu.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (  # first: it imports minicnn before numpy, as a user's script would
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
    torch_model,
    torch_predict,
    torch_train,
    write_json,
)


def gemm_peak() -> float:
    """Best float32 GFLOP/s of NumPy's BLAS on a square 2048 product, as the machine's peak."""
    import numpy as np  # here, not above: after common has imported minicnn

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


# -- contenders, each in its own process --------------------------------------------------------
# Each framework sets up its thread pools for itself at import (minicnn/_threads.py; PyTorch's
# OpenMP and MKL), so one process each: none runs with another's settings or next to another's
# idle workers. The parent sends each case to the workers in turn (interleaved) and gets img/s.

CONTENDERS = {  # name -> the environment its worker adds
    "kernels": {},
    "numpy": {"MINICNN_KERNELS": "numpy"},
    "torch": {"MINICNN_BENCH_CONTENDER": "torch"},
    # PyTorch again, with the glibc allocator set as minicnn sets its own (minicnn/_malloc.py):
    # what of the difference is the allocator and what is the engine
    "torch_malloc": {
        "MINICNN_BENCH_CONTENDER": "torch",
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1),
    },
}


def worker(name: str) -> None:
    """Serve measures on stdin/stdout, one JSON line each: ["train"|"inference", batch, n] ->
    images/s (warming the case up the first time), ["breakdown", batch] -> rows."""
    x, y, labels = mnist_like(8192)
    if name.startswith("torch"):
        import torch

        X = torch.tensor(x).permute(0, 3, 1, 2).contiguous()
        Y = torch.tensor(labels)
        model = torch_model("cpu")
        train = lambda n, b: torch_train(model, X[:n], Y[:n], b)  # noqa: E731
        infer = lambda n, b: torch_predict(model, X[:n], b)  # noqa: E731
    else:
        model = minicnn_model("numpy")
        train = lambda n, b: minicnn_train(model, x[:n], y[:n], b)  # noqa: E731
        infer = lambda n, b: minicnn_predict(model, x[:n], b)  # noqa: E731
    warm = set()
    for line in sys.stdin:
        kind, batch, *n = json.loads(line)
        if kind == "breakdown":
            out = layer_breakdown(minicnn_model("numpy"), x, y, batch)
        else:
            fn = train if kind == "train" else infer
            if (kind, batch) not in warm:  # numba loads its cache, BLAS spins up
                fn(2 * batch, batch)
                warm.add((kind, batch))
            out = fn(n[0], batch)
        print(json.dumps(out), flush=True)


class Worker:
    def __init__(self, name: str):
        env = {**os.environ, **CONTENDERS[name]}
        if name.startswith("torch"):  # what importing minicnn here set is not PyTorch's
            import minicnn._threads

            env = {k: v for k, v in env.items() if k not in minicnn._threads.TUNED}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def ask(self, *command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"benchmark worker {self.proc.args[-1]} died")
        return json.loads(answer)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


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
    from minicnn import kernels

    if not kernels.available("cpu"):
        print("note: numba kernels unavailable; both minicnn rows use the NumPy path")
    have_torch = importlib.util.find_spec("torch") is not None
    peak = gemm_peak()
    print(f"float32 GEMM peak here (NumPy BLAS, 2048^3): {peak:.0f} GFLOP/s")
    workers = {name: Worker(name) for name in CONTENDERS if have_torch or "torch" not in name}
    rows, record = [], {"gemm_peak_gflops": peak, "train": {}, "inference": {}}
    cases = [("train", b, 100 * b) for b in (32, 128)] + [
        ("inference", b, 5000) for b in (128, 1000)
    ]
    for kind, batch, n in cases:
        measures = {
            name: lambda w=w, kind=kind, batch=batch, n=n: w.ask(kind, batch, n)
            for name, w in workers.items()
        }
        r = interleaved(measures, args.repeats)
        record[kind][batch] = r
        flop = TRAIN_FLOP_PER_IMAGE if kind == "train" else INFER_FLOP_PER_IMAGE
        ours, pure = r["kernels"]["median"], r["numpy"]["median"]
        theirs = r.get("torch", {}).get("median")
        tuned = r.get("torch_malloc", {}).get("median")
        rows.append(
            (
                f"{kind}, batch {batch}",
                f"{ours:,.0f}",
                f"{pure:,.0f}",
                f"{theirs:,.0f}" if theirs else "-",
                f"{ours / theirs:.2f}x" if theirs else "-",
                f"{tuned:,.0f} ({ours / tuned:.2f}x)" if tuned else "-",
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
                "PyTorch, minicnn's malloc settings (minicnn/it)",
                "minicnn GFLOP/s (of peak)",
            ),
        )
    )
    breakdown = workers["kernels"].ask("breakdown", 32)
    for w in workers.values():
        w.close()
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
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        main()
