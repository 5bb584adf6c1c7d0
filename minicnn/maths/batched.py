"""A batch of independent matrix products, split over the cores instead of threaded one by one.

Winograd runs each convolution as 36 small GEMMs per chunk of images (and space-to-depth, the
5x5 stride-2 layers, runs on Winograd). Left to OpenBLAS, each of the 36 is threaded on its own:
its workers are woken 36 times a pass (minicnn lets them sleep at once, see _threads.py), and on
the small maps of a network's later layers the products are too small to pay for it; with 2
threads those layers ran slower than with one. Here OpenBLAS is set to one thread for the batch
and each core takes a share of it, so the cores meet once. Measured on the best recipe's layers
(batch 64, forward + backward, this 2-core machine), ms: 3x3 32->32 on 26x26 14.6 -> 9.5; 5x5/2
32->32 on 24x24 14.0 -> 9.4; 3x3 32->64 on 12x12 8.6 -> 5.4; 3x3 64->64 on 10x10 6.5 -> 3.3;
5x5/2 64->64 on 8x8 7.5 -> 4.5.

Every product runs single-threaded, so the numbers do not depend on the split or the core count
(they can differ in the last bits from a threaded ``matmul``, whose blocking differs). Without
OpenBLAS's thread calls, with one thread, on the GPU, or for a batch of one, it is plain
``matmul``. MINICNN_BATCHED_GEMM=0 turns the split off.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from minicnn import _threads
from minicnn.backend import get_array_module

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()  # one batch at a time: the thread count it sets is the process's


def _get_pool(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < size:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(size, "minicnn-gemm"), size
    return _pool


def _forget_pool() -> None:  # a forked child has the pool object but not its threads
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


# Below this many FLOPs a batch runs as plain ``matmul``: handing half to the pool's thread and
# hearing back costs ~90 us here (a futex wake each way), more than a small batch's GEMMs take
# (36 products of 8x64 by 64x64, 2.4 MFLOP: 123 us split, 20 us plain; even at 38 MFLOP).
_SPLIT_MIN_FLOP = 32e6


def can_split() -> bool:
    """Whether ``over_cores`` would run work on more than one core (NumPy's BLAS is OpenBLAS
    with its thread calls, more than one thread, and the split not turned off)."""
    if os.environ.get("MINICNN_BATCHED_GEMM") == "0" or _threads.openblas_setter() is None:
        return False
    return _threads.openblas_threads() > 1


def over_cores(work, n: int) -> None:
    """``work(n0, n1)`` on each core's share of range(n) at once, OpenBLAS at one thread
    meanwhile, so a GEMM inside a share stays on its core. On one core, ``work(0, n)``.
    ``work`` runs no parallel numba kernel (numba's pools are not for calls from two threads)."""
    set_threads = _threads.openblas_setter()
    if not can_split() or n < 2:
        return work(0, n)
    with _lock:
        threads = _threads.openblas_threads()
        workers = min(n, threads)
        cuts = [round(i * n / workers) for i in range(workers + 1)]
        set_threads(1)
        try:
            pool = _get_pool(workers - 1)
            futures = [pool.submit(work, cuts[i], cuts[i + 1]) for i in range(1, workers)]
            try:
                work(cuts[0], cuts[1])  # this thread's share
            finally:
                wait(futures)  # the others' too, before the thread count is given back
            for f in futures:
                f.result()
        finally:
            set_threads(threads)


def batched_matmul(a, b, out=None):
    """``matmul(a, b, out=out)`` for stacks a (B, M, K) and b (B, K, N) -> (B, M, N)."""
    xp = get_array_module(a)
    small = 2.0 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2] < _SPLIT_MIN_FLOP
    if xp is not np or small or not can_split():
        return xp.matmul(a, b, out=out)
    if out is None:
        out = np.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=np.result_type(a, b))
    over_cores(lambda n0, n1: np.matmul(a[n0:n1], b[n0:n1], out=out[n0:n1]), a.shape[0])
    return out


# Columns of a narrow GEMM's block: OpenBLAS threads (36, 9) @ (9, n) past about n = 4096 here,
# and waking its threads cost more than the product: the 3x3 64->64 kernel's Winograd transform,
# 258 us in one call against 33 in blocks of 2048 (2-core AMD EPYC).
_COLUMNS = 2048


def by_columns(a, b):
    """``a @ b`` for a small ``a`` (a Winograd transform's 36 x 9 or 9 x 36) and a ``b`` of many
    columns: on the CPU in blocks of _COLUMNS columns, each a single-threaded GEMM."""
    if get_array_module(b) is not np or b.shape[1] <= _COLUMNS:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    for i in range(0, b.shape[1], _COLUMNS):
        np.matmul(a, b[:, i : i + _COLUMNS], out=out[:, i : i + _COLUMNS])
    return out
