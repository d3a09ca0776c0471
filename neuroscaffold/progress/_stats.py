"""Counting, timing and naming shared by the live display and the plain log.

Both displays hand the pool's events to one :class:`ProgressStats` and read a frozen
:class:`ProgressSnapshot` from it when they draw; the counts come from the pool's own
``statistics()`` (one engine), taken at the drawing rate, never per job.

Statuses are compared by identity with the pool's enums (``is``, not ``==`` or ``in``:
an enum's hash runs Python code). The pool imports this package only when it makes a
pool, so importing the pool's public names here makes no import cycle.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..services.pool import JobStatus, PoolProgressReason, PoolStatus
from ..services.pool import submitter_name  # one naming for progress and timeline

__all__ = [
    "Failure",
    "GroupNames",
    "GroupProgress",
    "ProgressSnapshot",
    "ProgressStats",
    "RunningJob",
    "StatsListener",
    "display_name",
    "error_text",
    "format_duration",
    "job_group",
]

Clock = Callable[[], float]

_QUEUED = JobStatus.QUEUED
_CLOSING = PoolStatus.CLOSING
_PING = PoolProgressReason.MAX_TIMEOUT_PING


_ROOT_PREFIX = "{root}."


def display_name(name: str) -> str:
    """A node's name as people read it: ``placement.granular``, without the internal
    ``{root}.`` prefix of ``get_node_name()``."""
    return name[len(_ROOT_PREFIX):] if name.startswith(_ROOT_PREFIX) else name


def job_group(job: Any) -> str:
    """The group ("strategy") of a job: its submitter's name (a config node's
    ``get_node_name()``, as in the pool's ``timeline``), else its function's name."""
    group = submitter_name(getattr(job, "submitter", None))
    if group is not None:
        return display_name(group)
    # The pool keeps the function private; a job without one falls back to its name.
    fn = getattr(job, "fn", None) or getattr(job, "_fn", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name or str(job.name)


class GroupNames:
    """:func:`job_group` with a cache per submitter (or function): a node's name is
    looked up once, not once per job."""

    def __init__(self) -> None:
        # id(submitter or fn) -> (it, name); holding it keeps its id from being reused
        self._cache: dict[int, tuple[Any, str]] = {}

    def __call__(self, job: Any) -> str:
        key = job.submitter
        if key is None:
            key = getattr(job, "fn", None) or getattr(job, "_fn", None)
            if key is None:
                return job_group(job)
        cached = self._cache.get(id(key))
        if cached is not None and cached[0] is key:
            return cached[1]
        name = job_group(job)
        self._cache[id(key)] = (key, name)
        return name


_MAX_ERROR_TEXT = 300  # characters: an error never prints a whole value


def error_text(error: Any) -> str | None:
    """One line naming an error: ``ValueError: bad value`` (its first line only, cut to
    a few hundred characters)."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        text = str(error)
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    else:
        text = str(error)
    text = text.strip().splitlines()[0] if text.strip() else text
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 4] + " ..."
    return text


def format_duration(seconds: float) -> str:
    """A short readable duration: ``41 s``, ``2 min``, ``3 h 05 min``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


STALL_FACTOR = 10  #: a job runs long when it ran this many times the mean job
STALL_MIN = 2.0  #: ... and at least this many seconds
STALL_MAX = 60.0  #: a job running this long runs long, whatever the others do
STALL_SHOWN = 3  #: how many long-running jobs a summary line names


@dataclass(frozen=True, slots=True)
class GroupProgress:
    """How far the jobs of one group (strategy) are."""

    name: str
    total: int
    ended: int
    failed: int


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job running now: where, and since when (``time.time()`` of its rank)."""

    name: str
    group: str
    rank: int | None
    started_at: float


