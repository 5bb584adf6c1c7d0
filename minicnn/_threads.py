"""Keep the two thread pools of a CPU training step from fighting over the cores.

A step alternates about 20 times between OpenBLAS's GEMMs and numba's kernels, and each library
has its own workers. After a job, each pool's workers keep spinning in case more work comes:
OpenBLAS's for 2^28 cycles (~0.1 s), libgomp's for 300,000 spins. With as many threads per pool
as cores, the workers of the pool that just finished then hold the cores the other pool needs
next. On the seed model (2 cores) that cost a third of the training speed: batch 32 trained at
1,400-1,600 img/s as it was, 2,200-2,400 with OpenBLAS's workers asleep after 2^4 cycles
(OPENBLAS_THREAD_TIMEOUT=4) and numba's OpenMP workers after 10,000 spins (GOMP_SPINCOUNT);
inference at batch 1000 went from 4,600 to 7,000 img/s.

Both settings are read once, when each library loads: OpenBLAS's with numpy, so it takes effect
only if minicnn is imported before numpy (examples/mnist.py, the ``minicnn`` command and the
benchmarks are); libgomp's when numba first starts its threads (see kernels/cpu/jit.py, which falls
back to numba's own pool when libgomp was loaded before). A value the user set is kept.
MINICNN_THREADS=system leaves both alone.
"""

from __future__ import annotations

import os
import sys

SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "4", "GOMP_SPINCOUNT": "10000"}


def tune() -> dict[str, str]:
    """Set what can still take effect; returns the variables this call set."""
    if os.environ.get("MINICNN_THREADS", "auto").lower() == "system":
        return {}
    done = {}
    for name, value in SETTINGS.items():
        if name == "OPENBLAS_THREAD_TIMEOUT" and "numpy" in sys.modules:
            continue  # OpenBLAS has read its environment already
        if name not in os.environ:
            os.environ[name] = done[name] = value
    return done


TUNED = tune()  # on import, before numpy's
