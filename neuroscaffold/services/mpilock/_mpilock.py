"""Adapter over mpilock: its ``WindowController``, on the right mpi4py communicator.

This service owns the lifetime of every MPI window its locks use, through mpilock's
public interface only (``mpilock.sync(..., pump=False)``, ``controller.close()``):

- mpilock's own progress pump (a thread and a window, kept in its private globals) is
  turned off; this service runs its own pump per communicator instead (a thread on the
  master rank that keeps MPI progress turning, so other ranks' lock requests complete
  while the master's main thread computes), and so knows its window and thread.
- At exit (before MPI finalizes), the pumps stop, then every rank waits, bounded, in a
  nonblocking barrier: once all ranks are there, no rank can still be inside a lock, and
  the windows are freed collectively, in creation order. If a rank never arrives the
  windows are left alone (freeing them would hang, being collective).
"""

from __future__ import annotations

import atexit
import threading
import time
from types import ModuleType
from typing import Any

from ..._backoff import Backoff
from ._comm import raw_comm

__all__ = ["MPILockService", "lock_from_mpilock"]


# The master's pump wakes this often. mpilock's default (0.1 ms) costs ~15 % of a core
# on an idle master; 1 ms costs ~2 % and locks are as fast (~35 us per write lock).
_PUMP_INTERVAL = 1e-3
_EXIT_BARRIER_BOUND = 30.0  # seconds every rank waits for the others before freeing


class _Pump:
    """Keeps MPI progress turning on the master rank of one communicator.

    Passive-target RMA against the master's lock windows only advances while the
    master is inside MPI; a small RMA epoch on a private window, every ``interval``,
    drives it. Collective to create (the window); only the master runs a thread.
    """

    def __init__(self, comm: Any, master: int, interval: float):
        import numpy as np
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.master = master
        self.buffer = np.zeros(1, dtype=np.uint64)
        self.window = MPI.Win.Create(self.buffer, self.buffer.itemsize, MPI.INFO_NULL, comm)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        if comm.Get_rank() == master and MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self.thread = threading.Thread(
                target=self._run, args=(interval,), name="neuroscaffold-lock-pump", daemon=True
            )
            self.thread.start()

    def _run(self, interval: float) -> None:
        import numpy as np

        MPI = self._mpi
        scratch = np.zeros(1, dtype=np.uint64)
        window, master = self.window, self.master
        while not self.stop_event.wait(interval):
            try:
                window.Lock(master, MPI.LOCK_SHARED)
                window.Get([scratch, MPI.UINT64_T], master)
                window.Unlock(master)
            except Exception:  # the window is gone: nothing left to drive
                return

    def stop(self) -> None:
        """Stop the thread (local, never collective)."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5.0)
            self.thread = None

    def free(self) -> None:
        """Free the window (collective)."""
        self.window.Free()


class MPILockService:
    """The MPILock service when mpilock is installed."""

    def __init__(self, mpilock: ModuleType):
        self._mpilock = mpilock
        self._lock = threading.Lock()
        self._controllers: list = []
        self._pumps: dict[tuple[int, int], _Pump] = {}
        self._cleanup_registered = False

    def sync(self, comm: Any = None, master: int = 0) -> Any:
        """Create mpilock's ``WindowController`` on ``comm`` (default: the MPI world).

        Collective: every rank of ``comm`` must call it. ``comm`` may be the MPI
        service or a raw mpi4py communicator.
        """
        raw = raw_comm(comm)
        controller = self._mpilock.sync(raw, master, pump=False)
        with self._lock:
            self._controllers.append((raw, controller))
            key = (id(raw), master)
            if raw.Get_size() > 1 and key not in self._pumps:
                self._pumps[key] = _Pump(raw, master, _PUMP_INTERVAL)
            if not self._cleanup_registered:
                # Registered after mpi4py.MPI was imported: runs before MPI finalizes.
                atexit.register(self.free_windows)
                self._cleanup_registered = True
        return controller

    def free_windows(self, bound: float = _EXIT_BARRIER_BOUND) -> bool:
        """Free every lock window this service made (at exit; collective).

        Returns whether they were freed: False when some rank did not arrive within
        ``bound`` seconds (then nothing is freed, so nothing waits on that rank).
        """
        with self._lock:
            controllers, self._controllers = self._controllers, []
            pumps, self._pumps = list(self._pumps.values()), {}
        for pump in pumps:
            pump.stop()
        comms = {id(raw): raw for raw, _ in controllers}
        for pump in pumps:
            comms.setdefault(id(pump.comm), pump.comm)
        if not all(_everyone_here(raw, bound) for raw in comms.values()):
            return False
        for _, controller in controllers:
            try:
                controller.close()
            except Exception:
                pass
        for pump in pumps:
            try:
                pump.free()
            except Exception:
                pass
        return True

    def __repr__(self) -> str:
        return f"<MPILock service: mpilock {self._mpilock.__version__}>"


def _everyone_here(comm: Any, bound: float) -> bool:
    """A barrier that gives up after ``bound`` seconds (no rank inside a lock after it)."""
    try:
        if comm.Get_size() == 1:
            return True
        request = comm.Ibarrier()
    except Exception:
        return False
    deadline = time.monotonic() + bound
    backoff = Backoff()
    while not request.Test():
        if time.monotonic() > deadline:
            return False
        backoff.sleep()
    return True


def lock_from_mpilock() -> MPILockService:
    """Provider: mpilock (which imports ``mpi4py.MPI``, so it starts MPI)."""
    import mpilock

    return MPILockService(mpilock)
