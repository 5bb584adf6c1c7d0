"""Model files. A path ending in ``.keras`` is Keras 3's own format (``minicnn.keras_format``:
Keras's ``load_model`` opens it, and minicnn opens Keras's); any other is minicnn's: one zip
holding ``model.json`` (format version, architecture, compile settings, a manifest of the
weights) and one ``.npy`` member per weight array. Loading tells the two apart by their
contents, not their names.

Loading runs no code from the file: no pickle anywhere, each ``.npy`` header is parsed and checked
(dtype, shape, size) against the manifest, the architecture and the member's real size before a
byte of data is read. Saving writes a temporary file beside the target and renames it, so a crash
never leaves a half-written file under the real name.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tokenize
import zipfile

import numpy as np

from minicnn import losses, optimizers
from minicnn.backend import rng, set_rng_state
from minicnn.fileio import atomic_write
from minicnn.keras_format import archive
from minicnn.keras_format import custom_object_scope as custom_object_scope
from minicnn.keras_format import get_custom_objects as get_custom_objects
from minicnn.keras_format import get_registered_name as get_registered_name
from minicnn.keras_format import get_registered_object as get_registered_object
from minicnn.keras_format import register_keras_serializable as register_keras_serializable
from minicnn.keras_format.errors import ModelFileError
from minicnn.models import Model
from minicnn.models import config as model_config
from minicnn.state import TrainingState

FORMAT = "minicnn.model"
FORMAT_VERSION = 2  # 1: a Sequential's layers only; 2: any graph, in Keras's config layout
_MAX_JSON = 1 << 20
_ZIP_FLAGS = 0x01 | 0x20 | 0x40  # encrypted, patched data, strong encryption
_DTYPES = (
    np.dtype("<f4"),
    np.dtype("<f8"),
)  # an architecture is a few KB; refuse to parse more than 1 MB of it

__all__ = ["ModelFileError", "save_model", "load_model", "save_checkpoint", "load_checkpoint", "Checkpoint", "register_keras_serializable", "custom_object_scope", "get_custom_objects", "get_registered_name", "get_registered_object"]  # fmt: skip


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def leaf_paths(model, prefix: str = "") -> list[tuple[str, object]]:
    """(path, layer) of every computing layer once: "conv2d", or "tower/conv2d" inside a
    nested model, in get_weights's order."""
    out, seen = [], set()
    for layer in model.layers:
        if isinstance(layer, Model):
            inner = leaf_paths(layer, f"{prefix}{layer.name}/")
        elif type(layer).__name__ == "InputLayer":
            continue
        else:
            inner = [(f"{prefix}{layer.name}", layer)]
        for path, x in inner:
            if id(x) not in seen:
                seen.add(id(x))
                out.append((path, x))
    return out


def save_model(model, path, include_optimizer: bool = True, training: dict | None = None) -> None:
    """Write ``model`` to ``path``; with ``include_optimizer`` (as Keras) also the optimizer's
    step count and slot arrays, so training can continue where it was; ``training`` is the
    JSON-able state a checkpoint adds (``TrainingState.record``: epoch, history, generator).
    ``x.keras`` is written in Keras 3's format, any other name in minicnn's."""
    if archive.is_keras_name(path):
        return archive.write_keras(model, path, include_optimizer, training)
    if model.graph is None:
        raise ValueError(f"Model '{model.name}' has no input shape yet: build it before saving")
    manifest, arrays = [], []
    paths = leaf_paths(model)
    for name_path, layer in paths:
        for name, w in zip(layer.weight_names, layer.own_weights()):
            manifest.append(
                {"layer": name_path, "name": name, "shape": list(w.shape), "dtype": str(w.dtype)}
            )
            arrays.append(w)
    from minicnn.models.config import functional_config

    kind = "Sequential" if type(model).__name__ == "Sequential" else "Functional"
    obj = model.objectives
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        # a subclassed model's traced graph, as a functional one (its get_config is Keras's base)
        "architecture": {
            "class_name": kind,
            "config": functional_config(model) if model.traces_call() else model.get_config(),
        },
        "compile": None
        if obj is None
        else {"optimizer": model.optimizer.get_config(), **obj.get_config()},
        "weights": manifest,
    }
    opt = model.optimizer
    slot_arrays = []
    if include_optimizer and opt is not None and opt.slots is not None:
        where = {id(layer): p for p, layer in paths}
        entries = []
        for (layer, k), slots in zip(model.trainable_params(), opt.slots):
            for name in opt.slot_names():
                a = model.backend.to_numpy(slots[name])
                entries.append({"param": f"{where[id(layer)]}/{k}", "slot": name, "shape": list(a.shape)})  # fmt: skip
                slot_arrays.append(a)
        meta["optimizer_state"] = {"iterations": opt.iterations, "slots": entries}
    if training is not None:
        meta["training"] = training

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("model.json", json.dumps(meta, indent=1))
            for i, a in enumerate(arrays):
                zf.writestr(f"weights/{i}.npy", _npy_bytes(a))
            for i, a in enumerate(slot_arrays):
                zf.writestr(f"optimizer/{i}.npy", _npy_bytes(a))

    atomic_write(path, write)


