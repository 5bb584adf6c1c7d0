"""PNG plots of a training run (matplotlib, no display needed). Each is written atomically."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from minicnn.fileio import atomic_write  # noqa: E402


def _save(fig, path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def curves(history: dict, path, final: tuple[str, float] | None = None) -> None:
    """Loss and accuracy per epoch, training and test side by side. ``final``: (label, test
    accuracy) of the model fit left when it is not the last epoch's weights (their moving
    average), drawn as a star after the last epoch."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in (
        (axes[0], "loss", "Loss (cross-entropy)"),
        (axes[1], "accuracy", "Accuracy"),
    ):
        ax.plot(epochs, history[key], "o-", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label="test")
        ax.set(title=title, xlabel="epoch", xticks=epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    if "val_accuracy" in history:
        best = history["val_accuracy"][-1]
        axes[1].annotate(
            f"{best:.2%}",
            (epochs[-1], best),
            textcoords="offset points",
            xytext=(-10, -16),
            ha="right",
        )
    if final is not None:
        label, accuracy = final
        axes[1].plot([epochs[-1] + 0.4], [accuracy], "*", markersize=12, color="C2", label=f"{label}: {accuracy:.2%}")  # fmt: skip
        axes[1].legend()
    _save(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, path, classes: int = 10) -> np.ndarray:
    """Counts of (true, predicted) pairs, drawn with each cell's count; returns the matrix."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(np.log1p(m), cmap="Blues")
    for i in range(classes):
        for j in range(classes):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[i, j] > m.max() / 3 else "black",
                )
    ax.set(
        xticks=range(classes), yticks=range(classes), xlabel="predicted digit", ylabel="true digit"
    )
    ax.set_title(
        f"Confusion matrix: {np.trace(m)} of {m.sum()} right ({np.trace(m) / max(m.sum(), 1):.2%})"
    )
    fig.colorbar(im, ax=ax, label="log(1 + count)")
    _save(fig, path)
    return m


def misclassified(images: np.ndarray, y_true, y_pred, confidence, path, n: int = 36) -> None:
    """A grid of the test digits the model got wrong, most confident mistakes first."""
    wrong = np.flatnonzero(y_true != y_pred)
    wrong = wrong[np.argsort(-confidence[wrong])][:n]
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.75))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), wrong):
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(f"true {y_true[i]}, said {y_pred[i]}\n({confidence[i]:.0%})", fontsize=8)
    fig.suptitle(
        f"Misclassified test digits ({len(np.flatnonzero(y_true != y_pred))} in all; most confident first)"
    )
    _save(fig, path)


def filters(kernel: np.ndarray, path) -> None:
    """The first layer's filters, one tile each. kernel: (kh, kw, 1, F)."""
    f = kernel.shape[-1]
    cols = 8
    rows = int(np.ceil(f / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9))
    lim = np.abs(kernel).max()
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < f:
            ax.imshow(kernel[:, :, 0, k], cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.suptitle(
        f"First-layer filters ({kernel.shape[0]}x{kernel.shape[1]}; red positive, blue negative)"
    )
    _save(fig, path)
