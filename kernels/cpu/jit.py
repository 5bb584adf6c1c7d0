"""What every CPU kernel module shares: numba's threading layer (chosen before anything compiles),
the two decorators, and the small inlined helpers several kernels fuse in."""

from __future__ import annotations

import functools
import os
import threading

import numba
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import SCRATCH_CHANNELS

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


# numba's "workqueue" pool takes one parallel launch at a time: a second from another Python
# thread (a web server's, a user's thread pool) aborts the process (SIGABRT). It is the layer
# here when libgomp cannot be had (not installed, or loaded before with its own spin, above, or
# MINICNN_THREADS=system), so until the first launch has shown a layer that takes concurrent
# launches (OpenMP, TBB), every parallel kernel runs under one process-wide lock.
_launch = threading.Lock()
_concurrent = None  # the layer in use takes launches from several threads: known after one


def _learn_layer() -> None:
    global _concurrent
    try:
        _concurrent = numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel launch has run yet
        pass


def serialised(kernel):
    """``kernel`` (a parallel numba dispatcher) as a Python function that launches it under
    the process's lock unless the threading layer takes concurrent launches. ``.kernel`` is the
    dispatcher (for jitted callers, which must not take the lock)."""

    def launch(*args, **kwargs):
        if _concurrent:
            return kernel(*args, **kwargs)
        with _launch:
            out = kernel(*args, **kwargs)
            if _concurrent is None:
                _learn_layer()
        return out

    functools.update_wrapper(launch, kernel.py_func)
    launch.kernel = kernel
    return launch


def pjit(fn):
    """A parallel kernel (``prange``), compiled as ``jit`` and launched through ``serialised``."""
    return serialised(njit(cache=True, nogil=True, parallel=True)(fn))


# A kernel's per-tile scratch on the stack, not the heap: LLVM then knows it overlaps no array
# argument, so the loops over channels that read an argument and write the scratch (or the
# reverse) vectorize with no run-time overlap checks. The Winograd input transform of 2 images
# ran 2-3x faster so (3x3 64 -> 32 on 26x26: 0.096-0.118 -> 0.036-0.050 ms; the whole layer at
# batch 128, inference, 12.3 -> 8.8 ms). SCRATCH_CHANNELS bounds the
# channels of the tile (36 x 512 values: 74 KB in float32, 147 KB in float64, a fraction of a
# thread's stack); wider layers take another algorithm (minicnn/maths/conv/__init__.py).
_SCRATCH_VALUES = 36 * SCRATCH_CHANNELS


@intrinsic
def stack_scratch(typingctx, dtype):  # a pointer to _SCRATCH_VALUES values of dtype on the stack
    item = dtype.dtype

    def codegen(context, builder, signature, args):
        size = context.get_constant(types.intp, _SCRATCH_VALUES)
        return cgutils.alloca_once(builder, context.get_value_type(item), size=size)

    return types.CPointer(item)(dtype), codegen


@njit(cache=True, inline="always")
def scratch(shape, dtype):  # an array of ``shape`` (at most _SCRATCH_VALUES values) on the stack
    return numba.carray(stack_scratch(dtype), shape)


@njit(cache=True, inline="always")
def relu_if(v, on):  # max(v, 0) where on; NaN passes, as np.maximum
    return type(v)(0) if (on and v < 0) else v


@njit(cache=True, inline="always")
def relu_grad_if(g, y, on):  # g where ReLU's output y was > 0 (or where off), else 0
    return g if (not on or y > 0) else type(g)(0)


def bias_row(bias, f, dtype):
    """The bias as the kernels take it: (F,) contiguous in the output's dtype, zeros for None."""
    return np.zeros(f, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
