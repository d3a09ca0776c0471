"""Lock controller for a single rank: every lock is granted at once.

Only correct when no other process can take the lock, so :meth:`MockLockService.sync`
refuses a communicator of more than one rank instead of silently not locking.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ...exceptions import DependencyError
from ._comm import service_comm

__all__ = ["MockController", "MockFence", "MockLockService"]


class _Fenced(Exception):
    """Thrown by ``guard()`` on a rank that may not write; caught by the fence."""


class MockFence:
    """The fence of a ``single_write`` block on a single rank."""

    def __init__(self, access: bool):
        self._access = access
        self._shared: Any = None

    def guard(self) -> None:
        """Skip the rest of the ``with`` block unless this rank is the writer."""
        if not self._access:
            raise _Fenced()

    def share(self, obj: Any) -> None:
        """Set the object that :meth:`collect` returns after the block."""
        self._shared = obj

    def collect(self) -> Any:
        """The object the writer shared inside the block."""
        return self._shared

    def __enter__(self) -> "MockFence":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, _Fenced)


class MockController:
    """A lock controller whose ``read``, ``write`` and ``single_write`` never wait."""

    def __init__(self, rank: int = 0, master: int = 0):
        self._rank = rank
        self._master = master
        self._closed = False

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def master(self) -> int:
        return self._master

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def read(self) -> AbstractContextManager[None]:
        """A read lock, granted at once."""
        return nullcontext()

    def write(self) -> AbstractContextManager[None]:
        """A write lock, granted at once."""
        return nullcontext()

    def single_write(
        self, handle: Any = None, rank: int | None = None
    ) -> AbstractContextManager[Any]:
        """A block written by one rank (``rank``, default the master).

        Yields a fence, or ``handle`` on the writer (``None`` elsewhere) when given.
        """
        writer = self._master if rank is None else rank
        if handle is not None:
            return nullcontext(handle if self._rank == writer else None)
        return MockFence(self._rank == writer)

    def __enter__(self) -> "MockController":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class MockLockService:
    """The MPILock service without mpilock: one-rank controllers only."""

    def sync(self, comm: Any = None, master: int = 0) -> MockController:
        """A :class:`MockController` for ``comm`` (default: the MPI world).

        Raises:
            DependencyError: ``comm`` has more than one rank, where a lock that never
                waits would let ranks overwrite each other's work.
        """
        comm = service_comm(comm)
        size = comm.Get_size()
        if size > 1:
            raise DependencyError(
                f"mpilock is not installed, so MPILock cannot lock across the {size} "
                "ranks of this communicator; install it with: "
                "pip install 'neuroscaffold[mpi]'"
            )
        return MockController(comm.Get_rank(), master)

    def __repr__(self) -> str:
        return "<MPILock service: single-rank mock>"
