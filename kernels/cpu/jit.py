"""What every CPU kernel module shares: numba's threading layer (chosen before anything compiles),
the two decorators, and the small inlined helpers several kernels fuse in."""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit

# numba's threads: OpenMP (libgomp) where it is installed, whose workers start a loop in about
# a microsecond; numba's own "workqueue" pool sleeps between loops and takes 50-90 us to wake, ~20
# times a step. OpenMP's workers spin after a loop, so minicnn/_threads.py caps that with
# GOMP_SPINCOUNT, which libgomp reads when it loads: if something else loaded it already with
# its default spin (300,000), its workers would hold the cores OpenBLAS needs (a step 20x slower,
# measured), so then the workqueue pool is used. A layer the user chose is respected.


def _libgomp_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return "libgomp" in maps.read()
    except OSError:
        return False


if "NUMBA_THREADING_LAYER" not in os.environ:
    spin_set = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    if spin_set and not _libgomp_loaded():
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
        numba.config.THREADING_LAYER = "default"  # the first of those that loads
    else:
        numba.config.THREADING_LAYER = "workqueue"


jit = njit(cache=True, nogil=True)
pjit = njit(cache=True, nogil=True, parallel=True)


@njit(cache=True, inline="always")
def relu_if(v, on):  # max(v, 0) where on; NaN passes, as np.maximum
    return type(v)(0) if (on and v < 0) else v


@njit(cache=True, inline="always")
def relu_grad_if(g, y, on):  # g where ReLU's output y was > 0 (or where off), else 0
    return g if (not on or y > 0) else type(g)(0)


def bias_row(bias, f, dtype):
    """The bias as the kernels take it: (F,) contiguous in the output's dtype, zeros for None."""
    return np.zeros(f, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
