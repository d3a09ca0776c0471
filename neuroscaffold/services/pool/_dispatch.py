"""The main rank's side of execute(): serially, or feeding every rank (itself too).

In parallel the main thread only does bookkeeping and MPI: it keeps each rank's queue
filled a few batches ahead, sized from measured job durations, and runs the main rank's
own share of jobs in a local executor thread. So a long job on the main rank never
starves the others, and listeners are only ever called from the main thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from queue import SimpleQueue

from ..._backoff import Backoff
from ...exceptions import JobPoolError
from ._protocol import (
    TAG_TO_MAIN,
    TAG_TO_WORKER,
    Kind,
    dumps,
    loads,
    pickling_error,
    result_error,
    unpack_error,
    unsent_error,
)
from ._status import JobStatus, PoolProgressReason
from ._wire import Inbox, Outbox, decode, encode, plain, split

_QUEUED = JobStatus.QUEUED
_EMPTY: dict = {}
_BATCH_SECONDS = 0.002  # aim for batches of about this much work
_AHEAD_SECONDS = 0.02  # and keep about this much work in flight on every rank
_MAX_BATCH = 2048
_MAX_AHEAD = 32768
_MIN_AHEAD = 2
_FLUSH_EVERY = 0.02
_INLINE_SECONDS = 0.001  # jobs known to be cheaper than this run in the dispatcher itself
_INLINE_ALL_SECONDS = 0.0002  # when all ready work is below this, skip the round trips
_DISPATCH_WAIT_MAX = 0.005  # the longest nap of a dispatcher idle for long (~100 ms)


def duplicate(comm):
    """The pool's own communicator; waits without spinning for the other ranks."""
    raw = comm.get_communicator() if hasattr(comm, "get_communicator") else comm
    new, request = raw.Idup()
    backoff = Backoff()
    while not request.Test():
        backoff.sleep()
    return new


# --- running a job here, as another rank would ------------------------------------------


def cannot_travel(job, network, checked: dict):
    """The error of a job whose function or arguments would not reach another rank.

    A job must fail the same way whichever rank runs it, so jobs run in this process
    are held to it too. Functions are checked once (``checked`` remembers them).
    """
    fn = job._fn
    try:
        cause = checked[fn]
    except KeyError:
        cause = checked[fn] = pickling_error(fn, network)
    except TypeError:  # an unhashable callable: check it every time
        cause = pickling_error(fn, network)
    if cause is None and job._args:
        cause = pickling_error(job._args, network)
    if cause is None and job._kwargs:
        cause = pickling_error(job._kwargs, network)
    return None if cause is None else unsent_error(job, cause)


def run_in_this_thread(pool, job, network, checked: dict) -> float | None:
    """Run a QUEUED ``job`` here with its events; returns its run time (None if it
    could not travel, and so failed without running)."""
    error = cannot_travel(job, network, checked)
    if error is not None:
        pool._fail_job_unsent(job, error)
        return None
    t0 = time.time()
    pool._start(job, 0, t0)
    ok, value = call(job, network)
    t1 = time.time()
    pool._finish(job, ok, value, 0, t0, t1)
    return t1 - t0


def call(job, network) -> tuple[bool, object]:
    """Run ``job``; a result that could not travel back fails it, as on another rank."""
    try:
        value = job._fn(network, *job._args, **(job._kwargs or _EMPTY))
    except Exception as exc:
        return False, exc
    cause = pickling_error(value, network)
    if cause is not None:
        return False, result_error(cause)
    return True, value


# --- serial ----------------------------------------------------------------------------


def serial_execute(pool) -> None:
    """Run every job in this process, in dependency order, with the same events."""
    network = pool.network
    ready = pool._ready
    listeners = pool._listeners
    wake = pool._wake
    checked: dict = {}
    pool._drain_incoming()
    while True:
        if pool._incoming:
            pool._drain_incoming()
        if ready:
            job = ready.popleft()
            if job.status is not _QUEUED:
                continue
            run_in_this_thread(pool, job, network, checked)
            if listeners.waits:
                _ping(pool)
            continue
        if pool._incoming or pool._scheduling():
            wake.clear()
            if not pool._incoming and pool._scheduling():
                wake.wait(_ping(pool) if listeners.waits else 0.05)
            continue
        return


def _ping(pool) -> float:
    due = pool._listeners.ping(lambda: pool._event(PoolProgressReason.MAX_TIMEOUT_PING))
    return 0.05 if due is None else max(due, 0.0)


# --- parallel: the main rank ----------------------------------------------------------


