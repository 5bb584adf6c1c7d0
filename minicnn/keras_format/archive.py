"""The ``.keras`` file: a zip of ``config.json`` (the model as Keras's
``serialize_keras_object`` writes it), ``metadata.json`` (``keras_version``, ``date_saved``) and
``model.weights.h5``; and ``.weights.h5`` files alone.

Reading never extracts anything and never runs code from the file: members are read by their
exact names into memory (so a zip name cannot reach the disk), each size is bounded before it is
read (the JSON by a fixed limit and a nesting depth, the weights by what the architecture needs,
worked out from shapes before anything is allocated), and a config can only name classes minicnn
has or was given (``registry``). A model is returned whole or not at all.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import zipfile

from minicnn.fileio import atomic_write
from minicnn.keras_format import compiled, weights
from minicnn.keras_format import models as keras_models
from minicnn.keras_format.errors import READ_ERRORS, ModelFileError, need_h5py

KERAS_VERSION = "3.15.1"  # the Keras whose format this writes (and which the tests load it in)
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
MAX_JSON = 16 << 20
MAX_METADATA = 1 << 20
MAX_DEPTH = 64  # of JSON nesting; a config is about 12 deep per nested model
_ZIP_FLAGS = 0x01 | 0x40  # encrypted, strong encryption
_H5_OVERHEAD = 1 << 20  # HDF5's own structures, generously: 1 MB, and 8 KB per layer
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'"\\[]{}')


def model_config(model, include_compile: bool = True) -> dict:
    """What config.json holds for ``model`` (``to_json``'s object)."""
    entry = keras_models.model_to_keras(model)
    if include_compile:
        entry["compile_config"] = model.get_compile_config()
    return entry


def write_keras(model, path, include_optimizer: bool = True, training: dict | None = None) -> None:
    """``model.save("x.keras")``; ``training`` (a checkpoint's record) goes into metadata.json,
    where Keras, which reads only config.json and the weights, leaves it."""
    h5py = need_h5py()
    config = json.dumps(model_config(model))
    meta = {"keras_version": KERAS_VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}  # fmt: skip
    if training is not None:
        meta["minicnn_training"] = training
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        weights.write(model, f, include_optimizer)

    def write(fileobj):
        with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(METADATA, json.dumps(meta))
            zf.writestr(CONFIG, config)
            zf.writestr(WEIGHTS, buf.getvalue())

    atomic_write(path, write)


def write_weights(model, path) -> None:
    """``model.save_weights("x.weights.h5")``: the weights and the optimizer's variables."""
    h5py = need_h5py()

    def write(fileobj):
        with h5py.File(fileobj, "w") as f:
            weights.write(model, f)

    atomic_write(path, write)


def is_keras_name(path) -> bool:
    """True for "x.keras" (Keras's format); "x.h5" and "x.weights.h5" are refused, other names
    are minicnn's format."""
    name = os.fspath(path)
    if isinstance(name, str) and name.endswith(".weights.h5"):
        raise ValueError(f"{name} is a weights file name: use model.save_weights for it, or save the model as .keras")  # fmt: skip
    if isinstance(name, str) and name.endswith(".h5"):
        raise ValueError(f"Keras's legacy HDF5 model files (.h5) are not supported: save as .keras (Keras 3's format) or .minicnn. Received: filepath={name}")  # fmt: skip
    return isinstance(name, str) and name.endswith(".keras")


def is_keras_file(path) -> bool:
    """A zip holding config.json and no model.json: Keras's format. Anything else, even a
    damaged file named .keras, is left to minicnn's reader to refuse."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except Exception:  # not a zip, or a damaged one: minicnn's reader says what is wrong
        return False
    return CONFIG in names and "model.json" not in names


# -- reading -----------------------------------------------------------------------------------


def parse_json(data: bytes, what: str):
    """JSON bytes -> object, refusing more than MAX_DEPTH levels of nesting before parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in data.translate(None, _NOT_STRUCTURAL):  # quotes, backslashes, brackets only
        if in_string:
            if escaped:
                escaped = False
            elif ch == 0x5C:
                escaped = True
            elif ch == 0x22:
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise ModelFileError(f"{what} nests deeper than {MAX_DEPTH} levels")
        elif ch in (0x5D, 0x7D):
            depth -= 1
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"{what} is not valid JSON ({e})") from None


def _open_zip(path):
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"No model file at {path}") from None
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as e:
        raise ModelFileError(f"{path} is not a .keras file ({e})") from None
    for info in zf.infolist():
        if info.filename not in (CONFIG, METADATA, WEIGHTS):
            zf.close()
            raise ModelFileError(f"{path}: unexpected member {info.filename[:100]!r} (a .keras file minicnn reads holds {CONFIG}, {METADATA} and {WEIGHTS})")  # fmt: skip
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & _ZIP_FLAGS:  # fmt: skip
            zf.close()
            raise ModelFileError(f"{path}: {info.filename} must be stored or deflated, unencrypted")
    return zf


