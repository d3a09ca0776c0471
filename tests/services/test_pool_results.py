"""The job pool in one process: results, dependency order and many jobs.

Split from the former ``test_pool_serial.py``; helpers in ``_pool_fixtures.py``.
Nothing sleeps: orders are forced with events, pings run on a fake clock.
"""

from __future__ import annotations

import threading
import time

import pytest

from neuroscaffold import (
    JobCancelledError,
    JobPoolError,
    WorkflowError,
)

from tests.services._pool_fixtures import (
    Recorder,
    check_stream,
    workflow_message,
    Node,
    CHANGE,
    QUEUED,
    SUCCESS,
    FAILED,
    CANCELLED,
    CLOSING,
    WAIT,
)

pytestmark = pytest.mark.timeout(60)


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


