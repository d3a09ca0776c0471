"""Keep large numeric arrays in the heap while a compile runs.

glibc hands out each allocation above its mmap threshold (128 kB at first, raised as
such blocks are freed) as fresh pages from ``mmap``, and gives the heap's free top back
to the kernel past its trim threshold. A compile's jobs allocate and free arrays of
hundreds of kB to MBs each (the cells a job reads, a KD-tree, the pairs found), so the
same memory is mapped, faulted in page by page and unmapped job after job: measured at
8x the example, 300,000 page faults and 1 s of system time in a 9 s serial compile,
against 6,000 faults and 0.4 s with the thresholds below, at the same peak memory.

:func:`tune_allocator` sets both thresholds once per process (glibc only; elsewhere,
or with ``NEUROSCAFFOLD_MALLOC_TUNING=0``, it does nothing). Blocks above
``MMAP_THRESHOLD`` are still mapped, so no huge array is kept after it is freed, and
at most ``TRIM_THRESHOLD`` bytes of free heap stay with the process.
"""

from __future__ import annotations

import ctypes
import os
import threading

__all__ = ["MMAP_THRESHOLD", "OPT_OUT_VARIABLE", "TRIM_THRESHOLD", "tune_allocator"]

MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 64 << 20
OPT_OUT_VARIABLE = "NEUROSCAFFOLD_MALLOC_TUNING"

# mallopt's parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_state: dict[str, bool] = {}


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds for this process (once); whether they are
    set."""
    with _lock:
        if "tuned" not in _state:
            _state["tuned"] = _tune()
        return _state["tuned"]


def _tune() -> bool:
    if os.environ.get(OPT_OUT_VARIABLE, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        # The symbols the process already has (Python links the C library): no
        # ``find_library``, which runs ``ldconfig`` in a subprocess (~2 ms per rank).
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: raises elsewhere)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
