"""How the best recipe's settings are chosen: on a validation split, never on the test set.

Trains the best recipe's network on the first 50,000 training images and scores it on the last
10,000 after every epoch, with the weights as trained and, with --ema M, with their moving
average as well (Keras's use_ema; the average is swapped in only to score it). The test images
are not loaded. Prints one line per epoch and writes the figures as JSON.

    python examples/mnist_best_design.py --decay 0.95 --ema 0.999 --out runs/design_095.json
    python examples/mnist_best_design.py --epochs 35 --decay 0.978 --ema 0.999 \
        --out docs/design/best_35epochs_decay0.978.json --save runs/design_35.minicnn

--save writes the model fit leaves (with --ema, the averaged weights), so that choices made
after training (test-time augmentation, say) can be tried on the same validation images.
"""

import argparse
import json
import time

import numpy as np

from minicnn.callbacks import Callback, LearningRateScheduler
from minicnn.cli import load_mnist
from minicnn.fileio import atomic_write
from minicnn.optimizers import Adam
from minicnn.recipes import best_model
from minicnn.utils import set_random_seed


class ScoreAverage(Callback):
    """After each epoch: the validation accuracy with the EMA weights in place, then the
    trained weights back."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.scores = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        opt = self.model.optimizer
        params = [layer.params[k] for layer, k in self.model.trainable_params()]
        kept = [p.copy() for p in params]
        opt.finalize(params)
        loss, acc = self.model.evaluate(self.x, self.y, 256, 0)
        for p, k in zip(params, kept):
            p[...] = k
        self.scores.append(acc)
        print(
            f"epoch {epoch + 1}: val_accuracy {logs['val_accuracy']:.4f}, with the EMA weights {acc:.4f}",
            flush=True,
        )


# Test-time augmentation: each image's class probabilities averaged over copies of it shifted
# by these (rows, columns) pixels, the blank edge filled with 0 (MNIST's background)
SHIFTS = {
    "none": [(0, 0)],
    "shift 1 px, 4 ways": [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)],
    "shift 1 px, 8 ways": [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
}


def shifted(x, dy, dx):
    """x (N, 28, 28, 1) moved by dy rows and dx columns, zeros coming in."""
    out = np.zeros_like(x)
    h, w = x.shape[1:3]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[:, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]  # fmt: skip
    return out


def score_tta(path):
    """The validation accuracy of a saved model with each of SHIFTS."""
    from minicnn.saving import load_model

    (x, y), _ = load_mnist()
    x_val, labels = x[50_000:], np.argmax(y[50_000:], axis=1)
    model = load_model(path)
    for name, shifts in SHIFTS.items():
        p = sum(
            model.predict(shifted(x_val, dy, dx), batch_size=500, verbose=0) for dy, dx in shifts
        )
        print(
            f"{name}: validation accuracy {np.mean(np.argmax(p, axis=1) == labels):.4f}", flush=True
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decay", type=float, default=0.95, help="lr = 1e-3 * decay^epoch")
    ap.add_argument("--ema", type=float, default=None, help="also score an EMA of the weights")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=50_000, help="training images (a quick try)")
    ap.add_argument("--out", help="where the figures go, as JSON (required unless --score-tta)")
    ap.add_argument("--save", default=None, help="also write the trained model here")
    ap.add_argument("--elastic", type=float, default=None, help="add RandomElasticTransform(scale=E)")  # fmt: skip
    ap.add_argument(
        "--score-tta", metavar="MODEL", help="only score a saved model with test-time augmentation"
    )
    args = ap.parse_args()
    if args.score_tta:
        return score_tta(args.score_tta)
    if not args.out:
        ap.error("--out is required to train")

    set_random_seed(args.seed)
    (x, y), _ = load_mnist()
    x_train, y_train, x_val, y_val = x[: args.limit], y[: args.limit], x[50_000:], y[50_000:]
    model = best_model(elastic=args.elastic)
    if args.ema is not None:
        model.compile(Adam(1e-3, use_ema=True, ema_momentum=args.ema), "categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    callbacks = [LearningRateScheduler(lambda epoch, lr: 1e-3 * args.decay**epoch)]
    if args.ema is not None:
        callbacks.append(ScoreAverage(x_val, y_val))
    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, batch_size=64, epochs=args.epochs,
        validation_data=(x_val, y_val), callbacks=callbacks, verbose=2,
    )  # fmt: skip
    record = {**vars(args), **history.history, "seconds": time.perf_counter() - start}
    if args.ema is not None:
        record["val_accuracy_ema"] = callbacks[-1].scores
    atomic_write(args.out, lambda f: f.write(json.dumps(record, indent=1).encode()))
    if args.save:
        model.save(args.save)


if __name__ == "__main__":
    main()
