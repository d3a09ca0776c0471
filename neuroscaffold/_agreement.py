"""Agreeing across ranks, with a time limit, on how a step of a collective run ended.

A compile passes agreement points (after each phase, before the merge). At each one,
every rank says how its part ended: :data:`OK`, :data:`INTERRUPTED` or :data:`FAILED`,
and every rank learns the worst. A rank that failed calls the same agreement as the
ranks that did not, so the collectives always match (a blocking barrier on one rank and
a nonblocking one on another never do), and nobody enters the next step, or waits in
it forever, unless everyone got there. A stop signal that came and was deferred (see
:mod:`._signals`) makes this rank's part INTERRUPTED.

Every agreement, :func:`share` and :func:`collect` run on a private duplicate of the
world, so that the user's own traffic on ``COMM_WORLD`` (or a pool's) never matches
them. Each is a nonblocking collective polled with a bounded back-off, with a time
limit; past it the rank gives up (a peer is gone) instead of hanging. A request that
timed out is parked with its buffers until MPI is done with them (it may still
complete, when the late rank arrives): MPI must never write into freed memory.
While a rank waits, a stop signal is held back and raised once the collective has
completed, so that no rank leaves a collective the others are in.
"""

from __future__ import annotations

import contextlib
import enum
import pickle
import signal
import threading
import time
from typing import Any, Iterator

import numpy as np

from . import _signals
from ._backoff import Backoff
from .exceptions import ParallelError

__all__ = ["COLLECTIVES", "Outcome", "SHARE_WAIT", "agree", "collect", "held_interrupts",
           "outcomes", "share"]

#: seconds a :func:`share` or :func:`collect` waits for the other ranks by default
SHARE_WAIT = 600.0


class Outcome(enum.IntEnum):
    """How a rank's part of a step ended; the worst one wins."""

    OK = 0
    INTERRUPTED = 1
    FAILED = 2
    UNREACHABLE = 3  #: a rank did not answer in time


class Unreachable(ParallelError):
    """Another rank did not take part in a collective in time (it may have died)."""


def _mine(outcome: Outcome) -> Outcome:
    if _signals.pending() is not None:
        return max(outcome, Outcome.INTERRUPTED)
    return outcome


def agree(outcome: Outcome, timeout: float) -> Outcome:
    """Every rank's worst outcome (collective); :data:`Outcome.UNREACHABLE` if some
    rank did not take part within ``timeout`` seconds. A deferred stop signal makes
    this rank's outcome at least INTERRUPTED."""
    found = outcomes(outcome, timeout)
    return Outcome.UNREACHABLE if found is None else max(found)


def outcomes(outcome: Outcome, timeout: float) -> list[Outcome] | None:
    """Every rank's outcome, in rank order, on every rank (collective); None if some
    rank did not take part within ``timeout`` seconds."""
    outcome = _mine(outcome)
    comm = _private()
    if comm is None:
        return [outcome]
    from mpi4py import MPI as _MPI

    mine = np.array([int(outcome)], dtype=np.int64)
    every = np.zeros(comm.Get_size(), dtype=np.int64)
    request = comm.Iallgather([mine, _MPI.INT64_T], [every, _MPI.INT64_T])
    if not _wait(request, timeout, (mine, every)):
        return None
    return [Outcome(int(value)) for value in every]


def share(value: Any, root: int = 0, timeout: float = SHARE_WAIT) -> Any:
    """``root``'s ``value`` on every rank (collective). Raises :class:`ParallelError`
    if some rank did not take part within ``timeout`` seconds."""
    comm = _private()
    if comm is None:
        return value
    from mpi4py import MPI as _MPI

    mine = comm.Get_rank() == root
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) if mine else b""
    length = np.array([len(data)], dtype=np.int64)
    deadline = time.monotonic() + timeout
    with held_interrupts(reraise=True):
        _expect(comm.Ibcast(length, root), deadline, (length,), "share")
        buffer = bytearray(data) if mine else bytearray(int(length[0]))
        _expect(comm.Ibcast([buffer, _MPI.BYTE], root), deadline, (buffer,), "share")
    return value if mine else pickle.loads(buffer)


