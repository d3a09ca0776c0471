"""What the mpi4py proxy and the one-rank emulator share: snake-case helpers on top of
the mpi4py method names, and the ``try_all``/``try_main`` error-sharing blocks.

Both blocks are collective: every rank must enter and leave them, raising or not, so
a rank that raised still takes part in the exchange and no rank waits forever.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...exceptions import ParallelError

__all__ = ["CommHelpers", "ParallelError", "exit_now"]

_MAIN = 0


def exit_now(code: int) -> None:
    """End this process at once with ``code``, like ``MPI_Abort``: no cleanup handlers,
    no unwinding; only what was printed is flushed first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def _summary(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _describe(failures: dict[int, str]) -> str:
    if len(failures) == 1:
        ((rank, text),) = failures.items()
        return f"rank {rank} failed: {text}"
    ranks = ", ".join(map(str, failures))
    details = "; ".join(f"rank {rank}: {text}" for rank, text in failures.items())
    return f"ranks {ranks} failed: {details}"


def _pack(error: BaseException) -> tuple[bytes | None, str]:
    # The exception travels pickled when it can; its text always travels, so a
    # receiver that cannot rebuild it still learns what happened.
    try:
        payload = pickle.dumps(error)
    except Exception:
        payload = None
    return payload, _summary(error)


def _unpack(packed: tuple[bytes | None, str], size: int) -> BaseException:
    payload, text = packed
    if payload is not None:
        try:
            error = pickle.loads(payload)
        except Exception:
            pass
        else:
            error.add_note(f"raised on rank {_MAIN} of {size} inside try_main")
            return error
    return ParallelError(_describe({_MAIN: text}))


class CommHelpers:
    """Snake-case helpers over the mpi4py names (``Get_rank``, ``Barrier``, ...)."""

    def get_communicator(self) -> Any:
        """The mpi4py communicator behind this service, or ``None`` when emulated."""
        raise NotImplementedError

    def get_rank(self) -> int:
        """This process's rank in the world."""
        return self.Get_rank()

    def get_size(self) -> int:
        """The number of ranks in the world."""
        return self.Get_size()

    def barrier(self) -> None:
        """Wait until every rank has reached this call."""
        self.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the world at once with exit status ``code``."""
        self.Abort(code)

    @contextmanager
    def try_all(self, default_exception: BaseException | type | None = None) -> Iterator[None]:
        """Collective block that fails on every rank if it failed on any rank.

        A rank that raised inside re-raises its own exception. The other ranks raise
        ``default_exception`` if given, else a :class:`ParallelError` naming the ranks
        that failed and their error text.
        """
        error = None
        try:
            yield
        except BaseException as exc:
            error = exc
        summaries = self.allgather(None if error is None else _summary(error))
        if error is not None:
            raise error
        failures = {rank: text for rank, text in enumerate(summaries) if text is not None}
        if failures:
            if default_exception is not None:
                raise default_exception
            raise ParallelError(_describe(failures))

    @contextmanager
    def try_main(self) -> Iterator[None]:
        """Collective block that fails on every rank if it failed on the main rank.

        If the main rank (rank 0) raised inside, every rank raises that exception (a
        copy of it on the others, or a :class:`ParallelError` with its text when it
        cannot be pickled). A rank other than the main one that raised re-raises its
        own exception, on that rank only: the others carry on.
        """
        error = None
        try:
            yield
        except BaseException as exc:
            error = exc
        is_main = self.get_rank() == _MAIN
        shared = self.bcast(_pack(error) if is_main and error is not None else None, root=_MAIN)
        if error is not None:
            raise error
        if shared is not None:
            raise _unpack(shared, self.get_size())
