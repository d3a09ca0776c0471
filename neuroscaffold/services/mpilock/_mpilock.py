"""Adapter over mpilock: its ``WindowController``, on the right mpi4py communicator."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._comm import raw_comm

__all__ = ["MPILockService", "lock_from_mpilock"]


class MPILockService:
    """The MPILock service when mpilock is installed."""

    def __init__(self, mpilock: ModuleType):
        self._mpilock = mpilock

    def sync(self, comm: Any = None, master: int = 0) -> Any:
        """Create mpilock's ``WindowController`` on ``comm`` (default: the MPI world).

        Collective: every rank of ``comm`` must call it. ``comm`` may be the MPI
        service or a raw mpi4py communicator.
        """
        return self._mpilock.sync(raw_comm(comm), master)

    def __repr__(self) -> str:
        return f"<MPILock service: mpilock {self._mpilock.__version__}>"


def lock_from_mpilock() -> MPILockService:
    """Provider: mpilock (which imports ``mpi4py.MPI``, so it starts MPI)."""
    import mpilock

    return MPILockService(mpilock)
