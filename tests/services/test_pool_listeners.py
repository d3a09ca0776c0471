"""The job pool's listeners: event order, late listeners, context managers, failures a
listener handles, and ``max_wait`` pings.

The bodies decorated with ``mpi_matrix`` run in this process and under ``mpiexec``;
listeners run on the main rank only. The ping timing tests drive the pool's own clock
in this process (a fake clock, no sleeps).
"""

from __future__ import annotations

import threading
import time

import pytest

from neuroscaffold import Network
from tests._mpi import mpi_matrix
from tests._pool_support import (
    ADDED,
    CANCELLED,
    CHANGE,
    CLOSING,
    EXECUTING,
    FAILED,
    LIFE,
    PENDING,
    PING,
    POOL,
    QUEUED,
    RUNNING,
    SCHEDULING,
    SUCCESS,
    WAIT,
    ContextListener,
    Node,
    Recorder,
    boom,
    check_workflow_error,
    identity,
    nap,
    outcome,
    summary_of,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def network():
    return Network()


# --- listeners ------------------------------------------------------------------------


@mpi_matrix(1, 2, 3)
def test_listener_events_come_in_order(world):
    recorder = Recorder()
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(recorder)
            first = pool.queue(identity, (1,), name="first")
            second = pool.queue(identity, (2,), deps=[first], name="second")
            assert recorder.events[-1][:2] == (ADDED, SCHEDULING)
        pool.execute()
    if not world.main:
        return
    expected = [
        (POOL, SCHEDULING, None, None),
        (ADDED, SCHEDULING, first, None),
        (CHANGE, SCHEDULING, first, PENDING),  # queued at once: no dependencies
        (ADDED, SCHEDULING, second, None),
        (POOL, EXECUTING, None, None),
        (CHANGE, EXECUTING, first, QUEUED),
        (CHANGE, EXECUTING, first, RUNNING),
        (CHANGE, EXECUTING, second, PENDING),
        (CHANGE, EXECUTING, second, QUEUED),
        (CHANGE, EXECUTING, second, RUNNING),
        (POOL, CLOSING, None, None),
    ]
    assert [e[:4] for e in recorder.events] == expected
    assert recorder.stream_problems([first, second]) == []


@mpi_matrix(1, 2, 3)
def test_failed_and_cancelled_jobs_end_their_stream(world):
    recorder = Recorder()
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(recorder)
            bad = pool.queue(boom, name="bad")
            after = pool.queue(identity, (1,), deps=[bad], name="after")
        check_workflow_error(world, outcome(pool.execute))
    if world.main:
        assert recorder.of(bad) == [*LIFE[:3], (CHANGE, FAILED)]
        assert recorder.of(after) == [(ADDED, PENDING), (CHANGE, CANCELLED)]


@mpi_matrix(1, 2, 3, 4)
def test_a_listener_added_after_entering_sees_the_whole_stream(world):
    early = Recorder()
    late = Recorder()
    pings = Recorder()
    with world.network.create_job_pool(quiet=True, listeners=[early]) as pool:
        if world.main:
            first = pool.queue(identity, (1,), name="first")
            second = pool.queue(identity, (2,), deps=[first], name="second")
            dropped = pool.queue(identity, (3,), name="dropped")
            dropped.cancel()
            n_early = len(early.events)
            pool.add_listener(late)
            n_late = len(late.events)
            pool.add_listener(pings, max_wait=0.05)
            third = pool.queue(nap, (0.4,), name="quiet")  # no event for 0.4 s: pings
            fourth = pool.queue(identity, (4,), deps=[third], name="fourth")
        pool.execute()
    if not world.main:
        return
    jobs = [first, second, third, fourth]
    assert early.stream_problems(jobs) == []
    # Replayed events show the job as it is when replayed: compare (reason, old status).
    for job in (first, second):
        assert late.steps(job) == early.steps(job) == [
            (ADDED, None), (CHANGE, PENDING), (CHANGE, QUEUED), (CHANGE, RUNNING)
        ]
    for job in jobs:
        assert late.steps(job) == early.steps(job)
        assert late.of(job)[-1] == early.of(job)[-1] == (CHANGE, SUCCESS)
    assert late.steps(dropped) == [(ADDED, None), (CHANGE, PENDING)]
    assert late.of(dropped)[-1] == (CHANGE, CANCELLED)
    assert [s for _, s in late.pool_statuses()] == [SCHEDULING, EXECUTING, CLOSING]
    assert late.events[n_late:] == early.events[n_early:]  # then the same live stream
    statuses = dict((s, i) for i, s in pings.pool_statuses())
    ping_at = [i for i, e in enumerate(pings.events) if e.reason is PING]
    assert ping_at and all(statuses[EXECUTING] < i < statuses[CLOSING] for i in ping_at)
    assert not any(e.reason is PING for e in early.events + late.events)  # no max_wait


@mpi_matrix(1, 2, 3)
def test_context_manager_listeners_are_entered_and_exited_with_the_pool(world):
    given = ContextListener()
    added = ContextListener()
    with world.network.create_job_pool(quiet=True, listeners=[given]) as pool:
        if world.main:
            assert given.log == ["enter", SCHEDULING]
            pool.add_listener(added)
            assert added.log == ["enter", SCHEDULING]
            pool.submit(identity, 1)
        pool.execute()
        if world.main:
            assert given.log[-1] is CHANGE and added.log[-1] is CHANGE
    if world.main:
        for listener in (given, added):
            assert listener.log[:2] == ["enter", SCHEDULING]
            assert listener.log[-2:] == [CLOSING, ("exit", None)]

    failing = ContextListener()
    with pytest.raises(KeyError):
        with world.network.create_job_pool(quiet=True, listeners=[failing]):
            raise KeyError("inside")
    if world.main:
        assert failing.log == ["enter", SCHEDULING, CLOSING, ("exit", KeyError)]


@mpi_matrix(1, 2, 3, 4)
def test_a_listener_returning_true_for_a_failure_handles_it(world):
    def handle(progress):
        job = progress.job
        return progress.reason is CHANGE and job.status is FAILED and job.name == "handled"

    for fail_fast in (False, True):
        with world.network.create_job_pool(quiet=True, fail_fast=fail_fast) as pool:
            if world.main:
                pool.add_listener(handle)
                handled = pool.queue(boom, ("expected",), name="handled")
                dependent = pool.queue(identity, (1,), deps=[handled], name="dependent")
                other = pool.queue(lambda net: 2, name="other")
                slow = pool.queue(nap, (0.2,), name="slow")
                after = pool.queue(identity, (2,), deps=[slow], name="after")  # no fail_fast
            results = pool.execute(return_results=True)  # no WorkflowError on any rank
        if world.main:
            assert results[other] == 2 and set(results) == {other, slow, after}
            assert handled.status is FAILED and str(handled.error) == "expected"
            assert [j.status for j in (dependent, other, slow, after)] == [
                CANCELLED, SUCCESS, SUCCESS, SUCCESS
            ]

    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(Recorder(handle))
            handled = pool.queue(boom, ("expected",), name="handled")
            unhandled = pool.queue(boom, ("expected",), name="unhandled")
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if world.main:
        assert summary_of(error) == (
            f"1 of 2 jobs failed:\n  job 'unhandled' failed on rank {unhandled.rank}: "
            "ValueError: expected"
        )


# --- max_wait on a fake clock, in this process -------------------------------------------


class SteppingClock:
    """A fake clock that moves ``step`` seconds each time it is read, so any wait of the
    pool, however short in real time, lasts ``step`` on this clock."""

    def __init__(self, step: float):
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_max_wait_pings_idle_listeners_on_a_fake_clock(network):
    pinged = threading.Event()

    def answer(progress):
        if progress.reason is PING:
            pinged.set()

    waiting = Recorder(answer)
    plain = Recorder()
    node = Node(network, "after_ping")
    original = node.queue
    node.queue = lambda pool: (pinged.wait(WAIT), original(pool))
    with network.create_job_pool(quiet=True) as pool:
        pool._listeners.clock = SteppingClock(step=10.0)
        pool.add_listener(waiting, max_wait=5.0)
        pool.add_listener(plain)
        # The scheduler holds execute() idle until the first ping comes.
        pool.schedule([node])
        assert not any(e.reason is PING for e in waiting.events)  # none before execute
        pool.execute()
    assert pinged.is_set()
    pings = [i for i, e in enumerate(waiting.events) if e.reason is PING]
    statuses = dict((s, i) for i, s in waiting.pool_statuses())
    assert pings and all(statuses[EXECUTING] < i < statuses[CLOSING] for i in pings)
    assert all(waiting.events[i][1:4] == (EXECUTING, None, None) for i in pings)
    (job,) = pool.get_submissions_of(node)
    assert pings[0] < waiting.index(job, QUEUED)
    assert not any(e.reason is PING for e in plain.events)


def test_max_wait_is_measured_from_the_last_event(network):
    class Clock:
        now = 100.0

        def __call__(self):
            return self.now

    clock = Clock()
    pings = []
    with network.create_job_pool(quiet=True) as pool:
        pool._listeners.clock = clock
        pool.add_listener(lambda p: p.reason is PING and pings.append(clock.now), max_wait=5.0)
        ping = lambda: pool._listeners.ping(lambda: pool_event(pool))  # noqa: E731
        clock.now = 104.0
        assert ping() == pytest.approx(1.0) and pings == []
        clock.now = 105.0
        assert ping() == pytest.approx(5.0) and pings == [105.0]
        clock.now = 107.0
        pool.submit(lambda net: None)  # an event: the wait starts again
        clock.now = 111.0
        assert ping() == pytest.approx(1.0) and pings == [105.0]
        clock.now = 112.5
        assert ping() == pytest.approx(5.0) and pings == [105.0, 112.5]
        pool.execute()


def pool_event(pool):
    from neuroscaffold.services.pool import PoolProgress

    return PoolProgress(PING, pool.status, pool.jobs, pool.workflow, None, None, time.time())


