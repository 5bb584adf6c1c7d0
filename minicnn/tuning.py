"""The process-wide settings that make minicnn fast on the CPU, applied once, explicitly, when
minicnn first trains or predicts (its first plan or kernel), never on import:

- the C allocator keeps freed memory for the next step (``minicnn/_malloc.py``);
- OpenBLAS's and numba's idle workers sleep soon, so the two pools stop fighting over the
  cores; OpenBLAS, already loaded by numpy, re-reads its settings (``minicnn/_threads.py``).

``apply()`` does it now (a script that wants it before anything else runs may call it first);
MINICNN_MALLOC=system and MINICNN_THREADS=system leave the process alone; values the user set
are kept.
"""

from __future__ import annotations

from minicnn import _malloc, _threads

_done: dict | None = None


def apply() -> dict:
    """Apply the settings (once): -> {"malloc": whether the allocator took them, "threads":
    the environment variables minicnn set}."""
    global _done
    if _done is None:
        _done = {"malloc": _malloc.tune(), "threads": _threads.tune()}
    return _done


def applied() -> dict | None:
    """What ``apply`` did, or None if it has not run."""
    return _done
