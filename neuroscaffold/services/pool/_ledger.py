"""The pool's ledger: every job, its state, its dependencies and the counts, on the main
rank. A :class:`Ledger` is a collaborator the :class:`JobPool` holds (composition, not a
mixin): it owns its state, and nothing else reads or writes it but through the methods
below.

Who calls what::

    JobPool.queue ──add()──▶ Ledger ◀──take_ready()/put_back()── dispatcher
    other threads ──push()─▶ incoming ──drain_incoming()──▶ (main thread)
    dispatcher ──started() / finished() / unsent() / dropped()──▶ job states, events
    pool, dispatcher ──broken(reason)──▶ every unfinished job ABORTED
    Ledger ──Notifier.job(reason, job, old)──▶ listeners      (events, main thread)
    Ledger ──freed / drain_requested / pending cancels──▶ dispatcher (polled, no hooks)

Every job status write goes through :meth:`Ledger._move`, which checks the transition
table of ``_status`` (or its batch form :meth:`Ledger._move_all`, for the results of a
batch of jobs: the same table, checked once per batch). All methods but :meth:`push`,
:meth:`add` and the read-only properties run in the pool's main thread only.
"""

from __future__ import annotations

import threading
from collections import deque
from threading import get_ident
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from ...exceptions import (
    InvalidStateError,
    JobCancelledError,
    JobPoolError,
    PoolInterrupted,
    WorkflowError,
)
from . import _cache
from ._job import Job, _DepGroup
from ._protocol import Cause, Summary
from ._status import JobStatus, PoolProgressReason

_PENDING = JobStatus.PENDING
_QUEUED = JobStatus.QUEUED
_RUNNING = JobStatus.RUNNING
_SUCCESS = JobStatus.SUCCESS
_FAILED = JobStatus.FAILED
_CANCELLED = JobStatus.CANCELLED
_ABORTED = JobStatus.ABORTED
_JOB_ADDED = PoolProgressReason.JOB_ADDED
_JOB_CHANGE = PoolProgressReason.JOB_STATUS_CHANGE
_GROUP_THRESHOLD = 8  # dependency lists at least this long are shared as one group


class Notifier(Protocol):
    """Where the ledger's job events go (the pool's listeners)."""

    active: bool  #: whether anyone listens to job events (the hot path checks only this)

    def job(self, reason: PoolProgressReason, job: Job, old: JobStatus | None) -> bool:
        """Deliver a job event; returns whether a listener handled it."""
        ...


# What other threads hand to the main thread, in order (``push``/``drain_incoming``).
class NewJob(NamedTuple):
    job: Job


class CancelRequest(NamedTuple):
    job: Job
    reason: str | None


class Hold(NamedTuple):
    node: Any  # a node is being scheduled: its pool_cache must not be freed yet


class Release(NamedTuple):
    node: Any  # its scheduler returned


