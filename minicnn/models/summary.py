"""``model.summary()``: Keras's table. A Sequential, or a graph that is a plain chain, gets three
columns (Layer (type), Output Shape, Param #); any other graph a fourth, "Connected to", naming
each input as ``layer[node][tensor]``. ``show_plan`` adds the plans the model runs: for each
step, its layers, the convolution algorithm, what fused, and what it keeps for backward."""

from __future__ import annotations

import numpy as np

from minicnn.backend import floatx


def _bytes(n: float) -> str:
    units = ("B", "KB", "MB", "GB", "TB", "PB")
    k = 0
    while n >= 1024 and k < len(units) - 1:
        n, k = n / 1024, k + 1
    return f"{n:.2f} {units[k]}"


def table(headers: list[str], rows: list[list[str]], right=(2,)) -> list[str]:
    """Rows drawn with Keras's box characters, a line between rows; cells may hold newlines."""
    lines = [[str(c).split("\n") for c in r] for r in rows]
    w = [max([len(h), *(len(x) for r in lines for x in r[i])]) + 2 for i, h in enumerate(headers)]

    def row(cells, bar="│"):
        height = max(len(c) for c in cells)
        out = []
        for k in range(height):
            parts = []
            for i, c in enumerate(cells):
                text = c[k] if k < len(c) else ""
                parts.append(f" {text:>{w[i] - 2}} " if i in right else f" {text:<{w[i] - 2}} ")
            out.append(bar + bar.join(parts) + bar)
        return out

    def rule(a, b, c, fill):
        return a + b.join(fill * x for x in w) + c

    out = [rule("┏", "┳", "┓", "━"), *row([[h] for h in headers], "┃"), rule("┡", "╇", "┩", "━")]
    for i, r in enumerate(lines):
        if i:
            out.append(rule("├", "┼", "┤", "─"))
        out += row(r)
    out.append(rule("└", "┴", "┘", "─"))
    return out


def summary(model, print_fn, show_plan: bool = False, plan_batch: int = 32) -> None:
    headers = ["Layer (type)", "Output Shape", "Param #"]
    built = model.graph is not None
    chain = not built or (model.graph.is_chain() or type(model).__name__ == "Sequential")
    rows = []
    if built:
        index = model.graph.node_index()
        nodes = [t.node for t in model.inputs] + model.graph.nodes
        layers = model.layers
        if type(model).__name__ != "Sequential" and not chain:
            headers.append("Connected to")
        for layer in layers:
            own = [n for n in nodes if n.layer is layer]
            shape = own[0].outputs[0].shape if len(own[0].outputs) == 1 else [t.shape for t in own[0].outputs]  # fmt: skip
            cells = [f"{layer.name}\n({type(layer).__name__})", str(shape).replace("'", ""), f"{layer.count_params():,}"]  # fmt: skip
            if len(headers) == 4:
                links = [f"{t.history[0].name}[{index[id(t.node)]}][{t.node.outputs.index(t)}]" for n in own for t in n.inputs]  # fmt: skip
                cells.append(", ".join(links) if links else "-")
            rows.append(cells)
    else:
        for layer in model.layers:
            rows.append([f"{layer.name}\n({type(layer).__name__})", "?", "0 (unbuilt)"])
    leaves = model.leaf_layers() if built else []
    total = sum(x.count_params() for x in leaves)
    trainable = sum(int(p.size) for x in leaves if x.trainable for p in x.params.values())
    size = np.dtype(floatx()).itemsize
    out = [f'Model: "{model.name}"', *table(headers, rows)]
    slots = getattr(model.optimizer, "slots", None) if model.optimizer is not None else None
    opt = sum(int(a.size) for s in slots or [] for a in s.values())
    out += [
        f" Total params: {total + opt:,} ({_bytes((total + opt) * size)})",
        f" Trainable params: {trainable:,} ({_bytes(trainable * size)})",
        f" Non-trainable params: {total - trainable:,} ({_bytes((total - trainable) * size)})",
    ]
    if slots:
        out.append(f" Optimizer params: {opt:,} ({_bytes(opt * size)})")
    if show_plan and built:
        for training in (True, False):
            plan = model.plan(plan_batch, training)
            mode = "training" if training else "inference"
            code = "hand-written kernels" if plan.kernels else "array code only"
            out.append(f"\nPlan ({mode}, batch {plan_batch}): {len(plan.steps)} steps, {code}")
            heads = ["Step", "Layers", "Algorithm", "Fused", "Keeps for backward"]
            steps = [[str(i), f"{names}\n({kinds})", algo or "-", fused or "-", keeps or "-"]
                     for i, (names, kinds, algo, fused, keeps) in enumerate(plan.describe())]  # fmt: skip
            out += table(heads if training else heads[:-1], [r if training else r[:-1] for r in steps], right=(0,))  # fmt: skip
    print_fn("\n".join(out))