def collect(value: Any, root: int = 0, timeout: float = SHARE_WAIT) -> list[Any] | None:
    """Every rank's ``value``, in rank order, on ``root`` (None elsewhere); collective,
    bounded like :func:`share`."""
    comm = _private()
    if comm is None:
        return [value]
    from mpi4py import MPI as _MPI

    size, mine = comm.Get_size(), comm.Get_rank() == root
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    length = np.array([len(data)], dtype=np.int64)
    lengths = np.zeros(size, dtype=np.int64)
    deadline = time.monotonic() + timeout
    with held_interrupts(reraise=True):
        _expect(comm.Igather(length, lengths if mine else None, root), deadline,
                (length, lengths), "collect")
        if mine:
            buffer = bytearray(int(lengths.sum()))
            displacements = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            target = [buffer, lengths.tolist(), displacements.tolist(), _MPI.BYTE]
        else:
            buffer, target = bytearray(), None
        _expect(comm.Igatherv([data, _MPI.BYTE], target, root), deadline, (data, buffer),
                "collect")
    if not mine:
        return None
    view = memoryview(buffer)
    return [pickle.loads(view[a:a + n]) for a, n in zip(displacements.tolist(), lengths.tolist())]


# --- the private communicator ---------------------------------------------------------

#: how long a rank waits for the others to make the private communicator
_DUP_WAIT = 120.0
_comm: Any = None
_comm_lock = threading.Lock()


def _private() -> Any:
    """The private duplicate of the world (made collectively on first use), or None in
    a world of one rank."""
    global _comm
    from .services import MPI

    if MPI.get_size() == 1:
        return None
    with _comm_lock:
        if _comm is None:
            world = MPI.get_communicator()
            comm, request = world.Idup()
            if not _wait(request, _DUP_WAIT, (comm,)):
                raise Unreachable("another rank did not answer in time (it may have died)")
            _comm = comm
        return _comm


# --- waiting ----------------------------------------------------------------------------

#: the longest pause between two tests of a collective: a step of the merge waits at
#: most this long after the others arrived (it took up to 10 ms, six times per merge)
_WAIT_MAX = 0.001

#: requests that timed out, with the buffers MPI may still read or write
_parked: list[tuple[Any, tuple]] = []


def _prune_parked() -> None:
    if _parked:
        _parked[:] = [(req, keep) for req, keep in _parked if not req.Test()]


def _wait(request: Any, timeout: float, buffers: tuple, deadline: float | None = None) -> bool:
    """Poll ``request`` with a bounded back-off; False if ``timeout`` passed first (the
    request is then parked with ``buffers``)."""
    _prune_parked()
    deadline = time.monotonic() + timeout if deadline is None else deadline
    backoff = Backoff(tmax=_WAIT_MAX)
    try:
        while not request.Test():
            if time.monotonic() > deadline:
                _parked.append((request, buffers))
                return False
            backoff.sleep()
    except BaseException:  # a second Ctrl-C: the request is left, its buffers kept
        _parked.append((request, buffers))
        raise
    return True


def _expect(request: Any, deadline: float, buffers: tuple, what: str) -> None:
    if not _wait(request, 0.0, buffers, deadline):
        raise Unreachable(f"another rank did not take part in a {what} in time "
                          "(it may have died)")


@contextlib.contextmanager
def held_interrupts(reraise: bool = False) -> Iterator[list[str]]:
    """Hold the stop signals back while the block runs (main thread only); the list
    yielded names the signal that came. A second signal is raised at once. With
    ``reraise``, a held signal is raised after the block as :class:`KeyboardInterrupt`,
    unless stop signals are deferred (it then stays pending for the next agreement)."""
    held: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum, frame):
        if held:  # asked twice: the user means it
            raise KeyboardInterrupt(signal.Signals(signum).name)
        held.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, hold) for sig in _signals.STOPS}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if held and reraise:
        if _signals.deferring():
            _signals.defer_pending(held[0])
        else:
            raise KeyboardInterrupt(held[0])


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
