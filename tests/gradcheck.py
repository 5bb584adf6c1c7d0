"""Finite-difference gradient checking, as in cs231n: central differences in float64."""

from __future__ import annotations

import numpy as np

WORST: list[tuple[float, str]] = []  # (relative error, what) of every check, for the summary line


def rel_error(a, b) -> float:
    """||a - b|| / max(||a||, ||b||): scale-free, and 0 only when the arrays agree."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b), 1e-30)
    return float(np.linalg.norm(a - b) / scale)


def numerical_gradient(f, x: np.ndarray, h: float = 1e-5, indices=None, signature=None):
    """d f / d x by central differences, changing ``x`` in place and restoring it.

    ``indices``: flat positions to check (all by default); the others stay 0.
    ``signature``: optional callable returning the ReLU masks of the last ``f()`` call. A central
    difference across a kink measures neither side's slope, so where x +- h changes any mask the
    entry is set to NaN and left out by ``check`` (which counts them).
    """
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    if signature is not None:
        f()
        base = signature()
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + h
        fp = f()
        crossed = signature is not None and not _same(signature(), base)
        flat[i] = old - h
        fm = f()
        crossed = crossed or (signature is not None and not _same(signature(), base))
        flat[i] = old
        gflat[i] = np.nan if crossed else (fp - fm) / (2 * h)
    return g


def _same(masks_a, masks_b) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(masks_a, masks_b))


def check(what: str, analytic, numeric, tol: float = 1e-6, indices=None) -> float:
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    if indices is not None:
        analytic, numeric = analytic.reshape(-1)[indices], numeric.reshape(-1)[indices]
    valid = ~np.isnan(numeric)
    assert valid.mean() >= 0.8, (
        f"{what}: {np.sum(~valid)} of {valid.size} entries cross a ReLU kink"
    )
    err = rel_error(analytic[valid], numeric[valid])
    WORST.append((err, what))
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"
    return err


def build(layer, x_shape, be) -> None:
    """Build ``layer`` for inputs of ``x_shape`` (batch axis first) on backend ``be``."""
    layer.backend = be
    layer.maybe_build((None, *x_shape[1:]))


def model_gradients(model, xs, ts, watch=None):
    """(loss, {(layer, name): gradient}) of a compiled model on device batches ``xs`` and dense
    targets ``ts`` (one per output), through the plan fit runs; ``watch`` sees each step."""
    plan = model.plan(xs[0].shape[0], True)
    outs, tape = plan.forward(xs, True, watch)
    loss, _, gouts = model.objectives.forward_backward(outs, ts, plan.logits)
    grads = plan.backward(tape, gouts)
    layers = {id(layer): layer for layer in model.leaf_layers()}
    return loss, {(layers[i], k): g for (i, k), g in grads.items()}


def model_loss(model, xs, ts, watch=None) -> float:
    plan = model.plan(xs[0].shape[0], True)
    outs, _ = plan.forward(xs, True, watch)
    return float(model.objectives.forward_backward(outs, ts, plan.logits)[0])
