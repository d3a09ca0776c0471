"""The job pool in one process: cancellation and fail_fast.

Split from the former ``test_pool_serial.py``; helpers in ``_pool_fixtures.py``.
Nothing sleeps: orders are forced with events, pings run on a fake clock.
"""

from __future__ import annotations


import pytest

from neuroscaffold import (
    JobCancelledError,
    WorkflowError,
)

from tests.services._pool_fixtures import (
    Recorder,
    workflow_message,
    ADDED,
    CHANGE,
    PENDING,
    QUEUED,
    RUNNING,
    SUCCESS,
    FAILED,
    CANCELLED,
)

pytestmark = pytest.mark.timeout(60)


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


