"""What one image costs a user who has just installed minicnn: ``minicnn predict digit.png`` with
every cache cold (numba's kernels and Python's bytecode, each in an empty folder of its own), the
same command warm, with only numba's cache cold, and ``minicnn serve`` from cold caches: how long until ``/api/health`` says "ok", then its
first and later answers to ``/api/predict``.

Targets (issue 28): a cold first predict under 3 s, the server's first answer after it reports
ready under 100 ms. Run: ``python benchmarks/bench_coldstart.py [--rounds 3]``; it writes
``benchmarks/results/coldstart.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIGIT = ROOT / "tests" / "data" / "handwriting" / "7-font-0.png"
RESULTS = Path(__file__).with_name("results")


def seed_model(path: Path) -> None:
    """The seed model (untrained: the cost of a prediction does not depend on the weights)."""
    code = (
        "from minicnn.cli import build_seed_model; m = build_seed_model(); "
        f"m.compile('adam', 'sparse_categorical_crossentropy'); m.save({str(path)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(path.parent / "warm"))


def _env(cache: Path, bytecode: bool = True) -> dict:
    """numba's cache in ``cache``; with ``bytecode``, Python's too (every package's bytecode
    compiled again: more than a fresh install pays, whose installed packages come compiled)."""
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    if bytecode:
        env["PYTHONPYCACHEPREFIX"] = str(cache / "pyc")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def predict_once(model: Path, cache: Path, bytecode: bool = True) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "minicnn.cli", "predict", "--model", str(model), str(DIGIT)]
    subprocess.run(cmd, check=True, env=_env(cache, bytecode), capture_output=True)
    return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_once(model: Path, cache: Path, answers: int = 5) -> dict:
    port = _free_port()
    cmd = [sys.executable, "-m", "minicnn.cli", "serve", "--model", str(model), "--port", str(port)]  # fmt: skip
    start = time.perf_counter()
    server = subprocess.Popen(cmd, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError("minicnn serve exited before it was ready")
            try:
                with urllib.request.urlopen(base + "/api/health", timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        break
            except OSError:
                pass
            time.sleep(0.02)
        ready = time.perf_counter() - start
        data = DIGIT.read_bytes()
        times = []
        for _ in range(answers):
            req = urllib.request.Request(base + "/api/predict", data=data, headers={"Content-Type": "image/png"})  # fmt: skip
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=30) as r:
                json.load(r)
            times.append(time.perf_counter() - t)
        return {"ready_s": ready, "first_ms": 1e3 * times[0], "later_ms": 1e3 * statistics.median(times[1:])}  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "seed.minicnn"
        seed_model(model)
        for r in range(args.rounds):
            cold = tmp / f"cold{r}"
            row = {"cold_predict_s": predict_once(model, cold)}  # numba's and Python's caches
            row["warm_predict_s"] = predict_once(model, cold)
            row["numba_cold_predict_s"] = predict_once(model, tmp / f"numba{r}", bytecode=False)
            row.update({f"cold_serve_{k}": v for k, v in serve_once(model, tmp / f"serve{r}").items()})  # fmt: skip
            rows.append(row)
            print(", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    summary = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
    targets = {
        "cold_predict_s": ("<", 3.0),
        "cold_serve_first_ms": ("<", 100.0),
    }
    print(f"\nmedian of {args.rounds} rounds ({platform.processor() or platform.machine()}):")
    for k, v in summary.items():
        goal = targets.get(k)
        mark = "" if goal is None else f"   target {goal[0]} {goal[1]:g}: {'met' if v < goal[1] else 'MISSED'}"  # fmt: skip
        print(f"  {k:24s} {v:8.3f}{mark}")
    RESULTS.mkdir(exist_ok=True)
    record = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "rounds": rows, "median": summary}  # fmt: skip
    tmp_path = RESULTS / ".tmp-coldstart.json"
    tmp_path.write_text(json.dumps(record, indent=1))
    os.replace(tmp_path, RESULTS / "coldstart.json")


if __name__ == "__main__":
    main()
