"""Progress events and their delivery to listeners (main rank, one thread, in order)."""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

from ...exceptions import ListenerError
from ._status import JobStatus, PoolProgressReason, PoolStatus

__all__ = ["PoolProgress"]

_PING = PoolProgressReason.MAX_TIMEOUT_PING


class PoolProgress(NamedTuple):
    """What a listener receives: why it is called and the pool's state at that moment."""

    reason: PoolProgressReason
    status: PoolStatus
    jobs: list
    workflow: Any
    job: Any = None
    old_status: JobStatus | None = None
    time: float = 0.0
    pool: Any = None


class SubmitterStatistics(NamedTuple):
    """Jobs of one submitter (a strategy): how many there are and how many ended."""

    name: str
    total: int
    done: int


class PoolStatistics(NamedTuple):
    """A snapshot of a pool's progress, cheap to take at any time (O(submitters))."""

    status: PoolStatus
    workflow: Any
    total: int  #: jobs added
    done: int  #: jobs ended (succeeded, failed, cancelled or aborted)
    succeeded: int
    failed: int
    cancelled: int
    running: tuple  #: jobs started and not ended, oldest first
    submitters: tuple  #: :class:`SubmitterStatistics`, in order of first submission
    failures: tuple  #: every failed job, in the order they failed
    started_at: float | None  #: ``time.time()`` when execute() started
    busy: float  #: summed run time (s) of the ended jobs that ran
    ran: int  #: how many ended jobs ran (succeeded or failed)
    ranks: int  #: ranks taking part
    #: jobs are still being added in the background (``schedule``), or were added and
    #: are not counted yet: a display waits for them before its first line
    scheduling: bool = False


class _Listener:
    __slots__ = ("fn", "max_wait", "last", "entered")

    def __init__(self, fn, max_wait):
        self.fn = fn
        self.max_wait = max_wait
        self.last = 0.0
        self.entered = False


def _describe(listener: Callable) -> str:
    return getattr(listener, "__qualname__", None) or type(listener).__name__


class _Listeners:
    """The pool's listeners: delivers each event to every one of them, in order.

    A listener added late is first given the events it missed (rebuilt by the pool from
    its state), so every listener sees the pool's whole stream. A listener that raises
    breaks the pool: the error is raised as :class:`ListenerError` on every rank.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._items: list[_Listener] = []
        self._entered = False
        self.clock = clock
        self.any = False  # any listener at all
        self.active = False  # any listener of job events: the hot path checks only this
        self.waits = False  # any listener with a max_wait (needs pings)
        self._job_items: list[_Listener] = []
        self.make_event: Callable[..., PoolProgress] | None = None  # set by the pool

    def job(self, reason: PoolProgressReason, job: Any, old: JobStatus | None) -> bool:
        """The ledger's notifier: deliver a job event (``make_event`` builds it)."""
        return self.emit(self.make_event(reason, job, old))

    def add(self, fn: Callable, max_wait: float | None, missed: list[PoolProgress]) -> None:
        item = _Listener(fn, max_wait)
        item.last = self.clock()
        self._items.append(item)
        if getattr(fn, "job_events", True):
            self._job_items.append(item)
            self.active = True
        else:
            missed = [event for event in missed if event.job is None]
        self.any = True
        self.waits = self.waits or max_wait is not None
        if self._entered:
            self._enter(item)
        for event in missed:
            self._call(item, event)

    def emit(self, event: PoolProgress) -> bool:
        """Deliver ``event``; returns whether a listener handled it (returned true).

        Job events go only to listeners that want them (``job_events``, default true):
        a listener that reads :meth:`JobPool.statistics` instead costs nothing per job.
        """
        handled = False
        items = self._items if event.job is None else self._job_items
        if self.waits:  # only pings need to know when each listener last heard anything
            now = self.clock()
            for item in items:
                item.last = now
        for item in items:
            try:
                if item.fn(event):
                    handled = True
            except Exception as exc:
                self._raise_for(item, event, exc)
        return handled

    def ping(self, make_event: Callable[[], PoolProgress]) -> float | None:
        """Send MAX_TIMEOUT_PING to listeners idle past their ``max_wait``.

        Returns the seconds until the next ping is due, or None if no listener waits.
        """
        now = self.clock()
        next_due = None
        for item in self._items:
            if item.max_wait is None:
                continue
            due = item.last + item.max_wait
            if now >= due:
                item.last = now
                self._call(item, make_event())
                due = now + item.max_wait
            wait = due - now
            next_due = wait if next_due is None else min(next_due, wait)
        return next_due

    def enter(self) -> None:
        self._entered = True
        for item in self._items:
            self._enter(item)

    def exit(self, exc_info=(None, None, None)) -> None:
        """Exit every entered context-manager listener; the first error is raised after."""
        self._entered = False
        first = None
        for item in reversed(self._items):
            if item.entered:
                item.entered = False
                try:
                    item.fn.__exit__(*exc_info)
                except Exception as exc:  # exit the others before raising
                    first = first or ListenerError(
                        f"listener {_describe(item.fn)} raised on exit: {exc!r}"
                    ).with_traceback(exc.__traceback__)
                    first.__cause__ = exc
        if first is not None:
            raise first

    def _enter(self, item: _Listener) -> None:
        enter = getattr(item.fn, "__enter__", None)
        if enter is not None and hasattr(item.fn, "__exit__"):
            try:
                enter()
            except Exception as exc:
                raise ListenerError(
                    f"listener {_describe(item.fn)} raised on enter: {exc!r}"
                ) from exc
            item.entered = True

    def _call(self, item: _Listener, event: PoolProgress):
        try:
            return item.fn(event)
        except Exception as exc:
            self._raise_for(item, event, exc)

    @staticmethod
    def _raise_for(item: _Listener, event: PoolProgress, exc: Exception):
        what = event.reason.value
        if event.job is not None:
            what += f" of job {event.job.name!r}"
        raise ListenerError(f"listener {_describe(item.fn)} raised on {what}: {exc!r}") from exc
