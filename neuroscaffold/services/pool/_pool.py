"""The job pool: submit jobs with dependencies, execute them on every rank.

Bookkeeping (job states, dependencies, events, cache reference counts) lives here and
runs on the main rank, in the pool's main thread only. How jobs reach a rank is the
business of ``_dispatch`` (main rank) and ``_worker`` (other ranks).
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Iterable, Sequence

from ...exceptions import (
    InvalidStateError,
    JobCancelledError,
    JobPoolError,
    JobSchedulingError,
    ListenerError,
    WorkflowError,
)
from . import _cache
from ._events import PoolProgress, PoolStatistics, SubmitterStatistics, _Listeners
from ._job import Job, JobRecord, _DepGroup, submitter_name
from ._status import _POOL_TRANSITIONS, JobStatus, PoolProgressReason, PoolStatus

__all__ = ["JobPool", "create_job_pool"]

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
# A pool makes millions of long-lived objects (jobs): with the default gen-0 threshold
# (700) the cycle collector rescans them so often that it costs more than the pool's
# own bookkeeping (measured: 1.2 us of 3.1 us per job at 1,000,000 jobs). While a pool is
# open the threshold is raised to this, and restored when it closes.
_GC_THRESHOLD = 50_000
_gc_state = {"open_pools": 0, "saved": None}
_gc_lock = threading.Lock()


def _raise_gc_threshold() -> None:
    with _gc_lock:
        if _gc_state["open_pools"] == 0:
            saved = gc.get_threshold()
            _gc_state["saved"] = saved
            if saved[0] < _GC_THRESHOLD:
                gc.set_threshold(_GC_THRESHOLD, *saved[1:])
        _gc_state["open_pools"] += 1


def _restore_gc_threshold() -> None:
    with _gc_lock:
        _gc_state["open_pools"] -= 1
        if _gc_state["open_pools"] == 0 and _gc_state["saved"] is not None:
            gc.set_threshold(*_gc_state["saved"])
            _gc_state["saved"] = None


def create_job_pool(
    network: Any,
    fail_fast: bool = False,
    quiet: bool = False,
    workflow: Any = None,
    listeners: Iterable[Callable] = (),
    *,
    main_executes: bool = True,
    comm: Any = None,
) -> "JobPool":
    """Create a pool running jobs against ``network``; collective over the ranks.

    With ``quiet=False`` the main rank shows progress (``neuroscaffold.progress``).
    ``listeners`` are added on the main rank. ``main_executes=False`` keeps the main
    rank to dispatching only (for benchmarks; it is slower).
    """
    pool = JobPool(
        network, fail_fast=fail_fast, workflow=workflow, main_executes=main_executes, comm=comm
    )
    if pool.is_main():
        if not quiet:
            from ...progress import default_listener

            pool.add_listener(default_listener(pool))
        for listener in listeners:
            pool.add_listener(listener)
    return pool


class JobPool:
    """Runs jobs on every rank, honouring dependencies, reporting progress to listeners.

    Create it on every rank (``network.create_job_pool()``) and use it as a context
    manager. Only the main rank's submissions run; every rank calls :meth:`execute`.
    """

    def __init__(
        self,
        network: Any,
        fail_fast: bool = False,
        workflow: Any = None,
        main_executes: bool = True,
        comm: Any = None,
    ):
        from .. import MPI

        self.network = network
        self.workflow = workflow
        self.fail_fast = fail_fast
        self.main_executes = main_executes
        base = comm if comm is not None else MPI.get_communicator()
        if base is not None and base.Get_size() > 1:
            from ._dispatch import duplicate

            self._comm = duplicate(base)
            self.rank: int = self._comm.Get_rank()
            self.size: int = self._comm.Get_size()
        else:
            self._comm = None
            self.rank = 0
            self.size = 1
        self._status = PoolStatus.SCHEDULING
        self._ref = weakref.ref(self)
        self._jobs: list[Job] = []
        self._lock = threading.Lock()  # guards job creation (ids, lists) across threads
        self._main_thread = threading.get_ident()
        self._incoming: deque = deque()  # ("job", Job) | ("cancel", Job, reason) | ("hold"/"release", node)
        self._wake = threading.Event()
        self._submissions: dict[int, list[Job]] = {}
        self._submission_views: dict[int, tuple[Job, ...]] = {}
        self._submitters: dict[int, Any] = {}
        self._unfinished_by_submitter: dict[int, int] = {}
        self._groups: dict[int, tuple[Sequence, _DepGroup, int]] = {}
        self._ready: deque[Job] = deque()
        self._unfinished = 0
        # Progress counts, kept so that statistics() never scans the jobs.
        self._running: dict[int, Job] = {}
        self._failures: list[Job] = []
        self._done_by_submitter: dict[int, int] = {}
        self._registered = 0
        self._cancelled = 0
        self._aborted = 0
        self._busy = 0.0
        self._ran = 0
        self._started_at: float | None = None
        self._executed = False
        self._execute_ended = False  # execute() returned or raised: no more submissions
        self._entered = False
        self._closed = False
        self._gc_raised = False
        self._broken: str | None = None
        self._failed_fast: Job | None = None
        self._scheduler_thread: threading.Thread | None = None
        self._scheduling_errors: list[BaseException] = []
        self._stop_scheduling = False
        self._tls = threading.local()
        self._listeners = _Listeners()
        self._clock = time.monotonic
        self._cache = _cache._CacheStore()

    # --- public interface ------------------------------------------------------------

    def is_main(self) -> bool:
        """Whether this is the rank that schedules (rank 0)."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """Whether more than one rank takes part."""
        return self.size > 1

    @property
    def status(self) -> PoolStatus:
        return self._status

    @property
    def jobs(self) -> list[Job]:
        """Every job submitted on this rank, in submission order."""
        return list(self._jobs)

    def submit(self, fn: Callable, *args, **kwargs) -> Job:
        """Submit ``fn(network, *args, **kwargs)`` as a job without dependencies."""
        return self.queue(fn, args, kwargs)

    def queue(
        self,
        fn: Callable,
        args: Sequence = (),
        kwargs: dict | None = None,
        deps: Sequence[Job] | None = None,
        submitter: Any = None,
        **context,
    ) -> Job:
        """Queue ``fn(network, *args, **kwargs)`` to run after every job in ``deps``.

        ``context`` is free information shown in progress (``name=`` names the job).
        Pass the same sequence object as ``deps`` to many jobs to share it cheaply.
        """
        self._check_open()
        if self._status is PoolStatus.EXECUTING and not self.is_main():
            # A job on this rank tried to queue more: they would silently never run.
            raise JobPoolError(
                f"cannot queue jobs on rank {self.rank} while the pool executes: "
                "jobs are queued on the main rank (rank 0)"
            )
        if not callable(fn):
            raise TypeError(f"job function must be callable, got {fn!r}")
        if submitter is None:
            submitter = getattr(self._tls, "submitter", None)
            if submitter is None:
                owner = getattr(fn, "__self__", None)
                if owner is not None and hasattr(owner, "get_node_name"):
                    submitter = owner
        if deps:
            for dep in deps:
                if not isinstance(dep, Job) or dep._pool is not self._ref:
                    raise JobPoolError(f"dependency {dep!r} is not a job of this pool")
        else:
            deps = ()
        args = tuple(args) if args else ()
        with self._lock:
            job = Job(self._ref, len(self._jobs), fn, args, kwargs or None, context, submitter, deps)
            self._jobs.append(job)
            if submitter is not None:
                key = id(submitter)
                self._submitters[key] = submitter
                self._submissions.setdefault(key, []).append(job)
                self._submission_views.pop(key, None)
        if not self.is_main():
            return job  # only the main rank's jobs run (the seed submits on every rank)
        if threading.get_ident() == self._main_thread and not self._incoming:
            self._register(job)
        else:
            self._incoming.append(("job", job))
            self._wake.set()
        return job

    def schedule(self, nodes: Iterable[Any], scheduler: Callable[[Any], Any] | None = None):
        """On the main rank, queue each node's jobs in a background thread, in order.

        ``scheduler(node)`` defaults to ``node.queue(pool)``. A node whose
        ``depends_on`` holds a node that failed to schedule is skipped and reported.
        Other ranks ignore the call. Execution may already run meanwhile.
        """
        self._check_open()
        if not self.is_main():
            return
        if self._scheduler_thread is not None and self._scheduler_thread.is_alive():
            raise JobPoolError("a schedule() call is still running in this pool")
        nodes = list(nodes)
        if scheduler is None:
            scheduler = lambda node: node.queue(self)  # noqa: E731
        self._scheduler_thread = threading.Thread(
            target=self._run_schedulers,
            args=(nodes, scheduler),
            name="neuroscaffold-scheduler",
            daemon=True,
        )
        self._scheduler_thread.start()

    def execute(self, return_results: bool = False) -> dict[Job, Any] | None:
        """Run every job; collective: every rank calls it, it returns when all ended.

        Raises :class:`WorkflowError` on every rank if a job or scheduler failed. On the
        main rank with ``return_results=True`` returns ``{job: result}`` of the jobs that
        succeeded.
        """
        if self._closed:
            raise JobPoolError("cannot execute a closed pool")
        if self._executed:
            raise JobPoolError("this pool was already executed; create a new pool")
        if self.is_main():
            self._drain_incoming()  # jobs queued so far count from the first event on
        # Status first: if a listener raises on EXECUTING, the pool counts as not
        # executed and __exit__ releases the other ranks.
        self._set_pool_status(PoolStatus.EXECUTING)
        self._executed = True
        self._started_at = time.time()
        try:
            return self._execute(return_results)
        finally:
            self._execute_ended = True

    def _execute(self, return_results: bool) -> dict[Job, Any] | None:
        from . import _dispatch, _worker

        _cache.activate(self._cache)
        if not self.is_main():
            summary = _worker.worker_execute(self)
            if summary is not None:
                message, lines = summary
                raise WorkflowError(message, [JobPoolError(line) for line in lines])
            return {} if return_results else None
        try:
            if self.parallel:
                _dispatch.main_execute(self)
            else:
                _dispatch.serial_execute(self)
        except BaseException as exc:
            self._break(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            raise
        if self._scheduler_thread is not None:
            self._scheduler_thread.join()
        error = self._workflow_error()
        if error is not None:
            raise error
        if return_results:
            return {job: job._result for job in self._jobs if job.status is _SUCCESS}
        return None

    def add_listener(self, listener: Callable[[PoolProgress], Any], max_wait: float | None = None):
        """Call ``listener(progress)`` for every event of this pool (main rank only).

        Events from before the call are replayed to it. ``max_wait``: during execute, a
        MAX_TIMEOUT_PING comes when no event came for that many seconds.
        """
        if not self.is_main():
            return
        self._listeners.add(listener, max_wait, self._missed_events())

    def get_submissions_of(self, submitter: Any) -> tuple[Job, ...]:
        """The jobs ``submitter`` queued, in order (the same tuple until it queues more)."""
        key = id(submitter)
        with self._lock:
            view = self._submission_views.get(key)
            if view is None:
                view = tuple(self._submissions.get(key, ()))
                self._submission_views[key] = view
            return view

    def get_required_cache_items(self) -> set[tuple[Any, str]]:
        """``(node key, method name)`` of every ``pool_cache`` value still needed."""
        if not self.is_main():
            return self._cache.keys()
        required = set()
        for key, count in self._unfinished_by_submitter.items():
            if count > 0:
                node = self._submitters[key]
                node_id = _cache.node_key(node)
                required.update((node_id, name) for name in _cache.cache_methods(type(node)))
        return required

    @property
    def timeline(self) -> list[JobRecord]:
        """Where and when each job that started ran, in start order (main rank)."""
        records = [
            JobRecord(
                job.id,
                job.name,
                submitter_name(job.submitter),
                job.rank,
                job.started_at,
                job.ended_at,
                job.status,
                None if job.error is None else f"{type(job.error).__name__}: {job.error}",
            )
            for job in self._jobs
            if job.started_at is not None
        ]
        records.sort(key=lambda record: record.start)
        return records

    def statistics(self) -> PoolStatistics:
        """A snapshot of the progress so far (main rank), without scanning the jobs.

        Progress displays read this a few times a second instead of listening to
        every job event, so they cost nothing per job. Safe to call from any thread.
        """
        failures = tuple(self._failures)
        done_by = self._done_by_submitter.copy()
        with self._lock:
            submitters = [
                SubmitterStatistics(
                    submitter_name(self._submitters[key]), len(submitted), done_by.get(key, 0)
                )
                for key, submitted in list(self._submissions.items())
            ]
        total = self._registered
        done = total - self._unfinished
        cancelled = self._cancelled
        return PoolStatistics(
            status=self._status,
            workflow=self.workflow,
            total=total,
            done=done,
            succeeded=done - len(failures) - cancelled - self._aborted,
            failed=len(failures),
            cancelled=cancelled,
            running=tuple(self._running.copy().values()),
            submitters=tuple(submitters),
            failures=failures,
            started_at=self._started_at,
            busy=self._busy,
            ran=self._ran,
            ranks=self.size,
        )

    def __enter__(self) -> "JobPool":
        if self._entered:
            raise JobPoolError("a pool can be entered only once")
        self._entered = True
        _raise_gc_threshold()
        self._gc_raised = True
        _cache.activate(self._cache)
        try:
            # Context-manager listeners are entered before they get their first event.
            self._listeners.enter()
            self._emit_pool_status(None)
        except BaseException as exc:
            # `with` will not call __exit__: release the other ranks (waiting in
            # execute()) and close the pool here.
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc is not None and not self._executed and self.is_main() and self.parallel:
                # Workers are waiting in execute(): release them with the error.
                from ._dispatch import stop_workers

                text = f"the main rank raised before executing the pool: {exc_type.__name__}: {exc}"
                # WorkflowError needs at least one member error on the other ranks.
                stop_workers(self, (text, [text]))
            if exc is not None and not self._executed and not self.is_main() and self.parallel:
                from ._worker import report_failure

                report_failure(self, exc)
            if exc is not None and not self._executed:
                self._break(f"{exc_type.__name__}: {exc}")  # nothing will run: ABORTED
            if self._broken is not None and isinstance(exc, ListenerError):
                self._status = PoolStatus.CLOSING  # a listener failed: don't call it again
            elif self._status is not PoolStatus.CLOSING:
                self._set_pool_status(PoolStatus.CLOSING)
        finally:
            self.close()
            self._listeners.exit((exc_type, exc, tb))

    def close(self) -> None:
        """Free every cached value and the pool's communicator; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._gc_raised:
            self._gc_raised = False
            _restore_gc_threshold()
        self._cache.clear()
        if _cache._active_store is self._cache:
            _cache.activate(None)
        if self._comm is not None and self._broken is None:
            try:
                self._comm.Free()
            except Exception:
                pass
        self._comm = None

    def __repr__(self) -> str:
        return f"<JobPool rank {self.rank}/{self.size} {self._status.value}, {len(self._jobs)} jobs>"

    # --- bookkeeping (main rank, main thread) ---------------------------------------

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
        if job.submitter is not None:
            key = id(job.submitter)
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
        submitter = job.submitter
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
            job.status = _CANCELLED
            return True
        if threading.get_ident() != self._main_thread:
            self._incoming.append(("cancel", job, reason))
            self._wake.set()
            return True
        if job in self._incoming_jobs():
            self._drain_incoming()
        text = f"job {job.name!r} was cancelled" + (f": {reason}" if reason else "")
        self._cancel_one(job, JobCancelledError(text), self._listeners.active)
        self._cancel_dependents(job, job)
        return True

    def _incoming_jobs(self):
        return [item[1] for item in self._incoming if item[0] == "job"]

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

    def _summary(self) -> tuple[str, list[str]] | None:
        """The failure summary sent to the other ranks (None when all went well)."""
        if self._broken is not None:
            return (f"the pool broke on the main rank: {self._broken}", [f"the pool broke on the main rank: {self._broken}"])
        error = self._workflow_error()
        if error is None:
            return None
        lines = [self._describe_failure(job) for job in self._jobs if job.status is _FAILED and not job._handled]
        lines += [str(err) for err in self._scheduling_errors]
        return (error.message, lines)

    # --- background scheduling -------------------------------------------------------

    def _run_schedulers(self, nodes: list, scheduler: Callable) -> None:
        failed: set[int] = set()
        for node in nodes:
            name = submitter_name(node)
            if self._stop_scheduling:
                err = JobSchedulingError(f"{name} was not scheduled: the pool stopped")
                self._scheduling_errors.append(err)
                continue
            bad = [dep for dep in (getattr(node, "depends_on", None) or ()) if id(dep) in failed]
            if bad:
                failed.add(id(node))
                self._scheduling_errors.append(
                    JobSchedulingError(
                        f"{name} was not scheduled: it depends on {submitter_name(bad[0])}, "
                        "which failed to schedule"
                    )
                )
                continue
            self._incoming.append(("hold", node))
            self._tls.submitter = node
            try:
                scheduler(node)
            except Exception as exc:
                failed.add(id(node))
                err = JobSchedulingError(f"scheduling {name} failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                self._scheduling_errors.append(err)
            finally:
                self._tls.submitter = None
                self._incoming.append(("release", node))
                self._wake.set()
        self._wake.set()

    def _scheduling(self) -> bool:
        thread = self._scheduler_thread
        return thread is not None and thread.is_alive()
