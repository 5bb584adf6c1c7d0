#!/usr/bin/env bash
# The GPU check, in one call on a machine lent a GPU (docs/GPU.md): minicnn from this working
# tree (no network, no pip), the CUDA modules compiled, the CuPy tests, the MNIST example on the
# GPU, benchmarks/bench_gpu.py against PyTorch CUDA; one JSON report.
#
#   bash benchmarks/gpu_check.sh            # the device tool: carry [".data"], timeout_s 540
#
# Every step runs under its own time box, cut to what is left of GPU_CHECK_SECONDS (default 450)
# so the whole stays under 8 minutes; a step that fails or times out is recorded and the next one
# runs. MNIST is read from $MINICNN_DATA/mnist.npz (default .data/mnist.npz): copy
# ~/.cache/minicnn/mnist.npz there and carry .data, or the example is skipped. The report goes to
# $OUT/gpu_check.json (the device tool's output folder), else benchmarks/results/gpu_check.json,
# with every step's log beside it (gpu_check/).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_SECONDS:-450}
DEST=${OUT:-$ROOT/benchmarks/results}
LOGS=$DEST/gpu_check
mkdir -p "$LOGS"
export MINICNN_DATA=${MINICNN_DATA:-$ROOT/.data}
export PYTHONUNBUFFERED=1 MINICNN_BACKEND=numpy
SECONDS=0

