"""Thin proxy over mpi4py's ``COMM_WORLD``: every mpi4py method, plus the helpers."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any

from ._base import CommHelpers, exit_now

__all__ = ["WorldProxy"]


class WorldProxy(CommHelpers):
    """The MPI service when mpi4py is installed.

    mpi4py methods and attributes (``Get_rank``, ``Barrier``, ``bcast``, ``Abort``,
    ``Dup``, ...) are forwarded to the wrapped communicator unchanged.
    """

    def __init__(self, comm: Any):
        self._comm = comm

    def get_communicator(self) -> Any:
        return self._comm

    def Abort(self, errorcode: int = 0) -> None:
        """``MPI_Abort`` on the world; this rank ends here even if the call returns
        (MPICH's can: seen with the PyPI mpich 4 wheel, where it merely asks the
        launcher to kill the job)."""
        self._comm.Abort(errorcode)
        exit_now(errorcode)

    def __getattr__(self, name: str) -> Any:
        if name == "_comm":
            raise AttributeError(name)
        return getattr(self._comm, name)

    def __repr__(self) -> str:
        return f"<MPI world proxy of {self._comm!r}>"


def world_from_mpi4py() -> WorldProxy:
    """Provider: wrap mpi4py's ``COMM_WORLD``; importing ``mpi4py.MPI`` starts MPI."""
    from mpi4py import MPI

    world = WorldProxy(MPI.COMM_WORLD)
    if MPI.COMM_WORLD.Get_size() > 1:
        install_abort_hook(MPI.COMM_WORLD)
    return world


_hook_lock = threading.Lock()
_FORWARD_SECONDS = 0.5  # before an abort: time for mpiexec to forward the error
_hook_installed = False


def install_abort_hook(comm: Any) -> None:
    """Make an error that escapes the script on one rank end the whole run.

    Without it, a rank that raises where the others do not (an import that fails on
    one node only) exits into ``MPI_Finalize`` while the others wait in a collective,
    and the run hangs without a word. The hook prints the error headed by the rank
    (``[rank 1] Traceback ...``), then aborts the world. Errors raised on every rank
    by design (a pool's ``WorkflowError``, ``PoolInterrupted``: attribute
    ``_neuroscaffold_every_rank``) are printed the same way but end the run normally.
    """
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        _hook_installed = True
    previous = sys.excepthook
    rank = comm.Get_rank()

    def hook(exc_type, exc, tb):
        if getattr(exc, "_neuroscaffold_printed", False) is not True:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            try:
                sys.stderr.write("".join(f"[rank {rank}] {line}\n" for line in text.rstrip().splitlines()))
                sys.stderr.flush()
            except (OSError, ValueError):
                previous(exc_type, exc, tb)
        if getattr(exc, "_neuroscaffold_every_rank", False) is True or issubclass(
            exc_type, KeyboardInterrupt
        ):
            return
        # MPI_Abort makes mpiexec kill every process at once, and it may drop what a
        # rank wrote last: give its launcher a moment to forward the error first.
        time.sleep(_FORWARD_SECONDS)
        try:
            comm.Abort(1)
        finally:
            exit_now(1)

    sys.excepthook = hook
