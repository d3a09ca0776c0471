"""Which communicator a lock is for: the MPI service's world by default."""

from __future__ import annotations

from typing import Any

from .._registry import get_service


def service_comm(comm: Any = None) -> Any:
    """``comm``, or the MPI service when ``comm`` is None."""
    return get_service("MPI") if comm is None else comm


def raw_comm(comm: Any = None) -> Any:
    """The mpi4py communicator behind ``comm`` (our MPI proxy, or a raw mpi4py comm)."""
    comm = service_comm(comm)
    unwrap = getattr(comm, "get_communicator", None)
    return unwrap() if callable(unwrap) else comm
