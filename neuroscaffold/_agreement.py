"""Agreeing across ranks, with a time limit, on how a step of a collective run ended.

A compile passes agreement points (after each phase, before the merge). At each one,
every rank says how its part ended: :data:`OK`, :data:`INTERRUPTED` or :data:`FAILED`,
and every rank learns the worst. A rank that failed calls the same agreement as the
ranks that did not, so the collectives always match (a blocking barrier on one rank and
a nonblocking one on another never do), and nobody enters the next step, or waits in
it forever, unless everyone got there. The wait is a nonblocking all-reduce polled with
a bounded back-off; past its time limit the rank gives up (a peer is gone) instead of
hanging.
"""

from __future__ import annotations

import enum
import pickle
import time
from typing import Any

import numpy as np

from ._backoff import Backoff

__all__ = ["COLLECTIVES", "Outcome", "agree", "collect", "share"]


class Outcome(enum.IntEnum):
    """How a rank's part of a step ended; the worst one wins."""

    OK = 0
    INTERRUPTED = 1
    FAILED = 2
    UNREACHABLE = 3  #: a rank did not answer in time


def agree(outcome: Outcome, timeout: float) -> Outcome:
    """Every rank's worst outcome (collective); :data:`Outcome.UNREACHABLE` if some
    rank did not take part within ``timeout`` seconds."""
    from .services import MPI

    if MPI.get_size() == 1:
        return outcome
    comm = MPI.get_communicator()
    from mpi4py import MPI as _MPI

    mine = np.array([int(outcome)], dtype=np.int64)
    worst = np.zeros(1, dtype=np.int64)
    if not _wait(comm.Iallreduce(mine, worst, op=_MPI.MAX), timeout):
        return Outcome.UNREACHABLE
    return Outcome(int(worst[0]))


def share(value: Any, root: int = 0) -> Any:
    """``root``'s ``value`` on every rank (collective), waited for without blocking in
    MPI: a Ctrl-C that comes meanwhile is raised here at once, not after the others
    answered (a blocking broadcast would hold the rank in C until then)."""
    from .services import MPI

    if MPI.get_size() == 1:
        return value
    comm = MPI.get_communicator()
    from mpi4py import MPI as _MPI

    mine = comm.Get_rank() == root
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) if mine else b""
    length = np.array([len(data)], dtype=np.int64)
    _wait(comm.Ibcast(length, root), None)
    buffer = bytearray(data) if mine else bytearray(int(length[0]))
    _wait(comm.Ibcast([buffer, _MPI.BYTE], root), None)
    return value if mine else pickle.loads(buffer)


def collect(value: Any, root: int = 0) -> list[Any] | None:
    """Every rank's ``value``, in rank order, on ``root`` (None elsewhere); collective,
    waited for without blocking in MPI (see :func:`share`)."""
    from .services import MPI

    if MPI.get_size() == 1:
        return [value]
    comm = MPI.get_communicator()
    from mpi4py import MPI as _MPI

    size, mine = comm.Get_size(), comm.Get_rank() == root
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    lengths = np.zeros(size, dtype=np.int64)
    _wait(comm.Igather(np.array([len(data)], dtype=np.int64), lengths if mine else None, root),
          None)
    if mine:
        buffer = bytearray(int(lengths.sum()))
        displacements = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        target = [buffer, lengths.tolist(), displacements.tolist(), _MPI.BYTE]
    else:
        target = None
    _wait(comm.Igatherv([data, _MPI.BYTE], target, root), None)
    if not mine:
        return None
    view = memoryview(buffer)
    return [pickle.loads(view[a:a + n]) for a, n in zip(displacements.tolist(), lengths.tolist())]


#: the longest pause between two tests of a collective: a step of the merge waits at
#: most this long after the others arrived (it took up to 10 ms, six times per merge)
_WAIT_MAX = 0.001


def _wait(request: Any, timeout: float | None) -> bool:
    """Poll ``request`` with a bounded back-off; False if ``timeout`` passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff = Backoff(tmax=_WAIT_MAX)
    while not request.Test():
        if deadline is not None and time.monotonic() > deadline:
            return False
        backoff.sleep()
    return True


class _Collectives:
    """What storage needs of the ranks (see :func:`neuroscaffold.storage._merge.merge`)."""

    @staticmethod
    def get_rank() -> int:
        from .services import MPI

        return MPI.get_rank()

    @staticmethod
    def get_size() -> int:
        from .services import MPI

        return MPI.get_size()

    share = staticmethod(share)
    collect = staticmethod(collect)


COLLECTIVES = _Collectives()
