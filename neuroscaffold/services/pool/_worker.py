"""The job loop of a rank other than the main rank (see the diagram in ``_protocol``).

A worker runs the tasks the main rank sends, in order, through :func:`._run.run_job`,
and answers with STARTED/RESULTS. It leaves on STOP only, so every rank leaves
``execute()`` together:

- STOP carries a :class:`._protocol.Summary`: the worker raises :class:`WorkflowError`
  (jobs failed) or :class:`PoolInterrupted` (a signal stopped the pool), or returns.
- If this rank fails outside its jobs, it prints its own error (headed by its rank),
  tells the main rank (WORKER_FAILED) and waits, bounded, for STOP before raising.
- If SIGINT/SIGTERM reaches this rank, it tells the main rank (INTERRUPTED) and waits,
  bounded, for STOP, then raises :class:`PoolInterrupted`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

from ..._backoff import Backoff
from ...exceptions import PoolInterrupted, WorkflowError
from ._protocol import (
    Cause,
    SCALARS,
    TAG_DUMP,
    TAG_RECALL,
    TAG_TO_MAIN,
    TAG_TO_WORKER,
    Kind,
    Summary,
    dumps,
    format_remote,
    loads,
    pack_error,
    result_error,
)
from ._run import run_job
from ._wire import Inbox, Outbox, decode, encode, join, plain, split

_FLUSH_EVERY = 0.02  # seconds: results (and starts) reach the main rank at least this often
_POLL_EVERY = 0.001  # seconds: the longest a worker runs tasks without looking for messages
_STOP_WAIT = 5.0  # seconds a failed or interrupted worker waits for the main rank's STOP
_END_OF_BATCH = None
_SIDE_POLL = 0.2  # seconds between two looks for a DUMP or RECALL (a thread; ~nothing of a core)
_REPORT_DEDUP = 2.0  # seconds: a rank that just printed its report does not repeat it
_LEFT_WAIT = 0.2  # seconds a stopped worker waits for sends that the main rank may not take


def worker_execute(pool, guard) -> None:
    """Run the jobs the main rank sends until it says STOP; raise what STOP says."""
    comm, rank = pool._comm, pool.rank
    inbox = Inbox(comm, TAG_TO_WORKER, source=0)
    outbox = Outbox(comm, TAG_TO_MAIN)
    # SIGUSR1 here: ask the main rank for every rank's report at once, even while a job
    # holds this thread (a Python-level handler runs between the job's bytecodes, never
    # inside an MPI call; its own outbox shares no list with the interrupted code).
    reports = Outbox(comm, TAG_TO_MAIN)
    guard.on_report = lambda: reports.send(0, encode(Kind.REPORT, rank))
    tasks = _Tasks(comm)
    side = _SideListener(comm, guard, tasks)
    clean = False
    try:
        try:
            summary = _loop(pool, guard, inbox, outbox, tasks)
            clean = _well_ended(summary)
        except PoolInterrupted as exc:
            outbox.send(0, encode(Kind.INTERRUPTED, rank, plain(exc.signal_name)))
            _await_stop(inbox, outbox)
            raise PoolInterrupted(rank, exc.signal_name) from None
        except BaseException as exc:
            _print_own_error(exc, rank, pool.size)
            report_failure(pool, exc, outbox)
            _await_stop(inbox, outbox)
            raise
    finally:
        guard.on_report = None
        side.stop(1.0 if clean else _LEFT_WAIT)
        # After a clean STOP the main rank has taken every message (it stops only once
        # every result came). After an interrupt or a failure it stopped reading: what
        # it did not take by now it never will, and waiting for it would keep this
        # rank from the run's next agreement, where the others already wait.
        outbox.wait(bound=10.0 if clean else _LEFT_WAIT)
        reports.wait(bound=1.0 if clean else _LEFT_WAIT)
    _raise_summary(summary)


class _Tasks:
    """This rank's queue of tasks, shared by the job loop and the side thread.

    A task is taken under ``lock``, by the job loop to run it or by the side thread to
    give it back (RECALL), never both: what this rank reports as given back was never
    started here, so the main rank may run it elsewhere (exactly once). A RECALL may
    name jobs of a batch still on its way: the job loop, held by a long job, has not
    received it. The side thread then receives the main rank's messages itself (under
    the lock, in order, kept in ``ahead`` for the job loop) up to that batch, and gives
    its recalled jobs back at once; those of a batch not even arrived are given back
    by the job loop when it comes.
    """

    __slots__ = ("queue", "lock", "ahead", "seen", "skip", "recall_ids", "recall_upto", "late",
                 "order", "granted", "claimed", "_recalls", "_inbox")

    def __init__(self, comm):
        #: (job id, fn, args, kwargs, first, batch number) or _END_OF_BATCH
        self.queue: deque = deque()
        self.lock = threading.Lock()
        self.order: deque[int] = deque()  # the numbers of the queued batches, in order
        self.granted: set[int] = set()  # queued batches whose jobs may start
        self.claimed: set[int] = set()  # queued batches claimed, not granted yet
        self.ahead: deque = deque()  # messages the side thread received for the job loop
        self.seen = -1  # the number of the last batch received (they only grow)
        self.skip: set[int] = set()  # given back already: left out when queued
        self.recall_ids: set[int] = set()  # recalled, in a batch not yet arrived ...
        self.recall_upto = -1  # ... at the latest in this one
        self.late: list[int] = []  # given back by the job loop as their batch came
        self._recalls = Inbox(comm, TAG_RECALL, source=0)
        self._inbox = Inbox(comm, TAG_TO_WORKER, source=0)  # to receive a batch early

    def answer_recalls(self) -> list[int]:
        """Take the RECALLs that came; return the ids given back (to answer with).
        Both the job loop (between tasks, so one that waited long, or was stopped,
        looks before its next task) and the side thread (while a job runs) call it."""
        given: list[int] = []
        with self.lock:
            if self.late:
                given, self.late = self.late, []
            while (incoming := self._recalls.poll()) is not None:
                ids, upto = loads(decode(incoming[1])[2], None)
                given += self._recall(ids, upto)
        return given

    def next_message(self, inbox: Inbox):
        """The job loop's next message from the main rank, or None."""
        with self.lock:
            if self.ahead:
                return self.ahead.popleft()
            incoming = inbox.poll()
            if incoming is not None and self.recall_upto > self.seen:
                self.late += self._saw(incoming[1])
            return incoming

    def _saw(self, buffer) -> list[int]:
        """Note a received batch's number; return its recalled ids (given back now)."""
        kind, number, body = decode(buffer)
        if kind != Kind.BATCH:
            return []
        self.seen = number
        wanted = self.recall_ids
        if not wanted:
            return []
        ids = loads(split(body)[0], None)[0]
        given = [job_id for job_id in ids if job_id in wanted]
        wanted.difference_update(given)
        self.skip.update(given)
        if number >= self.recall_upto:
            wanted.clear()  # the rest were started before the RECALL came
        return given

    def add_batch(self, number: int, batch: list, granted: bool = True) -> None:
        """Queue a received batch, without the jobs already given back; its jobs start
        once it is ``granted`` (see :meth:`claims_due`)."""
        with self.lock:
            if number > self.seen:
                self.seen = number
            if batch:
                self.order.append(number)
                if granted:
                    self.granted.add(number)
            skip = self.skip
            if skip:
                kept = []
                for task in batch:
                    if task is not _END_OF_BATCH and task[0] in skip:
                        skip.discard(task[0])
                    else:
                        kept.append(task)
                batch = kept
            self.queue.extend(batch)

    def _recall(self, ids, upto: int) -> list[int]:
        """Give back the unstarted tasks of ``ids``, sent in batches up to number
        ``upto``: return the ids given back (those of a batch not arrived yet are given
        back when it comes, by the job loop)."""
        wanted = set(ids)
        queue = self.queue
        dropped = [task[0] for task in queue if task is not _END_OF_BATCH and task[0] in wanted]
        if dropped:
            gone = set(dropped)
            kept = [task for task in queue if task is _END_OF_BATCH or task[0] not in gone]
            queue.clear()
            queue.extend(kept)
        if self.seen < upto:
            self.recall_ids.update(wanted.difference(dropped))
            self.recall_upto = max(self.recall_upto, upto)
            while self.seen < upto and (incoming := self._inbox.poll()) is not None:
                self.ahead.append(incoming)
                dropped += self._saw(incoming[1])
        return dropped

    def drop(self, ids) -> list[int]:
        """Remove the unstarted tasks of ``ids``; return the ids really removed."""
        wanted = set(ids)
        with self.lock:
            queue = self.queue
            dropped = [task[0] for task in queue if task is not _END_OF_BATCH and task[0] in wanted]
            if dropped:
                kept = [task for task in queue if task is _END_OF_BATCH or task[0] not in wanted]
                queue.clear()
                queue.extend(kept)
        return dropped

    def drop_all(self) -> list[int]:
        with self.lock:
            dropped = [task[0] for task in self.queue if task is not _END_OF_BATCH]
            self.queue.clear()
            self.order.clear()
            self.granted.clear()
            self.claimed.clear()
        return dropped

    def claims_due(self) -> list[int]:
        """The batches to claim now: of the next two queued, those neither granted nor
        claimed. Claiming one batch ahead, the grant comes back while the batch before
        it runs; a batch further back stays unclaimed, so the main rank can take it
        back without asking if this rank stops (see ``_protocol``)."""
        due = []
        with self.lock:
            for index, number in enumerate(self.order):
                if index == 2:
                    break
                if number not in self.granted and number not in self.claimed:
                    self.claimed.add(number)
                    due.append(number)
        return due

    def grant(self, number: int, ids) -> None:
        """The main rank granted batch ``number``: all its jobs (``ids`` None), or only
        those of ``ids`` (it took the others back: they are dropped unstarted)."""
        with self.lock:
            self.claimed.discard(number)
            self.granted.add(number)
            if ids is None:
                return
            keep = set(ids)
            queue = self.queue
            kept = [task for task in queue
                    if task is _END_OF_BATCH or task[5] != number or task[0] in keep]
            if len(kept) != len(queue):
                queue.clear()
                queue.extend(kept)

    def end_batch(self) -> None:
        """The job loop took the end-of-batch mark of the first queued batch."""
        if self.order:
            self.granted.discard(self.order.popleft())


