"""One contender of bench_cpu.py for one model, in a process of its own, so that no engine runs
with another's thread settings or next to another's idle workers.

    python benchmarks/_worker.py CONTENDER MODEL        (then JSON lines on stdin)

Each line asks ["train" | "infer", batch, images] and gets {"ips": images/s, "peak_rss": bytes}
(at inference on batch 1, also "median_ms" and "p99_ms" over ``images`` calls of one image):
the first time for a (kind, batch), a warm-up run first (compilation, caches, thread pools);
then the peak RSS is reset (Linux's /proc/self/clear_refs) and the run timed, so each answer's
peak is that run's own.
"""

import sys

CONTENDER, MODEL = sys.argv[1], sys.argv[2]
if CONTENDER == "minicnn":  # imported first: the order in which minicnn can set up OpenBLAS
    import minicnn  # noqa: F401

import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402  (first, for every other contender, as user scripts start)

if CONTENDER == "minicnn_numpy_first":
    import minicnn  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) * 1024


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # then each peak is the process's so far


def main() -> None:
    rng = np.random.default_rng(0)
    n = 8192
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    y = np.eye(10, dtype=np.float32)[labels]
    if CONTENDER.startswith("minicnn"):
        train, infer = peers.minicnn_loops(MODEL, x, y)
    elif CONTENDER in ("torch", "torch_compile"):
        train, infer = peers.torch_loops(MODEL, x, labels, CONTENDER == "torch_compile")
    elif CONTENDER == "keras":
        train, infer = peers.keras_loops(MODEL, x, y)
    elif CONTENDER == "onnxruntime":
        train, infer = peers.onnx_loops(MODEL, x, os.path.join(tempfile.mkdtemp(), "m.onnx"))
    else:
        raise SystemExit(f"unknown contender {CONTENDER!r}")
    print(json.dumps("ready"), flush=True)
    warm = set()
    for line in sys.stdin:
        kind, batch, images = json.loads(line)
        fn = train if kind == "train" else infer
        if fn is None:
            print(json.dumps(None), flush=True)
            continue
        if (kind, batch) not in warm:
            fn(min(images, 4 * batch) if kind == "train" else images, batch)
            warm.add((kind, batch))
        _reset_peak()
        if kind == "infer" and batch == 1:  # latency: ``images`` calls of one image each
            ms = sorted(1e3 / fn(1, 1) for _ in range(images))
            median, p99 = ms[len(ms) // 2], ms[min(len(ms) - 1, round(0.99 * len(ms)))]
            print(json.dumps({"ips": 1e3 / median, "median_ms": median, "p99_ms": p99, "peak_rss": _peak_rss()}), flush=True)  # fmt: skip
            continue
        ips = fn(images, batch)
        print(json.dumps({"ips": ips, "peak_rss": _peak_rss()}), flush=True)


if __name__ == "__main__":
    main()