# minicnn from this tree without installing it: pyproject maps minicnn.kernels to kernels/, so
# PYTHONPATH=. alone would not find the kernels; a folder of links does what the mapping does.
SITE=$(mktemp -d)
mkdir "$SITE/minicnn"
for entry in "$ROOT"/minicnn/*; do ln -s "$entry" "$SITE/minicnn/"; done
ln -s "$ROOT/kernels" "$SITE/minicnn/kernels"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

# step NAME SECONDS COMMAND...: COMMAND's output in $LOGS/NAME.log, its status in NAME.status
step() {
  local name=$1 box=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  ((box > left)) && box=$left
  if ((box < 10)); then
    echo "skipped: the check's $BUDGET s were spent" > "$LOGS/$name.log"
    printf '{"rc": null, "seconds": 0, "timed_out": false, "skipped": true}' > "$LOGS/$name.status"
    echo "== $name: skipped (budget spent)"
    return
  fi
  echo "== $name (at most $box s)"
  local start=$SECONDS rc
  timeout --kill-after=10 "$box" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  local took=$((SECONDS - start)) timed_out=false
  ((rc == 124 || rc == 137)) && timed_out=true
  printf '{"rc": %d, "seconds": %d, "timed_out": %s, "skipped": false}' "$rc" "$took" "$timed_out" > "$LOGS/$name.status"
  echo "   rc=$rc after ${took}s"
  tail -n 5 "$LOGS/$name.log"
}

step environment 30 "$PY" - <<'EOF'
import json, platform, subprocess, sys
info = {"python": sys.version.split()[0], "platform": platform.platform()}
for name in ("numpy", "numba", "cupy", "torch", "pytest"):
    try:
        info[name] = __import__(name).__version__
    except Exception as e:  # noqa: BLE001
        info[name] = f"unavailable: {e}"
import minicnn
from minicnn import kernels
info["minicnn_from"], info["kernels_from"] = minicnn.__file__, kernels.__file__
try:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    info["gpu"] = props["name"].decode()
    info["compute_capability"] = f"{props['major']}.{props['minor']}"
    info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    import torch
    info["torch_cuda"] = torch.cuda.is_available()
except Exception as e:  # noqa: BLE001
    info["gpu_error"] = f"{type(e).__name__}: {e}"
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout.strip()
except Exception as e:  # noqa: BLE001
    info["nvidia_smi"] = f"unavailable: {e}"
print(json.dumps(info, indent=1))
EOF

# every CUDA template cuda.py may launch, compiled by CuPy's NVRTC for this GPU, each looked up
step compile 90 "$PY" - <<'EOF'
import numpy as np
from minicnn.kernels import cuda, cuda_sources
for kernel in cuda_sources.KERNELS:
    for dtype in cuda_sources.FLOAT_TYPES:
        for index in cuda_sources.INDEX_TYPES:
            cuda._function(kernel, dtype, index)
print(f"compiled {len(cuda_sources.KERNELS) * 4} kernels from {cuda_sources.files()}")
EOF

# the CuPy tests: tests/test_gpu_agreement.py and every CuPy-parametrised case of the suite
step pytest 170 "$PY" -m pytest tests -q -p no:cacheprovider -o addopts= -rfE \
  -k "cupy or gpu_agreement" --continue-on-collection-errors --junitxml="$LOGS/pytest.xml"

if [[ -f "$MINICNN_DATA/mnist.npz" ]]; then
  step mnist 100 "$PY" examples/mnist.py --backend cupy --out "$LOGS/mnist-run"
else
  echo "skipped: no $MINICNN_DATA/mnist.npz (carry .data/ with ~/.cache/minicnn/mnist.npz)" > "$LOGS/mnist.log"
  printf '{"rc": null, "seconds": 0, "timed_out": false, "skipped": true}' > "$LOGS/mnist.status"
  echo "== mnist: skipped (no $MINICNN_DATA/mnist.npz)"
fi

# the benchmark writes its JSON after each model, and starts no row in its last 45 s: a run cut
# short keeps what it measured
box=$((BUDGET - SECONDS < 200 ? BUDGET - SECONDS : 200))
step bench "$box" "$PY" benchmarks/bench_gpu.py --models seed,convnet,bn_augment,best \
  --batches 128,1024 --repeats 3 --steps 16 --infer-images 8192 --budget $((box > 60 ? box - 45 : 15)) \
  --json "$LOGS/bench_gpu.json"

# one report from what the steps left
BUDGET=$((BUDGET + 30)) step report 30 "$PY" - "$LOGS" "$DEST/gpu_check.json" <<'EOF'
import json, re, sys, xml.etree.ElementTree as ET
from pathlib import Path
logs, target = Path(sys.argv[1]), Path(sys.argv[2])
report = {"steps": {}}
for status in sorted(logs.glob("*.status")):
    name = status.stem
    entry = json.loads(status.read_text())
    log = (logs / f"{name}.log").read_text(errors="replace") if (logs / f"{name}.log").exists() else ""
    entry["log_tail"] = log[-3000:]
    report["steps"][name] = entry
env = report["steps"].get("environment", {}).get("log_tail", "")
try:
    report["environment"] = json.loads(env[env.index("{"):])
except ValueError:
    pass
xml = logs / "pytest.xml"
if xml.exists():
    suite = ET.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in suite.iter("testcase"):
        for bad in list(case.findall("failure")) + list(case.findall("error")):
            failed.append({"test": f"{case.get('classname')}::{case.get('name')}", "message": (bad.get("message") or "")[:400]})
    report["pytest"] = {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"], "failed": failed[:60]}
mnist = report["steps"].get("mnist", {}).get("log_tail", "")
found = re.search(r"Test accuracy: ([\d.]+)%", mnist)
report["mnist"] = {"test_accuracy": float(found[1]) / 100 if found else None}
took = re.search(r"training took ([\d.]+) s", mnist)
if took:
    report["mnist"]["train_seconds"] = float(took[1])
bench = logs / "bench_gpu.json"
if bench.exists():
    report["bench"] = json.loads(bench.read_text())
target.write_text(json.dumps(report, indent=1))
print(f"wrote {target}")
print(json.dumps({k: report.get(k) for k in ("pytest", "mnist")}, indent=1)[:3000])
EOF
echo "== done in ${SECONDS}s: $DEST/gpu_check.json"