class _SideListener:
    """Answers what the main rank asks while a job may hold this rank's main thread: a
    DUMP (print this rank's report) and a RECALL (give back these unstarted jobs,
    answered with RECALLED and the ids really given back). A small thread polls a few
    times a second (~nothing of a core); it has its own outbox."""

    def __init__(self, comm, guard, tasks: _Tasks):
        self._comm = comm
        self._guard = guard
        self._tasks = tasks
        self._outbox = Outbox(comm, TAG_TO_MAIN)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="neuroscaffold-side", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        comm = self._comm
        while not self._stop.wait(_SIDE_POLL):
            try:
                dump = comm.improbe(0, TAG_DUMP)
                if dump is not None:
                    dump.recv()
                    self._guard.print_report(unless_within=_REPORT_DEDUP)
                given = self._tasks.answer_recalls()
                if given:
                    self._outbox.send(0, encode(Kind.RECALLED, 0, plain(given)))
                self._outbox.prune()
            except Exception:
                return  # the pool's communicator is gone: this rank is leaving

    def stop(self, bound: float) -> None:
        """Stop the thread; wait at most ``bound`` seconds for its sends."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._outbox.wait(bound=bound)


def _well_ended(summary) -> bool:
    """Whether the main rank's STOP says the pool ended well (every job's result in)."""
    return summary is None or summary.message is None and summary.interrupted is None


def _raise_summary(summary) -> None:
    if _well_ended(summary):
        return
    if summary.interrupted is not None:
        raise PoolInterrupted(*summary.interrupted)
    causes = summary.causes or (Cause.ERROR,) * len(summary.lines)
    raise WorkflowError(summary.message,
                        [cause.error(line) for cause, line in zip(causes, summary.lines)])


def _await_stop(inbox: Inbox, outbox: Outbox) -> Summary | None:
    """Wait (bounded) for STOP, dropping whatever else comes; None if none came."""
    deadline = time.monotonic() + _STOP_WAIT
    backoff = Backoff()
    while time.monotonic() < deadline:
        incoming = inbox.poll()
        if incoming is None:
            outbox.prune()
            backoff.sleep()
            continue
        backoff.reset()
        kind, _, body = decode(incoming[1])
        if kind == Kind.STOP:
            return loads(body, None)
    return None


def _print_own_error(exc: BaseException, rank: int, size: int) -> None:
    """Only the main rank prints progress, but every rank prints its own fatal error."""
    text = format_remote(exc, rank, size)
    try:
        sys.stderr.write("".join(f"[rank {rank}] {line}\n" for line in text.strip().splitlines()))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    try:
        exc._neuroscaffold_printed = True
    except Exception:
        pass


def _loop(pool, guard, inbox: Inbox, outbox: Outbox, shared: _Tasks) -> Summary:
    network, rank, size = pool.network, pool.rank, pool.size
    tasks = shared.queue
    lock = shared.lock
    granted = shared.granted
    fns: dict[int, object] = {}
    meta: list = []
    values: list = []
    backoff = Backoff()
    last_sent = time.monotonic()

    def flush():
        nonlocal last_sent
        last_sent = time.monotonic()
        if not meta:
            return
        # Values first: _dump_values marks the jobs whose value cannot travel as failed in meta.
        blob = _dump_values(values, meta, network, rank, size)
        outbox.send(0, encode(Kind.RESULTS, 0, join(plain(meta), blob)))
        meta.clear()
        values.clear()

    while True:
        if guard.signal_name is not None:
            guard.check()
        received = False
        while (incoming := shared.next_message(inbox)) is not None:
            received = True
            kind, number, body = decode(incoming[1])
            if kind == Kind.BATCH:
                ids_blob, payload = split(body)
                ids, reset, pregranted = loads(ids_blob, None)
                if reset:
                    fns.clear()  # the main rank forgot its functions: so do we
                try:
                    fns_blob, tasks_blob = split(payload)
                    if fns_blob:
                        fns.update(loads(fns_blob, network))
                    fn_ids, all_args, all_kwargs = loads(tasks_blob, network)
                except Exception as exc:
                    shared.add_batch(number, [])  # its jobs fail here
                    packed = pack_error(exc, rank, size, network)
                    outbox.send(0, encode(Kind.BATCH_FAILED, number, plain((ids, packed))))
                    continue
                first = True
                last_id = fn = None
                batch = []
                for index, job_id in enumerate(ids):
                    fn_id = fn_ids[index]
                    if fn_id != last_id:
                        fn = fns[fn_id]
                        last_id = fn_id
                    kwargs = all_kwargs[index] if all_kwargs is not None else None
                    batch.append((job_id, fn, all_args[index], kwargs, first, number))
                    first = False
                batch.append(_END_OF_BATCH)
                shared.add_batch(number, batch, pregranted)
            elif kind == Kind.GRANT:
                shared.grant(number, loads(body, None))
            elif kind == Kind.FREE:
                for key in loads(body, network):
                    pool._cache.free(key)
            elif kind == Kind.DRAIN:
                dropped = shared.drop_all()
                flush()
                outbox.send(0, encode(Kind.DROPPED, 0, plain(dropped)))
            elif kind == Kind.CANCEL:
                dropped = shared.drop(loads(body, None))
                flush()
                outbox.send(0, encode(Kind.DROPPED, 0, plain(dropped)))
            elif kind == Kind.STOP:
                flush()
                return loads(body, None)
        given = shared.answer_recalls()
        if given:
            outbox.send(0, encode(Kind.RECALLED, 0, plain(given)))
        for number in shared.claims_due():
            outbox.send(0, encode(Kind.CLAIM, number))
        if tasks and (tasks[0] is _END_OF_BATCH or tasks[0][5] in granted):
            # Run tasks until the batch ends or _POLL_EVERY passed, then look for messages
            # again (not before every task: a probe costs more than a trivial job). A job
            # that ran that long is followed by a look, so a CANCEL that had arrived while
            # it ran is seen before the next task starts. A task is taken under the lock
            # the side thread drops recalled ones under (one thread or the other).
            backoff.reset()
            polled = time.monotonic()
            while True:
                with lock:
                    if not tasks:
                        break
                    task = tasks[0]
                    if task is _END_OF_BATCH:
                        tasks.popleft()
                        shared.end_batch()
                    elif task[5] not in granted:
                        break  # claimed (above), its grant still on its way
                    else:
                        tasks.popleft()
                if task is _END_OF_BATCH:
                    flush()
                    break
                job_id, fn, args, kwargs, first, _ = task
                if first or time.monotonic() - last_sent > _FLUSH_EVERY:
                    flush()
                    outbox.send(0, encode(Kind.STARTED, job_id, plain(time.time())))
                ok, value, t0, t1 = run_job(fn, args, kwargs, network, job_id, check_result=False)
                values.append(value if ok else pack_error(value, rank, size, network))
                meta.append((job_id, ok, t0, t1))
                now = time.monotonic()
                if now - last_sent > _FLUSH_EVERY:
                    flush()
                if now - polled > _POLL_EVERY or guard.signal_name is not None:
                    break
            continue
        flush()
        outbox.prune()
        if not received:
            backoff.sleep()


def _dump_values(values: list, meta: list, network, rank: int, size: int) -> bytes:
    """Pickle the results; one that cannot travel becomes that job's error, alone."""
    for value in values:
        if value.__class__ not in SCALARS:
            break
    else:  # plain scalars only (the common case of small jobs): no per-object hook
        return plain(values)
    try:
        return dumps(values, network)
    except Exception:
        pass
    for index, value in enumerate(values):
        try:
            dumps(value, network)
        except Exception as exc:
            values[index] = pack_error(result_error(exc), rank, size, network)
            job_id, _, t0, t1 = meta[index]
            meta[index] = (job_id, False, t0, t1)
    return dumps(values, network)


def report_failure(pool, exc: BaseException, outbox: Outbox | None = None) -> None:
    """Tell the main rank this rank can't take part any more, so nobody waits for it."""
    if pool._comm is None:
        return
    own = outbox is None
    if own:
        outbox = Outbox(pool._comm, TAG_TO_MAIN)
    text = f"{type(exc).__name__}: {exc}"
    outbox.send(0, encode(Kind.WORKER_FAILED, pool.rank, plain(text)))
    if own:
        outbox.wait(bound=5.0)