def save_checkpoint(model, path, epoch: int, monitor=None, best=None, state=None) -> None:
    """A model file that also holds where training stands after ``epoch`` epochs (the record of
    ``state``, by default the model's last fit's: history, callbacks, the random generator) and
    the optimizer's state."""
    state = state or model.training_state or TrainingState(epoch)
    save_model(model, path, include_optimizer=True, training=state.record(epoch, monitor, best))


@dataclasses.dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: continue with ``model.fit(..., initial_epoch=epoch)``."""

    model: object
    epoch: int
    history: dict


def load_checkpoint(path, backend=None) -> Checkpoint:
    """The model, compiled with its optimizer state, and the epoch to resume from. Also puts
    minicnn's random generator back in the state it had at the checkpoint, so the shuffles and
    dropout masks to come are those the uninterrupted run would have drawn, and ``fit`` with
    ``initial_epoch=epoch`` returns a History that starts with the epochs before it."""
    model, training = _load(path, backend, compile=True)
    if training is None:
        raise ModelFileError(
            f"{path} is a model file, not a checkpoint: load it with minicnn.load_model; "
            "checkpoints are written by minicnn.callbacks.ModelCheckpoint"
        )
    try:
        epoch, history, state = training["epoch"], training["history"], training["rng"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 or not isinstance(history, dict):  # fmt: skip
            raise TypeError("epoch must be a non-negative int and history a dict")
        if any(not isinstance(v, list) or len(v) > epoch for v in history.values()):
            raise ValueError(
                f"each history entry must hold {epoch} values (or fewer: validation_freq)"
            )
        generator = np.random.PCG64()
        generator.state = state  # checked here, before the real generator changes
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"{path}: the training state is invalid ({e})") from None
    set_rng_state(generator.state)
    model.training_state = TrainingState(epoch, dict(history), [], {**training, "epoch": epoch})
    return Checkpoint(model, epoch, history)


def _read_array(zf: zipfile.ZipFile, member: str, shape: tuple, path) -> np.ndarray:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise ModelFileError(f"{path}: weight array {member} is missing") from None
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }
            if version not in read_header:
                raise ValueError(f"unsupported .npy version {version}")
            got_shape, fortran, got_dtype = read_header[version](f)
        except (ValueError, SyntaxError, tokenize.TokenError, MemoryError, RecursionError) as e:
            raise ModelFileError(f"{path}: {member} has a damaged array header ({e})") from None
        if got_dtype not in _DTYPES or fortran or tuple(got_shape) != shape:
            raise ModelFileError(
                f"{path}: {member} should be a float32 or float64 array of shape {shape}. "
                f"Received: {got_dtype} {tuple(got_shape)}{' (Fortran order)' if fortran else ''}"
            )
        dtype = got_dtype
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != f.tell() + nbytes:
            raise ModelFileError(
                f"{path}: {member} holds {info.file_size - f.tell()} bytes of data, expected {nbytes}"
            )
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise ModelFileError(f"{path}: {member} is truncated")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    if not np.isfinite(array).all():  # a model that answers NaN to every image is broken
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise ModelFileError(f"{path}: {member} holds {bad} NaN or infinite values: the weights are broken")  # fmt: skip
    return array


MAX_FLOPS = 1e10  # work per image a file may ask for: ~100x the best recipe's network


def _check_sizes(architecture: dict, zf: zipfile.ZipFile, path) -> None:
    """Refuse, before any weight is allocated, an architecture needing more bytes than the file
    holds (weights are stored uncompressed, so a true file is at least that large: a declared
    10^12-element weight is turned away here, not by running out of memory), or more work per
    image than MAX_FLOPS (a pool or kernel window is checked against its input as the layers
    check it: a 457-byte file asking for a 1 x 10^9 pool never runs)."""
    need, flops, _ = model_config.cost(architecture)  # shapes only: nothing is allocated
    size = os.path.getsize(path)
    if need > size:
        raise ModelFileError(
            f"{path}: the architecture needs {need:,} bytes of weights but the file has {size:,}"
        )
    if flops > MAX_FLOPS:
        raise ModelFileError(
            f"{path}: the architecture asks for {flops:.3g} operations per image; a model file "
            f"may ask for at most {MAX_FLOPS:.0e}"
        )


def load_model(path, custom_objects=None, compile: bool = True, safe_mode=True, backend=None):
    """The model saved at ``path`` (minicnn's format, or a ``.keras`` file that Keras 3 or
    minicnn wrote), on ``backend`` (default: the current one), compiled as saved, with its
    optimizer's state when the file holds one. ``custom_objects``: {name: class} for custom
    layers the file names. No code from a file ever runs, whatever ``safe_mode`` says.
    Keras's signature, with ``backend`` last."""
    return _load(path, backend, compile, custom_objects)[0]


