"""The job pool in one process: listeners: order, replay, context managers, handled failures, max_wait pings.

Split from the former ``test_pool_serial.py``; helpers in ``_pool_fixtures.py``.
Nothing sleeps: orders are forced with events, pings run on a fake clock.
"""

from __future__ import annotations

import threading
import time

import pytest

from neuroscaffold import (
    WorkflowError,
)

from tests.services._pool_fixtures import (
    Recorder,
    LIFE,
    check_stream,
    workflow_message,
    Node,
    ADDED,
    CHANGE,
    POOL,
    PING,
    PENDING,
    QUEUED,
    RUNNING,
    SUCCESS,
    FAILED,
    CANCELLED,
    SCHEDULING,
    EXECUTING,
    CLOSING,
    WAIT,
    ContextListener,
)

pytestmark = pytest.mark.timeout(60)


# --- listeners ------------------------------------------------------------------------


def test_listener_events_come_in_order(network):
    recorder = Recorder()
    with network.create_job_pool(quiet=True) as pool:
        pool.add_listener(recorder)
        first = pool.queue(lambda net: 1, name="first")
        second = pool.queue(lambda net: 2, deps=[first], name="second")
        assert recorder.events[-1][:2] == (ADDED, SCHEDULING)
        pool.execute()
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
    check_stream(recorder, [first, second])


def test_failed_and_cancelled_jobs_end_their_stream(network):
    def boom(net):
        raise KeyError("k")

    recorder = Recorder()
    with network.create_job_pool(quiet=True, listeners=[recorder]) as pool:
        bad = pool.queue(boom, name="bad")
        after = pool.queue(lambda net: 1, deps=[bad], name="after")
        with pytest.raises(WorkflowError):
            pool.execute()
    assert recorder.of(bad) == [*LIFE[:3], (CHANGE, FAILED)]
    assert recorder.of(after) == [(ADDED, PENDING), (CHANGE, CANCELLED)]


def test_a_listener_added_after_entering_sees_the_whole_stream(network):
    early = Recorder()
    late = Recorder()
    with network.create_job_pool(quiet=True, listeners=[early]) as pool:
        first = pool.queue(lambda net: 1, name="first")
        second = pool.queue(lambda net: 2, deps=[first], name="second")
        dropped = pool.queue(lambda net: 3, name="dropped")
        dropped.cancel()
        n_early = len(early.events)
        pool.add_listener(late)
        n_late = len(late.events)
        third = pool.queue(lambda net: 4, name="third")
        pool.execute()
    # Replayed events show the job as it is when replayed (first was QUEUED already).
    for job in (first, second, third):
        assert late.steps(job) == early.steps(job) == [
            (ADDED, None), (CHANGE, PENDING), (CHANGE, QUEUED), (CHANGE, RUNNING)
        ]
        assert late.of(job)[-1] == early.of(job)[-1] == (CHANGE, SUCCESS)
    assert late.steps(dropped) == [(ADDED, None), (CHANGE, PENDING)]
    assert late.of(dropped)[-1] == (CHANGE, CANCELLED)
    assert [s for _, s in late.pool_statuses()] == [SCHEDULING, EXECUTING, CLOSING]
    assert late.events[n_late:] == early.events[n_early:]  # then the same live stream


def test_context_manager_listeners_are_entered_and_exited_with_the_pool(network):
    given = ContextListener()
    added = ContextListener()
    with network.create_job_pool(quiet=True, listeners=[given]) as pool:
        assert given.log == ["enter", SCHEDULING]
        pool.add_listener(added)
        assert added.log == ["enter", SCHEDULING]
        pool.submit(lambda net: 1)
        pool.execute()
        assert given.log[-1] is CHANGE and added.log[-1] is CHANGE
    for listener in (given, added):
        assert listener.log[:2] == ["enter", SCHEDULING]
        assert listener.log[-2:] == [CLOSING, ("exit", None)]

    failing = ContextListener()
    with pytest.raises(KeyError):
        with network.create_job_pool(quiet=True, listeners=[failing]):
            raise KeyError("inside")
    assert failing.log == ["enter", SCHEDULING, CLOSING, ("exit", KeyError)]


def test_a_listener_returning_true_for_a_failure_handles_it(network):
    def boom(net):
        raise ValueError("expected")

    def handle(progress):
        job = progress.job
        return progress.reason is CHANGE and job.status is FAILED and job.name == "handled"

    for fail_fast in (False, True):
        listeners = [Recorder(handle)]
        with network.create_job_pool(quiet=True, fail_fast=fail_fast, listeners=listeners) as pool:
            handled = pool.queue(boom, name="handled")
            dependent = pool.queue(lambda net: 1, deps=[handled], name="dependent")
            other = pool.queue(lambda net: 2, name="other")
            assert pool.execute(return_results=True) == {other: 2}  # no WorkflowError
        assert handled.status is FAILED and str(handled.error) == "expected"
        assert dependent.status is CANCELLED and other.status is SUCCESS

    with network.create_job_pool(quiet=True, listeners=[Recorder(handle)]) as pool:
        pool.queue(boom, name="handled")
        pool.queue(boom, name="unhandled")
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    assert workflow_message(info) == (
        "1 of 2 jobs failed:\n  job 'unhandled' failed on rank 0: ValueError: expected"
    )


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


