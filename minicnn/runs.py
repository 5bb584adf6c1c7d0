"""What ``minicnn train`` checks before a run spends any time, and the command that resumes it.

Every check here runs before the first epoch, so a run that cannot finish fails at once, in one
line, with nothing written: the output folder must be a folder this process can create and
write, with room for what the run writes; a checkpoint to resume must hold the network the
recipe builds and stand before ``--epochs``. ``resume_command`` writes back every flag that
defines the run, so the printed command goes on with the same data, batches and folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

MODEL_FILE = "model.minicnn"
CHECKPOINT_FILE = "checkpoint.minicnn"
PROBE_BYTES = 1 << 16  # written and removed in the output folder before training starts
PLOTS_BYTES = 4 << 20  # history.json and the four plots, with room to spare


class RunError(ValueError):
    """A run that cannot go as asked: said in one line before anything is written."""


def check_output_folder(folder, model=None) -> None:
    """Create ``folder`` (and its parents), then write, fsync and remove a probe file in it; with
    ``model``, also check the disk has room for the model file, its checkpoint (weights, Adam's
    two moments and an average, written beside the previous one) and the plots."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise RunError(f"--out {folder} is a file; give a folder to write the run into")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        raise RunError(f"--out {folder}: cannot write there ({e.strerror or e})") from None
    if model is not None:
        need = 4 * model.count_params() * (1 + 2 * 4) + PLOTS_BYTES  # float32
        free = shutil.disk_usage(folder).free
        if free < need:
            raise RunError(
                f"--out {folder}: {free / 1e6:.1f} MB free; this run writes about "
                f"{need / 1e6:.1f} MB (model, checkpoint and plots)"
            )


def describe(e: OSError) -> str:
    """An OSError in words, without the traceback: 'runs/x/model.minicnn: No space left on device'."""
    text = e.strerror or str(e) or type(e).__name__
    return f"{e.filename}: {text}" if e.filename else text


def network(model):
    """The network as its config says, without the layers' names (numbered as they are made):
    what two models must share for one's checkpoint to go on as the other."""

    def unnamed(value):  # the config without any name in it, nested models' included
        if isinstance(value, dict):
            return {k: unnamed(v) for k, v in value.items() if k != "name"}
        return [unnamed(v) for v in value] if isinstance(value, list) else value

    config = model.get_config()
    return config.get("build_input_shape"), unnamed(config["layers"])


def check_resume(checkpoint, path, epochs: int, recipe: str, networks: dict) -> None:
    """A checkpoint (``load_checkpoint``'s answer) fit to go on to ``epochs`` epochs with
    ``recipe``: the network that recipe builds (``networks``: recipe name -> ``network(...)``,
    made before the checkpoint put the random generator back), and an epoch still to train."""
    held = network(checkpoint.model)
    if held != networks[recipe]:
        same = [name for name, net in networks.items() if net == held]
        hint = f"it is a --recipe {same[0]} checkpoint" if same else "no recipe builds it"
        raise RunError(
            f"{path} holds another network than --recipe {recipe} builds ({hint}); "
            "resume it with the recipe that wrote it"
        )
    if epochs <= checkpoint.epoch:
        raise RunError(
            f"{path} stands after epoch {checkpoint.epoch}, so --epochs {epochs} leaves nothing "
            f"to train: --epochs is the total, give more than {checkpoint.epoch}"
        )


def resume_command(args, checkpoint, processes: int | None = None) -> str:
    """The shell command that takes this run up from ``checkpoint``: every flag that defines the
    run (recipe, data, limit, seed, batch size, epochs, backend, output folder) as this run
    resolved it, so a changed default cannot change the run."""
    words = ["minicnn", "train"]
    if processes:
        words = ["mpiexec", "-n", str(processes), *words, "--distributed"]
    flags = {
        "--recipe": args.recipe,
        "--data": args.data,
        "--limit": args.limit,
        "--seed": args.seed,
        "--batch-size": args.batch_size,
        "--epochs": args.epochs,
        "--backend": args.backend,
        "--out": args.out,
        "--resume": checkpoint,
    }
    for flag, value in flags.items():
        if value is not None:
            words += [flag, str(value)]
    return shlex.join(words)


def start(args, recipes: dict, chief: bool = True):
    """(model, initial epoch) for ``minicnn train``'s parsed ``args``: the recipe's new model, or
    the checkpoint's, checked against the recipe and --epochs before anything is written."""
    from minicnn.saving import ModelFileError, load_checkpoint

    if not args.resume:
        return recipes[args.recipe].build(args.backend), 0
    try:
        found = Path(args.resume).is_file()
    except OSError as e:  # a name too long, say
        raise RunError(f"--resume {args.resume}: {e.strerror or e}") from None
    if not found:
        raise RunError(f"no checkpoint at {args.resume}")
    # before load_checkpoint puts the random generator back: building draws initial weights
    networks = {name: network(r.build(args.backend)) for name, r in recipes.items()}
    try:  # also restores the random generator, so shuffles go on as in an unbroken run
        checkpoint = load_checkpoint(args.resume, backend=args.backend)
    except ModelFileError as e:
        raise RunError(f"cannot resume: {e}") from None
    except OSError as e:
        raise RunError(f"cannot resume: {describe(e)}") from None
    check_resume(checkpoint, args.resume, args.epochs, args.recipe, networks)
    if chief:
        print(f"Resuming {args.resume} after epoch {checkpoint.epoch}")
    return checkpoint.model, checkpoint.epoch


def write_results(model, history, record, test, accuracy, out: Path) -> None:
    """The model, history.json and the plots, each written atomically; an OSError goes up."""
    import json

    from minicnn import plots
    from minicnn.fileio import atomic_write

    x_test, y_test = test
    model.save(out / MODEL_FILE)
    atomic_write(out / "history.json", lambda f: f.write(json.dumps(record, indent=1).encode()))
    probs = model.predict(x_test, batch_size=128, verbose=0)
    y_true, y_pred = y_test.argmax(1), probs.argmax(1)
    ema = getattr(model.optimizer, "use_ema", False)  # the model fit left: the weights' average
    plots.curves(history.history, out / "curves.png", ("test, EMA weights", accuracy) if ema else None)  # fmt: skip
    plots.confusion_matrix(y_true, y_pred, out / "confusion_matrix.png")
    plots.misclassified(x_test[..., 0], y_true, y_pred, probs.max(1), out / "misclassified.png")
    plots.filters(model.get_weights()[0], out / "filters.png")
    print(
        f"Wrote {out / MODEL_FILE}, {CHECKPOINT_FILE}, history.json, curves.png, confusion_matrix.png, misclassified.png, filters.png in {out}/"
    )


def stamp(path: Path):
    """What tells one write of ``path`` from another (atomic_write makes a new inode each time)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
