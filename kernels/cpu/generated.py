"""Kernels written out per geometry: source text made from a few sizes, saved once as a module
in a cache folder, and compiled by numba like any other kernel (``cache=True``, so a second run
loads the machine code from disk).

Why: numba compiles loops over sizes it only learns at run time, so a sum over a 3x3 kernel's
nine taps is a loop whose partial sums go through memory. Written out with the taps as
constants (``x0 * k[0, f] + x1 * k[1, f] + ...``), the same sum stays in registers and the loop
over filters vectorises: the first layer's forward ran 3.7-3.9x faster (``direct.py``).

The file is named by a hash of its text, so a changed generator never loads a stale kernel, and
it is written atomically (a temporary file, then a rename), so two processes may race to write
it. Where no cache folder can be written, the source is compiled in memory without a disk cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import types
from pathlib import Path

from numba import njit

from . import jit as _jit  # numba's threading layer, chosen before any compile

_loaded: dict[tuple, object] = {}  # (file key, function) -> its numba dispatcher


def cache_dir() -> Path:
    """Where generated kernels live: $MINICNN_KERNEL_CACHE, else beside numba's own cache
    ($NUMBA_CACHE_DIR), else ~/.cache/minicnn/kernels."""
    if os.environ.get("MINICNN_KERNEL_CACHE"):
        return Path(os.environ["MINICNN_KERNEL_CACHE"])
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / "minicnn-generated"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "minicnn" / "kernels"


def load(stem: str, source: str, name: str, parallel: bool = False, fastmath=False):
    """The function ``name`` of the module ``source`` (saved as ``<stem>_<hash>.py``),
    compiled as every kernel is (``nogil``; ``parallel`` for a prange loop; ``fastmath``:
    numba's flags, such as ``{"contract"}`` for fused multiply-adds)."""
    flags = f"# parallel={parallel} fastmath={sorted(fastmath) if fastmath else False}\n"
    key = (
        f"{stem}_{hashlib.sha256((flags + source).encode()).hexdigest()[:12]}"  # and numba's cache
    )
    if (key, name) not in _loaded:
        module = _from_file(key, source)
        on_disk = module is not None
        if module is None:  # no writable cache folder: compiled for this process only
            module = types.ModuleType(f"minicnn_generated.{key}")
            exec(compile(source, f"<generated {key}>", "exec"), module.__dict__)
        fn = getattr(module, name)
        kernel = njit(cache=on_disk, nogil=True, parallel=parallel, fastmath=fastmath)(fn)
        _loaded[key, name] = _jit.serialised(kernel) if parallel else kernel
    return _loaded[key, name]


def _from_file(key: str, source: str):
    folder = cache_dir()
    path = folder / f"{key}.py"
    try:
        if not path.is_file() or path.read_text() != source:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(source)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
    except OSError:
        return None
    name = f"minicnn_generated_{key}"  # in sys.modules: numba's disk cache imports it by name
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
