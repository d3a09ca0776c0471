"""The job loop of a rank other than the main rank (see the diagram in ``_protocol``)."""

from __future__ import annotations

import time
from collections import deque

from ..._backoff import Backoff
from ._protocol import TAG_TO_MAIN, TAG_TO_WORKER, Kind, dumps, loads, pack_error, result_error
from ._wire import Inbox, Outbox, decode, encode, join, plain

_FLUSH_EVERY = 0.02  # seconds: results (and starts) reach the main rank at least this often
_EMPTY: dict = {}
_END_OF_BATCH = None


def worker_execute(pool):
    """Run the jobs the main rank sends until it says STOP; returns its summary."""
    comm, network, rank, size = pool._comm, pool.network, pool.rank, pool.size
    inbox = Inbox(comm, TAG_TO_WORKER, source=0)
    outbox = Outbox(comm, TAG_TO_MAIN)
    try:
        return _loop(pool, comm, network, rank, size, inbox, outbox)
    except BaseException as exc:
        report_failure(pool, exc, outbox)
        raise
    finally:
        outbox.wait(bound=10.0)


def _loop(pool, comm, network, rank, size, inbox, outbox):
    tasks: deque = deque()
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
        received = False
        while (incoming := inbox.poll()) is not None:
            received = True
            kind, number, body = decode(incoming[1])
            if kind == Kind.BATCH:
                try:
                    new_fns, batch = loads(body, network)
                except Exception as exc:
                    outbox.send(0, encode(Kind.BATCH_FAILED, number, plain(pack_error(exc, rank, size, network))))
                    continue
                fns.update(new_fns)
                first = True
                for job_id, fn_id, args, kwargs in batch:
                    tasks.append((job_id, fns[fn_id], args, kwargs, first))
                    first = False
                tasks.append(_END_OF_BATCH)
            elif kind == Kind.FREE:
                for key in loads(body, network):
                    pool._cache.free(key)
            elif kind == Kind.DRAIN:
                dropped = [task[0] for task in tasks if task is not _END_OF_BATCH]
                tasks.clear()
                flush()
                outbox.send(0, encode(Kind.DROPPED, 0, plain(dropped)))
            elif kind == Kind.STOP:
                flush()
                return loads(body, network)
        if tasks:
            task = tasks.popleft()
            if task is _END_OF_BATCH:
                flush()
                continue
            job_id, fn, args, kwargs, first = task
            t0 = time.time()
            if first or time.monotonic() - last_sent > _FLUSH_EVERY:
                flush()
                outbox.send(0, encode(Kind.STARTED, job_id, plain(t0)))
            try:
                value = fn(network, *args, **(kwargs or _EMPTY))
                ok = True
            except Exception as exc:
                value = pack_error(exc, rank, size, network)
                ok = False
            meta.append((job_id, ok, t0, time.time()))
            values.append(value)
            if time.monotonic() - last_sent > _FLUSH_EVERY:
                flush()
            backoff.reset()
            continue
        flush()
        outbox.prune()
        if not received:
            backoff.sleep()


def _dump_values(values: list, meta: list, network, rank: int, size: int) -> bytes:
    """Pickle the results; one that cannot travel becomes that job's error, alone."""
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