class _Rank:
    """A rank the main rank feeds, as the dispatcher sees it."""

    __slots__ = ("rank", "in_flight", "known_fns")

    def __init__(self, rank: int):
        self.rank = rank
        self.in_flight = 0
        self.known_fns: set[int] = set()


class _LocalExecutor:
    """The main rank's own share of the jobs, run in a thread beside the dispatcher."""

    def __init__(self, pool):
        self.rank = 0
        self.in_flight = 0
        self.draining = False
        self.batches: SimpleQueue = SimpleQueue()
        # (0, job, ok, value, t0, t1) ended | (1, job, t0) started | (2, job) dropped
        # | (3, job, error) cannot travel
        self.done: deque = deque()
        self.checked: dict = {}  # job functions known to travel (or why not)
        self.wake = threading.Event()  # set when ``done`` gets results
        self._network = pool.network
        self._thread = threading.Thread(target=self._run, name="neuroscaffold-local-jobs", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        network = self._network
        done = self.done
        last_start = 0.0
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            first = True
            for job in batch:
                if self.draining:
                    done.append((2, job))
                    continue
                error = cannot_travel(job, network, self.checked)
                if error is not None:
                    done.append((3, job, error))
                    continue
                t0 = time.time()
                if first or t0 - last_start > _FLUSH_EVERY:
                    done.append((1, job, t0))
                    last_start = t0
                    first = False
                try:
                    ok, value = call(job, network)
                except BaseException as exc:  # noqa: B902 - a job's SystemExit is its failure
                    ok, value = False, exc
                done.append((0, job, ok, value, t0, time.time()))
            self.wake.set()

    def stop(self, wait: bool) -> None:
        self.batches.put(None)
        if wait:
            self._thread.join()


class _Dispatcher:
    def __init__(self, pool):
        self.pool = pool
        self.network = pool.network
        self.comm = pool._comm
        self.inbox = Inbox(self.comm, TAG_TO_MAIN)
        self.outbox = Outbox(self.comm, TAG_TO_WORKER)
        self.ranks = [_Rank(rank) for rank in range(1, pool.size)]
        self.local = _LocalExecutor(pool) if pool.main_executes else None
        self.targets = ([self.local] if self.local else []) + self.ranks
        self.fn_ids: dict = {}
        self.batches: dict[int, list] = {}
        self.next_batch = 0
        self.freed: list = []
        self.mean = None  # measured seconds per job
        self.fn_cost: dict = {}  # measured seconds per job, per job function
        pool._on_cache_freed = self.freed.append
        pool._on_fail_fast = self.drain

    # Measured job durations decide the batch size and how far ahead each rank is fed,
    # and (per function) whether the main rank runs a job inline or in its thread.
    def _learn(self, seconds: float, count: int, fn=None) -> None:
        per_job = max(seconds / count, 1e-7)
        self.mean = per_job if self.mean is None else 0.7 * self.mean + 0.3 * per_job
        if fn is not None:
            cost = self.fn_cost.get(fn)
            self.fn_cost[fn] = per_job if cost is None else 0.7 * cost + 0.3 * per_job

    def run(self) -> None:
        pool = self.pool
        listeners = pool._listeners
        backoff = Backoff(tmax=_DISPATCH_WAIT_MAX)
        pool._drain_incoming()
        while True:
            busy = pool._drain_incoming()
            busy |= self.receive()
            if self.local is not None and self.local.done:
                busy |= self.collect_local()
            if self.freed:
                self.free_caches()
            if pool._ready:
                busy |= self.dispatch()
            self.outbox.prune()
            if self.finished():
                return
            limit = _ping(pool) if listeners.waits else None
            if busy:
                backoff.reset()
            elif self.local is not None and self.local.in_flight:
                # The local executor sets this event as soon as it has results.
                self.local.wake.wait(backoff.next_delay(limit))
                self.local.wake.clear()
            else:
                backoff.sleep(limit)

    def finished(self) -> bool:
        pool = self.pool
        return (
            pool._unfinished == 0
            and not pool._incoming
            and not pool._scheduling()
            and all(target.in_flight == 0 for target in self.targets)
        )

    # --- sending work ---------------------------------------------------------------

    def dispatch(self) -> bool:
        mean = self.mean
        if mean is None:
            batch_size, ahead = 1, _MIN_AHEAD
        else:
            batch_size = max(1, min(_MAX_BATCH, int(_BATCH_SECONDS / mean)))
            ahead = max(_MIN_AHEAD, min(_MAX_AHEAD, int(_AHEAD_SECONDS / mean)))
        ready = self.pool._ready
        local = self.local
        # A few cheap jobs are done here sooner than a round trip to a sleeping rank.
        if (
            local is not None
            and mean is not None
            and len(ready) * mean < _INLINE_ALL_SECONDS
            and self.fn_cost.get(ready[0]._fn, _INLINE_SECONDS) < _INLINE_SECONDS
            and self.run_inline(len(ready))
        ):
            return True
        # Feed each rank up to ``ahead``, but no more than its fair share of what is
        # ready now, so a small burst is spread over every rank, the main one included.
        share = -(-len(ready) // (len(self.ranks) + (local is not None)))
        sent = False
        for target in sorted(self.ranks, key=lambda t: t.in_flight):
            limit = min(ahead, target.in_flight + share)
            while ready and target.in_flight < limit:
                jobs = self._take(min(batch_size, limit - target.in_flight))
                if not jobs:
                    break
                self.send_batch(target, jobs)
                sent = True
        if local is not None and ready:
            head = ready[0]._fn
            if self.fn_cost.get(head, _INLINE_SECONDS) < _INLINE_SECONDS:
                sent |= self.run_inline(min(batch_size, share))
            elif local.in_flight < ahead:
                jobs = self._take(min(batch_size, ahead - local.in_flight, share))
                if jobs:
                    local.in_flight += len(jobs)
                    local.batches.put(jobs)
                    sent = True
        return sent

    def _take(self, count: int) -> list:
        ready = self.pool._ready
        jobs = []
        while ready and len(jobs) < count:
            job = ready.popleft()
            if job.status is _QUEUED:
                jobs.append(job)
        return jobs

    def run_inline(self, count: int) -> bool:
        """Run up to ``count`` cheap ready jobs in this thread (they cost less than a
        hand-off to the executor thread); stops early when a job turns out slow."""
        pool = self.pool
        ready = pool._ready
        network = self.network
        fn_cost = self.fn_cost
        ran = 0
        start = time.perf_counter()
        while ready and ran < count:
            job = ready.popleft()
            if job.status is not _QUEUED:
                continue
            fn = job._fn
            if fn_cost.get(fn, _INLINE_SECONDS) >= _INLINE_SECONDS:
                ready.appendleft(job)  # not known to be cheap: leave it to the others
                break
            seconds = run_in_this_thread(pool, job, network, self.local.checked)
            if seconds is None:
                continue
            ran += 1
            if seconds > _INLINE_SECONDS:
                fn_cost[fn] = seconds
                break
            if time.perf_counter() - start > _BATCH_SECONDS:
                break
        if ran:
            elapsed = time.perf_counter() - start
            self._learn(elapsed, ran)
        return bool(ran)

    def send_batch(self, target: _Rank, jobs: list) -> None:
        fn_ids = self.fn_ids
        new_fns = []
        tasks = []
        for job in jobs:
            fn = job._fn
            fn_id = fn_ids.get(fn)
            if fn_id is None:
                fn_id = fn_ids[fn] = len(fn_ids)
            if fn_id not in target.known_fns:
                new_fns.append((fn_id, fn))
                target.known_fns.add(fn_id)
            tasks.append((job.id, fn_id, job._args, job._kwargs))
        try:
            body = dumps((new_fns, tasks), self.network)
        except Exception:
            jobs, new_fns, tasks = self._drop_unpicklable(target, jobs, new_fns, tasks)
            if not jobs:
                return
            body = dumps((new_fns, tasks), self.network)
        number = self.next_batch
        self.next_batch += 1
        self.batches[number] = jobs
        target.in_flight += len(jobs)
        self.outbox.send(target.rank, encode(Kind.BATCH, number, body))

    def _drop_unpicklable(self, target, jobs, new_fns, tasks):
        """Fail the jobs that cannot be pickled (naming why); keep the others."""
        fns = dict(new_fns)
        keep_jobs, keep_tasks, needed = [], [], set()
        for job, task in zip(jobs, tasks):
            fn_id = task[1]
            try:
                dumps((fns.get(fn_id), task), self.network)
            except Exception as exc:
                self.pool._fail_job_unsent(job, unsent_error(job, exc))
                continue
            keep_jobs.append(job)
            keep_tasks.append(task)
            needed.add(fn_id)
        for fn_id in fns:
            if fn_id not in needed:
                target.known_fns.discard(fn_id)
        return keep_jobs, [(i, f) for i, f in new_fns if i in needed], keep_tasks

    def free_caches(self) -> None:
        body = encode(Kind.FREE, 0, plain(list(self.freed)))
        self.freed.clear()
        for target in self.ranks:
            self.outbox.send(target.rank, body)

    def drain(self) -> None:
        """fail_fast: every rank drops the jobs it has not started."""
        if self.local is not None:
            self.local.draining = True
        for target in self.ranks:
            self.outbox.send(target.rank, encode(Kind.DRAIN))

    # --- receiving outcomes ---------------------------------------------------------

    def receive(self) -> bool:
        pool = self.pool
        jobs = pool._jobs
        got = False
        while (incoming := self.inbox.poll()) is not None:
            got = True
            source, buffer = incoming
            target = self.ranks[source - 1]
            kind, number, body = decode(buffer)
            if kind == Kind.RESULTS:
                self._results(target, body)
            elif kind == Kind.STARTED:
                pool._start(jobs[number], source, loads(body, None))
            elif kind == Kind.DROPPED:
                for job_id in loads(body, None):
                    target.in_flight -= 1
                    self._cancel_dropped(jobs[job_id])
            elif kind == Kind.BATCH_FAILED:
                error = unpack_error(loads(body, None), self.network)
                batch = self.batches.pop(number, ())
                target.in_flight -= len(batch)
                for job in batch:
                    failure = JobPoolError(
                        f"job {job.name!r} could not be unpickled on rank {source}: "
                        f"{type(error).__name__}: {error}"
                    )
                    failure.__cause__ = error
                    pool._fail_job_unsent(job, failure)
            elif kind == Kind.WORKER_FAILED:
                text = loads(body, None)
                raise JobPoolError(f"rank {source} failed outside its jobs and left the pool: {text}")
        return got

    def _results(self, target: _Rank, body) -> None:
        pool = self.pool
        jobs = pool._jobs
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
        target.in_flight -= len(meta)
        rank = target.rank
        if meta:
            self._learn(meta[-1][3] - meta[0][2], len(meta), jobs[meta[0][0]]._fn)
        network = self.network
        for (job_id, ok, t0, t1), value in zip(meta, values):
            if ok:
                pool._finish(jobs[job_id], True, value, rank, t0, t1)
            elif ok is None:
                pool._finish(jobs[job_id], False, error, rank, t0, t1)
            else:
                pool._finish(jobs[job_id], False, unpack_error(value, network), rank, t0, t1)

    def collect_local(self) -> bool:
        pool = self.pool
        done = self.local.done
        count = 0
        first_t0 = last_t1 = fn = None
        while done:
            item = done.popleft()
            kind = item[0]
            if kind == 0:
                _, job, ok, value, t0, t1 = item
                self.local.in_flight -= 1
                count += 1
                if first_t0 is None:
                    first_t0 = t0
                    fn = job._fn
                last_t1 = t1
                pool._finish(job, ok, value, 0, t0, t1)
            elif kind == 1:
                pool._start(item[1], 0, item[2])
            elif kind == 2:
                self.local.in_flight -= 1
                self._cancel_dropped(item[1])
            else:
                self.local.in_flight -= 1
                pool._fail_job_unsent(item[1], item[2])
        if count:
            self._learn(last_t1 - first_t0, count, fn)
        return True

    def _cancel_dropped(self, job) -> None:
        pool = self.pool
        if job.status is _QUEUED:
            pool._cancel_one(job, pool._fail_fast_error(job), pool._listeners.active)
            if job._dependents is not None:
                pool._cancel_dependents(job, job)

    def close(self, summary, clean: bool) -> None:
        stop_workers(self.pool, summary, self.outbox)
        if self.local is not None:
            self.local.draining = not clean
            self.local.stop(wait=clean)


def main_execute(pool) -> None:
    """Feed every rank until each job ended, then release the other ranks."""
    dispatcher = _Dispatcher(pool)
    try:
        dispatcher.run()
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        pool._break(reason)
        dispatcher.close(pool._summary(), clean=False)
        raise
    else:
        dispatcher.close(pool._summary(), clean=True)
    finally:
        # The hooks point back at the dispatcher: drop them so nothing keeps the pool
        # (and its jobs) alive in a reference cycle.
        del pool._on_cache_freed, pool._on_fail_fast


def stop_workers(pool, summary, outbox: Outbox | None = None) -> None:
    """Send STOP (with the failure summary, or None) to every other rank."""
    if pool._comm is None:
        return
    outbox = outbox or Outbox(pool._comm, TAG_TO_WORKER)
    body = encode(Kind.STOP, 0, plain(summary))
    for rank in range(1, pool.size):
        outbox.send(rank, body)
    outbox.wait(bound=10.0)
