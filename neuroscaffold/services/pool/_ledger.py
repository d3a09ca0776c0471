"""The pool's ledger: job states, dependencies, events and counts, on the main rank.

Every job state change happens here, in the pool's main thread: registration (with
dependency groups), start and end of a job, the cascade of cancellations after a
failure, fail-fast and breaking the pool. :class:`JobPool` inherits it and owns the
state it works on (set up in ``JobPool.__init__``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Sequence

from ...exceptions import (
    InvalidStateError,
    JobCancelledError,
    JobPoolError,
    PoolInterrupted,
    WorkflowError,
)
from . import _cache
from ._events import PoolProgress
from ._job import Job, _DepGroup
from ._protocol import Summary
from ._status import _POOL_TRANSITIONS, JobStatus, PoolProgressReason, PoolStatus

_PENDING = JobStatus.PENDING
_QUEUED = JobStatus.QUEUED
_RUNNING = JobStatus.RUNNING
_SUCCESS = JobStatus.SUCCESS
_FAILED = JobStatus.FAILED
_CANCELLED = JobStatus.CANCELLED
_ABORTED = JobStatus.ABORTED
_JOB_ADDED = PoolProgressReason.JOB_ADDED
_JOB_CHANGE = PoolProgressReason.JOB_STATUS_CHANGE
_POOL_CHANGE = PoolProgressReason.POOL_STATUS_CHANGE
_GROUP_THRESHOLD = 8  # dependency lists at least this long are shared as one group


class _Ledger:
    """Bookkeeping methods of :class:`JobPool` (main rank, main thread only)."""

    def _check_open(self) -> None:
        if self._closed:
            raise JobPoolError("cannot submit jobs to a closed pool")
        if self._execute_ended:
            raise JobPoolError("cannot submit jobs after the pool was executed")

    def _set_pool_status(self, status: PoolStatus) -> None:
        if status not in _POOL_TRANSITIONS[self._status]:
            raise InvalidStateError(f"pool: {self._status.value} -> {status.value}")
        self._status = status
        self._emit_pool_status(status)

    def _event(self, reason, job=None, old=None, status=None, now=None) -> PoolProgress:
        return PoolProgress(
            reason,
            self._status if status is None else status,
            self._jobs,
            self.workflow,
            job,
            old,
            time.time() if now is None else now,
            self,
        )

    def _emit_pool_status(self, status) -> None:
        if self._listeners.any:
            self._listeners.emit(self._event(_POOL_CHANGE))

    def _missed_events(self) -> list[PoolProgress]:
        """The stream so far, rebuilt from the pool's state, for a listener added late."""
        if not self._entered:
            return []
        now = time.time()
        waiting = {id(job) for job in self._incoming_jobs()}
        scheduling = PoolStatus.SCHEDULING
        events = [self._event(_POOL_CHANGE, status=scheduling, now=now)]
        for job in list(self._jobs):
            if id(job) in waiting:
                continue
            events.append(self._event(_JOB_ADDED, job, status=scheduling, now=now))
            if job.status is not _PENDING:
                events.append(self._event(_JOB_CHANGE, job, _PENDING, now=now))
        if self._status is not scheduling:
            events.append(self._event(_POOL_CHANGE, now=now))
        return events

    def _emit_job(self, reason, job: Job, old) -> bool:
        return self._listeners.emit(
            PoolProgress(reason, self._status, self._jobs, self.workflow, job, old, time.time(), self)
        )

    def _drain_incoming(self) -> bool:
        incoming = self._incoming
        if not incoming:
            return False
        while incoming:
            item = incoming.popleft()
            kind = item[0]
            if kind == "job":
                self._register(item[1])
            elif kind == "cancel":
                if item[1].status in (_PENDING, _QUEUED):
                    self._cancel_job(item[1], item[2])
            elif kind == "hold":
                key = id(item[1])
                self._submitters[key] = item[1]
                self._unfinished_by_submitter[key] = self._unfinished_by_submitter.get(key, 0) + 1
            elif kind == "release":
                self._count_down(id(item[1]))
        return True

    def _register(self, job: Job) -> None:
        self._registered += 1
        self._unfinished += 1
        if job._submitter is not None:
            key = id(job._submitter)
            self._unfinished_by_submitter[key] = self._unfinished_by_submitter.get(key, 0) + 1
        failed = self._link(job, job.deps) if job.deps else None
        listening = self._listeners.active
        if listening:
            self._emit_job(_JOB_ADDED, job, None)
        if failed is not None:
            self._cancel_one(job, self._dependency_error(job, failed), listening)
            self._cancel_dependents(job, failed)
        elif self._failed_fast is not None or self._broken is not None:
            self._cancel_one(job, self._fail_fast_error(job), listening)
        elif job._waiting == 0:
            job.status = _QUEUED
            if listening:
                self._emit_job(_JOB_CHANGE, job, _PENDING)
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

    def _start(self, job: Job, rank: int, t0: float) -> None:
        """A rank started ``job`` (QUEUED -> RUNNING)."""
        if job.status is not _QUEUED:
            return  # cancelled meanwhile: its outcome is ignored
        job.status = _RUNNING
        job.rank = rank
        job.started_at = t0
        self._running[job.id] = job
        if self._listeners.active:
            self._emit_job(_JOB_CHANGE, job, _QUEUED)

    def _finish(self, job: Job, ok: bool, value: Any, rank: int, t0: float, t1: float) -> None:
        """A rank ended ``job``: record the outcome, release or cancel its dependents."""
        status = job.status
        if status is _QUEUED:
            # Started and ended in one report: RUNNING is only an event, never listed.
            job.status = _RUNNING
            job.rank = rank
            job.started_at = t0
            if self._listeners.active:
                self._emit_job(_JOB_CHANGE, job, _QUEUED)
        elif status is _RUNNING:
            del self._running[job.id]
        else:
            return  # cancelled or aborted meanwhile
        job.ended_at = t1
        self._busy += t1 - t0
        self._ran += 1
        job._args = job._kwargs = None  # the inputs are no longer needed: free them
        if ok:
            job._result = value
            job.status = _SUCCESS
        else:
            job.error = value
            try:
                value.add_note(f"raised by job {job.name!r} on rank {rank}")
            except Exception:
                pass
            job.status = _FAILED
            self._failures.append(job)
        self._ended(job)
        handled = False
        if self._listeners.active:
            handled = self._emit_job(_JOB_CHANGE, job, _RUNNING)
        if ok:
            if job._dependents is not None:
                self._release_dependents(job)
        else:
            job._handled = bool(handled)
            if job._dependents is not None:
                self._cancel_dependents(job, job)
            if self.fail_fast and not handled and self._failed_fast is None:
                self._failed_fast = job
                self._fail_fast()

    def _fail_job_unsent(self, job: Job, error: BaseException) -> None:
        """``job`` could not be sent to a rank: it fails without running."""
        if job.status is not _QUEUED:
            return
        self._finish_without_run(job, _FAILED, error)
        if job._dependents is not None:
            self._cancel_dependents(job, job)
        if self.fail_fast and self._failed_fast is None:
            self._failed_fast = job
            self._fail_fast()

    def _finish_without_run(self, job: Job, status: JobStatus, error: BaseException) -> None:
        old = job._transition(status)
        job.error = error
        job._args = job._kwargs = None
        if status is _FAILED:
            self._failures.append(job)
        self._ended(job)
        if self._listeners.active and status is not _ABORTED:
            self._emit_job(_JOB_CHANGE, job, old)

    def _ended(self, job: Job) -> None:
        """Count ``job`` as ended (any terminal status): progress and cache counts."""
        self._unfinished -= 1
        submitter = job._submitter
        if submitter is not None:
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
        if self._status is PoolStatus.EXECUTING:
            submitter = self._submitters[key]
            if _cache.cache_methods(type(submitter)):
                node_id = _cache.node_key(submitter)
                self._cache.free(node_id)
                self._on_cache_freed(node_id)

    def _on_cache_freed(self, node_id) -> None:
        """Hook for the dispatcher: tell the other ranks to free ``node_id`` too."""

    def _release_dependents(self, job: Job) -> None:
        todo = deque(job._dependents)
        job._dependents = None
        listening = self._listeners.active
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
                if self._failed_fast is not None:
                    self._cancel_one(node, self._fail_fast_error(node), listening)
                    continue
                node.status = _QUEUED
                if listening:
                    self._emit_job(_JOB_CHANGE, node, _PENDING)
                ready.append(node)

    def _cancel_dependents(self, job: Job, root: Job) -> None:
        todo = deque(job._dependents or ())
        job._dependents = None
        listening = self._listeners.active
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
        old = job._transition(_CANCELLED)
        job.error = error
        job._args = job._kwargs = None
        self._cancelled += 1
        self._ended(job)
        if listening:
            self._emit_job(_JOB_CHANGE, job, old)

    def _cancel_job(self, job: Job, reason: str | None) -> bool:
        """Cancel a PENDING or QUEUED job and its dependents (see :meth:`Job.cancel`)."""
        if not self.is_main():
            job.status = _CANCELLED  # never runs: only the main rank's jobs do
            return True
        if threading.get_ident() != self._main_thread:
            self._push_incoming(("cancel", job, reason))
            return True
        if job in self._incoming_jobs():
            self._drain_incoming()
        if job.status is not _PENDING and job.status is not _QUEUED:
            return False  # it ended meanwhile (e.g. a dependency failed)
        if job.status is _QUEUED and job._waiting < 0:
            # Sent to a rank: only that rank can drop it (unless it started it).
            self._cancel_reasons[job.id] = (reason,)
            self._cancel_sent.append(job)
            return True
        self._cancel_one(job, self._cancel_error(job, reason), self._listeners.active)
        self._cancel_dependents(job, job)
        return True

    @staticmethod
    def _cancel_error(job: Job, reason: str | None) -> JobCancelledError:
        return JobCancelledError(
            f"job {job.name!r} was cancelled" + (f": {reason}" if reason else "")
        )

    def _push_incoming(self, item: tuple) -> None:
        """Hand ``item`` to the main thread (any thread; the main thread drains it)."""
        with self._incoming_lock:
            self._incoming.append(item)
        self._wake.set()

    def _incoming_jobs(self) -> list[Job]:
        # A snapshot under the lock: other threads append while this runs (issue 6).
        with self._incoming_lock:
            items = list(self._incoming)
        return [item[1] for item in items if item[0] == "job"]

    @staticmethod
    def _dependency_error(job: Job, root: Job) -> JobCancelledError:
        return JobCancelledError(
            f"job {job.name!r} was cancelled: its dependency {root.name!r} {root.status.value}"
        )

    def _fail_fast_error(self, job: Job) -> JobCancelledError:
        if self._broken is not None:
            return JobCancelledError(f"job {job.name!r} was cancelled: the pool broke ({self._broken})")
        return JobCancelledError(
            f"job {job.name!r} was cancelled: fail_fast after job {self._failed_fast.name!r} failed"
        )

    def _fail_fast(self) -> None:
        """Cancel everything not started; the dispatcher drains the other ranks."""
        self._stop_scheduling = True
        listening = self._listeners.active
        while self._ready:
            job = self._ready.popleft()
            if job.status is _QUEUED:
                self._cancel_one(job, self._fail_fast_error(job), listening)
        for job in self._jobs:
            if job.status is _PENDING:
                self._cancel_one(job, self._fail_fast_error(job), listening)
        self._on_fail_fast()

    def _on_fail_fast(self) -> None:
        """Hook for the dispatcher: drop the jobs sent but not started."""

    def _break_for(self, exc: BaseException) -> None:
        """Break the pool because ``exc`` was raised (an interrupt is remembered)."""
        if isinstance(exc, PoolInterrupted) and self._interrupted is None:
            self._interrupted = (exc.rank, exc.signal_name)
        self._break(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _break(self, reason: str) -> None:
        """The pool broke (listener error, interrupt): every unfinished job is ABORTED."""
        if self._broken is not None:
            return
        self._broken = reason
        self._stop_scheduling = True
        for job in self._jobs:
            if not job.done():
                job.status = _ABORTED
                job.error = JobPoolError(f"job {job.name!r} was aborted: {reason}")
                job._args = job._kwargs = None
                self._aborted += 1
        self._unfinished = 0
        self._running.clear()

    def _workflow_error(self) -> WorkflowError | None:
        failed = [job for job in self._jobs if job.status is _FAILED and not job._handled]
        errors = [job.error for job in failed] + list(self._scheduling_errors)
        if not errors:
            return None
        cancelled = sum(1 for job in self._jobs if job.status is _CANCELLED)
        parts = []
        if failed:
            parts.append(f"{len(failed)} of {len(self._jobs)} jobs failed")
        if self._scheduling_errors:
            parts.append(f"{len(self._scheduling_errors)} nodes failed to schedule")
        if cancelled:
            parts.append(f"{cancelled} jobs cancelled")
        lines = [self._describe_failure(job) for job in failed[:20]]
        lines += [str(err) for err in self._scheduling_errors[:20]]
        if len(failed) > 20:
            lines.append(f"... and {len(failed) - 20} more failed jobs")
        message = ", ".join(parts) + ":\n  " + "\n  ".join(lines)
        return WorkflowError(message, errors)

    @staticmethod
    def _describe_failure(job: Job) -> str:
        where = f" on rank {job.rank}" if job.rank is not None else ""
        return f"job {job.name!r} failed{where}: {type(job.error).__name__}: {job.error}"

    def _summary(self) -> Summary:
        """The summary STOP takes to the other ranks (``message`` None: all went well)."""
        if self._broken is not None:
            text = f"the pool broke on the main rank: {self._broken}"
            return Summary(text, (text,), self._interrupted)
        error = self._workflow_error()
        if error is None:
            return Summary()
        lines = [self._describe_failure(job) for job in self._jobs if job.status is _FAILED and not job._handled]
        lines += [str(err) for err in self._scheduling_errors]
        return Summary(error.message, tuple(lines))
