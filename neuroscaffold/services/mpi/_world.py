"""Thin proxy over mpi4py's ``COMM_WORLD``: every mpi4py method, plus the helpers."""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any, Callable

from ._base import CommHelpers, exit_now
from ._guard import maybe_launched

__all__ = ["WorldProxy"]


class WorldProxy(CommHelpers):
    """The MPI service when mpi4py is installed.

    mpi4py methods and attributes (``Get_rank``, ``Barrier``, ``bcast``, ``Abort``,
    ``Dup``, ...) are forwarded to the wrapped communicator unchanged.

    A proxy made with ``start`` instead of a communicator stands for a process that no
    MPI launcher started, whose world is itself alone: it answers rank 0 of 1 without
    starting MPI, and calls ``start()`` (which starts MPI and returns ``COMM_WORLD``)
    on the first real use: :meth:`get_communicator` or any mpi4py method. A serial
    run thus never pays MPI's start-up (loading libmpi and ``MPI_Init``: about 0.2 s).
    """

    def __init__(self, comm: Any = None, start: Callable[[], Any] | None = None):
        if (comm is None) == (start is None):
            raise TypeError("WorldProxy takes a communicator or a start function")
        self._comm = comm
        self._start = start
        self._start_lock = threading.Lock()

    def _world(self) -> Any:
        comm = self._comm
        if comm is None:
            with self._start_lock:
                if self._comm is None:
                    assert self._start is not None
                    self._comm = self._start()
                comm = self._comm
        return comm

    def get_communicator(self) -> Any:
        return self._world()

    def Get_rank(self) -> int:  # noqa: N802 (mpi4py's name)
        return 0 if self._comm is None else self._comm.Get_rank()

    def Get_size(self) -> int:  # noqa: N802 (mpi4py's name)
        return 1 if self._comm is None else self._comm.Get_size()

    def Abort(self, errorcode: int = 0) -> None:  # noqa: N802 (mpi4py's name)
        """``MPI_Abort`` on the world; this rank ends here even if the call returns
        (MPICH's can: seen with the PyPI mpich 4 wheel, where it merely asks the
        launcher to kill the job). A world never started has nothing to abort."""
        if self._comm is not None:
            if self._comm.Get_size() > 1:
                # MPI_Abort makes mpiexec kill every process at once, and it may drop
                # what the ranks wrote last: give it a moment to forward their output.
                _flush_streams()
                time.sleep(_FORWARD_SECONDS)
            self._comm.Abort(errorcode)
        exit_now(errorcode)

    def __getattr__(self, name: str) -> Any:
        if name in ("_comm", "_start", "_start_lock"):
            raise AttributeError(name)
        return getattr(self._world(), name)

    def __repr__(self) -> str:
        if self._comm is None:
            return "<MPI world proxy of this process alone (MPI not started yet)>"
        return f"<MPI world proxy of {self._comm!r}>"


def world_from_mpi4py() -> WorldProxy:
    """Provider: wrap mpi4py's ``COMM_WORLD``.

    Under a launcher, importing ``mpi4py.MPI`` starts MPI here. Otherwise the world is
    this process alone, and MPI starts on first real use (see :class:`WorldProxy`).
    """
    import mpi4py  # noqa: F401  (cheap: raises ImportError without mpi4py; MPI is not started)

    if not maybe_launched():
        return WorldProxy(start=_start_mpi)
    world = WorldProxy(_start_mpi())
    if world.Get_size() > 1:
        install_abort_hook(world.get_communicator())
    return world


def _start_mpi() -> Any:
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


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
