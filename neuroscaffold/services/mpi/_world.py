"""Thin proxy over mpi4py's ``COMM_WORLD``: every mpi4py method, plus the helpers."""

from __future__ import annotations

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

    return WorldProxy(MPI.COMM_WORLD)
