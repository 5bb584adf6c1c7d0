"""minicnn on the CPU against every engine a user would pick instead, on five models, in one
interleaved run.

    python benchmarks/bench_cpu.py [--repeats 3] [--models seed,convnet,bn_augment,best,residual] [--no-memory]
        [--contenders minicnn,torch] [--kinds train] [--out cpu]

(--contenders, --kinds and --out: a shorter run, for instance the convolution layers of issue 23
against PyTorch eager, ``--models separable,autoencoder --contenders minicnn,torch --kinds train
--out cpu_layers23``, written beside the full run's results/cpu.json.)

Contenders, each in its own process per model (benchmarks/_worker.py): minicnn imported before
numpy and after it (as most scripts start); PyTorch eager; PyTorch ``torch.compile``; Keras 3 on
TensorFlow; ONNX Runtime (inference, on the PyTorch model exported to ONNX). A peer that is not
installed is skipped with a line saying so (``pip install -e '.[bench]'`` installs them all).

Workloads: each engine's own training loop over 4,096 images at batch 32 and 128, inference
over 5,000 images at batch 128 and 1000, and the latency of one image (300 calls: median and
p99 ms; ``predict_on_batch`` in minicnn and Keras, the module or session call in the others) (random MNIST-shaped data: speed does not depend on the
pixels). Asked round-robin, median of the rounds, after a warm-up; each row's peak RSS is the
run's own. Training rows also give minicnn's equivalent GFLOP/s (direct-convolution FLOPs)
against this machine's float32 GEMM peak, measured in the same run. Also: a per-layer breakdown
of the seed model, and the peak memory of ``examples/mnist.py``. Writes results/cpu.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import breakdown_table, layer_breakdown, minicnn_model, mnist_like, table, write_json
from peers import MODELS, train_flop_per_image

import minicnn  # noqa: F401  (common imported it first, as the contenders that import it first)

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = ("seed", "convnet", "bn_augment", "best", "residual")  # issue 28's five
WORKLOADS = [
    ("train", 32, 4096),
    ("train", 128, 4096),
    ("infer", 1, 300),
    ("infer", 128, 5000),
    ("infer", 1000, 5000),
]
NAMES = {
    "minicnn": "minicnn (imported first)",
    "minicnn_numpy_first": "minicnn (numpy imported first)",
    "torch": "PyTorch eager",
    "torch_compile": "PyTorch torch.compile",
    "keras": "Keras 3 on TensorFlow",
    "onnxruntime": "ONNX Runtime (PyTorch's export)",
}


def available() -> dict[str, str | None]:
    """contender -> None if it can run here, else why not."""
    has = lambda m: importlib.util.find_spec(m) is not None  # noqa: E731
    torch = None if has("torch") else "PyTorch is not installed"
    return {
        "minicnn": None,
        "minicnn_numpy_first": None,
        "torch": torch,
        "torch_compile": torch or (None if shutil.which("g++") else "no C++ compiler for inductor"),
        "keras": None if has("keras") and has("tensorflow") else "keras/tensorflow are not installed",
        "onnxruntime": torch or (None if has("onnxruntime") and has("onnx") else "onnxruntime/onnx are not installed"),
    }  # fmt: skip


def gemm_peak() -> float:
    """Best float32 GFLOP/s of NumPy's BLAS on a square 2048 product, as the machine's peak."""
    import numpy as np

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
    return best


class Worker:
    def __init__(self, contender: str, model: str):
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["KERAS_BACKEND"] = "tensorflow"
        if not contender.startswith("minicnn"):  # what importing minicnn here set is not theirs
            env = {k: v for k, v in env.items() if k not in minicnn._threads.SET}
        self.name = contender
        self.log = tempfile.TemporaryFile(
            "w+"
        )  # its stderr (TensorFlow's chatter), shown if it dies
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_worker.py"), contender, model],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
        )  # fmt: skip
        self._read()  # "ready": the model is built

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"benchmark worker {self.name} died:\n{self.log.read()[-2000:]}")
        return json.loads(line)

    def ask(self, *command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def run_model(model: str, contenders: list[str], repeats: int, workloads=WORKLOADS) -> dict:
    """{contender: {workload: {"ips": median, "runs": [...], "peak_rss": max}}}"""
    workers = {}
    for c in contenders:
        try:
            workers[c] = Worker(c, model)
        except RuntimeError as e:
            print(f"  {NAMES[c]} could not run {model}: {e}", flush=True)
    out = {c: {} for c in workers}
    for kind, batch, images in workloads:
        key = f"{kind} b{batch}"
        samples = {c: [] for c in workers}
        for _ in range(repeats):
            for c, w in workers.items():
                time.sleep(0.5)  # the previous contender's spinning threads go to sleep
                samples[c].append(w.ask(kind, batch, images))
        for c, runs in samples.items():
            if runs[0] is not None:
                out[c][key] = {
                    "ips": statistics.median(r["ips"] for r in runs),
                    "runs": [r["ips"] for r in runs],
                    "peak_rss": max(r["peak_rss"] for r in runs),
                }
                if "median_ms" in runs[0]:  # latency: the median round's median and p99
                    mid = sorted(runs, key=lambda r: r["median_ms"])[len(runs) // 2]
                    out[c][key].update(median_ms=mid["median_ms"], p99_ms=mid["p99_ms"])
    for w in workers.values():
        w.close()
    return out


def report(model: str, result: dict, flops: tuple[float, float], peak: float, workloads=WORKLOADS) -> str:  # fmt: skip
    keys = [f"{k} b{b}" for k, b, _ in workloads]
    rows = []
    for c, r in result.items():
        cells = [_cell(r[k]) if k in r else "-" for k in keys]
        rows.append((NAMES[c], *cells))
    peers_ = {c: r for c, r in result.items() if not c.startswith("minicnn")}
    for ours in ("minicnn", "minicnn_numpy_first"):
        if ours not in result:
            continue
        cells = []
        for k in keys:
            best = max(((r[k]["ips"], c) for c, r in peers_.items() if k in r), default=None)
            cells.append(f"{result[ours][k]['ips'] / best[0]:.2f}x {NAMES[best[1]].split(' (')[0]}" if best else "-")  # fmt: skip
        rows.append((f"{NAMES[ours]} / fastest peer", *cells))
    if "minicnn" in result:
        cells = []
        for k in keys:
            flop = flops[0] if k.startswith("train") else flops[1]
            g = result["minicnn"][k]["ips"] * flop / 1e9
            cells.append(f"{g:.0f} GFLOP/s ({g / peak:.0%})")
        rows.append(("minicnn (first), equivalent GFLOP/s of peak", *cells))
    head = (f"{model}: images/s (peak RSS); b1: median ms (p99)", *keys)
    # the spread of the rounds, (max - min) / median: each contender's widest cell
    spread = {NAMES[c].split(" (")[0]: max((max(r[k]["runs"]) - min(r[k]["runs"])) / r[k]["ips"] for k in r) for c, r in result.items() if r}  # fmt: skip
    note = "Widest spread of the rounds, (max - min) / median: " + ", ".join(f"{n} {v:.0%}" for n, v in spread.items())  # fmt: skip
    return table(rows, head) + "\n\n" + note


def _cell(r: dict) -> str:
    if "median_ms" in r:
        return f"{r['median_ms']:.2f} ms (p99 {r['p99_ms']:.2f})"
    return f"{r['ips']:,.0f} ({r['peak_rss'] / 2**20:,.0f} MiB)"


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
    """Peak RSS of ``examples/mnist.py --epochs 1`` (its own VmHWM: a child's ru_maxrss would
    carry this process's peak across fork and exec), in a child process."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_OF, str(HERE.parent / "examples" / "mnist.py"),
             "--epochs", "1", "--out", out],
            capture_output=True, text=True,
        )  # fmt: skip
    found = re.search(r"Test accuracy: ([\d.]+)%", done.stdout)
    peak = re.search(r"peak_rss_kib (\d+)", done.stdout)
    if done.returncode or not found or not peak:
        return {"error": (done.stderr or done.stdout)[-500:]}
    return {"peak_rss_bytes": int(peak[1]) * 1024, "test_accuracy_1_epoch": float(found[1]) / 100,
            "seconds": time.perf_counter() - start}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="of: " + ", ".join(MODELS))
    p.add_argument("--no-memory", action="store_true", help="skip the examples/mnist.py memory run")
    p.add_argument("--contenders", default=",".join(NAMES), help="a subset of: " + ", ".join(NAMES))
    p.add_argument("--kinds", default="train,infer", help="the workloads to run: train, infer")
    p.add_argument("--out", default="cpu", help="results/OUT.json")
    args = p.parse_args()
    models, asked, kinds = (a.split(",") for a in (args.models, args.contenders, args.kinds))
    for what, names, known in (("model", models, MODELS), ("contender", asked, NAMES), ("kind", kinds, ("train", "infer"))):  # fmt: skip
        if unknown := [m for m in names if m not in known]:
            raise SystemExit(f"unknown {what}(s) {unknown}; choose from {list(known)}")
    workloads = [w for w in WORKLOADS if w[0] in kinds]
    why = {c: reason for c, reason in available().items() if c in asked}
    for c, reason in why.items():
        if reason:
            print(f"skipping {NAMES[c]}: {reason}")
    contenders = [c for c, reason in why.items() if reason is None]
    peak = gemm_peak()
    print(f"float32 GEMM peak here (NumPy BLAS, 2048^3): {peak:.0f} GFLOP/s", flush=True)
    record = {"gemm_peak_gflops": peak, "models": {}}
    for model in models:
        flops = train_flop_per_image(model)
        result = run_model(model, contenders, args.repeats, workloads)
        record["models"][model] = {"flop_per_image": flops, "results": result}
        # the peak again after each model, the best kept: one reading in a slow spell of a
        # shared machine (107 against 171-198 GFLOP/s, once) made every "of peak" share wrong
        peak = record["gemm_peak_gflops"] = max(peak, gemm_peak())
        print("\n" + report(model, result, flops, peak, workloads), flush=True)
    print(f"float32 GEMM peak, the best of {len(models) + 1} readings: {peak:.0f} GFLOP/s")
    x, y, _ = mnist_like(256)
    record["breakdown_seed_batch_32"] = rows = layer_breakdown(minicnn_model("numpy"), x, y, 32)
    print("\n" + breakdown_table(rows, 32))
    if not args.no_memory:
        m = record["example"] = example_memory()
        print(f"\nexamples/mnist.py (1 epoch): peak RSS {m['peak_rss_bytes'] / 2**30:.2f} GiB, {m['seconds']:.0f} s, test accuracy {m['test_accuracy_1_epoch']:.2%}"  # fmt: skip
              if "peak_rss_bytes" in m else f"\nexamples/mnist.py failed: {m['error']}")  # fmt: skip
    print(f"\nwrote {write_json(args.out, record)}")


if __name__ == "__main__":
    main()
