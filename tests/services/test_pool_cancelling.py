"""The job pool: cancellation and fail_fast.

Every body runs in this process and under ``mpiexec`` (``mpi_matrix``). Orders are
forced with dependencies and listeners; the only sleeps make a job last while others
fail or are cancelled.
"""

from __future__ import annotations

import warnings

import pytest

from neuroscaffold import JobCancelledError
from tests._mpi import mpi_matrix
from tests._pool_support import (
    ADDED,
    CANCELLED,
    CHANGE,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    SUCCESS,
    Recorder,
    boom,
    check_workflow_error,
    identity,
    nap,
    outcome,
    summary_of,
)

# --- cancellation ---------------------------------------------------------------------


@mpi_matrix(1, 2, 3, 4)
def test_cancelling_a_queued_job_cancels_its_dependents(world):
    recorder = Recorder()
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(recorder)
            first = pool.queue(identity, ("first",), name="first")
            second = pool.queue(identity, ("second",), deps=[first], name="second")
            third = pool.queue(identity, ("third",), deps=[second], name="third")
            other = pool.queue(lambda net: 4, name="other")
            assert first.status is QUEUED and second.status is PENDING
            assert first.cancel("not needed") is True
        results = pool.execute(return_results=True)  # no WorkflowError
    if not world.main:
        return
    assert results == {other: 4}
    assert isinstance(first.error, JobCancelledError)
    assert [(j.status, str(j.error)) for j in (first, second, third)] == [
        (CANCELLED, "job 'first' was cancelled: not needed"),
        (CANCELLED, "job 'second' was cancelled: its dependency 'first' cancelled"),
        (CANCELLED, "job 'third' was cancelled: its dependency 'first' cancelled"),
    ]
    assert recorder.of(first) == [(ADDED, PENDING), (CHANGE, QUEUED), (CHANGE, CANCELLED)]
    assert recorder.of(third) == [(ADDED, PENDING), (CHANGE, CANCELLED)]
    assert first.started_at is None and third.started_at is None


@mpi_matrix(1, 2, 3, 4)
def test_cancelling_a_running_job_warns_and_changes_nothing(world):
    warned = []

    def cancel_running(progress):
        if progress.reason is CHANGE and progress.job.status is RUNNING:
            if progress.job.name == "long":
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    done = progress.job.cancel("too late")
                warned.append((done, [(w.category, str(w.message)) for w in caught]))

    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(cancel_running)
            other = pool.queue(identity, ("other",), name="other")
            long = pool.queue(nap, (0.05,), name="long")
        error = outcome(pool.execute)
    assert error is None
    if not world.main:
        return
    assert warned == [(False, [(RuntimeWarning, "cannot cancel job 'long': it is running")])]
    assert (other.status, long.status, long.error) == (SUCCESS, SUCCESS, None)


@mpi_matrix(1, 2, 3)
def test_cancelling_an_ended_job_warns_and_changes_nothing(world):
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            job = pool.queue(lambda net: "done", name="ended")
        pool.execute()
        if world.main:
            with pytest.warns(RuntimeWarning, match=r"^cannot cancel job 'ended': it is success$"):
                assert job.cancel() is False
    if not world.main:
        return
    with pytest.warns(RuntimeWarning, match=r"^cannot cancel job 'ended': it is success$"):
        assert job.cancel() is False
    assert job.status is SUCCESS and job.result == "done"


# --- fail_fast ------------------------------------------------------------------------


@mpi_matrix(1, 2, 3, 4)
def test_fail_fast_stops_at_the_first_failure(world):
    recorder = Recorder()
    with world.network.create_job_pool(quiet=True, fail_fast=True) as pool:
        if world.main:
            pool.add_listener(recorder)
            bad = pool.queue(boom, ("first failure",), name="bad")
            gate = pool.queue(nap, (0.5,), name="gate")  # still running when bad failed
            behind = [pool.queue(identity, (i,), deps=[gate], name=f"behind{i}") for i in range(5)]
            for i in range(4 * world.size):
                pool.queue(nap, (0.01,), name=f"more{i}")
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if not world.main:
        return
    cancelled = [j for j in pool.jobs if j.status is CANCELLED]
    assert summary_of(error) == (
        f"1 of {len(pool.jobs)} jobs failed, {len(cancelled)} jobs cancelled:\n"
        f"  job 'bad' failed on rank {bad.rank}: ValueError: first failure"
    )
    assert [j.name for j in pool.jobs if j.status is FAILED] == ["bad"]
    assert [(j.status, str(j.error)) for j in behind] == [
        (CANCELLED, f"job {j.name!r} was cancelled: fail_fast after job 'bad' failed")
        for j in behind
    ]
    assert all((CHANGE, RUNNING) not in recorder.of(j) for j in cancelled)
    assert all(j.status in (SUCCESS, CANCELLED) for j in pool.jobs if j is not bad), pool.jobs
