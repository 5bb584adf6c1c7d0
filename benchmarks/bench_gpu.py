"""minicnn on CuPy against PyTorch CUDA (eager), in FP32 and TF32, on the benchmark's models
(benchmarks/peers.py: seed, convnet, bn_augment, best), in one interleaved run.

    python benchmarks/bench_gpu.py [--models seed,convnet,bn_augment,best] [--batches 128,1024]
        [--repeats 3] [--steps 24] [--infer-images 8192] [--budget SECONDS] [--json PATH]
        [--example] [--profile]

First, for each model, whether the CuPy model computes what the NumPy one does: one training
step from the same seed in float64 (Dropout off: its masks are drawn per device), the weights'
largest relative gap. Then, per model and batch, training (``steps`` batches through ``fit``; a
plain PyTorch loop with the same augmentation) and inference (``predict``; ``no_grad`` forward
and softmax, both handed back to the host), interleaved: minicnn in float32, PyTorch with its
default TF32 convolutions, PyTorch in full FP32. A measure that raises is recorded and the rest
go on; the JSON (benchmarks/results/gpu.json, and ``--json``) is rewritten after each model, so
a run cut short keeps what it measured. ``--budget`` stops starting new rows after that many
seconds. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import peers
from common import breakdown_table, interleaved, layer_breakdown, mnist_like, table, write_json

import minicnn


def build(name: str, backend: str):
    minicnn.backend.set_backend(backend)
    return peers.minicnn_build(name)


def check_agreement(name: str, x, y) -> float:
    """One float64 training step from the same start on both backends: the largest relative gap
    between their weights (Dropout off on both: the masks are drawn on each device)."""
    minicnn.set_floatx("float64")
    try:
        weights = []
        for backend in ("numpy", "cupy"):
            model = build(name, backend)
            for layer in model.layers:
                if isinstance(layer, minicnn.layers.Dropout):
                    layer.rate = 0.0
            model.train_on_batch(x[:32].astype(np.float64), y[:32].astype(np.float64))
            weights.append(model.get_weights())
    finally:
        minicnn.set_floatx("float32")
    return float(max(np.linalg.norm(a - b) / np.linalg.norm(a) for a, b in zip(*weights)))


def minicnn_measures(name, x_dev, y_dev, batch, n_train, n_infer):
    model = build(name, "cupy")
    train, infer = peers.fit_predict_loops(model, x_dev, y_dev)
    train(2 * batch, batch)  # warm-up: kernels compiled, the plan made, the pool filled
    infer(batch, batch)
    return (lambda: train(n_train, batch)), (lambda: infer(n_infer, batch))


def torch_measures(name, X, Y, batch, n_train, n_infer, tf32: bool):
    """PyTorch eager on the GPU; ``tf32``: its default (TF32 tensor cores in cuDNN's
    convolutions, none in matmul), else full FP32."""
    import torch
    import torch.nn.functional as F  # noqa: N812  (PyTorch's own spelling)

    model = peers.torch_build(name).cuda()
    opt = torch.optim.Adam(model.parameters(), 1e-3, eps=1e-7)
    aug = peers.AUGMENTED.get(name)

    def flags():
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = False

    def train(n):
        flags()
        model.train()
        torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(n, device="cuda")
        for lo in range(0, n, batch):
            idx = order[lo : lo + batch]
            xb = X[idx]
            if aug:
                with torch.device("cuda"):  # peers.torch_augment draws with torch.rand
                    xb = peers.torch_augment(xb, *aug)
            loss = F.cross_entropy(model(xb), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss.item()
        return n / (time.perf_counter() - start)

    def infer(n):
        flags()
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, n, batch):
                torch.softmax(model(X[lo : lo + batch]), dim=1).cpu().numpy()
        return n / (time.perf_counter() - start)

    train(2 * batch)
    infer(batch)
    return (lambda: train(n_train)), (lambda: infer(n_infer))


def _guarded(fn):
    """A measure that reports its error as NaN (the error is kept by ``errors``)."""
    errors = []

    def run():
        try:
            return fn()
        except Exception as e:  # noqa: BLE001  (a benchmark goes on past one failure)
            errors.append(f"{type(e).__name__}: {e}")
            return float("nan")

    return run, errors


def bench_row(name, batch, data, args) -> dict:
    """{"train": ..., "inference": ...}, each {contender: median/min/max or error}."""
    x, y, labels, x_dev, y_dev, X, Y = data
    n_train, n_infer = args.steps * batch, min(args.infer_images, len(x))
    builders = {"minicnn": lambda: minicnn_measures(name, x_dev, y_dev, batch, n_train, n_infer)}
    if X is not None:
        builders["torch_tf32"] = lambda: torch_measures(name, X, Y, batch, n_train, n_infer, True)
        builders["torch_fp32"] = lambda: torch_measures(name, X, Y, batch, n_train, n_infer, False)
    row, measures = {"train": {}, "inference": {}}, {"train": {}, "inference": {}}
    failed = {}
    for who, make in builders.items():
        try:
            train, infer = make()
        except Exception as e:  # noqa: BLE001
            failed[who] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
            continue
        measures["train"][who], measures["inference"][who] = _guarded(train), _guarded(infer)
    for kind in ("train", "inference"):
        runs = {who: run for who, (run, _) in measures[kind].items()}
        result = interleaved(runs, args.repeats) if runs else {}
        for who, (_, errors) in measures[kind].items():
            result[who] = {"error": errors[0]} if errors else result[who]
        row[kind] = {**result, **{who: {"error": e} for who, e in failed.items()}}
    return row


def markdown(record) -> str:
    def cell(r, who):
        value = r.get(who, {})
        return f"{value['median']:,.0f}" if "median" in value else value.get("error", "-")[:40]

    rows = []
    for name, by_batch in record["models"].items():
        for batch, row in by_batch.items():
            if not isinstance(row, dict):
                rows.append((name, batch, row, "", "", "", "", ""))
                continue
            for kind in ("train", "inference"):
                r, cells = row[kind], [name, batch, kind, cell(row[kind], "minicnn")]
                ours = r.get("minicnn", {}).get("median")
                for who in ("torch_tf32", "torch_fp32"):
                    theirs = r.get(who, {}).get("median")
                    ratio = f"{ours / theirs:.2f}x" if ours and theirs else "-"
                    cells += [cell(r, who), ratio]
                rows.append(tuple(cells))
    headers = ("model", "batch", "", "minicnn img/s (CuPy, FP32)", "PyTorch TF32", "ratio", "PyTorch FP32", "ratio FP32")  # fmt: skip
    return table(rows, headers)


def run_example() -> dict:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        cmd = [sys.executable, str(root / "examples" / "mnist.py"), "--backend", "cupy", "--out", out]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    found = re.search(r"Test accuracy: ([\d.]+)%.*training took ([\d.]+) s", done.stdout)
    if done.returncode or not found:
        return {"error": (done.stderr or done.stdout)[-500:]}
    print(done.stdout[-2000:])
    return {"test_accuracy": float(found[1]) / 100, "train_seconds": float(found[2]), "end_to_end_seconds": seconds}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(peers.MODELS))
    p.add_argument("--batches", default="128,1024")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=24, help="training batches per measure")
    p.add_argument("--infer-images", type=int, default=8192)
    p.add_argument("--budget", type=float, default=None, help="seconds; then no new rows")
    p.add_argument("--json", default=None, help="also write the record here")
    p.add_argument("--example", action="store_true", help="also time examples/mnist.py --backend cupy")  # fmt: skip
    p.add_argument("--profile", action="store_true", help="also print per-layer time breakdowns")
    args = p.parse_args()
    models, batches = args.models.split(","), [int(b) for b in args.batches.split(",")]
    start = time.perf_counter()

    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    record = {"device": props["name"].decode(), "compute_capability": f"{props['major']}.{props['minor']}",  # fmt: skip
              "cupy": cupy.__version__, "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
              "agreement_gap": {}, "models": {}}  # fmt: skip
    x, y, labels = mnist_like(max(max(batches) * args.steps, args.infer_images))
    data = [x, y, labels, cupy.asarray(x), cupy.asarray(y), None, None]
    try:
        import torch

        record["torch"] = torch.__version__
        data[5] = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).cuda()
        data[6] = torch.from_numpy(labels).cuda()
    except Exception as e:  # noqa: BLE001  (no PyTorch, or one without CUDA: minicnn alone)
        record["torch"] = f"unavailable: {e}"

    def save():
        path = write_json("gpu", record)
        if args.json:
            Path(args.json).write_text(json.dumps(record, indent=1, default=str))
        return path

    for name in models:
        try:
            record["agreement_gap"][name] = gap = check_agreement(name, x, y)
            print(f"{name}: CuPy vs NumPy after one float64 step, max relative weight gap {gap:.1e}")  # fmt: skip
        except Exception as e:  # noqa: BLE001
            record["agreement_gap"][name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        record["models"][name] = {}
        for batch in batches:
            if args.budget and time.perf_counter() - start > args.budget:
                record["models"][name][batch] = "skipped: over --budget"
                continue
            record["models"][name][batch] = bench_row(name, batch, data, args)
            print(f"{name}, batch {batch}: done after {time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        save()
    if args.profile:
        for name in models:
            for batch in batches:
                rows = layer_breakdown(build(name, "cupy"), x, y, batch)
                record.setdefault("breakdown", {}).setdefault(name, {})[batch] = rows
                print(f"\n{name}\n{breakdown_table(rows, batch)}")
    if args.example:
        record["example"] = run_example()
        print(f"examples/mnist.py --backend cupy: {record['example']}")
    record["seconds"] = time.perf_counter() - start
    print(f"\nGPU: {record['device']}\n\n{markdown(record)}\n\nwrote {save()}")


if __name__ == "__main__":
    main()
