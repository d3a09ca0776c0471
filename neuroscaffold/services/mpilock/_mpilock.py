"""Adapter over mpilock: its ``WindowController``, on the right mpi4py communicator."""

from __future__ import annotations

import atexit
from types import ModuleType
from typing import Any

from ._comm import raw_comm

__all__ = ["MPILockService", "lock_from_mpilock"]


# mpilock's master rank runs a thread that keeps MPI progress turning for lock
# requests. Its default 0.1 ms period costs ~15 % of a core on an idle master; 1 ms
# costs ~2 % and locks are as fast (measured: ~35 us per write lock at -n 2).
_PUMP_INTERVAL = 1e-3


class MPILockService:
    """The MPILock service when mpilock is installed."""

    def __init__(self, mpilock: ModuleType):
        self._mpilock = mpilock
        self._controllers: list = []
        self._cleanup_registered = False

    def sync(self, comm: Any = None, master: int = 0) -> Any:
        """Create mpilock's ``WindowController`` on ``comm`` (default: the MPI world).

        Collective: every rank of ``comm`` must call it. ``comm`` may be the MPI
        service or a raw mpi4py communicator.
        """
        controller = self._mpilock.sync(raw_comm(comm), master, pump_interval=_PUMP_INTERVAL)
        self._controllers.append(controller)
        if not self._cleanup_registered:
            # Registered after mpi4py's own finalizer, so it runs before MPI_Finalize.
            atexit.register(self._free_windows)
            self._cleanup_registered = True
        return controller

    def _free_windows(self) -> None:
        """Free every lock window before MPI finalizes (else MPICH warns at exit).

        Controllers are created collectively, in the same order on every rank, so
        closing them in that order here is collective and symmetric too.
        """
        mpilock = self._mpilock
        mpilock._stop_all_pumps()
        for controller in self._controllers:
            try:
                controller.close()
            except Exception:
                pass
        self._controllers.clear()
        for pump in list(mpilock._progress_pumps.values()):
            try:
                pump["window"].Free()
            except Exception:
                pass
        mpilock._progress_pumps.clear()

    def __repr__(self) -> str:
        return f"<MPILock service: mpilock {self._mpilock.__version__}>"


def lock_from_mpilock() -> MPILockService:
    """Provider: mpilock (which imports ``mpi4py.MPI``, so it starts MPI)."""
    import mpilock

    return MPILockService(mpilock)
