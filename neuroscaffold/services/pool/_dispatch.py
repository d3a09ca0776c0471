"""The main rank's side of execute(): serially, or feeding every rank (itself too).

::

    main thread (dispatcher)                         executor thread (main rank's share)
    ────────────────────────                         ───────────────────────────────────
    ledger.ready ──take──▶ cheap job? ──run_job inline (events at once)
                      └──▶ slow job ──batches──────▶ run_job ──records──▶ done deque
                      └──▶ BATCH ──▶ rank r          (Started, (job, outcome), Dropped, Unsent, Died)
    inbox ◀── STARTED / RESULTS / DROPPED / ... ── rank r
    ledger.start / finish ◀── records and results, always in the main thread

In parallel the main thread only does bookkeeping and MPI: it keeps each rank's queue
filled a few batches ahead, sized from measured job durations, and runs the main
rank's own share of jobs in a local executor thread, or inline when they are known to
be cheap. So two jobs may run at once on the main rank (one inline, one in the
executor thread), a long job on the main rank never starves the others, and listeners
are only ever called from the main thread. Serially, the same dispatcher (without
other ranks) is used when a listener wants ``max_wait`` pings, so that pings come while
a long job runs; otherwise jobs simply run one after the other in the main thread.

Every job runs through :func:`._run.run_job`. Each target (a rank, or the executor
thread) keeps the jobs sent to it and not yet ended, in order (``target.jobs``): a
job's ``_waiting`` field, unused once it is QUEUED, holds ``-1 - rank`` while it is
sent there, so an outcome from a rank a job was taken back from is ignored.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from queue import SimpleQueue
from types import FunctionType
from typing import Any, Hashable, NamedTuple

from ..._backoff import Backoff
from ...exceptions import JobPoolError, ParallelError, PoolInterrupted
from ._protocol import (
    SCALARS,
    TAG_DUMP,
    TAG_RECALL,
    TAG_TO_MAIN,
    TAG_TO_WORKER,
    Kind,
    Summary,
    dumps,
    loads,
    pickling_error,
    unpack_error,
    unsent_error,
)
from ._run import run_job
from ._status import JobStatus, PoolProgressReason
from ._wire import Inbox, Outbox, decode, encode, join, plain, split

_QUEUED = JobStatus.QUEUED
_RUNNING = JobStatus.RUNNING
_BATCH_SECONDS = 0.002  # aim for batches of about this much work
_GRANTED_SECONDS = 0.005  # a batch of at most this much estimated work comes granted
_UNKNOWN_COST = float("inf")  # the cost of a job whose function was not measured yet
_AHEAD_SECONDS = 0.02  # and keep about this much work in flight on every rank
_MAX_BATCH = 2048
_MAX_AHEAD = 32768
_MIN_AHEAD = 2
_INLINE_SECONDS = 0.001  # jobs known to be cheaper than this run in the dispatcher itself
_INLINE_ALL_SECONDS = 0.0002  # when all ready work is below this, skip the round trips
_DISPATCH_WAIT_MAX = 0.005  # the longest nap of a dispatcher idle for long (~100 ms)
_NAP_MAX = 0.02  # the longest nap of a dispatcher whose ranks are all fed (see ``nap``)
_DOZE_SLICE = 0.001  # within a nap, how often it looks for a message (a cheap probe) ...
_DOZE_SHARE = 0.25  # ... at least: a quarter of the nap
_REPORT_DEDUP = 2.0  # seconds: a rank that just printed its report does not repeat it
_SERIAL_BATCH = 64  # serially, jobs taken from the ledger at a time
_MAX_FUNCTIONS = 1024  # function tables (per pool, per worker) are reset past this
_STALL_CHECK_EVERY = 0.25  # seconds between two looks for overrunning jobs
_OVERRUN_FACTOR = 20  # a job overran when it ran this many times its function's mean
_OVERRUN_MIN = 2.0  # ... and at least this long (s)
_OVERRUN_MAX = 60.0  # a job running this long has overrun, whatever its siblings do


def MPI_BYTE():
    from mpi4py import MPI

    return MPI.BYTE


#: seconds the ranks may take to create a pool together (a rank that never comes is
#: gone, or went elsewhere after an error of its own)
DUPLICATE_WAIT = 120.0
#: communicators whose creation timed out, with their requests: MPI may still complete
#: them (when the late rank comes), so they must outlive the wait
_unfinished: list[tuple[Any, Any]] = []


def duplicate(comm, bound: float = DUPLICATE_WAIT):
    """The pool's own communicator; waits without spinning for the other ranks, and at
    most ``bound`` seconds (then raises :class:`ParallelError`)."""
    raw = comm.get_communicator() if hasattr(comm, "get_communicator") else comm
    new, request = raw.Idup()
    backoff = Backoff()
    deadline = time.monotonic() + bound
    while not request.Test():
        if time.monotonic() > deadline:
            _unfinished.append((new, request))
            raise ParallelError(f"another rank did not create the job pool within "
                                f"{bound:.0f} s (it may have died, or failed on its own)")
        backoff.sleep()
    return new


def function_key(fn) -> Hashable:
    """A dictionary key for a job function, even an unhashable one (a callable
    dataclass): the function itself when it hashes, else its identity."""
    try:
        hash(fn)
    except TypeError:
        return ("unhashable", id(fn))
    return fn


def cost_key(fn) -> Hashable:
    """What job durations are learnt per: the code of a function (shared by every
    closure made from it, so per-job lambdas do not grow the table); a method's code
    and its object (every strategy's jobs run one method, and cost what that strategy
    costs: one cheap strategy must not make another's jobs look cheap); else the type."""
    if fn.__class__ is FunctionType:  # the common case, without failed lookups
        return fn.__code__
    func = getattr(fn, "__func__", None)
    if func is not None:
        return getattr(func, "__code__", func), id(fn.__self__)
    code = getattr(fn, "__code__", None)
    return code if code is not None else type(fn)


# --- running a job here, as another rank would ------------------------------------------


class TravelCheck:
    """Holds jobs run in this process to what travelling to another rank needs.

    A job must fail the same way whichever rank runs it. Functions are checked once
    (remembered in a bounded table, and the last one that travels by identity, so a
    run of jobs of one function costs one comparison); arguments every time, cheaply
    when plain (see :func:`._protocol.pickling_error`).
    """

    def __init__(self, network):
        self.network = network
        self.checked: dict = {}
        self._last_ok: Any = None  # the function checked last, if it travels

    def error(self, job) -> JobPoolError | None:
        """Why ``job`` cannot travel (its error), or None. Never raises."""
        fn = job._fn
        args = job._args
        if fn is self._last_ok and not job._kwargs:
            for item in args:  # the common case, inline: a few plain values
                if item.__class__ not in SCALARS:
                    break
            else:
                return None
        network = self.network
        try:
            try:
                cause = self.checked[fn]
            except KeyError:
                cause = pickling_error(fn, network)
                if len(self.checked) >= _MAX_FUNCTIONS:
                    self.checked.clear()  # bounded: per-job closures come and go
                self.checked[fn] = cause
            except TypeError:  # an unhashable callable: check it every time
                cause = pickling_error(fn, network)
            if cause is None:
                self._last_ok = fn
            if cause is None and args:
                for item in args:
                    if item.__class__ not in SCALARS:
                        cause = pickling_error(args, network)
                        break
            if cause is None and job._kwargs:
                cause = pickling_error(job._kwargs, network)
        except Exception as exc:  # never let a check kill the thread running jobs
            cause = exc
        return None if cause is None else unsent_error(job, cause)


def run_here(ledger, job, travel: TravelCheck) -> float | None:
    """Run a QUEUED ``job`` in this thread with its events; returns its run time
    (None if it did not run: no longer QUEUED, or it could not travel)."""
    if job.status is not _QUEUED:
        return None
    error = travel.error(job)
    if error is not None:
        ledger.unsent(job, error)
        return None
    ledger.started(job, 0, time.time())  # listeners hear RUNNING before it runs
    ok, value, t0, t1 = run_job(job._fn, job._args, job._kwargs, travel.network, job.id)
    ledger.finished(job, ok, value, 0, t0, t1)
    return t1 - t0


# --- serial ----------------------------------------------------------------------------


def serial_execute(pool, guard) -> None:
    """Run every job in this process, in dependency order, with the same events."""
    if pool._listeners.waits:
        # Pings must come while a long job runs: run jobs beside the main thread.
        main_execute(pool, guard)
        return
    ledger = pool._ledger
    take_ready = ledger.take_ready
    started = ledger.started
    finished = ledger.finished
    wake = ledger.wake
    travel = TravelCheck(pool.network)
    travel_error = travel.error
    network = pool.network
    clock = time.time
    ledger.drain_incoming()
    while True:
        if guard.signal_name is not None:
            guard.check()
        if ledger.has_incoming():
            ledger.drain_incoming()
        jobs = take_ready(_SERIAL_BATCH)
        if jobs:
            # run_here, inline: the same steps, without a call per job.
            for job in jobs:
                if ledger.drain_requested:  # fail_fast: the rest of the batch never runs
                    ledger.dropped(job)
                    continue
                if job.status is not _QUEUED:
                    continue  # cancelled meanwhile (by a job of this batch)
                error = travel_error(job)
                if error is not None:
                    ledger.unsent(job, error)
                    continue
                started(job, 0, clock())  # listeners hear RUNNING before it runs
                ok, value, t0, t1 = run_job(job._fn, job._args, job._kwargs, network, job.id)
                finished(job, ok, value, 0, t0, t1)
            continue
        if ledger.has_incoming() or pool._scheduling():
            wake.clear()
            if not ledger.has_incoming() and pool._scheduling():
                wake.wait(0.05)
            continue
        return


def _ping(pool) -> float:
    due = pool._listeners.ping(lambda: pool._event(PoolProgressReason.MAX_TIMEOUT_PING))
    return 0.05 if due is None else max(due, 0.0)


# --- parallel: the main rank ----------------------------------------------------------


class _Rank:
    """A rank the main rank feeds, as the dispatcher sees it."""

    __slots__ = ("rank", "jobs", "known_fns", "reset", "stalled_on", "heard", "last_batch",
                 "unclaimed", "silent")

    def __init__(self, rank: int):
        self.rank = rank
        self.jobs: dict[int, Any] = {}  # sent, not ended, in the order it runs them
        self.known_fns: set[int] = set()
        self.reset = False  # its function table must be cleared with the next batch
        self.stalled_on: int | None = None  # id of the overrunning job it runs
        # When it last spoke (time.monotonic), or was given work while it had none:
        # a rank silent for long with jobs queued is stopped, hung or in a long job.
        self.heard = 0.0
        self.last_batch = -1  # the number of the last batch sent to it
        #: batch number -> its job ids, of the batches sent not granted and not claimed
        #: yet: they cannot have started there, and may be taken back without asking
        self.unclaimed: dict[int, list[int]] = {}
        #: it said nothing for long with jobs queued: fed nothing more until it speaks
        self.silent = False

    @property
    def in_flight(self) -> int:
        return len(self.jobs)


# What the executor thread reports to the dispatcher, in order.
class _Started(NamedTuple):
    job: Any
    t0: float


# An ended job is reported as a plain ``(job, (ok, value, t0, t1))`` pair, the one
# record made for every job: a named record would cost more than a trivial job.


class _Dropped(NamedTuple):
    job: Any  # not run: drained (fail-fast) or cancelled


class _Unsent(NamedTuple):
    job: Any
    error: BaseException  # it could not travel: fails without running


class _Died(NamedTuple):
    error: BaseException  # the thread itself failed (a bug): the pool breaks


_FLUSH_EVERY = 0.02


class _LocalExecutor(_Rank):
    """The main rank's own share of the jobs, run in a thread beside the dispatcher."""

    def __init__(self, pool):
        super().__init__(0)
        self.draining = False
        self.cancelled: set[int] = set()  # job ids to drop unstarted (Job.cancel)
        self.recalled: set[int] = set()  # job ids taken back to run elsewhere
        # Ids of the jobs this thread took (started, or dropped), until collected. A job
        # is taken or recalled under ``lock``, never both: see ``_Dispatcher.rebalance``.
        self.taken: set[int] = set()
        self.lock = threading.Lock()
        self.batches: SimpleQueue = SimpleQueue()
        self.done: deque = deque()
        self.wake = threading.Event()  # set when ``done`` gets records
        self.stopped = False
        self._travel = TravelCheck(pool.network)
        self._network = pool.network
        self._thread = threading.Thread(target=self._run, name="neuroscaffold-local-jobs", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def take_back(self, jobs) -> list:
        """Of ``jobs`` (queued in this thread), those it has not taken (started or
        dropped): they are marked recalled, so it skips them, and returned. Under the
        lock the thread takes jobs under: a job is taken or given back, never both."""
        with self.lock:
            taken, recalled = self.taken, self.recalled
            given = [job for job in jobs if job.status is _QUEUED
                     and job.id not in taken and job.id not in recalled]
            recalled.update(job.id for job in given)
        owned = self.jobs
        for job in given:
            del owned[job.id]
        return given

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: B036 - report any death, never die silently
            self.done.append(_Died(exc))
            self.wake.set()

    def _loop(self) -> None:
        network = self._network
        done = self.done
        travel = self._travel
        last_start = 0.0
        lock, recalled, taken = self.lock, self.recalled, self.taken
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            first = True
            for job in batch:
                job_id = job.id
                with lock:
                    if job_id in recalled:
                        recalled.discard(job_id)
                        continue
                    taken.add(job_id)
                if self.draining or job_id in self.cancelled or job.status is not _QUEUED:
                    done.append(_Dropped(job))
                    continue
                error = travel.error(job)
                if error is not None:
                    done.append(_Unsent(job, error))
                    continue
                t0 = time.time()
                if first or t0 - last_start > _FLUSH_EVERY:
                    done.append(_Started(job, t0))
                    # No wake-up: the dispatcher reports it within its nap.
                    last_start = t0
                    first = False
                try:
                    outcome = run_job(job._fn, job._args, job._kwargs, network, job_id)
                except KeyboardInterrupt as exc:  # not delivered to this thread; be safe
                    outcome = (False, JobPoolError(f"the job raised {exc!r}"), t0, time.time())
                done.append((job, outcome))
            # Wake the dispatcher only when this thread has nothing left to run: with
            # more batches queued, it collects these results within its nap anyway, and
            # every wake-up takes the GIL from this thread's next job (cheap jobs ran 25 %
            # slower here than on the other ranks).
            if self.batches.empty():
                self.wake.set()

    def stop(self, wait: bool) -> None:
        self.stopped = True
        self.batches.put(None)
        if wait:
            self._thread.join()


class _Dispatcher:
    def __init__(self, pool, guard):
        self.pool = pool
        self.ledger = pool._ledger
        self.guard = guard
        self.network = pool.network
        self.comm = pool._comm
        if self.comm is not None:
            self.inbox = Inbox(self.comm, TAG_TO_MAIN)
            self.outbox = Outbox(self.comm, TAG_TO_WORKER)
            self.recalls: Outbox | None = Outbox(self.comm, TAG_RECALL)
        else:
            self.inbox = self.outbox = self.recalls = None
        self.ranks = [_Rank(rank) for rank in range(1, pool.size)]
        self.local = _LocalExecutor(pool) if pool.main_executes or not self.ranks else None
        self.targets = ([self.local] if self.local else []) + self.ranks
        self.travel = self.local._travel if self.local else TravelCheck(self.network)
        self.fn_ids: dict = {}  # function key -> (id, function)
        self.next_fn_id = 0
        self.next_batch = 0
        self.mean = None  # measured seconds per job
        self.fn_cost: dict = {}  # measured seconds per job, per cost_key(function)
        self.next_stall_check = 0.0
        self.drained = False

    # Measured job durations decide the batch size and how far ahead each rank is fed,
    # and (per function) whether the main rank runs a job inline or in its thread.
    def _learn(self, seconds: float, count: int, fn=None) -> None:
        per_job = max(seconds / count, 1e-7)
        self.mean = per_job if self.mean is None else 0.7 * self.mean + 0.3 * per_job
        if fn is not None:
            key = cost_key(fn)
            cost = self.fn_cost.get(key)
            if cost is None and len(self.fn_cost) >= _MAX_FUNCTIONS:
                self.fn_cost.clear()  # bounded: methods of many objects would grow it
            self.fn_cost[key] = per_job if cost is None else 0.7 * cost + 0.3 * per_job

    def run(self) -> None:
        pool = self.pool
        ledger = self.ledger
        guard = self.guard
        listeners = pool._listeners
        local = self.local
        backoff = Backoff(tmax=_DISPATCH_WAIT_MAX)
        ledger.drain_incoming()
        while True:
            if guard.signal_name is not None:
                guard.check()
            if guard.report_requested:
                self.ask_reports(source=0)
            busy = ledger.drain_incoming()
            if self.inbox is not None:
                busy |= self.receive()
            if local is not None and local.done:
                busy |= self.collect_local()
            if ledger.drain_requested and not self.drained:
                self.drain()
            if ledger.has_cancels():
                self.forward_cancels()
            if ledger.freed:
                self.free_caches()
            if ledger.ready_count():
                busy |= self.dispatch()
            elif local is not None and len(local.jobs) > 1 and self.ranks:
                busy |= self.rebalance()
            if self.outbox is not None:
                self.outbox.prune()
                self.recalls.prune()
            if self.finished():
                return
            limit = _ping(pool) if listeners.waits else None
            self.look_for_stalls()
            if busy:
                backoff.reset()
                continue
            delay = backoff.next_delay(limit)
            nap = self.nap()
            if nap is not None and nap > delay:
                self.doze(nap if limit is None else min(nap, max(limit, delay)))
                continue
            if local is not None and local.in_flight:
                if not local.alive() and not local.done:
                    raise JobPoolError("the main rank's job thread ended unexpectedly")
                # The local executor sets this event as soon as it has results.
                local.wake.wait(delay)
                local.wake.clear()
            else:
                time.sleep(delay)

    def doze(self, seconds: float) -> None:
        """Sleep up to ``seconds``: a quarter of it, at least ``_DOZE_SLICE``, after a
        message came (a rank may have run dry sooner than the mean job duration said),
        at once when the local executor has results, and soon after a signal."""
        local, inbox, guard = self.local, self.inbox, self.guard
        deadline = time.monotonic() + seconds
        # Probing costs a wake-up (tens of microseconds of the core the main rank's
        # jobs run on); a few probes per nap are enough to catch a rank run dry early.
        slice_ = max(_DOZE_SLICE, seconds * _DOZE_SHARE)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if local is not None and local.in_flight:
                if local.wake.wait(min(left, slice_)):
                    local.wake.clear()
                    return
            else:
                time.sleep(min(left, slice_))
            if (inbox is not None and inbox.waiting()) or guard.signal_name is not None:
                return

    def nap(self) -> float | None:
        """How long an idle dispatcher may sleep while every other rank is fed: half the
        work, by the mean job duration, that the least-fed of them still holds (at most
        ``_NAP_MAX``); None when none of them holds any.

        Polling faster only burns the CPU of the main rank's own job thread (they share
        a core): results that come meanwhile wait in MPI's queue, and the main rank's
        executor wakes the dispatcher itself as soon as it has results.
        """
        mean = self.mean
        if mean is None:
            return None
        least = 0
        for target in self.ranks:
            held = len(target.jobs)
            if held and (not least or held < least):
                least = held
        return min(_NAP_MAX, 0.5 * least * mean) if least else None

    def finished(self) -> bool:
        ledger = self.ledger
        return (
            ledger.unfinished == 0
            and not ledger.has_incoming()
            and not self.pool._scheduling()
            and all(not target.jobs for target in self.targets)
        )

    # --- sending work ---------------------------------------------------------------

    def dispatch(self) -> bool:
        ledger = self.ledger
        local = self.local
        fn_cost = self.fn_cost
        count = ledger.ready_count()
        head = ledger.peek_ready()
        mean = self.mean
        if mean is None:
            batch_size, ahead = 1, _MIN_AHEAD
        else:
            ahead = max(_MIN_AHEAD, min(_MAX_AHEAD, int(_AHEAD_SECONDS / mean)))
            # Batches are sized by what the jobs at the head cost; jobs of a function
            # not measured yet travel one per batch until its first result says what
            # it costs: many slow jobs in one batch would all wait behind its first
            # one, and could not be taken back one by one (a batch is claimed whole).
            cost = fn_cost.get(cost_key(head._fn)) if head is not None else None
            batch_size = 1 if cost is None else max(1, min(_MAX_BATCH, int(_BATCH_SECONDS / cost)))
        # A few cheap jobs are done here sooner than a round trip to a sleeping rank.
        if (
            local is not None
            and mean is not None
            and count * mean < _INLINE_ALL_SECONDS
            and fn_cost.get(cost_key(head._fn), _INLINE_SECONDS) < _INLINE_SECONDS
            and self.run_inline(count)
        ):
            return True
        # Feed each rank up to ``ahead``, but no more than its fair share of what is
        # ready now, so a small burst is spread over every rank, the main one included.
        share = -(-count // (len(self.ranks) + (local is not None)))
        sent = False
        for target in sorted(self.ranks, key=lambda t: len(t.jobs)):
            if target.stalled_on is not None and target.stalled_on in target.jobs:
                continue  # it runs an overrunning job: feed the others
            if target.silent:
                continue  # stopped or hung: what it was sent was taken back
            target.stalled_on = None
            limit = min(ahead, len(target.jobs) + share)
            while len(target.jobs) < limit:
                jobs = ledger.take_ready(min(batch_size, limit - len(target.jobs)))
                if not jobs:
                    break
                self.send_batch(target, jobs)
                sent = True
        head = ledger.peek_ready()
        if local is not None and head is not None:
            if local.stalled_on is not None and local.stalled_on not in local.jobs:
                local.stalled_on = None
            # Cheap jobs run inline only while the executor is idle: beside a busy one they
            # would just share its core (and the GIL), and slow its job down.
            if not local.jobs and fn_cost.get(cost_key(head._fn), _INLINE_SECONDS) < _INLINE_SECONDS:
                sent |= self.run_inline(min(batch_size, share))
            elif local.stalled_on is None and len(local.jobs) < ahead:
                jobs = ledger.take_ready(min(batch_size, ahead - len(local.jobs), share))
                if jobs:
                    owned = local.jobs
                    for job in jobs:
                        owned[job.id] = job
                        job._waiting = -1
                    local.batches.put(jobs)
                    sent = True
        return sent

    def rebalance(self) -> bool:
        """At the end of a phase (nothing is ready), give the main rank's unstarted jobs
        to the ranks that ran dry, keeping it a fair share: otherwise they wait idle
        while the main rank (whose jobs share a core with this dispatcher) works through
        the last ones alone. Jobs go from the end of its queue; one that the job thread
        has taken is never given away (the thread takes, this recalls, under one lock).
        """
        local = self.local
        if self.drained or local.stalled_on is not None:
            return False
        idle = [target for target in self.ranks
                if not target.jobs and target.stalled_on is None and not target.silent]
        if not idle:
            return False
        # Keep a fair share of what this thread may still run; give away the end.
        waiting = [job for job in local.jobs.values() if job.status is _QUEUED]
        given = local.take_back(waiting[-(-len(waiting) // (len(idle) + 1)):])
        if not given:
            return False
        share = -(-len(given) // len(idle))
        for index, target in enumerate(idle):
            jobs = given[index * share:(index + 1) * share]
            if jobs:
                self.send_batch(target, jobs)
        return True

    def run_inline(self, count: int) -> bool:
        """Run up to ``count`` cheap ready jobs in this thread (they cost less than a
        hand-off to the executor thread); stops early when a job turns out slow."""
        ledger = self.ledger
        fn_cost = self.fn_cost
        travel = self.travel
        jobs = ledger.take_ready(count)  # one call, not one per job; the rest go back
        ran = taken = 0
        last_fn = key = None
        start = time.perf_counter()
        for job in jobs:
            if ledger.drain_requested:  # fail_fast: no job taken here runs any more
                ledger.dropped(job)
                taken += 1
                continue
            fn = job._fn
            if fn is not last_fn:  # runs of one function: one lookup
                key = cost_key(fn)
                if fn_cost.get(key, _INLINE_SECONDS) >= _INLINE_SECONDS:
                    break  # not known to be cheap: leave it to the others
                last_fn = fn
            taken += 1
            seconds = run_here(ledger, job, travel)
            if seconds is None:
                continue
            ran += 1
            if seconds > _INLINE_SECONDS:
                fn_cost[key] = seconds
                break
            if time.perf_counter() - start > _BATCH_SECONDS:
                break
        if taken < len(jobs):
            ledger.put_back(jobs[taken:])
        if ran:
            elapsed = time.perf_counter() - start
            self._learn(elapsed, ran)
        return bool(ran)

    def _function_id(self, fn) -> int:
        key = function_key(fn)
        entry = self.fn_ids.get(key)
        if entry is None:
            entry = self.fn_ids[key] = (self.next_fn_id, fn)
            self.next_fn_id += 1
        return entry[0]

    def send_batch(self, target: _Rank, jobs: list) -> None:
        if len(self.fn_ids) >= _MAX_FUNCTIONS:
            # Per-job closures would otherwise be kept until execute() returns: start
            # afresh, here and (with their next batch) on every rank. Only between
            # batches, so a batch never names a function its rank is told to forget.
            self.fn_ids.clear()
            for rank in self.ranks:
                rank.known_fns.clear()
                rank.reset = True
        known = target.known_fns
        reset = target.reset
        target.reset = False
        new_fns = []
        ids = []
        fn_ids = []
        all_args = []
        all_kwargs: list | None = None
        plain_values = True  # every argument a plain scalar, no kwargs: plain pickle
        owned = target.jobs
        mark = -1 - target.rank
        last_fn = None
        fn_id = -1
        fn_cost = self.fn_cost
        cost = job_cost = 0.0  # the batch's estimated work (inf: a job of unknown cost)
        for job in jobs:
            fn = job._fn
            if fn is not last_fn:  # runs of one function: one lookup
                fn_id = self._function_id(fn)
                if fn_id not in known:
                    new_fns.append((fn_id, fn))
                    known.add(fn_id)
                last_fn = fn
                job_cost = fn_cost.get(cost_key(fn), _UNKNOWN_COST)
            cost += job_cost
            args = job._args
            if plain_values:
                for item in args:
                    if item.__class__ not in SCALARS:
                        plain_values = False
                        break
            if job._kwargs:
                plain_values = False
                if all_kwargs is None:
                    all_kwargs = [None] * len(jobs)
                all_kwargs[len(ids)] = job._kwargs
            ids.append(job.id)
            fn_ids.append(fn_id)
            all_args.append(args)
        tasks = (fn_ids, all_args, all_kwargs)
        try:
            body = self._pack_batch(new_fns, tasks, plain_values)
        except Exception:
            jobs, new_fns, tasks = self._drop_unpicklable(target, jobs, new_fns, tasks)
            if not jobs:
                return
            ids = [job.id for job in jobs]
            body = self._pack_batch(new_fns, tasks, False)
        # A rank with nothing else to run starts the batch at once, and a cheap batch
        # is not worth a round trip (a stopped rank keeps at most what is in flight of
        # cheap ones, about _AHEAD_SECONDS of work): they come granted. Any other waits
        # in the rank's queue, and is granted when the rank claims it.
        idle = not owned
        granted = idle or cost <= _GRANTED_SECONDS
        if idle:
            target.heard = time.monotonic()  # silence is counted from now
        for job in jobs:
            owned[job.id] = job
            job._waiting = mark
        number = target.last_batch = self.next_batch
        self.next_batch += 1
        if not granted:
            target.unclaimed[number] = ids
        self.outbox.send(target.rank, encode(Kind.BATCH, number,
                                             join(plain((ids, reset, granted)), body)))

    def grant(self, target: _Rank, number: int) -> None:
        """Answer a rank's CLAIM of batch ``number``: it may start the batch's jobs that
        are still its own (none, if the batch was taken back)."""
        ids = target.unclaimed.pop(number, None)
        owned = target.jobs
        if ids is None:
            given: list[int] | None = []
        elif all(job_id in owned for job_id in ids):
            given = None  # all of them (the common case: a short message)
        else:
            given = [job_id for job_id in ids if job_id in owned]
        self.outbox.send(target.rank, encode(Kind.GRANT, number, plain(given)))

    def take_back_unclaimed(self, target: _Rank) -> list:
        """The jobs of ``target``'s unclaimed batches, taken back without asking (it has
        not claimed them, so it started none): ready again, to run elsewhere."""
        owned = target.jobs
        taken = []
        for ids in target.unclaimed.values():
            for job_id in ids:
                job = owned.get(job_id)
                if job is not None and job.status is _QUEUED:
                    del owned[job_id]
                    taken.append(job)
        target.unclaimed.clear()
        return taken

    def _pack_batch(self, new_fns: list, tasks: tuple, plain_values: bool) -> bytes:
        """The functions (cloudpickled, nodes by name) and the tasks: plainly pickled
        when every argument is a plain scalar (no per-object hook: the common case)."""
        fns_blob = dumps(new_fns, self.network) if new_fns else b""
        return join(fns_blob, plain(tasks) if plain_values else dumps(tasks, self.network))

    def _drop_unpicklable(self, target, jobs, new_fns, tasks):
        """Fail the jobs that cannot be pickled (naming why); keep the others."""
        fns = dict(new_fns)
        fn_ids, all_args, all_kwargs = tasks
        keep_jobs, keep_ids, keep_args, keep_kwargs, needed = [], [], [], [], set()
        for index, job in enumerate(jobs):
            fn_id = fn_ids[index]
            kwargs = all_kwargs[index] if all_kwargs is not None else None
            try:
                dumps((fns.get(fn_id), all_args[index], kwargs), self.network)
            except Exception as exc:
                self.ledger.unsent(job, unsent_error(job, exc))
                continue
            keep_jobs.append(job)
            keep_ids.append(fn_id)
            keep_args.append(all_args[index])
            keep_kwargs.append(kwargs)
            needed.add(fn_id)
        for fn_id in fns:
            if fn_id not in needed:
                target.known_fns.discard(fn_id)
        kept_fns = [(i, f) for i, f in new_fns if i in needed]
        return keep_jobs, kept_fns, (keep_ids, keep_args, keep_kwargs)

    def free_caches(self) -> None:
        freed = self.ledger.freed
        body = encode(Kind.FREE, 0, plain(list(freed)))
        freed.clear()
        for target in self.ranks:
            self.outbox.send(target.rank, body)

    def drain(self) -> None:
        """fail_fast: every rank drops the jobs it has not started."""
        self.drained = True
        if self.local is not None:
            self.local.draining = True
        for target in self.ranks:
            self.outbox.send(target.rank, encode(Kind.DRAIN))

    def forward_cancels(self) -> None:
        """Jobs cancelled after being sent: ask their rank to drop them if unstarted.

        They become CANCELLED only when the rank answers that it dropped them; a job
        that had already started runs to its end and keeps its real outcome.
        """
        by_rank: dict[int, list[int]] = {}
        for job in self.ledger.take_cancels():
            if job.status is _QUEUED and job._waiting < 0:
                by_rank.setdefault(-1 - job._waiting, []).append(job.id)
        for rank, ids in by_rank.items():
            if rank == 0:
                if self.local is not None:
                    self.local.cancelled.update(ids)
            else:
                self.outbox.send(rank, encode(Kind.CANCEL, 0, plain(ids)))

    def ask_reports(self, source: int) -> None:
        """SIGUSR1 reached ``source``: every other rank prints its report too."""
        self.guard.report_requested = False
        if self.outbox is None:
            return
        for target in self.ranks:
            if target.rank != source:
                # A message of its own tag: the worker's report thread takes it mid-job.
                self.comm.Isend([b"", 0, MPI_BYTE()], target.rank, TAG_DUMP).Free()

    def look_for_stalls(self) -> None:
        """Take back the unstarted jobs of a rank whose current job overran, or that
        said nothing for as long (stopped, hung, or in a job that never announced its
        start), so that they run elsewhere instead of waiting behind it.

        Exactly once: the main rank's own thread gives back only the jobs it has not
        taken (under its lock); another rank is sent a RECALL, and only the jobs it
        answers that it gave back (RECALLED) are ready again. A rank that never answers
        keeps its jobs: whether it started one just before it stopped cannot be known
        here, and when it resumes it either runs them or gives them back.
        """
        now = time.time()
        if now < self.next_stall_check:
            return
        self.next_stall_check = now + _STALL_CHECK_EVERY
        quiet = time.monotonic()
        for target in self.targets:
            if not target.jobs or target.stalled_on is not None:
                continue
            jobs = list(target.jobs.values())
            head = jobs[0]
            cost = self.fn_cost.get(cost_key(head._fn), self.mean) or 0.0
            limit = min(_OVERRUN_MAX, max(_OVERRUN_MIN, _OVERRUN_FACTOR * cost))
            if head.status is _RUNNING and head.started_at is not None:
                if now - head.started_at < limit:
                    continue
                jobs = jobs[1:]  # it runs the head
            elif target is self.local or quiet - target.heard < limit:
                continue
            else:
                target.silent = True  # stopped, hung, or in a job that never said so
            wanted = [job for job in jobs if job.status is _QUEUED]
            if not wanted:
                continue
            target.stalled_on = head.id
            if target is self.local:
                self.ledger.recalled(self.local.take_back(wanted))
                continue
            taken = self.take_back_unclaimed(target)
            if taken:
                self.ledger.recalled(taken)
            # The jobs of the batches it claimed: only it can say which it did not start.
            ids = [job.id for job in wanted if job.id in target.jobs]
            if ids:
                body = plain((ids, target.last_batch))
                self.recalls.send(target.rank, encode(Kind.RECALL, 0, body))

    # --- receiving outcomes ---------------------------------------------------------

    def receive(self) -> bool:
        ledger = self.ledger
        jobs = ledger.jobs
        got = False
        while (incoming := self.inbox.poll()) is not None:
            got = True
            source, buffer = incoming
            target = self.ranks[source - 1]
            target.heard = time.monotonic()
            target.silent = False
            kind, number, body = decode(buffer)
            if kind == Kind.RESULTS:
                self._results(target, body)
            elif kind == Kind.CLAIM:
                self.grant(target, number)
            elif kind == Kind.STARTED:
                job = jobs[number]
                if job._waiting == -1 - source:
                    ledger.started(job, source, loads(body, None))
            elif kind == Kind.DROPPED:
                for job_id in loads(body, None):
                    job = target.jobs.pop(job_id, None)
                    if job is not None:
                        ledger.dropped(job)
            elif kind == Kind.RECALLED:  # given back unstarted: ready again
                owned = target.jobs
                given = [owned.pop(job_id) for job_id in loads(body, None) if job_id in owned]
                ledger.recalled(given)
            elif kind == Kind.BATCH_FAILED:
                ids, packed = loads(body, None)
                error = unpack_error(packed, self.network)
                for job_id in ids:
                    job = target.jobs.pop(job_id, None)
                    if job is None:
                        continue
                    failure = JobPoolError(
                        f"job {job.name!r} could not be unpickled on rank {source}: "
                        f"{type(error).__name__}: {error}"
                    )
                    failure.__cause__ = error
                    ledger.unsent(job, failure)
            elif kind == Kind.WORKER_FAILED:
                text = loads(body, None)
                raise JobPoolError(f"rank {source} failed outside its jobs and left the pool: {text}")
            elif kind == Kind.INTERRUPTED:
                raise PoolInterrupted(source, loads(body, None))
            elif kind == Kind.REPORT:
                self.guard.print_report(unless_within=_REPORT_DEDUP)
                self.ask_reports(source)
        return got

    def _results(self, target: _Rank, body) -> None:
        ledger = self.ledger
        jobs = ledger.jobs
        meta_blob, values_blob = split(body)
        meta = loads(meta_blob, None)
        try:
            values = loads(values_blob, self.network)
        except Exception as exc:
            error = JobPoolError(
                f"results from rank {target.rank} could not be unpickled on the main rank: "
                f"{type(exc).__name__}: {exc}"
            )
            values = [None] * len(meta)
            meta = [(job_id, None, t0, t1) for job_id, _, t0, t1 in meta]
        else:
            error = None
        rank = target.rank
        owned = target.jobs
        if meta:
            self._learn(meta[-1][3] - meta[0][2], len(meta), jobs[meta[0][0]]._fn)
        network = self.network
        succeeded = []  # recorded together (ledger.succeeded), in order with failures
        for (job_id, ok, t0, t1), value in zip(meta, values):
            if owned.pop(job_id, None) is None:
                continue  # taken back (run elsewhere) or cancelled meanwhile
            if ok:
                succeeded.append((jobs[job_id], value, t0, t1))
                continue
            if succeeded:
                ledger.succeeded(succeeded, rank)
                succeeded = []
            if ok is None:
                ledger.finished(jobs[job_id], False, error, rank, t0, t1)
            else:
                ledger.finished(jobs[job_id], False, unpack_error(value, network), rank, t0, t1)
        if succeeded:
            ledger.succeeded(succeeded, rank)

    def collect_local(self) -> bool:
        ledger = self.ledger
        local = self.local
        done = local.done
        owned = local.jobs
        taken = local.taken
        count = 0
        first_t0 = last_t1 = fn = None
        while done:
            item = done.popleft()
            cls = item.__class__
            if cls is tuple:  # (job, outcome): ended
                job, (ok, value, t0, t1) = item
                taken.discard(job.id)
                if owned.pop(job.id, None) is None:
                    continue
                count += 1
                if first_t0 is None:
                    first_t0 = t0
                    fn = job._fn
                last_t1 = t1
                ledger.finished(job, ok, value, 0, t0, t1)
            elif cls is _Started:
                if item.job.id in owned:
                    ledger.started(item.job, 0, item.t0)
            elif cls is _Dropped:
                taken.discard(item.job.id)
                if owned.pop(item.job.id, None) is not None:
                    ledger.dropped(item.job)
            elif cls is _Unsent:
                taken.discard(item.job.id)
                if owned.pop(item.job.id, None) is not None:
                    ledger.unsent(item.job, item.error)
            else:
                error = JobPoolError(
                    f"the main rank's job thread failed: {type(item.error).__name__}: {item.error}"
                )
                raise error from item.error
        if count:
            self._learn(last_t1 - first_t0, count, fn)
        return True

    def close(self, summary, clean: bool) -> None:
        if self.comm is not None:
            stop_workers(self.pool, summary, self.outbox)
            self.recalls.wait(bound=1.0)
        if self.local is not None:
            self.local.draining = not clean
            self.local.stop(wait=clean)


def main_execute(pool, guard) -> None:
    """Feed every rank until each job ended, then release the other ranks."""
    dispatcher = _Dispatcher(pool, guard)
    ledger = pool._ledger
    try:
        dispatcher.run()
    except BaseException as exc:
        ledger.broken(exc)
        dispatcher.close(ledger.summary(), clean=False)
        raise
    else:
        dispatcher.close(ledger.summary(), clean=True)


def stop_workers(pool, summary: Summary, outbox: Outbox | None = None) -> None:
    """Send STOP (with the pool's :class:`Summary`) to every other rank."""
    if pool._comm is None:
        return
    outbox = outbox or Outbox(pool._comm, TAG_TO_WORKER)
    body = encode(Kind.STOP, 0, plain(summary))
    for rank in range(1, pool.size):
        outbox.send(rank, body)
    outbox.wait(bound=10.0)