def _read_member(zf, name: str, limit: int, path) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{path} has no {name}") from None
    if info.file_size > limit:
        raise ModelFileError(f"{path}: {name} is {info.file_size:,} bytes, more than the {limit:,} it may hold")  # fmt: skip
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (*READ_ERRORS, zipfile.BadZipFile) as e:
        raise ModelFileError(f"{path}: {name} is damaged ({e})") from None
    if len(data) != info.file_size:
        raise ModelFileError(f"{path}: {name} is truncated")
    return data


def read_config(zf, path) -> tuple[dict, dict]:
    config = parse_json(_read_member(zf, CONFIG, MAX_JSON, path), f"{path}: {CONFIG}")
    meta = parse_json(_read_member(zf, METADATA, MAX_METADATA, path), f"{path}: {METADATA}") if METADATA in zf.namelist() else {}  # fmt: skip
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise ModelFileError(f"{path}: {CONFIG} and {METADATA} must hold JSON objects")
    return config, meta


def build(config: dict, path, backend=None, custom_objects=None, itemsize: int = 4):
    """(the checked, unbuilt model of a Keras model entry, the bytes of its weights); one asking
    for more work per image than minicnn's files may (``saving.MAX_FLOPS``) is refused."""
    from minicnn.saving import MAX_FLOPS

    try:
        spec = keras_models.read_spec(config, custom_objects)
        need, flops, _ = spec.cost(itemsize=itemsize)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except (*READ_ERRORS, ArithmeticError) as e:
        raise ModelFileError(f"{path}: the model description is invalid ({type(e).__name__}: {e})") from None  # fmt: skip
    if flops > MAX_FLOPS:
        raise ModelFileError(f"{path}: the architecture asks for {flops:.3g} operations per image; a model file may ask for at most {MAX_FLOPS:.0e}")  # fmt: skip
    return spec, need


def read_keras(path, backend=None, compile: bool = True, custom_objects=None):
    """(model, the checkpoint record in metadata.json or None) from a .keras file."""
    h5py = need_h5py()
    with _open_zip(path) as zf:
        config, meta = read_config(zf, path)
        spec, need = build(config, path, backend, custom_objects, itemsize=4)
        size = zf.getinfo(WEIGHTS).file_size if WEIGHTS in zf.namelist() else 0
        if need > size:  # a dataset is stored whole, so a true file is at least this large
            raise ModelFileError(f"{path}: the architecture needs {need:,} bytes of weights but {WEIGHTS} has {size:,}")  # fmt: skip
        # float64 weights, the optimizer's variables (up to 4 per weight), HDF5's own structures
        data = _read_member(zf, WEIGHTS, 10 * need + _H5_OVERHEAD + 8192 * spec.count(), path)
    try:
        model = spec.build(backend)
        compile_config = config.get("compile_config") if compile else None
        if compile_config:
            compiled.compile_from_keras(model, compile_config, custom_objects)
        with h5py.File(io.BytesIO(data), "r") as f:
            arrays, state = weights.read(h5py, f, model, with_optimizer=model.optimizer is not None)  # fmt: skip
        model.set_weights(arrays)
        weights.apply_optimizer_state(model, state)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except (*READ_ERRORS, zipfile.BadZipFile) as e:
        raise ModelFileError(f"{path}: the model cannot be rebuilt ({type(e).__name__}: {e})") from None  # fmt: skip
    training = meta.get("minicnn_training")
    if training is not None and not isinstance(training, dict):
        raise ModelFileError(f"{path}: the training state is invalid (not an object)")
    return model, training


def read_weights(model, path) -> None:
    """``model.load_weights(path)`` for a ``.weights.h5`` or ``.keras`` file: every array is
    read and checked before any weight of the model changes."""
    h5py = need_h5py()
    if model.graph is None:
        raise ValueError(f"Model '{model.name}' is not built yet: build it before loading weights")  # fmt: skip
    try:
        if str(path).endswith(".keras"):
            with _open_zip(path) as zf:
                limit = 5 * _model_bytes(model) + _H5_OVERHEAD + 8192 * (len(model.leaf_layers()) + len(model.layers))  # fmt: skip
                data = io.BytesIO(_read_member(zf, WEIGHTS, limit, path))
        else:
            if not os.path.exists(path):
                raise FileNotFoundError(f"No weights file at {path}")
            data = path
        with h5py.File(data, "r") as f:
            arrays, state = weights.read(h5py, f, model, with_optimizer=model.optimizer is not None)  # fmt: skip
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    except (*READ_ERRORS, zipfile.BadZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ModelFileError(f"{path} is not a weights file minicnn can read ({type(e).__name__}: {e})") from None  # fmt: skip
    model.set_weights(arrays)
    weights.apply_optimizer_state(model, state)


def _model_bytes(model) -> int:
    return sum(w.nbytes for w in model.get_weights()) * 2
