"""Keep freed memory in the process instead of handing it back to the OS at once (glibc only).

A training step allocates and frees the same large arrays every time (activations, im2col
and Winograd buffers of 1-30 MB). glibc serves blocks over its mmap threshold with fresh pages
and unmaps them on free, so every step faults in tens of MB anew; on the virtual machines we
measured, that cost 8 ms for 20 MB, as long as the Winograd forward pass itself. Raising the mmap
threshold to its 32 MB maximum and not trimming the heap lets each step reuse the last one's
pages. Blocks over 32 MB (at batch 1000, a first convolution's output is 173 MB) would still be
mapped fresh every batch: 42,000 page faults, 31 -> 44 ms on that layer alone. So the heap
serves every size (M_MMAP_MAX 0): predict at batch 1000 went from 6,700 to 7,700 img/s on the
seed model and from 4,000 to 4,850 on the best recipe's. The process's peak memory is
unchanged; it is just not given back until exit.
MINICNN_MALLOC=system leaves the C allocator as it was. Applied by ``minicnn.tuning.apply``
(when minicnn first trains or predicts), never on import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MMAP_MAX = 32 << 20  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit systems


def tune() -> bool:
    """Apply the settings; True if they took effect."""
    if os.environ.get("MINICNN_MALLOC", "auto").lower() == "system":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_MAX) == 1
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and ok  # larger blocks too: from the heap, kept
    return mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
