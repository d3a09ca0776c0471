"""The job pool in one process: results, dependencies, cancellation, listeners, caching.

Every test drives a real pool on a real :class:`~neuroscaffold.Network` and checks what
users see: job states, errors (messages pinned), and the stream of progress events as
recorded by a listener. Nothing sleeps: orders are forced with events, and the
``max_wait`` pings run on a fake clock. ``test_pool_mpi.py`` checks the same behaviours
under ``mpiexec``.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, NamedTuple

import pytest

from neuroscaffold import (
    JobCancelledError,
    JobPoolError,
    JobSchedulingError,
    ListenerError,
    Network,
    WorkflowError,
    pool_cache,
)
from neuroscaffold.services.pool import JobStatus, PoolProgressReason, PoolStatus

pytestmark = pytest.mark.timeout(60)

ADDED = PoolProgressReason.JOB_ADDED
CHANGE = PoolProgressReason.JOB_STATUS_CHANGE
POOL = PoolProgressReason.POOL_STATUS_CHANGE
PING = PoolProgressReason.MAX_TIMEOUT_PING
PENDING, QUEUED, RUNNING = JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING
SUCCESS, FAILED, CANCELLED, ABORTED = (
    JobStatus.SUCCESS,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.ABORTED,
)
SCHEDULING, EXECUTING, CLOSING = PoolStatus.SCHEDULING, PoolStatus.EXECUTING, PoolStatus.CLOSING
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


LIFE = [(ADDED, PENDING), (CHANGE, QUEUED), (CHANGE, RUNNING), (CHANGE, SUCCESS)]


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


# --- results -----------------------------------------------------------------------------


def test_execute_returns_the_results_of_the_jobs_that_succeeded(network):
    with network.create_job_pool(quiet=True) as pool:
        square = pool.submit(lambda net, x: x * x, 7)
        keyword = pool.queue(lambda net, a, b=0: a - b, args=(10,), kwargs={"b": 3})
        failed = pool.queue(lambda net: 1 / 0, name="divide")
        with pytest.raises(WorkflowError):
            pool.execute(return_results=True)
    with network.create_job_pool(quiet=True) as pool:
        one = pool.submit(lambda net: "one")
        results = pool.execute(return_results=True)
        assert results == {one: "one"}
    assert (square.result, keyword.result) == (49, 7)
    assert failed.status is FAILED
    with network.create_job_pool(quiet=True) as pool:
        pool.submit(lambda net: 1)
        assert pool.execute() is None


def test_results_stay_available_after_the_pool_closed(network):
    with network.create_job_pool(quiet=True) as pool:
        jobs = [pool.submit(lambda net, i: [i] * 3, i) for i in range(5)]
        results = pool.execute(return_results=True)
    assert pool.status is CLOSING
    assert [job.result for job in jobs] == [[i] * 3 for i in range(5)]
    assert {job: job.result for job in jobs} == results
    assert all(job.done() and job.error is None for job in jobs)


def test_result_of_a_job_without_one_raises(network):
    def boom(net):
        raise ValueError("boom")

    with network.create_job_pool(quiet=True) as pool:
        bad = pool.queue(boom, name="bad")
        after = pool.queue(lambda net: 1, deps=[bad], name="after")
        with pytest.raises(JobPoolError, match=r"^job 'after' has no result \(status: pending\)$"):
            after.result
        with pytest.raises(WorkflowError):
            pool.execute()
    with pytest.raises(JobPoolError, match=r"^job 'bad' failed: ValueError\('boom'\)$") as info:
        bad.result
    assert info.value.__cause__ is bad.error
    with pytest.raises(JobPoolError, match=r"^job 'after' has no result \(status: cancelled\)$"):
        after.result


# --- dependencies -------------------------------------------------------------------


def test_dependents_are_queued_only_after_their_dependencies_succeeded(network):
    recorder = Recorder()
    with network.create_job_pool(quiet=True, listeners=[recorder]) as pool:
        # a diamond, a chain, and "all of b after all of a" (a shared group of deps)
        top = pool.queue(lambda net: "top", name="top")
        left = pool.queue(lambda net: "left", deps=[top], name="left")
        right = pool.queue(lambda net: "right", deps=[top], name="right")
        bottom = pool.queue(lambda net: "bottom", deps=[left, right], name="bottom")
        chain = [bottom]
        for i in range(5):
            chain.append(pool.queue(lambda net: None, deps=[chain[-1]], name=f"chain{i}"))
        group_a = tuple(pool.queue(lambda net: None, name=f"a{i}") for i in range(10))
        group_b = [pool.queue(lambda net: None, deps=group_a, name=f"b{i}") for i in range(10)]
        pool.execute()
    jobs = pool.jobs
    check_stream(recorder, jobs)
    for job in jobs:
        for dep in job.deps:
            assert recorder.index(dep, SUCCESS) < recorder.index(job, QUEUED), (dep, job)
            assert dep.ended_at <= job.started_at, (dep, job)
    assert all(job.status is SUCCESS for job in [*chain, *group_b])


def test_a_failure_cancels_every_dependent_transitively(network):
    def boom(net):
        raise ValueError("boom")

    with network.create_job_pool(quiet=True) as pool:
        root = pool.queue(boom, name="root")
        child = pool.queue(lambda net: 1, deps=[root], name="child")
        grandchild = pool.queue(lambda net: 2, deps=[child], name="grandchild")
        free = pool.queue(lambda net: 3, name="free")
        mixed = pool.queue(lambda net: 4, deps=[free, grandchild], name="mixed")
        group = tuple([root] + [pool.queue(lambda net: 5, name=f"g{i}") for i in range(9)])
        after_group = [pool.queue(lambda net: 6, deps=group, name=f"h{i}") for i in range(3)]
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    assert workflow_message(info) == (
        "1 of 17 jobs failed, 6 jobs cancelled:\n  job 'root' failed on rank 0: ValueError: boom"
    )
    assert [type(e) for e in info.value.exceptions] == [ValueError]
    assert root.status is FAILED and free.status is SUCCESS
    assert all(job.status is SUCCESS for job in group[1:])
    for job in [child, grandchild, mixed, *after_group]:
        assert job.status is CANCELLED
        assert isinstance(job.error, JobCancelledError)
        assert str(job.error) == f"job {job.name!r} was cancelled: its dependency 'root' failed"


def test_a_job_depending_on_an_already_failed_job_is_cancelled_at_once(network):
    failed = threading.Event()

    def answer(progress):
        if progress.reason is CHANGE and progress.job.status is FAILED:
            failed.set()

    def boom(node, i):
        raise ValueError("early")

    first = Node(network, "first", work=boom)
    late = Node(network, "late", depends_on=[first])
    original = late.queue
    late.queue = lambda pool: (failed.wait(WAIT), original(pool))
    with network.create_job_pool(quiet=True, listeners=[Recorder(answer)]) as pool:
        pool.schedule([first, late])
        with pytest.raises(WorkflowError, match=r"^1 of 2 jobs failed, 1 jobs cancelled:"):
            pool.execute()
    assert failed.is_set()
    (job,) = pool.get_submissions_of(late)
    assert job.status is CANCELLED
    assert str(job.error) == "job 'late[0]' was cancelled: its dependency 'first[0]' failed"


# --- cancellation ---------------------------------------------------------------------


def test_cancelling_a_queued_job_cancels_its_dependents(network):
    recorder = Recorder()
    with network.create_job_pool(quiet=True, listeners=[recorder]) as pool:
        first = pool.queue(lambda net: 1, name="first")
        second = pool.queue(lambda net: 2, deps=[first], name="second")
        third = pool.queue(lambda net: 3, deps=[second], name="third")
        other = pool.queue(lambda net: 4, name="other")
        assert first.status is QUEUED and second.status is PENDING
        assert first.cancel("not needed") is True
        assert pool.execute(return_results=True) == {other: 4}  # no WorkflowError
    assert str(first.error) == "job 'first' was cancelled: not needed"
    assert isinstance(first.error, JobCancelledError)
    for job in (second, third):
        assert job.status is CANCELLED
        assert str(job.error) == f"job {job.name!r} was cancelled: its dependency 'first' cancelled"
    assert recorder.of(first) == [(ADDED, PENDING), (CHANGE, QUEUED), (CHANGE, CANCELLED)]
    assert recorder.of(third) == [(ADDED, PENDING), (CHANGE, CANCELLED)]
    assert first.started_at is None and third.started_at is None


def test_cancelling_a_running_job_warns_and_changes_nothing(network):
    outcome = []

    def cancel_when_running(progress):
        if progress.reason is CHANGE and progress.job.status is RUNNING:
            with pytest.warns(RuntimeWarning, match=r"^cannot cancel job 'long': it is running$"):
                outcome.append(progress.job.cancel("too late"))

    with network.create_job_pool(quiet=True, listeners=[Recorder(cancel_when_running)]) as pool:
        job = pool.queue(lambda net: "done", name="long")
        assert pool.execute(return_results=True) == {job: "done"}
    assert outcome == [False]
    assert job.status is SUCCESS and job.error is None


def test_cancelling_an_ended_job_warns_and_changes_nothing(network):
    with network.create_job_pool(quiet=True) as pool:
        job = pool.queue(lambda net: "done", name="ended")
        pool.execute()
        with pytest.warns(RuntimeWarning, match=r"^cannot cancel job 'ended': it is success$"):
            assert job.cancel() is False
    with pytest.warns(RuntimeWarning, match=r"^cannot cancel job 'ended': it is success$"):
        assert job.cancel() is False
    assert job.status is SUCCESS and job.result == "done"


# --- fail_fast ------------------------------------------------------------------------


def test_fail_fast_stops_at_the_first_failure(network):
    def boom(net):
        raise ValueError("first failure")

    recorder = Recorder()
    with network.create_job_pool(quiet=True, fail_fast=True, listeners=[recorder]) as pool:
        before = pool.queue(lambda net: 0, name="before")
        bad = pool.queue(boom, name="bad")
        rest = [pool.queue(lambda net: 1, name=f"rest{i}") for i in range(3)]
        waiting = pool.queue(lambda net: 2, deps=[before], name="waiting")
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    assert workflow_message(info) == (
        "1 of 6 jobs failed, 4 jobs cancelled:\n"
        "  job 'bad' failed on rank 0: ValueError: first failure"
    )
    assert before.status is SUCCESS and bad.status is FAILED
    for job in [*rest, waiting]:
        assert job.status is CANCELLED
        assert str(job.error) == f"job {job.name!r} was cancelled: fail_fast after job 'bad' failed"
        assert (CHANGE, RUNNING) not in recorder.of(job)


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


# --- pool lifecycle -------------------------------------------------------------------


def test_two_pools_one_after_the_other(network):
    node = Node(network, "twice", jobs=3)
    outcomes = []
    for round_ in range(2):
        recorder = Recorder()
        with network.create_job_pool(quiet=True, listeners=[recorder]) as pool:
            node.queue(pool)
            extra = pool.submit(lambda net, r: r, round_)
            results = pool.execute(return_results=True)
        outcomes.append(sorted(map(str, results.values())))
        check_stream(recorder, pool.jobs)
        assert extra.result == round_
        assert cached_nodes(pool) == set()
    assert outcomes[0] == sorted(map(str, [("twice", 0), ("twice", 1), ("twice", 2), 0]))
    assert node.computed == 2  # once per pool: the first pool's value went with it


def test_submitting_after_execute_raises(network):
    with network.create_job_pool(quiet=True) as pool:
        pool.submit(lambda net: 1)
        pool.execute()
        with pytest.raises(JobPoolError, match=r"^cannot submit jobs after the pool was executed$"):
            pool.submit(lambda net: 2)
        with pytest.raises(JobPoolError, match=r"^cannot submit jobs after the pool was executed$"):
            pool.queue(lambda net: 2, deps=pool.jobs)
        with pytest.raises(JobPoolError, match=r"^cannot submit jobs after the pool was executed$"):
            pool.schedule([Node(network, "late")])
        again = r"^this pool was already executed; create a new pool$"
        with pytest.raises(JobPoolError, match=again):
            pool.execute()
    assert len(pool.jobs) == 1
    with pytest.raises(JobPoolError, match=r"^cannot submit jobs to a closed pool$"):
        pool.submit(lambda net: 3)
    with pytest.raises(JobPoolError, match=r"^cannot execute a closed pool$"):
        pool.execute()


def test_submitting_after_a_failed_execute_raises(network):
    with network.create_job_pool(quiet=True) as pool:
        pool.submit(lambda net: 1 / 0)
        with pytest.raises(WorkflowError):
            pool.execute()
        with pytest.raises(JobPoolError, match=r"^cannot submit jobs after the pool was executed$"):
            pool.submit(lambda net: 2)


def test_lambdas_and_closures_run_as_jobs(network):
    base = 100

    def make_adder(offset):
        def add(net, x):
            return base + offset + x

        return add

    with network.create_job_pool(quiet=True) as pool:
        jobs = [pool.submit(make_adder(i), i) for i in range(4)]
        jobs.append(pool.submit(lambda net: base * 2))
        jobs.append(pool.submit(lambda net, *a, **k: (a, k), 1, 2, key="v"))
        pool.execute()
    assert [job.result for job in jobs] == [100, 102, 104, 106, 200, ((1, 2), {"key": "v"})]


def test_a_failing_job_keeps_its_error_and_names_the_job(network):
    class Odd(Exception):
        """Cannot be unpickled (its __init__ wants two arguments); serially it never
        travels, so it stays itself."""

        def __init__(self, a, b):
            super().__init__(f"odd {a} {b}")

    def odd(net):
        raise Odd(1, 2)

    with network.create_job_pool(quiet=True) as pool:
        job = pool.queue(odd, name="odd")
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    assert workflow_message(info) == (
        "1 of 1 jobs failed:\n  job 'odd' failed on rank 0: Odd: odd 1 2"
    )
    assert info.value.exceptions == (job.error,)
    assert type(job.error) is Odd and job.rank == 0
    assert job.error.__notes__ == ["raised by job 'odd' on rank 0"]


def test_jobs_are_held_to_what_travelling_needs_even_serially(network):
    """A job fails in one process exactly as it would on another rank: with a function,
    arguments or a result that cannot be pickled. What works on a laptop works on the
    cluster."""
    with network.create_job_pool(quiet=True) as pool:
        arg = pool.queue(lambda net, lock: None, (threading.Lock(),), name="arg")
        result = pool.queue(lambda net: threading.Lock(), name="result")
        lock = threading.Lock()
        closure = pool.queue(lambda net: lock.locked(), name="closure")
        fine = pool.queue(lambda net, data: sum(data), ([1, 2, 3],), name="fine")
        refers_to_pool = pool.queue(lambda net: pool.statistics().total, name="pool")
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    lock_text = "TypeError: cannot pickle '_thread.lock' object"
    assert workflow_message(info) == (
        "3 of 5 jobs failed:\n"
        f"  job 'arg' failed: JobPoolError: job 'arg' cannot be sent to another rank: {lock_text}\n"
        "  job 'result' failed on rank 0: JobPoolError: "
        f"the job's result cannot be sent to another rank: {lock_text}\n"
        f"  job 'closure' failed: JobPoolError: job 'closure' cannot be sent to another rank: {lock_text}"
    )
    assert arg.rank is None and arg.started_at is None  # it never ran
    assert closure.rank is None and result.rank == 0  # the result failed after running
    assert fine.result == 6
    assert refers_to_pool.result == 5  # a pool travels by reference, like the network


# --- schedule() -----------------------------------------------------------------------


def test_a_failing_scheduler_is_reported_and_its_dependents_skipped(network):
    broken = Node(network, "broken", fail_schedule=True)
    needs_broken = Node(network, "needs_broken", depends_on=[broken])
    needs_needs = Node(network, "needs_needs", depends_on=[needs_broken])
    fine = Node(network, "fine", jobs=2)
    after_fine = Node(network, "after_fine", depends_on=[fine])
    with network.create_job_pool(quiet=True) as pool:
        pool.schedule([broken, fine, needs_broken, after_fine, needs_needs])
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    assert workflow_message(info) == (
        "3 nodes failed to schedule:\n"
        "  scheduling {root}.test.broken failed: RuntimeError: cannot schedule broken\n"
        "  {root}.test.needs_broken was not scheduled: it depends on {root}.test.broken, "
        "which failed to schedule\n"
        "  {root}.test.needs_needs was not scheduled: it depends on {root}.test.needs_broken, "
        "which failed to schedule"
    )
    errors = info.value.exceptions
    assert all(isinstance(e, JobSchedulingError) for e in errors)
    assert isinstance(errors[0].__cause__, RuntimeError)
    assert [job.name for job in pool.jobs] == ["fine[0]", "fine[1]", "after_fine[0]"]
    assert all(job.status is SUCCESS for job in pool.jobs)


def test_schedule_goes_on_while_execute_runs(network):
    first_done = threading.Event()

    def answer(progress):
        if progress.reason is CHANGE and progress.job.status is SUCCESS:
            if progress.job.name == "first[0]":
                first_done.set()

    first = Node(network, "first")
    second = Node(network, "second", depends_on=[first], jobs=2)
    original = second.queue
    waited = []
    second.queue = lambda pool: (waited.append(first_done.wait(WAIT)), original(pool))
    recorder = Recorder(answer)
    with network.create_job_pool(quiet=True, listeners=[recorder]) as pool:
        pool.schedule([first, second])
        pool.execute()
    assert waited == [True]  # second was scheduled only once first's job had run
    first_job, *second_jobs = pool.jobs
    assert recorder.index(first_job, SUCCESS) < min(
        i for i, e in enumerate(recorder.events) if e.reason is ADDED and e.job in second_jobs
    )
    assert all(job.status is SUCCESS for job in pool.jobs)
    assert [s for _, s in recorder.pool_statuses()] == [SCHEDULING, EXECUTING, CLOSING]


def test_schedule_uses_the_given_scheduler_and_sets_the_submitter(network):
    nodes = [Node(network, f"n{i}") for i in range(3)]
    with network.create_job_pool(quiet=True) as pool:
        pool.schedule(nodes, scheduler=lambda node: pool.queue(lambda net: node.name))
        results = pool.execute(return_results=True)
    assert sorted(results.values()) == ["n0", "n1", "n2"]
    assert [len(pool.get_submissions_of(node)) for node in nodes] == [1, 1, 1]


# --- errors that end the pool ---------------------------------------------------------


def test_a_listener_that_raises_aborts_the_pool(network):
    def fragile(progress):
        if progress.reason is CHANGE and progress.job.status is RUNNING:
            raise KeyError("listener bug")

    with pytest.raises(ListenerError) as info:
        with network.create_job_pool(quiet=True) as pool:
            pool.add_listener(fragile)
            first = pool.queue(lambda net: 1, name="first")
            second = pool.queue(lambda net: 2, name="second")
            pool.execute()
    assert str(info.value) == (
        "listener test_a_listener_that_raises_aborts_the_pool.<locals>.fragile raised on "
        "job_status_change of job 'first': KeyError('listener bug')"
    )
    assert isinstance(info.value.__cause__, KeyError)
    assert first.status is ABORTED and second.status is ABORTED
    assert str(second.error) == f"job 'second' was aborted: ListenerError: {info.value}"
    assert pool.status is CLOSING and cached_nodes(pool) == set()


def test_a_listener_that_raises_on_entering_closes_the_pool(network):
    def fragile(progress):
        raise KeyError("at once")

    listener = ContextListener()
    pool = network.create_job_pool(quiet=True, listeners=[listener, fragile])
    expected = r"raised on pool_status_change: KeyError\('at once'\)$"
    with pytest.raises(ListenerError, match=expected):
        with pool:
            pytest.fail("the body must not run")
    assert listener.log[0] == "enter" and listener.log[-1] == ("exit", ListenerError)
    with pytest.raises(JobPoolError, match=r"^cannot submit jobs to a closed pool$"):
        pool.submit(lambda net: 1)


def test_a_listener_that_raises_on_executing_leaves_jobs_unrun(network):
    def fragile(progress):
        if progress.reason is POOL and progress.status is EXECUTING:
            raise KeyError("executing")

    expected = r"raised on pool_status_change: KeyError\('executing'\)$"
    with pytest.raises(ListenerError, match=expected):
        with network.create_job_pool(quiet=True, listeners=[fragile]) as pool:
            job = pool.submit(lambda net: 1)
            pool.execute()
    assert job.started_at is None and job.status is not SUCCESS


def test_an_error_in_the_with_block_before_execute_propagates(network):
    recorder = Recorder()
    with pytest.raises(ValueError, match=r"^before execute$"):
        with network.create_job_pool(quiet=True, listeners=[recorder]) as pool:
            job = pool.submit(lambda net: 1)
            raise ValueError("before execute")
    assert job.started_at is None
    assert [s for _, s in recorder.pool_statuses()] == [SCHEDULING, CLOSING]
    with pytest.raises(JobPoolError, match=r"^cannot execute a closed pool$"):
        pool.execute()


# --- pool_cache -----------------------------------------------------------------------


def test_pool_cache_is_computed_once_and_freed_when_the_nodes_last_job_ends(network):
    first = Node(network, "cache_a", jobs=4)
    later = Node(network, "cache_b", jobs=3, depends_on=[first])
    key_a, key_b = first.get_node_name(), later.get_node_name()
    checks = []

    def check_cache(progress):
        # On every event: A's value is required (and may be stored) exactly as long as
        # one of A's jobs has not ended.
        if pool.status is not EXECUTING or progress.reason is PING:
            return
        a_open = any(not job.done() for job in pool.get_submissions_of(first))
        required = pool.get_required_cache_items()
        checks.append(((key_a, "heavy") in required, a_open))
        if not a_open:
            assert key_a not in cached_nodes(pool)

    def later_work(node, i):
        return (key_a in cached_nodes(pool), key_b in cached_nodes(pool), node.heavy()[0])

    later._work = later_work
    with network.create_job_pool(quiet=True) as pool:
        pool.add_listener(check_cache)
        first.queue(pool)
        later.queue(pool)
        assert pool.get_required_cache_items() == {(key_a, "heavy"), (key_b, "heavy")}
        pool.execute()
        assert pool.get_required_cache_items() == set()
        assert cached_nodes(pool) == set()
    assert first.computed == 1 and later.computed == 1
    values = [value for _, value in first.seen]
    assert all(value is values[0] for value in values)  # the very same object
    assert all(required == a_open for required, a_open in checks)
    assert (True, True) in checks and (False, False) in checks
    # B's jobs ran after A's last job: A's value was gone, B's own was there.
    assert [job.result for job in pool.get_submissions_of(later)] == [
        (False, False, "cache_b"),
        (False, True, "cache_b"),
        (False, True, "cache_b"),
    ]


def test_pool_cache_is_freed_at_the_latest_when_the_pool_closes(network):
    owner = Node(network, "owner", jobs=2)
    bystander = Node(network, "bystander", jobs=0)  # no jobs: nothing frees its value

    def use_bystander(node, i):
        return bystander.heavy()

    owner._work = use_bystander
    with network.create_job_pool(quiet=True) as pool:
        owner.queue(pool)
        pool.execute()
        assert cached_nodes(pool) == {bystander.get_node_name()}
        assert bystander.heavy() is pool.jobs[0].result  # still cached inside the pool
    assert cached_nodes(pool) == set()
    assert bystander.computed == 1
    assert bystander.heavy() == ["bystander", 2]  # outside a pool: plainly called


# --- many jobs --------------------------------------------------------------------------


def test_every_job_of_b_after_every_job_of_a_with_2000_each(network):
    a = Node(network, "many_a", jobs=2000, work=lambda node, i: None)
    b = Node(network, "many_b", jobs=2000, depends_on=[a], work=lambda node, i: None)
    start = time.perf_counter()
    with network.create_job_pool(quiet=True) as pool:
        a.queue(pool)
        shared = pool.get_submissions_of(a)
        assert shared is pool.get_submissions_of(a)  # one sequence object for every job
        b.queue(pool)  # each of b's jobs gets that same tuple as deps
        pool.execute()
    elapsed = time.perf_counter() - start
    jobs_a, jobs_b = pool.get_submissions_of(a), pool.get_submissions_of(b)
    assert all(job.deps is jobs_a for job in jobs_b)
    assert all(job.status is SUCCESS for job in pool.jobs) and len(pool.jobs) == 4000
    assert max(job.ended_at for job in jobs_a) <= min(job.started_at for job in jobs_b)
    assert elapsed < 5.0, f"4000 jobs with 2000x2000 dependencies took {elapsed:.1f} s"


# --- the seed snippets (services.txt), adapted ------------------------------------------


def test_seed_queue_each_component_then_execute(network):
    components = {name: Node(network, name, jobs=2) for name in ("granule", "purkinje")}
    with network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            for component in components.values():
                component.queue(pool)
        pool.execute()
    assert sorted(job.result for job in pool.jobs) == [
        ("granule", 0),
        ("granule", 1),
        ("purkinje", 0),
        ("purkinje", 1),
    ]


def test_seed_schedule_nodes(network):
    first = Node(network, "layer")
    second = Node(network, "cells", depends_on=[first])
    with network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            pool.schedule([first, second])
        pool.execute()
    assert [job.result for job in pool.jobs] == [("layer", 0), ("cells", 0)]
    assert pool.jobs[1].deps == (pool.jobs[0],)


def test_seed_listener_reports_time_elapsed(network, capsys):
    started = []

    def report_time_elapsed(progress):
        if progress.reason == PoolProgressReason.POOL_STATUS_CHANGE:
            if progress.status == PoolStatus.SCHEDULING:
                started.append(time.time())
            elif progress.status == PoolStatus.CLOSING:
                print(f"Pool execution finished. {time.time() - started[0]:.3f} seconds elapsed.")

    with network.create_job_pool(quiet=True) as pool:
        pool.add_listener(report_time_elapsed)
        pool.submit(lambda scaffold: time.sleep(0))
        pool.execute()
    assert re.fullmatch(
        r"Pool execution finished\. \d+\.\d{3} seconds elapsed\.\n", capsys.readouterr().out
    )


def test_seed_pool_cache_heavy_calculations(network):
    class MyStrategy(Node):
        calls = 0

        @pool_cache
        def heavy_calculations(self):
            MyStrategy.calls += 1
            return 5 + 5

        def place(self, chunk, indicators):
            return sum(self.heavy_calculations() for _ in range(1000))

    strategy = MyStrategy(network, "mine", jobs=3)
    strategy._work = lambda node, i: node.place(i, None)
    with network.create_job_pool(quiet=True) as pool:
        strategy.queue(pool)
        results = pool.execute(return_results=True)
    assert list(results.values()) == [10000] * 3
    assert MyStrategy.calls == 1
