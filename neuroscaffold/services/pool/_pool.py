"""The job pool: submit jobs with dependencies, execute them on every rank.

The public :class:`JobPool` and its life cycle live here. Bookkeeping (job states,
dependencies, events, counts) is in ``_ledger`` and runs on the main rank, in the pool's
main thread only. How jobs reach a rank is the business of ``_dispatch`` (main rank) and
``_worker`` (other ranks).
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Iterable, Sequence

from ...exceptions import (
    JobPoolError,
    JobSchedulingError,
    ListenerError,
    PoolInterrupted,
    WorkflowError,
)
from . import _cache
from ._events import PoolProgress, PoolStatistics, SubmitterStatistics, _Listeners
from ._interrupt import SignalGuard
from ._ledger import _Ledger
from ._protocol import Summary
from ._job import Job, JobRecord, _DepGroup, submitter_name
from ._status import JobStatus, PoolStatus
from ._types import PoolNetwork

__all__ = ["JobPool", "create_job_pool"]

_SUCCESS = JobStatus.SUCCESS
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


class JobPool(_Ledger):
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
        self._incoming_lock = self._lock  # appends from other threads, snapshots
        self._cancel_sent: list[Job] = []  # cancelled after being sent: ask their rank
        self._cancel_reasons: dict[int, tuple] = {}  # job id -> (reason,), for those
        self._interrupted: tuple | None = None  # (rank, signal name) that stopped it
        self._wake = threading.Event()
        self._submissions: dict[int, list[Job]] = {}
        self._submission_views: dict[int, tuple[Job, ...]] = {}
        self._function_views: dict[int, tuple[int, Any, tuple[Job, ...]]] = {}
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
        main = self.is_main()
        here = threading.get_ident() == self._main_thread
        with self._lock:
            job = Job(self._ref, len(self._jobs), fn, args, kwargs or None, context, submitter, deps)
            self._jobs.append(job)
            if submitter is not None:
                key = id(submitter)
                self._submitters[key] = submitter
                self._submissions.setdefault(key, []).append(job)
                self._submission_views.pop(key, None)
            if main and not (here and not self._incoming):
                # In the same critical section as the job list: a job listed in
                # ``jobs`` is registered or in the incoming queue, never in between.
                self._incoming.append(("job", job))
                self._wake.set()
                return job
        if main:
            self._register(job)
        # Only the main rank's jobs run (the seed submits on every rank).
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
        guard = SignalGuard(self.rank, self._stall_report if self.is_main() else None)
        try:
            with guard:
                return self._execute(return_results, guard)
        except (WorkflowError, PoolInterrupted) as exc:
            exc._neuroscaffold_every_rank = True  # every rank raises it: no MPI abort
            raise
        finally:
            self._execute_ended = True

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
            self._break_for(exc)
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
        """The jobs ``submitter`` queued, in order (the same tuple until it queues more).

        A job's submitter defaults to its function: ``get_submissions_of(square)``
        gives the jobs of ``pool.queue(square, ...)`` that named no other submitter.
        """
        key = id(submitter)
        with self._lock:
            view = self._submission_views.get(key)
            if view is None and key in self._submissions:
                view = tuple(self._submissions[key])
                self._submission_views[key] = view
            if view is not None:
                return view
            # Not a named submitter: jobs of this function (found by one scan, kept
            # until more jobs are queued).
            count = len(self._jobs)
            cached = self._function_views.get(key)
            if cached is not None and cached[0] == count and cached[1] is submitter:
                return cached[2]
            view = tuple(job for job in self._jobs if job._submitter is None and job._fn is submitter)
            self._function_views[key] = (count, submitter, view)
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
        global _open_pool
        _open_pool = self._ref
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
                stop_workers(self, Summary(text, (text,)))
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
        global _open_pool
        if _open_pool is self._ref:
            _open_pool = None
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

    def __reduce__(self):
        # A job that refers to its pool (a closure over it) gets, on the rank that runs
        # it, that rank's own pool: pools, like networks, exist on every rank.
        return (this_ranks_pool, ())

    def __repr__(self) -> str:
        return f"<JobPool rank {self.rank}/{self.size} {self._status.value}, {len(self._jobs)} jobs>"

    def _stall_report(self) -> list[str]:
        """Lines naming every rank's running jobs, oldest first (SIGUSR1, main rank)."""
        now = time.time()
        running = sorted(self._running.copy().values(), key=lambda job: job.started_at or now)
        if not running:
            return ["rank 0: no job is running on any rank"]
        return [
            f"rank {job.rank}: job {job.name!r} running for {now - (job.started_at or now):.1f} s"
            for job in running
        ]

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
            self._push_incoming(("hold", node))
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
                self._push_incoming(("release", node))
        self._wake.set()

    def _scheduling(self) -> bool:
        thread = self._scheduler_thread
        return thread is not None and thread.is_alive()
