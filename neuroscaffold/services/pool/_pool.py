"""The job pool: submit jobs with dependencies, execute them on every rank.

The public :class:`JobPool` and its life cycle live here. It holds collaborators and
talks to them through small interfaces: a :class:`~._ledger.Ledger` (job states,
dependencies, counts; main rank, main thread) that reports job events to a notifier
(the pool's listeners); the dispatcher (``_dispatch``, main rank) and the worker loop
(``_worker``, other ranks), which move jobs between ranks and report to the ledger.
The pool's own life is one :class:`_Phase` plus the ledger's "broken", under one lock.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from enum import Enum
from threading import get_ident
from types import FunctionType
from typing import Any, Callable, Iterable, Sequence

from ...exceptions import (
    InvalidStateError,
    JobPoolError,
    JobSchedulingError,
    ListenerError,
    PoolInterrupted,
    WorkflowError,
)
from . import _cache
from ._events import PoolProgress, PoolStatistics, SubmitterStatistics, _Listeners
from ._interrupt import SignalGuard
from ._job import Job, JobRecord, submitter_name
from ._ledger import Hold, Ledger, Release
from ._protocol import Summary
from ._status import _POOL_TRANSITIONS, JobStatus, PoolProgressReason, PoolStatus
from ._types import PoolNetwork

__all__ = ["JobPool", "create_job_pool"]

_SUCCESS = JobStatus.SUCCESS
_FUNCTION = FunctionType
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


_open_pool: "weakref.ref | None" = None  # the pool entered on this rank


def this_ranks_pool() -> "JobPool":
    """The pool open on this rank: what a job's reference to its pool becomes when the
    job travels to another rank (see :meth:`JobPool.__reduce__`)."""
    pool = _open_pool() if _open_pool is not None else None
    if pool is None:
        raise JobPoolError("a job refers to a job pool, but no pool is open on this rank")
    return pool


def create_job_pool(
    network: Any,
    fail_fast: bool = False,
    quiet: bool = False,
    workflow: Any = None,
    listeners: Iterable[Callable] = (),
    *,
    main_executes: bool = True,
    comm: Any = None,
    pool_class: "type[JobPool] | None" = None,
) -> "JobPool":
    """Create a pool running jobs against ``network``; collective over the ranks.

    With ``quiet=False`` the main rank shows progress (``neuroscaffold.progress``).
    ``listeners`` are added on the main rank. ``main_executes=False`` keeps the main
    rank to dispatching only (for benchmarks; it is slower). ``pool_class`` (a subclass
    of :class:`JobPool`) lets a network close its storage session with the pool.
    """
    pool = (pool_class or JobPool)(
        network, fail_fast=fail_fast, workflow=workflow, main_executes=main_executes, comm=comm
    )
    if pool.is_main():
        if not quiet:
            from .._registry import get_service

            # A service: the pool never imports the progress package (a layer above).
            pool.add_listener(get_service("ProgressListener")(pool))
        for listener in listeners:
            pool.add_listener(listener)
    return pool


class _Phase(Enum):
    """Where a pool is in its own life (the public :class:`PoolStatus` is what
    listeners see; this also knows whether it was entered, executed, closed)."""

    CREATED = "created"
    ENTERED = "entered"
    EXECUTING = "executing"
    EXECUTED = "executed"  #: execute() returned or raised: no more submissions
    CLOSED = "closed"


_ENTERED = _Phase.ENTERED
_EXECUTING = _Phase.EXECUTING


def _event_maker(ref: "weakref.ref[JobPool]", workflow: Any) -> Callable[..., PoolProgress]:
    def make(reason, job, old) -> PoolProgress:
        pool = ref()
        return PoolProgress(reason, pool._status, pool._ledger.jobs, workflow, job, old, time.time(), pool)

    return make


class JobPool:
    """Runs jobs on every rank, honouring dependencies, reporting progress to listeners.

    Create it on every rank (``network.create_job_pool()``) and use it as a context
    manager. Only the main rank's submissions run; every rank calls :meth:`execute`.
    """

    def __init__(
        self,
        network: PoolNetwork,
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
        # a world of one never needs MPI started (see the MPI service)
        base = comm if comm is not None else (
            MPI.get_communicator() if MPI.get_size() > 1 else None)
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
        self._phase = _Phase.CREATED
        self._phase_lock = threading.Lock()
        self._ref = weakref.ref(self)
        self._listeners = _Listeners()
        self._cache = _cache._CacheStore()
        ref = self._ref
        # The listeners are the ledger's notifier; their events are built here, from a
        # weak reference (the pool must be freed without the cycle collector).
        self._listeners.make_event = _event_maker(ref, workflow)
        self._ledger = Ledger(self._listeners, fail_fast, self._cache, ref)
        self._started_at: float | None = None
        self._scheduler_thread: threading.Thread | None = None
        # The node each scheduling thread is queueing for, by thread ident: empty (one
        # falsy test in queue()) unless schedule() runs.
        self._scheduling_for: dict[int, Any] = {}
        self._main = self.rank == 0

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
        return list(self._ledger.jobs)

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
        phase = self._phase
        if phase is not _ENTERED and phase is not _EXECUTING:
            self._check_open()  # raises if closed or executed (CREATED is fine too)
        main = self._main
        if not main and self._status is PoolStatus.EXECUTING:
            # A job on this rank tried to queue more: they would silently never run.
            raise JobPoolError(
                f"cannot queue jobs on rank {self.rank} while the pool executes: "
                "jobs are queued on the main rank (rank 0)"
            )
        # Plain functions (the common case) are callable and have no owner: no lookups.
        plain_function = fn.__class__ is _FUNCTION
        if not plain_function and not callable(fn):
            raise TypeError(f"job function must be callable, got {fn!r}")
        if submitter is None:
            if self._scheduling_for:
                submitter = self._scheduling_for.get(get_ident())
            if submitter is None and not plain_function:
                owner = getattr(fn, "__self__", None)
                if owner is not None and hasattr(owner, "get_node_name"):
                    submitter = owner
        if deps:
            for dep in deps:
                if not isinstance(dep, Job) or dep._pool is not self._ref:
                    raise JobPoolError(f"dependency {dep!r} is not a job of this pool")
        else:
            deps = ()
        if args.__class__ is not tuple:
            args = tuple(args) if args else ()
        # Only the main rank's jobs run (the seed submits on every rank).
        return self._ledger.add(fn, args, kwargs or None, context, submitter, deps, main)

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
        # The thread waits for ``go``: ``Thread.start`` returns only once the new thread
        # runs, and a thread that starts queueing at once keeps the GIL for a whole
        # switch interval (5 ms) and more, while the other ranks wait for their first jobs.
        go = threading.Event()
        self._scheduler_thread = threading.Thread(
            target=self._run_schedulers,
            args=(nodes, scheduler, go),
            name="neuroscaffold-scheduler",
            daemon=True,
        )
        self._scheduler_thread.start()
        go.set()

    def execute(self, return_results: bool = False) -> dict[Job, Any] | None:
        """Run every job; collective: every rank calls it, it returns when all ended.

        Raises :class:`WorkflowError` on every rank if a job or scheduler failed. On the
        main rank with ``return_results=True`` returns ``{job: result}`` of the jobs that
        succeeded.
        """
        with self._phase_lock:
            phase = self._phase
        if phase is _Phase.CLOSED:
            raise JobPoolError("cannot execute a closed pool")
        if phase is _Phase.EXECUTING or phase is _Phase.EXECUTED:
            raise JobPoolError("this pool was already executed; create a new pool")
        if self.is_main():
            self._ledger.drain_incoming()  # jobs queued so far count from the first event on
        # Status first: if a listener raises on EXECUTING, the pool counts as not
        # executed and __exit__ releases the other ranks.
        self._set_pool_status(PoolStatus.EXECUTING)
        self._set_phase(_Phase.EXECUTING)
        self._ledger.executing = True
        self._started_at = time.time()
        guard = SignalGuard(self.rank, self._stall_report if self.is_main() else None)
        try:
            with guard:
                results = self._execute(return_results, guard)
                # A signal that came after the last turn of the loop is not swallowed
                # (nor acted on by this rank alone, when the run defers signals).
                guard.settle()
                return results
        except (WorkflowError, PoolInterrupted) as exc:
            exc._neuroscaffold_every_rank = True  # every rank raises it: no MPI abort
            raise
        finally:
            self._ledger.executing = False
            self._set_phase(_Phase.EXECUTED)

    def _execute(self, return_results: bool, guard: SignalGuard) -> dict[Job, Any] | None:
        from . import _dispatch, _worker

        _cache.activate(self._cache)
        if not self.is_main():
            _worker.worker_execute(self, guard)
            return {} if return_results else None
        try:
            if self.parallel:
                _dispatch.main_execute(self, guard)
            else:
                _dispatch.serial_execute(self, guard)
        except BaseException as exc:
            self._ledger.broken(exc)
            raise
        if self._scheduler_thread is not None:
            self._scheduler_thread.join()
        error = self._ledger.workflow_error()
        if error is not None:
            raise error
        if return_results:
            return {job: job._result for job in self._ledger.jobs if job.status is _SUCCESS}
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
        """The jobs ``submitter`` queued, in order (the same tuple until it queues more).

        A job's submitter defaults to its function: ``get_submissions_of(square)``
        gives the jobs of ``pool.queue(square, ...)`` that named no other submitter.
        """
        return self._ledger.submissions_of(submitter)

    def get_required_cache_items(self) -> set[tuple[Any, str]]:
        """``(node key, method name)`` of every ``pool_cache`` value still needed."""
        if not self.is_main():
            return self._cache.keys()
        required = set()
        for node in self._ledger.required_submitters():
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
            for job in self._ledger.jobs
            if job.started_at is not None
        ]
        records.sort(key=lambda record: record.start)
        return records

    def statistics(self) -> PoolStatistics:
        """A snapshot of the progress so far (main rank), without scanning the jobs.

        Progress displays read this a few times a second instead of listening to
        every job event, so they cost nothing per job. Safe to call from any thread.
        """
        ledger = self._ledger
        failures = tuple(ledger.failures)
        submitters = [
            SubmitterStatistics(submitter_name(submitter), total, done)
            for submitter, total, done in ledger.submitter_counts()
        ]
        total = ledger.registered
        done = total - ledger.unfinished
        cancelled = ledger.cancelled
        return PoolStatistics(
            status=self._status,
            workflow=self.workflow,
            total=total,
            done=done,
            succeeded=done - len(failures) - cancelled - ledger.aborted,
            failed=len(failures),
            cancelled=cancelled,
            running=tuple(ledger.running.copy().values()),
            submitters=tuple(submitters),
            failures=failures,
            started_at=self._started_at,
            busy=ledger.busy,
            ran=ledger.ran,
            ranks=self.size,
            scheduling=self._scheduling() or ledger.has_incoming(),
        )

    def __enter__(self) -> "JobPool":
        with self._phase_lock:
            if self._phase is not _Phase.CREATED:
                raise JobPoolError("a pool can be entered only once")
            self._phase = _Phase.ENTERED
        global _open_pool
        _open_pool = self._ref
        _raise_gc_threshold()
        _cache.activate(self._cache)
        try:
            # Context-manager listeners are entered before they get their first event.
            self._listeners.enter()
            self._emit_pool_status()
        except BaseException as exc:
            # `with` will not call __exit__: release the other ranks (waiting in
            # execute()) and close the pool here.
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        with self._phase_lock:
            executed = self._phase is _Phase.EXECUTING or self._phase is _Phase.EXECUTED
        try:
            if exc is not None and not executed and self.is_main() and self.parallel:
                # Workers are waiting in execute(): release them with the error.
                from ._dispatch import stop_workers

                text = f"the main rank raised before executing the pool: {exc_type.__name__}: {exc}"
                # WorkflowError needs at least one member error on the other ranks.
                stop_workers(self, Summary(text, (text,)))
            if exc is not None and not executed and not self.is_main() and self.parallel:
                from ._worker import report_failure

                report_failure(self, exc)
            if exc is not None and not executed:
                self._ledger.broken(f"{exc_type.__name__}: {exc}")  # nothing will run: ABORTED
            if self._ledger.broken_reason is not None and isinstance(exc, ListenerError):
                self._status = PoolStatus.CLOSING  # a listener failed: don't call it again
            elif self._status is not PoolStatus.CLOSING:
                self._set_pool_status(PoolStatus.CLOSING)
        finally:
            self.close()
            self._listeners.exit((exc_type, exc, tb))

    def close(self) -> None:
        """Free every cached value and the pool's communicator; idempotent."""
        with self._phase_lock:
            phase = self._phase
            if phase is _Phase.CLOSED:
                return
            self._phase = _Phase.CLOSED
        global _open_pool
        if _open_pool is self._ref:
            _open_pool = None
        if phase is not _Phase.CREATED:  # it was entered: the GC threshold was raised
            _restore_gc_threshold()
        self._cache.clear()
        if _cache._active_store is self._cache:
            _cache.activate(None)
        if self._comm is not None and self._ledger.broken_reason is None:
            try:
                self._comm.Free()
            except Exception:
                pass
        self._comm = None

    def __reduce__(self):
        # A job that refers to its pool (a closure over it) gets, on the rank that runs
        # it, that rank's own pool: pools, like networks, exist on every rank.
        return (this_ranks_pool, ())

    def __repr__(self) -> str:
        return f"<JobPool rank {self.rank}/{self.size} {self._status.value}, {len(self._ledger.jobs)} jobs>"

    # --- life cycle and events (formerly spread over the ledger mixin) -----------------

    def _set_phase(self, phase: _Phase) -> None:
        with self._phase_lock:
            if self._phase is not _Phase.CLOSED:
                self._phase = phase

    def _check_open(self) -> None:
        phase = self._phase  # one read (atomic); writes hold the lock
        if phase is _Phase.CLOSED:
            raise JobPoolError("cannot submit jobs to a closed pool")
        if phase is _Phase.EXECUTED:
            raise JobPoolError("cannot submit jobs after the pool was executed")

    def _set_pool_status(self, status: PoolStatus) -> None:
        if status not in _POOL_TRANSITIONS[self._status]:
            raise InvalidStateError(f"pool: {self._status.value} -> {status.value}")
        self._status = status
        self._emit_pool_status()

    def _event(self, reason, job=None, old=None, status=None, now=None) -> PoolProgress:
        return PoolProgress(
            reason,
            self._status if status is None else status,
            self._ledger.jobs,
            self.workflow,
            job,
            old,
            time.time() if now is None else now,
            self,
        )

    def _emit_pool_status(self) -> None:
        if self._listeners.any:
            self._listeners.emit(self._event(PoolProgressReason.POOL_STATUS_CHANGE))

    def _missed_events(self) -> list[PoolProgress]:
        """The stream so far, rebuilt from the pool's state, for a listener added late."""
        with self._phase_lock:
            if self._phase is _Phase.CREATED:
                return []
        now = time.time()
        waiting = {id(job) for job in self._ledger.incoming_jobs()}
        scheduling = PoolStatus.SCHEDULING
        pool_change = PoolProgressReason.POOL_STATUS_CHANGE
        events = [self._event(pool_change, status=scheduling, now=now)]
        for job in list(self._ledger.jobs):
            if id(job) in waiting:
                continue
            events.append(self._event(PoolProgressReason.JOB_ADDED, job, status=scheduling, now=now))
            if job.status is not JobStatus.PENDING:
                events.append(
                    self._event(PoolProgressReason.JOB_STATUS_CHANGE, job, JobStatus.PENDING, now=now)
                )
        if self._status is not scheduling:
            events.append(self._event(pool_change, now=now))
        return events

    def _cancel(self, job: Job, reason: str | None) -> bool:
        """:meth:`Job.cancel` of one of this pool's jobs."""
        with self._phase_lock:
            if self._phase is _Phase.CLOSED:
                raise JobPoolError(f"cannot cancel job {job.name!r}: its pool is closed")
        if not self.is_main():
            self._ledger._move(job, JobStatus.CANCELLED)  # never runs: only the main rank's do
            return True
        return self._ledger.cancel(job, reason)

    def _stall_report(self) -> list[str]:
        """Lines naming every rank's running jobs, oldest first (SIGUSR1, main rank)."""
        now = time.time()
        running = sorted(self._ledger.running.copy().values(), key=lambda job: job.started_at or now)
        if not running:
            return ["rank 0: no job is running on any rank"]
        return [
            f"rank {job.rank}: job {job.name!r} running for {now - (job.started_at or now):.1f} s"
            for job in running
        ]

    # --- background scheduling -------------------------------------------------------

    def _run_schedulers(self, nodes: list, scheduler: Callable, go: threading.Event) -> None:
        go.wait()
        failed: set[int] = set()
        for node in nodes:
            name = submitter_name(node)
            if self._ledger.stopped:
                err = JobSchedulingError(f"{name} was not scheduled: the pool stopped")
                self._ledger.scheduling_errors.append(err)
                continue
            bad = [dep for dep in (getattr(node, "depends_on", None) or ()) if id(dep) in failed]
            if bad:
                failed.add(id(node))
                self._ledger.scheduling_errors.append(
                    JobSchedulingError(
                        f"{name} was not scheduled: it depends on {submitter_name(bad[0])}, "
                        "which failed to schedule"
                    )
                )
                continue
            self._ledger.push(Hold(node))
            ident = threading.get_ident()
            self._scheduling_for[ident] = node
            try:
                scheduler(node)
            except Exception as exc:
                failed.add(id(node))
                err = JobSchedulingError(f"scheduling {name} failed: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                self._ledger.scheduling_errors.append(err)
            finally:
                del self._scheduling_for[ident]
                self._ledger.push(Release(node))
            # Let the dispatcher in: it waits for the GIL to send these jobs out, and a
            # thread that keeps running would hold it a whole switch interval (5 ms).
            time.sleep(0)
        self._ledger.wake.set()

    def _scheduling(self) -> bool:
        thread = self._scheduler_thread
        return thread is not None and thread.is_alive()
