"""Start MPI under a launcher without ever waiting for it blindly.

``MPI_Init`` waits for every rank of the job; a rank that leaves before it ever
called ``MPI_Init`` (killed by Ctrl-C while Python itself started) leaves the others
inside it forever: the launcher does not end them. And while ``MPI_Init`` runs, the
rank cannot act on a signal (mpi4py holds the interpreter lock in it). So the command
line starts MPI in a helper thread, calling ``MPI_Init_thread`` without the lock,
while the main thread waits, bounded: a stop signal that came meanwhile gives the
others :data:`GRACE` seconds more to arrive, and nothing waits longer than the bound.
"""

from __future__ import annotations

import ctypes
import enum
import sys
import threading
import time
from typing import Callable

from ._guard import maybe_launched

__all__ = ["GRACE", "Start", "start_world"]

#: seconds a rank that got a stop signal still waits for the others to start MPI (it
#: reached them too: they come at once, unless they died starting Python)
GRACE = 5.0


class Start(enum.Enum):
    """How :func:`start_world` ended."""

    NOT_LAUNCHED = "not launched"  #: no launcher: MPI starts on first use, if ever
    STARTED = "started"  #: MPI runs on every rank
    GAVE_UP = "gave up"  #: another rank never came (MPI_Init still waits in its thread)


def start_world(stopped: Callable[[], bool], bound: float) -> Start:
    """Start MPI now if a launcher started this process (and mpi4py is installed),
    waiting at most ``bound`` seconds, or :data:`GRACE` seconds once ``stopped()``."""
    if "mpi4py.MPI" in sys.modules or not maybe_launched():
        return Start.NOT_LAUNCHED
    try:
        import mpi4py
    except ImportError:
        return Start.NOT_LAUNCHED
    mpi4py.rc.initialize = False  # MPI_Init below, where a signal can still act
    mpi4py.rc.finalize = True  # ... and MPI_Finalize at exit, as mpi4py would
    from mpi4py import MPI

    if MPI.Is_initialized():
        return Start.STARTED
    # ctypes calls release the interpreter lock; the extension's handle finds
    # MPI_Init_thread in the MPI library it is linked with, whichever that is.
    init = ctypes.CDLL(MPI.__file__).MPI_Init_thread
    init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                     ctypes.POINTER(ctypes.c_int)]
    done = threading.Event()
    provided = ctypes.c_int(-1)

    def run() -> None:
        init(None, None, MPI.THREAD_MULTIPLE, ctypes.byref(provided))
        done.set()

    threading.Thread(target=run, name="neuroscaffold-mpi-init", daemon=True).start()
    deadline = time.monotonic() + bound
    graced = False
    while not done.wait(0.01):
        now = time.monotonic()
        if stopped() and not graced:
            graced, deadline = True, min(deadline, now + GRACE)
        if now >= deadline:
            return Start.GAVE_UP
    return Start.STARTED
