"""Data-parallel scaling on this machine: the seed model trained by 1 process (all cores) and by
N MPI ranks (cores split among them), at the same global batch, and the time of the per-step
all-reduce of its gradients.

    python benchmarks/bench_distributed.py [--ranks 2] [--global-batch 64] [--images 4096]

Needs the distributed extra (pip install -e '.[distributed]'). Each configuration runs as its own
mpiexec job; each job warms up one epoch, then times two. Writes results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

JOB = r"""
import json, sys, time
import minicnn
import numpy as np
from minicnn.cli import build_seed_model
from minicnn.distributed import DataParallel, install_excepthook
from minicnn.utils import set_random_seed

images, global_batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
strategy = DataParallel()
install_excepthook(strategy.comm)
set_random_seed(0)
g = np.random.default_rng(0)
x = g.random((images, 28, 28, 1), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[g.integers(0, 10, images)]
model = build_seed_model()
model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
local = global_batch // strategy.size
kw = dict(batch_size=local, verbose=0, distribute=strategy if strategy.size > 1 else None)
model.fit(x, y, epochs=1, **kw)  # warm-up: compiles kernels, sizes buffers
strategy.comm.Barrier()
start = time.perf_counter()
model.fit(x, y, epochs=2, **kw)
strategy.comm.Barrier()
seconds = time.perf_counter() - start
# the all-reduce alone, on a buffer the size of every gradient plus the 3 extra values
n = sum(int(np.prod(w.shape)) for w in model.get_weights()) + 3
buf = np.ones(n, np.float32)
for _ in range(5):
    strategy.allreduce(buf)
times = []
for _ in range(50):
    strategy.comm.Barrier()
    t = time.perf_counter()
    strategy.allreduce(buf)
    times.append(time.perf_counter() - t)
if strategy.rank == 0:
    json.dump({"ranks": strategy.size, "threads": strategy.threads, "img_per_s": 2 * images / seconds,
               "allreduce_ms": 1000 * float(np.median(times)), "buffer_bytes": 4 * n}, open(out, "w"))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--global-batch", type=int, default=64)
    p.add_argument("--images", type=int, default=4096)
    args = p.parse_args()
    bin_dir = Path(sys.executable).parent
    mpiexec = shutil.which("mpiexec", path=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    if mpiexec is None:
        sys.exit("bench_distributed: no mpiexec; pip install -e '.[distributed]'")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.py"
        job.write_text(JOB)
        for ranks in (1, args.ranks):
            out = Path(tmp) / f"r{ranks}.json"
            cmd = [mpiexec, "-n", str(ranks), sys.executable, str(job)]
            cmd += [str(args.images), str(args.global_batch), str(out)]
            subprocess.run(cmd, check=True, timeout=1200)
            rows.append(json.loads(out.read_text()))
    base = rows[0]["img_per_s"]
    print(f"seed model, global batch {args.global_batch}, {args.images} images x 2 epochs, {os.cpu_count()} cores")  # fmt: skip
    print("| ranks | threads each | images/s | speed-up | all-reduce per step | buffer |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['ranks']} | {r['threads']} | {r['img_per_s']:,.0f} | {r['img_per_s'] / base:.2f}x "
            f"| {r['allreduce_ms']:.3f} ms | {r['buffer_bytes'] / 1e6:.2f} MB |"
        )
    results = Path(__file__).parent / "results" / "distributed.json"
    results.write_text(json.dumps({"global_batch": args.global_batch, "rows": rows}, indent=1))
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
