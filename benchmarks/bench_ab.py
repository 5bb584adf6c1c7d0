"""This tree's minicnn against another checkout's, interleaved in one run: did a change make any
model slower? The same workers as bench_cpu.py (each contender in its own process), minicnn
imported first and after numpy, in both trees, rounds alternating so a slow spell on a shared
machine hits both alike.

    git worktree add /tmp/base <commit> && ln -s ../kernels /tmp/base/minicnn/kernels
    python benchmarks/bench_ab.py --base /tmp/base [--repeats 5] [--models seed,convnet,...]
        [--kinds infer] [--orders minicnn_numpy_first]

The base checkout runs from its own source (``PYTHONPATH``; the symlink lets its
``minicnn.kernels`` resolve there too). Reports, per model and workload, the median images/s of
each and their ratio (this tree / base), with the spread (min-max over rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import table

HERE = Path(__file__).resolve().parent
WORKLOADS = [("train", 32, 4096), ("train", 128, 4096), ("infer", 128, 5000), ("infer", 1000, 5000)]


class Worker:
    def __init__(self, tree: Path, contender: str, model: str):
        env = {**os.environ, "PYTHONPATH": str(tree)}
        for k in ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT"):  # each process sets its own
            env.pop(k, None)
        self.proc = subprocess.Popen(
            [sys.executable, str(tree / "benchmarks" / "_worker.py"), contender, model],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        self.read()

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark worker died")
        return json.loads(line)

    def ask(self, kind, batch, images):
        self.proc.stdin.write(json.dumps([kind, batch, images]) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, type=Path, help="the other checkout")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", default="seed,convnet,bn_augment,best")
    p.add_argument("--kinds", default="train,infer", help="train, infer or both")
    p.add_argument("--orders", default="minicnn,minicnn_numpy_first", help="import orders")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    trees = {"this": HERE.parent, "base": args.base.resolve()}
    rows, record = [], {}
    for model in args.models.split(","):
        for order in args.orders.split(","):
            workers = {t: Worker(path, order, model) for t, path in trees.items()}
            for kind, batch, images in (w for w in WORKLOADS if w[0] in kinds):
                runs = {t: [] for t in trees}
                for _ in range(args.repeats):
                    for t, w in workers.items():
                        time.sleep(0.5)
                        runs[t].append(w.ask(kind, batch, images)["ips"])
                med = {t: statistics.median(r) for t, r in runs.items()}
                key = f"{model} {kind} b{batch} ({'numpy first' if order.endswith('first') else 'minicnn first'})"  # fmt: skip
                record[key] = runs
                spread = " / ".join(f"{min(runs[t]):,.0f}-{max(runs[t]):,.0f}" for t in trees)
                rows.append((key, f"{med['this']:,.0f}", f"{med['base']:,.0f}", f"{med['this'] / med['base']:.2f}x", spread))  # fmt: skip
                print(" | ".join(rows[-1]), flush=True)
            for w in workers.values():
                w.close()
    print("\n" + table(rows, ("model, workload (import order)", "this img/s", "base img/s", "this / base", "min-max this / base")))  # fmt: skip
    out = HERE / "results" / "ab.json"
    out.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