@dataclass(frozen=True, slots=True)
class Failure:
    """A job that failed, with the first line of its error."""

    name: str
    group: str
    rank: int | None
    error: str | None

    def describe(self) -> str:
        """``job 'name' failed on rank 2: ValueError: bad``."""
        where = f" on rank {self.rank}" if self.rank is not None else ""
        return f"job {self.name!r} failed{where}: {self.error}"


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """Everything a display draws, taken at one moment."""

    label: str  #: the workflow phase, else the pool status (``executing``), or ``finished``
    groups: tuple[GroupProgress, ...]
    total: int
    ended: int
    failed: int
    cancelled: int
    running: tuple[RunningJob, ...]  #: the longest running first, at most ``max_running``
    n_running: int
    failures: tuple[Failure, ...]  #: the latest few
    n_failures: int
    elapsed: float
    eta: float | None  #: seconds left, None until a job duration was measured
    now: float
    mean: float | None = None  #: mean duration of the ended jobs that ran (s)
    aborted: int = 0  #: jobs that never ran because the pool stopped (Ctrl-C, a broken pool)

    def stalled(self) -> tuple[RunningJob, ...]:
        """Running jobs that ran much longer than their siblings (:data:`STALL_FACTOR`
        times the mean job, at least :data:`STALL_MIN` s), or longer than
        :data:`STALL_MAX` s whatever the others do; the oldest first."""
        limit = STALL_MAX if self.mean is None else min(STALL_MAX, max(STALL_MIN, STALL_FACTOR * self.mean))
        return tuple(job for job in self.running if self.now - job.started_at >= limit)

    def summary(self) -> str:
        """``placement: 1204/5000 jobs, 3 failed, 2 running, 41 s elapsed, ~2 min left``,
        followed, once jobs overran (:meth:`stalled`), by the oldest of them:
        ``; running long: job 'x' on rank 1 for 70 s``. A pool that stopped early says
        ``stopped``, not ``finished``, and how many jobs it aborted."""
        label = self.label
        if self.aborted and label.endswith("finished"):
            label = label[: -len("finished")] + "stopped"
        parts = [f"{self.ended}/{self.total} jobs", f"{self.failed} failed"]
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        if self.aborted:
            parts.append(f"{self.aborted} aborted")
        parts += [f"{self.n_running} running", f"{format_duration(self.elapsed)} elapsed"]
        if self.eta is not None and self.ended < self.total:
            parts.append(f"~{format_duration(self.eta)} left")
        line = f"{label}: " + ", ".join(parts)
        stalled = self.stalled()
        if stalled:
            line += "; running long: " + ", ".join(
                f"job {job.name!r} on rank {job.rank} for "
                f"{format_duration(self.now - job.started_at)}"
                for job in stalled[:STALL_SHOWN]
            )
            if len(stalled) > STALL_SHOWN:
                line += f" and {len(stalled) - STALL_SHOWN} more"
        return line


