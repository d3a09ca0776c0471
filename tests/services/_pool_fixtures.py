"""Shared helpers of the in-process pool tests (``test_pool_*.py``): a recording
listener, a fake configuration node with a ``pool_cache`` method, stream checks."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from neuroscaffold import (
    Network,
    pool_cache,
)
from neuroscaffold.services.pool import JobStatus, PoolProgressReason, PoolStatus


from tests.services._pool_names import (  # noqa: F401 (re-exported to the tests)
    ABORTED, ADDED, CANCELLED, CHANGE, CLOSING, EXECUTING, FAILED, LIFE, PENDING, PING, POOL,
    QUEUED, RUNNING, SCHEDULING, SUCCESS,
)
WAIT = 10.0  # seconds: bound of every wait on a threading.Event (a failure, not a hang)


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def network():
    return Network()


class Event(NamedTuple):
    reason: PoolProgressReason
    status: PoolStatus
    job: Any
    old: JobStatus | None
    new: JobStatus | None  # the job's status when the event was delivered


class Recorder:
    """A listener keeping every event it gets, in order."""

    def __init__(self, answer=None):
        self.events: list[Event] = []
        self.answer = answer  # callable(progress) -> return value of the listener

    def __call__(self, progress):
        job = progress.job
        self.events.append(
            Event(progress.reason, progress.status, job, progress.old_status, job and job.status)
        )
        return self.answer(progress) if self.answer else None

    def of(self, job) -> list[tuple]:
        """``job``'s own events: ``(reason, new status)``."""
        return [(e.reason, e.new) for e in self.events if e.job is job]

    def steps(self, job) -> list[tuple]:
        """``job``'s own events: ``(reason, old status)``; the same for a replay."""
        return [(e.reason, e.old) for e in self.events if e.job is job]

    def index(self, job, status: JobStatus) -> int:
        """Position of the event that moved ``job`` to ``status``."""
        for i, e in enumerate(self.events):
            if e.job is job and e.reason is CHANGE and e.new is status:
                return i
        raise AssertionError(f"{job} never became {status}")

    def pool_statuses(self) -> list[tuple[int, PoolStatus]]:
        return [(i, e.status) for i, e in enumerate(self.events) if e.reason is POOL]




def check_stream(recorder: Recorder, jobs) -> None:
    """The pool's stream: SCHEDULING first, CLOSING last, EXECUTING once in between,
    and each successful job's events are ADDED, QUEUED, RUNNING, SUCCESS in order."""
    events = recorder.events
    statuses = recorder.pool_statuses()
    assert [s for _, s in statuses] == [SCHEDULING, EXECUTING, CLOSING]
    assert statuses[0][0] == 0 and statuses[-1][0] == len(events) - 1
    for job in jobs:
        assert recorder.of(job) == LIFE, job


def workflow_message(excinfo) -> str:
    return excinfo.value.message


class Node:
    """Looks like a configuration node to the pool: a name, its network, ``depends_on``,
    ``queue(pool)``, and a ``pool_cache`` method counting how often it is computed."""

    def __init__(self, network, name, jobs=1, depends_on=(), fail_schedule=False, work=None):
        self.scaffold = network
        self.name = name
        self.jobs = jobs
        self.depends_on = list(depends_on)
        self.fail_schedule = fail_schedule
        self.computed = 0
        self.seen: list = []  # what each job saw: (index, value of heavy)
        self._work = work

    def get_node_name(self) -> str:
        return "{root}.test." + self.name

    def queue(self, pool) -> None:
        if self.fail_schedule:
            raise RuntimeError(f"cannot schedule {self.name}")
        if len(self.depends_on) == 1:  # the pool's own tuple: shared by every job
            deps = pool.get_submissions_of(self.depends_on[0])
        else:
            deps = tuple(j for dep in self.depends_on for j in pool.get_submissions_of(dep))
        for i in range(self.jobs):
            pool.queue(self.work, (i,), deps=deps, name=f"{self.name}[{i}]")

    def work(self, network, i):
        assert network is self.scaffold
        if self._work is not None:
            return self._work(self, i)
        self.seen.append((i, self.heavy()))
        return (self.name, i)

    @pool_cache
    def heavy(self):
        self.computed += 1
        return [self.name, self.computed]


def cached_nodes(pool) -> set:
    """The node keys with a value in this rank's ``pool_cache`` store."""
    return set(pool._cache.values)


class ContextListener:
    """A listener that is a context manager and records when it is used."""

    def __init__(self):
        self.log: list = []

    def __enter__(self):
        self.log.append("enter")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.log.append(("exit", exc_type))

    def __call__(self, progress):
        self.log.append(progress.status if progress.reason is POOL else progress.reason)