def _load(path, backend=None, compile: bool = True, custom_objects=None):
    """(model, the checkpoint's training state or None). Building the layers draws initial
    weights that the file's then replace; the generator is put back after, so loading a model
    never moves the random stream of the program that loads it."""
    state = rng().bit_generator.state
    try:
        if archive.is_keras_file(path):
            return archive.read_keras(path, backend, compile, custom_objects)
        return _read_model(path, backend, compile)
    finally:
        set_rng_state(state)


def _read_model(path, backend, compile):
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"No model file at {path}") from None
    except (
        zipfile.BadZipFile,
        OSError,
        ValueError,
        NotImplementedError,
    ) as e:  # zip v9.9, bad names
        raise ModelFileError(f"{path} is not a minicnn model file ({e})") from None
    with zf:
        # minicnn stores every member plainly: refusing anything else up front keeps zipfile's
        # decompressors and decrypters (and their NotImplementedError/RuntimeError) out of reach
        if any(
            i.compress_type != zipfile.ZIP_STORED or i.flag_bits & _ZIP_FLAGS for i in zf.infolist()
        ):
            raise ModelFileError(
                f"{path}: members must be stored uncompressed and unencrypted, as minicnn writes them"
            )
        try:
            info = zf.getinfo("model.json")
        except KeyError:
            raise ModelFileError(f"{path} is not a minicnn model file (no model.json)") from None
        if info.file_size > _MAX_JSON:
            raise ModelFileError(
                f"{path}: model.json is {info.file_size} bytes, more than a model needs"
            )
        try:
            meta = json.loads(zf.read(info).decode("utf-8"))
        except (ValueError, zipfile.BadZipFile, OSError, EOFError, RecursionError) as e:
            raise ModelFileError(f"{path}: model.json is damaged ({e!r})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelFileError(
                f"{path} is not a minicnn model file (format {meta.get('format') if isinstance(meta, dict) else None!r})"
            )
        version = meta.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:  # fmt: skip
            raise ModelFileError(
                f"{path} has format version {version!r}; this minicnn reads versions up to "
                f"{FORMAT_VERSION}: upgrade minicnn to load it"
            )
        try:
            _check_sizes(meta["architecture"], zf, path)
            model = model_config.from_config(meta["architecture"], backend=backend)
            manifest = meta["weights"]
            expected = [(p, layer, n) for p, layer in leaf_paths(model) for n in layer.weight_names]  # fmt: skip
            if len(manifest) != len(expected):
                raise ModelFileError(
                    f"{path}: the architecture has {len(expected)} weight arrays, the file {len(manifest)}"
                )
            arrays = []
            for i, ((where, layer, name), entry) in enumerate(zip(expected, manifest)):
                if (entry.get("layer"), entry.get("name")) != (where, name):
                    raise ModelFileError(
                        f"{path}: weight {i} is {entry.get('layer')}/{entry.get('name')}, expected {where}/{name}"
                    )
                shape = layer._weight(name).shape
                arrays.append(_read_array(zf, f"weights/{i}.npy", shape, path))
            model.set_weights(arrays)
            if compile and meta.get("compile"):
                _compile(model, meta["compile"])
                if meta.get("optimizer_state") is not None:
                    _load_optimizer_state(model, meta["optimizer_state"], zf, path)
            _check_members(zf, meta, path)  # last: the checks above name what is missing
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError, zipfile.BadZipFile, OSError, EOFError) as e:  # fmt: skip
            raise ModelFileError(
                f"{path}: the model description is invalid ({type(e).__name__}: {e})"
            ) from None
    training = meta.get("training")
    if training is not None and not isinstance(training, dict):
        raise ModelFileError(f"{path}: the training state is invalid (not an object)")
    return model, training