class Ledger:
    """Jobs, their states and dependencies, and the counts progress reads (main rank).

    Args:
        notifier: receives the job events.
        fail_fast: cancel everything not started after the first unhandled failure.
        cache: this rank's ``pool_cache`` store, freed per node as its jobs end.
        pool_ref: the (weak) reference to the pool that jobs keep.
    """

    def __init__(
        self,
        notifier: Notifier,
        fail_fast: bool,
        cache: _cache._CacheStore,
        pool_ref: Callable[[], Any],
    ):
        self._notifier = notifier
        self._fail_fast_on = fail_fast
        self._cache = cache
        self._pool_ref = pool_ref
        self.main_thread = threading.get_ident()
        self.lock = threading.Lock()  # job creation and the incoming queue, across threads
        self.wake = threading.Event()  # set when something is pushed
        self.jobs: list[Job] = []
        self.executing = False  # frees pool_cache values only while executing
        self._incoming: deque = deque()
        self._ready: deque[Job] = deque()
        self._submissions: dict[int, list[Job]] = {}
        self._submission_views: dict[int, tuple[Job, ...]] = {}
        self._function_views: dict[int, tuple[int, Any, tuple[Job, ...]]] = {}
        self._submitters: dict[int, Any] = {}
        self._unfinished_by_submitter: dict[int, int] = {}
        self._done_by_submitter: dict[int, int] = {}
        self._groups: dict[int, tuple[Sequence, _DepGroup, int]] = {}
        # Counts, kept so that statistics never scan the jobs.
        self.unfinished = 0
        self.registered = 0
        self.cancelled = 0
        self.aborted = 0
        self.busy = 0.0
        self.ran = 0
        self.running: dict[int, Job] = {}  # started, not ended, in start order
        self.failures: list[Job] = []
        # How the run goes.
        self.failed_fast: Job | None = None
        self.broken_reason: str | None = None
        self.interrupted: tuple[int | None, str] | None = None
        self.scheduling_errors: list[BaseException] = []
        # What the dispatcher polls (instead of hooks patched onto the pool).
        self.freed: list = []  # node keys whose pool_cache the other ranks must free
        self.drain_requested = False  # fail_fast: ranks drop the jobs they hold
        self._cancel_sent: list[Job] = []  # cancelled after being sent
        self._cancel_reasons: dict[int, tuple] = {}

    # --- submission (any thread) ----------------------------------------------------

    def add(self, fn, args, kwargs, context, submitter, deps, register: bool) -> Job:
        """Create a job; register it now (main thread) or hand it to the main thread."""
        with self.lock:
            jobs = self.jobs
            job = Job(self._pool_ref, len(jobs), fn, args, kwargs, context, submitter, deps)
            jobs.append(job)
            if submitter is not None:
                key = id(submitter)
                self._submitters[key] = submitter
                self._submissions.setdefault(key, []).append(job)
                self._submission_views.pop(key, None)
            if register and (self._incoming or get_ident() != self.main_thread):
                # In the same critical section as the job list: a listed job is
                # registered or in the incoming queue, never in between (issue 6).
                self._incoming.append(NewJob(job))
                self.wake.set()
                return job
        if register:
            self._register(job)
        return job

    def push(self, item: tuple) -> None:
        """Hand ``item`` (a :class:`CancelRequest`, :class:`Hold`, :class:`Release`)
        to the main thread."""
        with self.lock:
            self._incoming.append(item)
        self.wake.set()

    def has_incoming(self) -> bool:
        return bool(self._incoming)

    def incoming_jobs(self) -> list[Job]:
        """Jobs created but not registered yet (a snapshot, under the lock)."""
        with self.lock:
            items = list(self._incoming)
        return [item.job for item in items if item.__class__ is NewJob]

    def submissions_of(self, submitter: Any) -> tuple[Job, ...]:
        """The jobs ``submitter`` queued (a function: the jobs of that function that
        named no other submitter), in order; the same tuple until more are queued."""
        key = id(submitter)
        with self.lock:
            view = self._submission_views.get(key)
            if view is None and key in self._submissions:
                view = tuple(self._submissions[key])
                self._submission_views[key] = view
            if view is not None:
                return view
            count = len(self.jobs)
            cached = self._function_views.get(key)
            if cached is not None and cached[0] == count and cached[1] is submitter:
                return cached[2]
            view = tuple(job for job in self.jobs if job._submitter is None and job._fn is submitter)
            self._function_views[key] = (count, submitter, view)
            return view

    def submitter_counts(self) -> list[tuple[Any, int, int]]:
        """``(submitter, submitted, ended)`` per submitter, in order of first submission."""
        done = self._done_by_submitter.copy()
        with self.lock:
            return [
                (self._submitters[key], len(jobs), done.get(key, 0))
                for key, jobs in list(self._submissions.items())
            ]

    def required_submitters(self) -> list[Any]:
        """Submitters with unfinished jobs (their ``pool_cache`` is still needed)."""
        return [self._submitters[key] for key, count in self._unfinished_by_submitter.items() if count > 0]

    # --- the main thread ----------------------------------------------------------------

    def drain_incoming(self) -> bool:
        """Take in what other threads pushed; returns whether there was anything."""
        incoming = self._incoming
        if not incoming:
            return False
        while incoming:
            item = incoming.popleft()
            cls = item.__class__
            if cls is NewJob:
                self._register(item.job)
            elif cls is CancelRequest:
                if item.job.status is _PENDING or item.job.status is _QUEUED:
                    self.cancel(item.job, item.reason)
            elif cls is Hold:
                key = id(item.node)
                self._submitters[key] = item.node
                self._unfinished_by_submitter[key] = self._unfinished_by_submitter.get(key, 0) + 1
            else:
                self._count_down(id(item.node))
        return True

    def _move(self, job: Job, new: JobStatus) -> JobStatus:
        """The one place a job's status is written: checks the transition table."""
        old = job.status
        if new not in old._next:  # _TRANSITIONS[old], without hashing (see _status)
            raise InvalidStateError(f"{job.name}: {old.value} -> {new.value}")
        job.status = new
        return old

    def _move_all(self, jobs: Sequence[Job], old: JobStatus, new: JobStatus) -> None:
        """:meth:`_move` for many jobs, all in status ``old``: the transition table is
        checked once for the batch, each job's status before it is written."""
        if new not in old._next:
            raise InvalidStateError(f"{len(jobs)} jobs: {old.value} -> {new.value}")
        for job in jobs:
            if job.status is not old:
                raise InvalidStateError(f"{job.name}: {job.status.value} -> {new.value}")
            job.status = new

    def take_ready(self, count: int) -> list[Job]:
        """Up to ``count`` jobs ready to run, in order."""
        ready = self._ready
        jobs: list[Job] = []
        while ready and len(jobs) < count:
            job = ready.popleft()
            if job.status is _QUEUED:
                jobs.append(job)
        return jobs

    def peek_ready(self) -> Job | None:
        return self._ready[0] if self._ready else None

    def put_back(self, jobs: Sequence[Job]) -> None:
        """Jobs taken (or taken back from a rank) that will run later, first in line."""
        self._ready.extendleft(reversed(jobs))

    def ready_count(self) -> int:
        return len(self._ready)

    def _register(self, job: Job) -> None:
        self.registered += 1
        self.unfinished += 1
        if job._submitter is not None:
            key = id(job._submitter)
            self._unfinished_by_submitter[key] = self._unfinished_by_submitter.get(key, 0) + 1
        failed = self._link(job, job.deps) if job.deps else None
        notifier = self._notifier
        listening = notifier.active
        if listening:
            notifier.job(_JOB_ADDED, job, None)
        if failed is not None:
            self._cancel_one(job, self._dependency_error(job, failed), listening)
            self._cancel_dependents(job, failed)
        elif self.failed_fast is not None or self.broken_reason is not None:
            self._cancel_one(job, self._fail_fast_error(job), listening)
        elif job._waiting == 0:
            self._move(job, _QUEUED)
            if listening:
                notifier.job(_JOB_CHANGE, job, _PENDING)
            self._ready.append(job)

    def _link(self, job: Job, deps: Sequence[Job]):
        """Wire ``job`` after ``deps``; returns a failed dependency, if there is one."""
        if len(deps) >= _GROUP_THRESHOLD:
            entry = self._groups.get(id(deps))
            if entry is None or entry[0] is not deps or entry[2] != len(deps):
                group = _DepGroup(deps)
                for dep in deps:
                    failed = self._add_dep(group, dep)
                    if failed is not None and group.failed_by is None:
                        group.failed_by = failed
                self._groups[id(deps)] = (deps, group, len(deps))
            else:
                group = entry[1]
            return self._add_dep(job, group)
        for dep in deps:
            failed = self._add_dep(job, dep)
            if failed is not None:
                return failed
        return None

    @staticmethod
    def _add_dep(node, dep):
        if dep.__class__ is _DepGroup:
            if dep.failed_by is not None:
                return dep.failed_by
            if dep._waiting == 0:
                return None
        else:
            status = dep.status
            if status is _SUCCESS:
                return None
            if status is _FAILED or status is _CANCELLED or status is _ABORTED:
                return dep
        node._waiting += 1
        if dep._dependents is None:
            dep._dependents = [node]
        else:
            dep._dependents.append(node)
        return None

    def started(self, job: Job, rank: int, t0: float) -> None:
        """A rank started ``job`` (QUEUED -> RUNNING)."""
        if job.status is not _QUEUED:
            return  # cancelled or aborted meanwhile: its outcome is ignored
        self._move(job, _RUNNING)
        job.rank = rank
        job.started_at = t0
        self.running[job.id] = job
        notifier = self._notifier
        if notifier.active:
            notifier.job(_JOB_CHANGE, job, _QUEUED)

    def finished(self, job: Job, ok: bool, value: Any, rank: int, t0: float, t1: float) -> None:
        """A rank ended ``job``: record the outcome, release or cancel its dependents."""
        status = job.status
        notifier = self._notifier
        if status is _RUNNING:
            del self.running[job.id]
        elif status is _QUEUED:
            # Started and ended in one report: RUNNING is only an event, never listed.
            self._move(job, _RUNNING)
            job.rank = rank
            job.started_at = t0
            if notifier.active:
                notifier.job(_JOB_CHANGE, job, _QUEUED)
        else:
            return  # cancelled or aborted meanwhile
        job.ended_at = t1
        self.busy += t1 - t0
        self.ran += 1
        job._args = job._kwargs = None  # the inputs are no longer needed: free them
        if ok:
            # The common case, with _ended inline (it runs for every job).
            job._result = value
            self._move(job, _SUCCESS)
            self.unfinished -= 1
            if job._submitter is not None:
                self._submitter_ended(job._submitter)
            if notifier.active:
                notifier.job(_JOB_CHANGE, job, _RUNNING)
            if job._dependents is not None:
                self._release_dependents(job)
            return
        job.error = value
        try:
            value.add_note(f"raised by job {job.name!r} on rank {rank}")
        except Exception:
            pass
        self._move(job, _FAILED)
        self.failures.append(job)
        self._ended(job)
        handled = False
        if notifier.active:
            handled = notifier.job(_JOB_CHANGE, job, _RUNNING)
        job._handled = bool(handled)
        if job._dependents is not None:
            self._cancel_dependents(job, job)
        if self._fail_fast_on and not handled and self.failed_fast is None:
            self.failed_fast = job
            self._fail_fast()

    def succeeded(self, ended: list, rank: int) -> None:
        """Jobs that returned on ``rank``, ``(job, value, t0, t1)`` each, in order:
        :meth:`finished` for a batch, each transition checked once for all of them."""
        if self._notifier.active:  # events, one job at a time
            for job, value, t0, t1 in ended:
                self.finished(job, True, value, rank, t0, t1)
            return
        running = self.running
        started = []  # started and ended in one report: RUNNING only on the way
        live = []
        for item in ended:
            job = item[0]
            status = job.status
            if status is _RUNNING:
                del running[job.id]
            elif status is _QUEUED:
                started.append(job)
                job.rank = rank
                job.started_at = item[2]
            else:
                continue  # cancelled or aborted meanwhile
            live.append(item)
        if started:
            self._move_all(started, _QUEUED, _RUNNING)
        self._move_all([item[0] for item in live], _RUNNING, _SUCCESS)
        busy = 0.0
        for job, value, t0, t1 in live:
            job.ended_at = t1
            busy += t1 - t0
            job._args = job._kwargs = None  # the inputs are no longer needed: free them
            job._result = value
            if job._submitter is not None:
                self._submitter_ended(job._submitter)
            if job._dependents is not None:
                self._release_dependents(job)
        self.busy += busy
        self.ran += len(live)
        self.unfinished -= len(live)

    def unsent(self, job: Job, error: BaseException) -> None:
        """``job`` could not travel to a rank: it fails without running."""
        if job.status is not _QUEUED:
            return
        old = self._move(job, _FAILED)
        job.error = error
        job._args = job._kwargs = None
        self.failures.append(job)
        self._ended(job)
        if self._notifier.active:
            self._notifier.job(_JOB_CHANGE, job, old)
        if job._dependents is not None:
            self._cancel_dependents(job, job)
        if self._fail_fast_on and self.failed_fast is None:
            self.failed_fast = job
            self._fail_fast()

    def dropped(self, job: Job) -> None:
        """A rank dropped ``job`` unstarted (cancel or fail-fast): it is CANCELLED."""
        if job.status is not _QUEUED:
            return
        reason = self._cancel_reasons.pop(job.id, None)
        error = self._cancel_error(job, reason[0]) if reason is not None else self._fail_fast_error(job)
        self._cancel_one(job, error, self._notifier.active)
        if job._dependents is not None:
            self._cancel_dependents(job, job)

    def recalled(self, jobs: Sequence[Job]) -> None:
        """Jobs a rank gave back unstarted: ready again, in order, first in line; or
        CANCELLED when a cancel (or fail-fast) came for them meanwhile."""
        back = []
        for job in jobs:
            if job.status is not _QUEUED:
                continue
            job._waiting = 0
            if job.id in self._cancel_reasons or self.drain_requested:
                self.dropped(job)
            else:
                back.append(job)
        if back:
            self.put_back(back)

    def take_cancels(self) -> list[Job]:
        """Jobs cancelled after being sent to a rank: the dispatcher asks their rank."""
        jobs, self._cancel_sent = self._cancel_sent, []
        return jobs

    def has_cancels(self) -> bool:
        return bool(self._cancel_sent)

    def _ended(self, job: Job) -> None:
        """Count ``job`` as ended (any terminal status): progress and cache counts."""
        self.unfinished -= 1
        if job._submitter is not None:
            self._submitter_ended(job._submitter)

    def _submitter_ended(self, submitter: Any) -> None:
        key = id(submitter)
        done = self._done_by_submitter
        done[key] = done.get(key, 0) + 1
        self._count_down(key)

    def _count_down(self, key: int) -> None:
        counts = self._unfinished_by_submitter
        left = counts[key] - 1
        if left:
            counts[key] = left
            return
        del counts[key]
        if self.executing:
            submitter = self._submitters[key]
            if _cache.cache_methods(type(submitter)):
                node_id = _cache.node_key(submitter)
                self._cache.free(node_id)
                self.freed.append(node_id)

    def _release_dependents(self, job: Job) -> None:
        todo = deque(job._dependents or ())
        job._dependents = None
        notifier = self._notifier
        listening = notifier.active
        ready = self._ready
        while todo:
            node = todo.popleft()
            node._waiting -= 1
            if node._waiting:
                continue
            if node.__class__ is _DepGroup:
                if node._dependents is not None:
                    todo.extend(node._dependents)
                    node._dependents = None
            elif node.status is _PENDING:
                if self.failed_fast is not None:
                    self._cancel_one(node, self._fail_fast_error(node), listening)
                    continue
                self._move(node, _QUEUED)
                if listening:
                    notifier.job(_JOB_CHANGE, node, _PENDING)
                ready.append(node)

    def _cancel_dependents(self, job: Job, root: Job) -> None:
        todo = deque(job._dependents or ())
        job._dependents = None
        listening = self._notifier.active
        while todo:
            node = todo.popleft()
            if node.__class__ is _DepGroup:
                if node.failed_by is None:
                    node.failed_by = root
                    todo.extend(node._dependents or ())
                    node._dependents = None
            elif node.status is _PENDING:
                self._cancel_one(node, self._dependency_error(node, root), listening)
                todo.extend(node._dependents or ())
                node._dependents = None

    def _cancel_one(self, job: Job, error: BaseException, listening: bool) -> None:
        old = self._move(job, _CANCELLED)
        job.error = error
        job._args = job._kwargs = None
        self.cancelled += 1
        self._ended(job)
        if listening:
            self._notifier.job(_JOB_CHANGE, job, old)

    def cancel(self, job: Job, reason: str | None) -> bool:
        """Cancel a PENDING or QUEUED job and its dependents (see :meth:`Job.cancel`)."""
        if get_ident() != self.main_thread:
            self.push(CancelRequest(job, reason))
            return True
        if job in self.incoming_jobs():
            self.drain_incoming()
        if job.status is not _PENDING and job.status is not _QUEUED:
            return False  # it ended meanwhile (e.g. a dependency failed)
        if job.status is _QUEUED and job._waiting < 0:
            # Sent to a rank: only that rank can drop it (unless it started it).
            self._cancel_reasons[job.id] = (reason,)
            self._cancel_sent.append(job)
            return True
        self._cancel_one(job, self._cancel_error(job, reason), self._notifier.active)
        self._cancel_dependents(job, job)
        return True

    @staticmethod
    def _cancel_error(job: Job, reason: str | None) -> JobCancelledError:
        return JobCancelledError(
            f"job {job.name!r} was cancelled" + (f": {reason}" if reason else "")
        )

    @staticmethod
    def _dependency_error(job: Job, root: Job) -> JobCancelledError:
        return JobCancelledError(
            f"job {job.name!r} was cancelled: its dependency {root.name!r} {root.status.value}"
        )

    def _fail_fast_error(self, job: Job) -> JobCancelledError:
        if self.broken_reason is not None:
            return JobCancelledError(
                f"job {job.name!r} was cancelled: the pool broke ({self.broken_reason})"
            )
        failed = self.failed_fast.name if self.failed_fast is not None else "?"
        return JobCancelledError(
            f"job {job.name!r} was cancelled: fail_fast after job {failed!r} failed"
        )

    def _fail_fast(self) -> None:
        """Cancel everything not started; the dispatcher drains the other ranks."""
        listening = self._notifier.active
        while self._ready:
            job = self._ready.popleft()
            if job.status is _QUEUED:
                self._cancel_one(job, self._fail_fast_error(job), listening)
        for job in self.jobs:
            if job.status is _PENDING:
                self._cancel_one(job, self._fail_fast_error(job), listening)
        self.drain_requested = True

    @property
    def stopped(self) -> bool:
        """No more jobs will be scheduled: the pool broke or failed fast."""
        return self.broken_reason is not None or self.failed_fast is not None

    def broken(self, cause: BaseException | str) -> None:
        """The pool broke (listener error, interrupt, a rank failed): every unfinished
        job is ABORTED, without events (listeners may be what broke)."""
        if isinstance(cause, PoolInterrupted) and self.interrupted is None:
            self.interrupted = (cause.rank, cause.signal_name)
        if self.broken_reason is not None:
            return
        if isinstance(cause, BaseException):
            reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        else:
            reason = cause
        self.broken_reason = reason
        for job in self.jobs:
            if not job.done():
                self._move(job, _ABORTED)
                job.error = JobPoolError(f"job {job.name!r} was aborted: {reason}")
                job._args = job._kwargs = None
                self.aborted += 1
        self.unfinished = 0
        self.running.clear()

    # --- the end ------------------------------------------------------------------------

    def workflow_error(self) -> WorkflowError | None:
        failed = [job for job in self.jobs if job.status is _FAILED and not job._handled]
        errors = [job.error for job in failed] + list(self.scheduling_errors)
        if not errors:
            return None
        cancelled = sum(1 for job in self.jobs if job.status is _CANCELLED)
        parts = []
        if failed:
            parts.append(f"{len(failed)} of {len(self.jobs)} jobs failed")
        if self.scheduling_errors:
            parts.append(f"{len(self.scheduling_errors)} nodes failed to schedule")
        if cancelled:
            parts.append(f"{cancelled} jobs cancelled")
        lines = [self._describe_failure(job) for job in failed[:20]]
        lines += [str(err) for err in self.scheduling_errors[:20]]
        if len(failed) > 20:
            lines.append(f"... and {len(failed) - 20} more failed jobs")
        message = ", ".join(parts) + ":\n  " + "\n  ".join(lines)
        return WorkflowError(message, errors)

    @staticmethod
    def _describe_failure(job: Job) -> str:
        where = f" on rank {job.rank}" if job.rank is not None else ""
        return f"job {job.name!r} failed{where}: {type(job.error).__name__}: {job.error}"

    def summary(self) -> Summary:
        """What STOP takes to the other ranks (``message`` None: all went well)."""
        if self.broken_reason is not None:
            text = f"the pool broke on the main rank: {self.broken_reason}"
            return Summary(text, (text,), self.interrupted)
        error = self.workflow_error()
        if error is None:
            return Summary()
        failed = [job for job in self.jobs if job.status is _FAILED and not job._handled]
        lines = [self._describe_failure(job) for job in failed]
        lines += [str(err) for err in self.scheduling_errors]
        causes = [Cause.of(job.error) for job in failed]
        causes += [Cause.ERROR] * len(self.scheduling_errors)
        return Summary(error.message, tuple(lines), causes=tuple(causes))
