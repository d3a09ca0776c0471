"""Stand-ins for a pool's jobs and events (docs/pool-contract.md), for unit tests.

:class:`FakePool` emits the event stream a real pool would, in the same order, with
times chosen by the test, so the displays can be driven without running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neuroscaffold.services.pool import (
    TERMINAL,
    JobStatus,
    PoolProgress,
    PoolProgressReason,
    PoolStatistics,
    PoolStatus,
    SubmitterStatistics,
    submitter_name,
)
from tests._pool_support import Node

__all__ = [
    "Clock",
    "FakeJob",
    "FakePool",
    "FakeWorkflow",
    "JobStatus",
    "PoolProgressReason",
    "PoolStatus",
    "run_many",
    "submitter",
]


class Clock:
    """A clock that moves only when the test sets :attr:`now`."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def submitter(name: str) -> Node:
    """A submitter that looks like a configuration node named ``name`` (the pool tests'
    fake node, without a network)."""
    return Node(None, name, node_name=name)


@dataclass(eq=False)
class FakeJob:
    id: int
    name: str
    submitter: Any = None
    status: JobStatus = JobStatus.PENDING
    rank: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: BaseException | None = None
    context: dict = field(default_factory=dict)

    def done(self) -> bool:
        return self.status in TERMINAL


class FakeWorkflow:
    def __init__(self, *phases: str):
        self.phases = list(phases)
        self.phase = phases[0]


class FakePool:
    """Sends a pool's events to ``listeners``; each method is one step of a real pool.
    Its :meth:`statistics` are a real pool's (the displays count from them), computed
    from its jobs as they are now; ``ranks``: the ranks taking part."""

    def __init__(self, *listeners, workflow=None, ranks: int = 2):
        self.listeners = list(listeners)
        self.workflow = workflow
        self.ranks = ranks
        self.jobs: list[FakeJob] = []
        self.status = PoolStatus.SCHEDULING
        self.failures: list[FakeJob] = []  # in the order they failed
        self.scheduling = False  # what statistics() says of jobs still being added

    def statistics(self) -> PoolStatistics:
        jobs = self.jobs
        ended = [job for job in jobs if job.done()]
        ran = [job for job in ended if job.status in (JobStatus.SUCCESS, JobStatus.FAILED)
               and job.started_at is not None and job.ended_at is not None]
        by_submitter: dict[int, list] = {}
        for job in jobs:
            if job.submitter is not None:
                entry = by_submitter.setdefault(id(job.submitter), [job.submitter, 0, 0])
                entry[1] += 1
                entry[2] += job.done()
        count = {status: sum(job.status is status for job in jobs) for status in JobStatus}
        running = sorted((job for job in jobs if job.status is JobStatus.RUNNING),
                         key=lambda job: job.started_at)
        return PoolStatistics(
            status=self.status, workflow=self.workflow, total=len(jobs), done=len(ended),
            succeeded=count[JobStatus.SUCCESS], failed=len(self.failures),
            cancelled=count[JobStatus.CANCELLED], running=tuple(running),
            submitters=tuple(SubmitterStatistics(submitter_name(sub), total, done)
                             for sub, total, done in by_submitter.values()),
            failures=tuple(self.failures), started_at=None,
            busy=sum(job.ended_at - job.started_at for job in ran), ran=len(ran),
            ranks=self.ranks, scheduling=self.scheduling,
        )

    def _emit(self, reason, job=None, old=None):
        event = PoolProgress(reason, self.status, self.jobs, self.workflow, job, old, 0.0, self)
        for listener in self.listeners:
            listener(event)

    def _move(self, job, status):
        old, job.status = job.status, status
        if status is JobStatus.FAILED:
            self.failures.append(job)
        self._emit(PoolProgressReason.JOB_STATUS_CHANGE, job, old)

    def _pool_status(self, status):
        self.status = status
        self._emit(PoolProgressReason.POOL_STATUS_CHANGE)

    def open(self):
        self._pool_status(PoolStatus.SCHEDULING)
        return self

    def execute(self):
        self._pool_status(PoolStatus.EXECUTING)

    def close(self):
        self._pool_status(PoolStatus.CLOSING)

    def add(self, name, submitter=None) -> FakeJob:
        job = FakeJob(len(self.jobs), name, submitter)
        self.jobs.append(job)
        self._emit(PoolProgressReason.JOB_ADDED, job)
        return job

    def start(self, job, rank, at):
        self._move(job, JobStatus.QUEUED)
        job.rank, job.started_at = rank, at
        self._move(job, JobStatus.RUNNING)

    def end(self, job, at, error=None):
        job.ended_at = at
        job.error = error
        self._move(job, JobStatus.FAILED if error else JobStatus.SUCCESS)

    def cancel(self, job):
        job.error = RuntimeError("a dependency failed")
        self._move(job, JobStatus.CANCELLED)

    def run(self, job, rank, start, end, error=None):
        self.start(job, rank, start)
        self.end(job, end, error)


def run_many(listener, n: int, clock: Clock, step: float, group: str = "g") -> FakePool:
    """A whole pool of ``n`` jobs run one after the other on ranks 1 and 2; the clock
    moves ``step`` seconds per job."""
    pool = FakePool(listener).open()
    jobs = [pool.add(f"job {i}", submitter(group)) for i in range(n)]
    pool.execute()
    for i, job in enumerate(jobs):
        clock.now = i * step
        pool.run(job, 1 + i % 2, clock.now, clock.now + step)
    pool.close()
    return pool
