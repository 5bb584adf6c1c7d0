"""Keep the two thread pools of a CPU training step from fighting over the cores.

A step alternates about 20 times between OpenBLAS's GEMMs and numba's kernels, and each library
has its own workers. After a job, each pool's workers keep spinning in case more work comes:
OpenBLAS's for 2^28 cycles (~0.1 s), libgomp's for 300,000 spins. With as many threads per pool
as cores, the workers of the pool that just finished then hold the cores the other pool needs
next. On the seed model (2 cores) that cost a third of the training speed: batch 32 trained at
1,400-1,600 img/s as it was, 2,200-2,400 with OpenBLAS's workers asleep after 2^4 cycles
(OPENBLAS_THREAD_TIMEOUT=4) and numba's OpenMP workers after 10,000 spins (GOMP_SPINCOUNT);
inference at batch 1000 went from 4,600 to 7,000 img/s.

Both settings are read once, when each library loads: OpenBLAS's with numpy, libgomp's when numba
first starts its threads (see kernels/cpu/jit.py, which falls back to numba's own pool when
libgomp was loaded before). Most scripts import numpy first, so when OpenBLAS is already loaded
minicnn asks it to read its environment again and restarts its (idle) workers, through the
functions OpenBLAS exports for that (``openblas_read_env``, ``blas_thread_shutdown_``,
``blas_thread_init``): the seed model then trains at 1,864/2,250 img/s (batch 32/128) with numpy
imported first against 1,891/2,301 with minicnn first, instead of 1,326/1,733. A BLAS that is not
OpenBLAS, or one without those functions, is left alone. A value the user set is kept.
MINICNN_THREADS=system leaves both alone. Applied by ``minicnn.tuning.apply`` (when minicnn first
trains or predicts, before its kernels load), never on import.
"""

from __future__ import annotations

import os
import sys

SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "10000"}


def tune() -> dict[str, str]:
    """Set the variables the user has not; returns those this call set."""
    if os.environ.get("MINICNN_THREADS", "auto").lower() == "system":
        return {}
    done = {}
    for name, value in SETTINGS.items():
        if name not in os.environ:
            os.environ[name] = done[name] = value
    if "OPENBLAS_THREAD_TIMEOUT" in done and "numpy" in sys.modules:
        RESTARTED.extend(restart_openblas())  # it read its environment before ours was set
    SET.update(done)
    return done


RESTARTED: list[str] = []  # the OpenBLAS libraries made to re-read their settings
SET: dict[str, str] = {}  # the variables minicnn set (a benchmark keeps them from its peers)


def _openblas_paths() -> list[str]:
    """The OpenBLAS libraries loaded in this process (none where /proc cannot tell), numpy's
    own first."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line and ".so" in line}
    except OSError:
        return []
    return sorted(paths, key=lambda p: ("numpy" not in p, p))


def restart_openblas() -> list[str]:
    """Make every OpenBLAS loaded in this process read its environment again and restart its
    worker threads with the new timeout; returns the libraries' paths."""
    import ctypes

    done = []
    for path in _openblas_paths():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle
            calls = [getattr(lib, n) for n in ("openblas_read_env", "blas_thread_shutdown_", "blas_thread_init")]  # fmt: skip
        except (OSError, AttributeError):
            continue
        for call in calls:
            call()
        done.append(path)
    return done


class _OpenBLAS:
    """numpy's OpenBLAS calls for its thread count, looked up once numpy has loaded it, under
    their plain or scipy-openblas names; None where they are missing (another BLAS).
    (``openblas_set_num_threads_local`` is no help: in numpy's pthreads build it sets the count
    for every thread.)"""

    def __init__(self):
        self.set = self.get = None
        self.looked = False

    def find(self) -> None:
        import ctypes

        import numpy  # noqa: F401  (loads the library)

        self.looked = True
        prefixes = ("openblas_", "scipy_openblas_")
        suffixes = ("", "64_", "_64_")
        for path in _openblas_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for p in prefixes:
                for s in suffixes:
                    get, set_ = f"{p}get_num_threads{s}", f"{p}set_num_threads{s}"
                    if hasattr(lib, get) and hasattr(lib, set_):
                        self.get, self.set = getattr(lib, get), getattr(lib, set_)
                        return


OPENBLAS = _OpenBLAS()


def openblas_setter():
    """``openblas_set_num_threads(n)`` of numpy's OpenBLAS, or None."""
    if not OPENBLAS.looked:
        OPENBLAS.find()
    return OPENBLAS.set


def openblas_threads() -> int:
    """The threads numpy's OpenBLAS uses (1 when that is unknown)."""
    return int(OPENBLAS.get()) if openblas_setter() is not None else 1