class ProgressStats:
    """What a display draws, read from a pool's :meth:`~JobPool.statistics` (the one
    counting engine: counts, running jobs, failures and the time estimate all come
    from the pool's ledger, so the figures a display shows are the pool's own).

    Events only bring the pool to follow (``event.pool``), its status and its workflow
    phase; jobs are never counted from events (a listener asks for none), so a pool of
    a million tiny jobs pays nothing per job for its display. Methods are not
    thread-safe on their own; displays hold :attr:`lock` around them.

    Args:
        clock: ``time.time`` or a stand-in; elapsed time and how long a job has been
            running are measured with it (job start times are ``time.time()``).
        max_running: how many running jobs a snapshot lists.
        max_failures: how many of the latest failures a snapshot lists.
    """

    def __init__(self, clock: Clock = time.time, max_running: int = 8, max_failures: int = 3):
        self.clock = clock
        self.lock = threading.Lock()
        self.max_running = max_running
        self.max_failures = max_failures
        self.failures: list[Failure] = []  # every failure, in order
        self.phase: str | None = None
        self.pool_status: PoolStatus | None = None
        self.started: float | None = None
        self.changes = 0  # bumped by each failure, phase change and pool status change
        self._names = GroupNames()
        self._pool: Any = None
        self._pool_failures = 0

    @property
    def pool(self) -> Any:
        """The pool followed (the last one that sent an event), or None."""
        return self._pool

    @property
    def label(self) -> str:
        """What leads a summary line: the phase, else the pool status; ``finished`` at the end."""
        if self.pool_status is _CLOSING:
            return f"{self.phase} finished" if self.phase else "finished"
        if self.phase:
            return self.phase
        return self.pool_status.name.lower() if self.pool_status is not None else "jobs"

    def update(self, event: Any) -> None:
        """Take in one pool event (any reason): the pool it comes from, its status and
        its phase."""
        if self.started is None:
            self.started = self.clock()
        pool = getattr(event, "pool", None)
        if pool is not None and pool is not self._pool:
            self.follow(pool)
        status = event.status
        if status is not self.pool_status:
            self.pool_status = status
            self.changes += 1
        workflow = event.workflow
        if workflow is not None and workflow.phase != self.phase:
            self.phase = workflow.phase
            self.changes += 1

    def follow(self, pool: Any) -> None:
        """Read the counts of ``pool`` (its ``statistics()``) from now on."""
        self._pool = pool
        self._pool_failures = 0

    def refresh(self) -> None:
        """Take in the failures the followed pool reported since the last refresh."""
        pool = self._pool
        if pool is None:
            return
        failures = pool.statistics().failures
        for job in failures[self._pool_failures :]:
            self.failures.append(Failure(job.name, self._names(job), job.rank, error_text(job.error)))
            self.changes += 1
        self._pool_failures = len(failures)

    def snapshot(self) -> ProgressSnapshot:
        """Freeze the counts, the running jobs and the time estimate for drawing."""
        now = self.clock()
        elapsed = now - self.started if self.started is not None else 0.0
        if self._pool is None:  # no pool yet: nothing counted
            return ProgressSnapshot(self.label, (), 0, 0, 0, 0, (), 0, (), 0, elapsed, None, now)
        stats = self._pool.statistics()
        self.refresh()
        failed_by_group: dict[str, int] = {}
        for failure in self.failures:
            failed_by_group[failure.group] = failed_by_group.get(failure.group, 0) + 1
        groups = [
            GroupProgress(display_name(sub.name), sub.total, sub.done,
                          failed_by_group.get(display_name(sub.name), 0))
            for sub in stats.submitters
        ]
        other_total = stats.total - sum(g.total for g in groups)
        if other_total > 0:
            other_done = stats.done - sum(g.ended for g in groups)
            groups.append(GroupProgress("other jobs", other_total, other_done, 0))
        running = [
            RunningJob(job.name, self._names(job), job.rank, job.started_at)
            for job in stats.running[: self.max_running]
        ]
        eta = per_job = None
        if stats.ran:
            # Work left: the jobs not ended at the mean measured duration, minus what
            # the running ones did already; spread over the ranks.
            per_job = stats.busy / stats.ran
            left = (stats.total - stats.done) * per_job - sum(
                min(max(now - job.started_at, 0.0), per_job) for job in stats.running
            )
            eta = max(left, 0.0) / max(stats.ranks, 1)
        return ProgressSnapshot(
            label=self.label,
            groups=tuple(groups),
            total=stats.total,
            ended=stats.done,
            failed=stats.failed,
            cancelled=stats.cancelled,
            running=tuple(running),
            n_running=len(stats.running),
            failures=tuple(self.failures[-self.max_failures :]) if self.max_failures else (),
            n_failures=len(self.failures),
            elapsed=elapsed,
            eta=eta,
            now=now,
            mean=per_job,
            aborted=max(stats.done - stats.succeeded - stats.failed - stats.cancelled, 0),
        )

    def scheduling(self) -> bool:
        """Whether the followed pool is still adding jobs in the background."""
        pool = self._pool
        return pool is not None and pool.statistics().scheduling


class StatsListener:
    """Base of the displays: counts each event under the stats lock and lets the
    display react (:meth:`_react`, outside the lock) only when something changed (a
    failure, a phase, the pool status) or its next due time (:attr:`_due`) passed.

    In a real pool it asks for no job events (``job_events = False``): it follows the
    pool that sends it events (``event.pool``) and reads ``pool.statistics()`` when it
    draws, so a pool of a million tiny jobs pays nothing per job for its display.
    """

    job_events = False

    def __init__(self, clock: Clock = time.time):
        self.stats = ProgressStats(clock)
        self._due = 0.0  # clock time of the next periodic reaction (inf: none)
        self._seen = 0  # stats.changes at the last reaction

    def __call__(self, event: Any) -> None:
        job = event.job
        if job is not None and job.status is _QUEUED:
            return  # nothing to count (its JOB_ADDED came first), so skip the lock
        stats = self.stats
        with stats.lock:
            stats.update(event)
            pool = stats.pool
            if pool is not None and event.reason is _PING:
                stats.refresh()
            if stats.changes == self._seen and stats.clock() < self._due:
                return
            self._seen = stats.changes
        self._react(event)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        """Begin showing progress (entering the listener does this)."""

    def stop(self) -> None:
        """Stop showing progress (exiting the listener does this)."""

    def snapshot(self) -> ProgressSnapshot:
        """The current counts, for drawing (thread-safe)."""
        with self.stats.lock:
            return self.stats.snapshot()

    def _react(self, event: Any) -> None:
        raise NotImplementedError
