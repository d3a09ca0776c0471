"""The MPILock service: ``MPILock.sync(comm=None, master=0)`` gives a lock controller.

With mpilock (and mpi4py) installed it is mpilock's ``WindowController``; without,
a mock whose locks are granted at once, which is only correct on a single rank, so
``sync`` refuses with a :class:`~neuroscaffold.exceptions.DependencyError` on more.
"""

from __future__ import annotations

from .._registry import FallbackProvider
from ._mock import MockController, MockFence, MockLockService
from ._mpilock import MPILockService, lock_from_mpilock

__all__ = ["MPILockService", "MockController", "MockFence", "MockLockService", "PROVIDER"]

PROVIDER = FallbackProvider(
    providers=(lock_from_mpilock,),
    mock=MockLockService,
    requires="mpilock",
    install="pip install 'neuroscaffold[mpi]'",
)
"""The MPILock service's fallback chain: mpilock, else the single-rank mock."""
