"""A one-rank MPI world, for when mpi4py is not installed.

Collectives return what the only rank of a real one-rank world would get, so code
written for N ranks runs unchanged on one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import CommHelpers, exit_now

__all__ = ["WorldEmulator"]


def _check_root(root: int) -> None:
    if root != 0:
        raise ValueError(f"root must be 0 in a one-rank world, got {root}")


def _only_item(sendobj: Sequence[Any], what: str) -> Any:
    if sendobj is None or len(sendobj) != 1:
        raise ValueError(f"{what} expects a sequence of 1 item in a one-rank world")
    return sendobj[0]


class WorldEmulator(CommHelpers):
    """The MPI service without mpi4py: rank 0 of a world of size 1.

    Offers the mpi4py names (``Get_rank``, ``Barrier``, ``bcast``, ``Abort``, ...) as
    well as the snake-case helpers, so callers need not know which one they got.
    """

    rank = 0
    size = 1

    def get_communicator(self) -> None:
        return None

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 1

    def Barrier(self) -> None:
        pass

    def bcast(self, obj: Any, root: int = 0) -> Any:
        _check_root(root)
        return obj

    def gather(self, sendobj: Any, root: int = 0) -> list[Any]:
        _check_root(root)
        return [sendobj]

    def allgather(self, sendobj: Any) -> list[Any]:
        return [sendobj]

    def scatter(self, sendobj: Sequence[Any], root: int = 0) -> Any:
        _check_root(root)
        return _only_item(sendobj, "scatter")

    def alltoall(self, sendobj: Sequence[Any]) -> list[Any]:
        return [_only_item(sendobj, "alltoall")]

    def reduce(self, sendobj: Any, op: Any = None, root: int = 0) -> Any:
        _check_root(root)
        return sendobj

    def allreduce(self, sendobj: Any, op: Any = None) -> Any:
        return sendobj

    def Abort(self, errorcode: int = 0) -> None:
        exit_now(errorcode)

    def Dup(self) -> "WorldEmulator":
        return WorldEmulator()

    Clone = Dup

    def Free(self) -> None:
        pass

    def __repr__(self) -> str:
        return "<MPI one-rank emulator>"
