"""The job pool in one process: the pool's life: pools in a row, submissions after execute, what may travel, errors that end the pool.

Split from the former ``test_pool_serial.py``; helpers in ``_pool_fixtures.py``.
Nothing sleeps: orders are forced with events, pings run on a fake clock.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from neuroscaffold import (
    JobPoolError,
    ListenerError,
    WorkflowError,
)

from tests.services._pool_fixtures import (
    Recorder,
    check_stream,
    workflow_message,
    Node,
    cached_nodes,
    CHANGE,
    POOL,
    RUNNING,
    SUCCESS,
    ABORTED,
    SCHEDULING,
    EXECUTING,
    CLOSING,
    ContextListener,
)

pytestmark = pytest.mark.timeout(60)


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



@dataclasses.dataclass(frozen=True)
class _Box:
    content: object


def test_instances_of_plain_classes_are_held_to_travelling_by_their_contents(network):
    """The travel check knows a plain class (a dataclass like a chunk) after its first
    instance, but still looks at what each instance holds."""
    with network.create_job_pool(quiet=True) as pool:
        plain = [pool.queue(lambda net, box: box.content, (_Box((i, 2.5)),)) for i in range(3)]
        locked = pool.queue(lambda net, box: None, (_Box(threading.Lock()),), name="locked")
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    assert [job.result for job in plain] == [(0, 2.5), (1, 2.5), (2, 2.5)]
    assert workflow_message(info) == (
        "1 of 4 jobs failed:\n  job 'locked' failed: JobPoolError: job 'locked' cannot be "
        "sent to another rank: TypeError: cannot pickle '_thread.lock' object"
    )
    assert locked.started_at is None  # it never ran


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


