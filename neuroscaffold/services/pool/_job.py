"""Jobs, the dependency graph between them, and workflows of named phases.

Job states change on the main rank, in the pool's main thread only (the ledger, in
``_ledger``); other threads ask through the pool's incoming queue. :meth:`Job.cancel`
may be called from any thread of the main rank: a job already sent to a rank becomes
CANCELLED only once that rank confirms it dropped it unstarted.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from ...exceptions import JobPoolError
from ._status import JobStatus

if TYPE_CHECKING:
    from ._pool import JobPool

__all__ = ["Job", "JobRecord", "Workflow"]

_PENDING = JobStatus.PENDING
_QUEUED = JobStatus.QUEUED
_SUCCESS = JobStatus.SUCCESS
_NO_RESULT = object()


class Job:
    """One unit of work: ``fn(network, *args, **kwargs)`` run on some rank.

    Jobs are made by :meth:`JobPool.queue` / :meth:`JobPool.submit`, never directly.
    """

    __slots__ = (
        "id",
        "_pool",
        "_fn",
        "_args",
        "_kwargs",
        "_context",
        "_submitter",
        "status",
        "_result",
        "error",
        "rank",
        "started_at",
        "ended_at",
        "deps",
        "_waiting",
        "_dependents",
        "_handled",
    )

    def __init__(self, pool, job_id, fn, args, kwargs, context, submitter, deps):
        self.id: int = job_id
        # A weak reference (shared by all of a pool's jobs): jobs outlive their pool
        # to keep results, and must not keep a closed pool of a million jobs alive.
        self._pool: Callable[[], JobPool | None] = pool
        self._fn: Callable = fn
        self._args = args
        self._kwargs = kwargs
        self._context: dict | None = context or None
        self._submitter: Any = submitter  # given, or the node being scheduled
        self.status: JobStatus = _PENDING
        self._result: Any = _NO_RESULT
        self.error: BaseException | None = None
        self.rank: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.deps: tuple = deps
        self._waiting = 0
        self._dependents: list | None = None
        self._handled = False

    @property
    def context(self) -> dict:
        """Free information given at submission, shown in progress displays."""
        return self._context if self._context is not None else {}

    @property
    def submitter(self) -> Any:
        """Who submitted the job: the node given or being scheduled, the owner of a
        bound method that is a node, else the job's function itself."""
        submitter = self._submitter
        return submitter if submitter is not None else self._fn

    @property
    def name(self) -> str:
        """A readable name: ``context['name']``, else the function and its context."""
        context = self._context
        if context is not None and "name" in context:
            return str(context["name"])
        fn = self._fn
        label = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
        if context:
            label += "(" + ", ".join(f"{k}={v!r}" for k, v in context.items()) + ")"
        return f"{label}#{self.id}"

    @property
    def result(self) -> Any:
        """The value the job returned. Raises :class:`JobPoolError` if there is none."""
        if self._result is _NO_RESULT:
            if self.status is JobStatus.FAILED:
                raise JobPoolError(f"job {self.name!r} failed: {self.error!r}") from self.error
            raise JobPoolError(f"job {self.name!r} has no result (status: {self.status.value})")
        return self._result

    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed, cancelled or aborted)."""
        return not self.status._next  # no transition out: it ended (see _status)

    def cancel(self, reason: str | None = None) -> bool:
        """Cancel the job and, transitively, every job that depends on it.

        Only a PENDING or QUEUED job can be cancelled; for a running or ended job this
        warns, changes nothing and returns False. Otherwise returns True: a job not
        yet sent to a rank is CANCELLED at once (from the main thread) or at the
        dispatcher's next turn (from another thread); a job already sent to a rank is
        dropped there if that rank has not started it, and becomes CANCELLED when the
        rank confirms it. A job its rank had already started runs to its end and keeps
        its real outcome: a job is CANCELLED only when it really never ran.
        """
        if self.status is not _PENDING and self.status is not _QUEUED:
            warnings.warn(
                f"cannot cancel job {self.name!r}: it is {self.status.value}",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        pool = self._pool()
        if pool is None:
            raise JobPoolError(f"cannot cancel job {self.name!r}: its pool is closed")
        return pool._cancel(self, reason)

    def __repr__(self) -> str:
        return f"<Job {self.name!r} {self.status.value}>"


class _DepGroup:
    """A shared dependency on many jobs, so "all of B after all of A" is O(|A|+|B|).

    Jobs depending on the same (large) sequence of jobs depend on one group instead of
    on each member: the group counts its unfinished members and releases, or cancels,
    its dependents once.
    """

    __slots__ = ("_waiting", "_dependents", "failed_by", "members")

    def __init__(self, members):
        self.members = members
        self._waiting = 0
        self._dependents: list | None = None
        self.failed_by: Job | None = None


class JobRecord(NamedTuple):
    """One job on the timeline: where and when it ran, and how it ended."""

    job_id: int
    name: str
    submitter: str | None
    rank: int | None
    start: float | None
    end: float | None
    status: JobStatus
    error: str | None


def submitter_name(submitter: Any) -> str | None:
    """The display name of a submitter: its node name when it is a config node."""
    if submitter is None:
        return None
    get_name = getattr(submitter, "get_node_name", None)
    if get_name is not None:
        try:
            return str(get_name())
        except Exception:  # a half-built node must not break a progress display
            pass
    name = getattr(submitter, "name", None)
    if isinstance(name, str) and name:
        return name
    return getattr(submitter, "__qualname__", None) or type(submitter).__name__


class Workflow:
    """A sequence of named phases (e.g. ``placement``, ``connectivity``) run by pools.

    Pools created with a workflow carry it in every progress event, so displays can
    show which phase is running.
    """

    def __init__(self, phases: list[str] | tuple[str, ...]):
        if not phases:
            raise ValueError("a workflow needs at least one phase")
        self.phases: list[str] = list(phases)
        self._index = 0

    @property
    def phase(self) -> str | None:
        """The current phase, or None once the workflow finished."""
        return self.phases[self._index] if self._index < len(self.phases) else None

    @property
    def finished(self) -> bool:
        return self._index >= len(self.phases)

    def next_phase(self) -> str | None:
        """Move to the next phase and return it (None when the workflow is finished)."""
        if self._index < len(self.phases):
            self._index += 1
        return self.phase

    def __repr__(self) -> str:
        return f"<Workflow {self.phases} at {self.phase!r}>"
