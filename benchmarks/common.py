"""Shared by the benchmarks: the seed model in minicnn and in PyTorch, interleaved timing, the
table, the JSON record. Throughput is measured through each framework's ordinary user path
(minicnn's ``fit``/``predict``; a plain PyTorch loop), correctness is checked before timing, and
every figure is reported next to its reference from the same run, as a ratio."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# minicnn first, as a user's script imports it: it sets how OpenBLAS's threads wait before numpy
# loads OpenBLAS (minicnn/_threads.py). PyTorch's measures run in processes that never import it.
if os.environ.get("MINICNN_BENCH_CONTENDER") != "torch":
    import minicnn
    from minicnn.cli import build_seed_model

import numpy as np  # noqa: E402

RESULTS = Path(__file__).with_name("results")
TRAIN_FLOP_PER_IMAGE = 66.4e6  # forward + both backward products, no input gradient for conv1
INFER_FLOP_PER_IMAGE = 22.4e6


def mnist_like(n: int, seed: int = 0):
    """Random images and labels of MNIST's shape: speed does not depend on the pixels."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return x, np.eye(10, dtype=np.float32)[y], y


# -- minicnn -----------------------------------------------------------------------------------


def minicnn_model(backend: str):
    minicnn.utils.set_random_seed(0)
    model = build_seed_model(backend=backend)
    model.compile(minicnn.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    return model


def minicnn_train(model, x, y, batch: int) -> float:
    """Images per second of one ``fit`` epoch over ``x`` (already on the model's device)."""
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # ends by reading the loss: synced
    return len(x) / (time.perf_counter() - start)


def minicnn_predict(model, x, batch: int) -> float:
    start = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)  # hands back NumPy: synced
    return len(x) / (time.perf_counter() - start)


def layer_breakdown(model, x, y, batch: int, steps: int = 20) -> list[tuple[str, float, float]]:
    """Milliseconds per step of each plan step's forward and backward (a fused step is timed
    as one: "batch_normalization+re_lu"), the loss and the optimiser, timed one at a time with
    a device sync around each (so the parts add up to more than a step does when a GPU overlaps
    them). Returns (part, forward ms, backward ms) rows."""
    be, xp = model.backend, model.backend.xp
    xb = be.asarray(x[:batch]).astype(minicnn.floatx())
    tb = model.objectives.targets([be.to_numpy(y[:batch])], [10], xp, minicnn.floatx())
    plan = model.plan(batch, True)
    names = ["+".join(layer.name for layer in step.layers) for step in plan.steps]
    parts = {name: [0.0, 0.0] for name in names}
    parts["loss"], parts["optimizer"] = [0.0, 0.0], [0.0, 0.0]
    params = model.trainable_params()

    def timed(key, slot, fn):
        be.synchronize()
        start = time.perf_counter()
        out = fn()
        be.synchronize()
        parts[key][slot] += (time.perf_counter() - start) * 1e3
        return out

    for step in range(steps + 2):
        if step == 2:  # two warm-up steps: kernels compiled, buffers allocated
            for v in parts.values():
                v[0] = v[1] = 0.0
        values, tape = {plan.inputs[0]: xb}, []
        for st, name in zip(plan.steps, names):
            y_, ctx = timed(name, 0, lambda st=st, vs=values: st.forward([vs[v] for v in st.inputs], True))  # fmt: skip
            values[st.outputs[0]] = y_
            tape.append(ctx)
        outs = [values[v] for v in plan.outputs]
        _, _, gouts = timed("loss", 0, lambda o=outs: model.objectives.forward_backward(o, tb, plan.logits))  # fmt: skip
        g, grads = {plan.outputs[0]: gouts[0]}, {}
        for st, name, ctx in reversed(list(zip(plan.steps, names, tape))):
            if st.outputs[0] not in g or not (st.trains or st.need_gx):
                continue
            gxs, wg = timed(name, 1, lambda st=st, ctx=ctx, g=g: st.backward(g.pop(st.outputs[0]), ctx))  # fmt: skip
            grads.update({(id(layer), k): gw for layer, k, gw in wg})
            for v, gx in zip(st.inputs, gxs):
                if gx is not None and plan.needs_grad.get(v):
                    g[v] = g[v] + gx if v in g else gx
        p = [layer.params[k] for layer, k in params]
        gl = [grads[(id(layer), k)] for layer, k in params]
        timed("optimizer", 1, lambda p=p, gl=gl: model.optimizer.apply(p, gl))
    return [(k, v[0] / steps, v[1] / steps) for k, v in parts.items()]


def breakdown_table(rows, batch: int) -> str:
    total = sum(f + b for _, f, b in rows)
    body = [(k, f"{f:.3f}", f"{b:.3f}", f"{(f + b) / total:.0%}") for k, f, b in rows]
    body.append(
        ("total", f"{sum(f for _, f, _ in rows):.3f}", f"{sum(b for _, _, b in rows):.3f}", "100%")
    )
    return table(body, (f"batch {batch}: part", "forward ms", "backward ms", "share"))


# -- PyTorch -----------------------------------------------------------------------------------


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_model(device: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 64, 3),
        nn.ReLU(),
        nn.Conv2d(64, 32, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(18432, 10),
    ).to(device)
    for layer in model:
        if hasattr(layer, "weight"):
            nn.init.xavier_uniform_(layer.weight)  # Keras's Glorot, as minicnn
            nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    return model, opt


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def torch_train(model_opt, X, Y, batch: int, tf32: bool = True) -> float:
    """Images per second of one shuffled epoch; X (N, 1, 28, 28) and Y on the device.
    ``tf32=False`` turns off the TF32 tensor cores PyTorch's CUDA convolutions use by default,
    for a float32 to float32 comparison (minicnn computes in full float32)."""
    import torch
    import torch.nn.functional as F  # noqa: N812  (PyTorch's own spelling)

    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # PyTorch's default for matmul
    model, opt = model_opt
    device = str(X.device)
    _sync(device)
    start = time.perf_counter()
    order = torch.randperm(len(X), device=X.device)
    Xs, Ys = X[order], Y[order]
    for i in range(0, len(X), batch):
        loss = F.cross_entropy(model(Xs[i : i + batch]), Ys[i : i + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return len(X) / (time.perf_counter() - start)


def torch_predict(model_opt, X, batch: int, tf32: bool = True) -> float:
    import torch

    torch.backends.cudnn.allow_tf32 = tf32
    model, _ = model_opt
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(X), batch):
            torch.softmax(model(X[i : i + batch]), dim=1).cpu().numpy()
    return len(X) / (time.perf_counter() - start)


# -- running and reporting ---------------------------------------------------------------------


def interleaved(measures: dict, repeats: int) -> dict:
    """Run each named measure ``repeats`` times, round-robin, so a slow spell on a shared machine
    hits every contender alike; report the median and the spread."""
    samples = {name: [] for name in measures}
    for _ in range(repeats):
        for name, fn in measures.items():
            # Thread pools (PyTorch's OpenMP, OpenBLAS) spin for a while after their work: on a
            # 2-core machine the next contender would share its cores with them. Let them sleep.
            time.sleep(0.5)
            samples[name].append(fn())
    return {
        name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
        for name, v in samples.items()
    }


def table(rows: list[tuple], headers: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "minicnn": _version(),
        **payload,
    }
    tmp = path.with_name(f".{path.name}.tmp")  # atomic: a reader sees the old file or the new
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    return path


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minicnn")
    except PackageNotFoundError:
        return "not installed"


def env_flag(name: str, default: str) -> str:
    return os.environ.get(name, default)