def _check_members(zf: zipfile.ZipFile, meta: dict, path) -> None:
    """Every member of the zip is one minicnn wrote for this model, once: nothing extra, no
    name twice (a second member of the same name would shadow the first one read)."""
    names = [i.filename for i in zf.infolist()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ModelFileError(f"{path}: the members {twice} appear more than once")
    slots = (meta.get("optimizer_state") or {}).get("slots", [])
    expected = {"model.json", *(f"weights/{i}.npy" for i in range(len(meta["weights"])))}
    expected |= {f"optimizer/{i}.npy" for i in range(len(slots))}
    extra = sorted(set(names) - expected)
    if extra:
        raise ModelFileError(f"{path}: members minicnn did not write for this model: {extra[:5]}")


def _compile(model, c: dict) -> None:
    """compile() again with what the file holds (version 1 kept one loss and "accuracy")."""
    from minicnn.models.compile import metric_from_config

    if "losses" not in c:  # format version 1
        model.compile(optimizers.deserialize(c["optimizer"]), losses.deserialize(c["loss"]), metrics=c.get("metrics"))  # fmt: skip
        return
    loss = [None if x is None else losses.deserialize(x) for x in c["losses"]]
    metrics = [[metric_from_config(m) for m in ms] for ms in c["metrics"]]
    weighted = [[metric_from_config(m) for m in ms] for ms in c.get("weighted_metrics") or []]
    single = len(loss) == 1
    model.compile(
        optimizers.deserialize(c["optimizer"]),
        loss[0] if single else loss,
        loss_weights=c["weights"][0] if single else c["weights"],
        metrics=metrics[0] if single else metrics,
        weighted_metrics=(weighted[0] if single else weighted) if any(weighted) else None,
    )


def _load_optimizer_state(model, state: dict, zf: zipfile.ZipFile, path) -> None:
    """Check the saved slots against the model's parameters, then hand them to the optimizer."""
    opt, params, names = model.optimizer, model.trainable_params(), model.optimizer.slot_names()
    where = {id(layer): p for p, layer in leaf_paths(model)}
    entries, iterations = state["slots"], state["iterations"]
    if not isinstance(iterations, int) or iterations < 0:
        raise ModelFileError(f"{path}: the optimizer step count {iterations!r} is invalid")
    if len(entries) != len(params) * len(names):
        raise ModelFileError(
            f"{path}: {opt.name} keeps {len(params) * len(names)} slot arrays for this model, "
            f"the file {len(entries)}"
        )
    slots, i = [], 0
    for layer, k in params:  # entry i is slot names[i % len(names)] of parameter i // len(names)
        p = layer.params[k]
        slots.append({})
        for name in names:
            entry = entries[i]
            if (entry.get("param"), entry.get("slot")) != (f"{where[id(layer)]}/{k}", name):
                raise ModelFileError(
                    f"{path}: optimizer array {i} is {entry.get('param')}:{entry.get('slot')}, "
                    f"expected {where[id(layer)]}/{k}:{name}"
                )
            a = _read_array(zf, f"optimizer/{i}.npy", p.shape, path)  # read-only: copy it
            slots[-1][name] = model.backend.asarray(a, dtype=p.dtype).copy()
            i += 1
    opt.set_state(iterations, slots)
