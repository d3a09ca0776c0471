"""The job pool: results, dependency order, failures that cascade, many jobs.

Every body runs in this process and under ``mpiexec -n 2, 3, 4`` (``mpi_matrix``); jobs
are queued on the main rank, every rank executes. Orders are forced with dependencies
and events, never with sleeps.
"""

from __future__ import annotations

import threading

import pytest

from neuroscaffold import JobCancelledError, JobPoolError, WorkflowError
from tests._mpi import mpi_matrix
from tests._pool_support import (
    CANCELLED,
    CHANGE,
    CLOSING,
    FAILED,
    SUCCESS,
    Node,
    Recorder,
    boom,
    check_workflow_error,
    identity,
    nothing,
    outcome,
    summary_of,
)

AFTER_EXECUTE = "cannot submit jobs after the pool was executed"

# --- results -----------------------------------------------------------------------------

@mpi_matrix(1, 2, 3, 4)
def test_execute_returns_the_results_of_the_jobs_that_succeeded(world):
    net = world.network
    with net.create_job_pool(quiet=True) as pool:
        if world.main:
            square = pool.submit(lambda net, x: x * x, 7)
            keyword = pool.queue(lambda net, a, b=0: a - b, args=(10,), kwargs={"b": 3})
            failed = pool.queue(lambda net: 1 / 0, name="divide")
        with pytest.raises(WorkflowError):
            pool.execute(return_results=True)
    with net.create_job_pool(quiet=True) as pool:
        if world.main:
            one = pool.submit(lambda net: "one")
        results = pool.execute(return_results=True)
        assert results == ({one: "one"} if world.main else {})
    with net.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.submit(lambda net: 1)
        assert pool.execute() is None
    if world.main:
        assert (square.result, keyword.result) == (49, 7)
        assert failed.status is FAILED

@mpi_matrix(1, 2, 3, 4)
def test_results_stay_available_after_the_pool_closed(world):
    size = world.size
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            spread = [pool.submit(identity, i, 0.005) for i in range(3 * size)]
            lists = [pool.submit(lambda net, i: [i] * 3, i) for i in range(5)]
        results = pool.execute(return_results=True)
        assert outcome(lambda: pool.submit(identity, "late")).args == (AFTER_EXECUTE,)
        error = outcome(lambda: pool.execute())
        assert isinstance(error, JobPoolError)
        assert str(error) == "this pool was already executed; create a new pool"
    assert pool.status is CLOSING
    assert pool._cache.values == {}
    if not world.main:
        assert results == {}
        return
    jobs = pool.jobs
    assert set(results) == set(jobs)
    assert {job: job.result for job in jobs} == results
    assert all(job.done() and job.error is None for job in jobs)
    assert [job.result[0] for job in spread] == list(range(3 * size))
    assert [job.result for job in lists] == [[i] * 3 for i in range(5)]
    assert all(job.rank == job.result[1] for job in spread), [(j.rank, j.result) for j in spread]

@mpi_matrix(1, 2, 3)
def test_result_of_a_job_without_one_raises(world):
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            bad = pool.queue(boom, name="bad")
            after = pool.queue(lambda net: 1, deps=[bad], name="after")
            with pytest.raises(JobPoolError, match=r"^job 'after' has no result \(status: pending\)$"):
                after.result
        with pytest.raises(WorkflowError):
            pool.execute()
    if not world.main:
        return
    with pytest.raises(JobPoolError, match=r"^job 'bad' failed: ValueError\('boom'\)$") as info:
        bad.result
    assert info.value.__cause__ is bad.error
    with pytest.raises(JobPoolError, match=r"^job 'after' has no result \(status: cancelled\)$"):
        after.result

# --- dependencies -------------------------------------------------------------------

@mpi_matrix(1, 2, 3, 4)
def test_dependents_are_queued_only_after_their_dependencies_succeeded(world):
    recorder = Recorder()
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(recorder)
            # a diamond, a chain, and "all of b after all of a" (a shared group of deps)
            top = pool.queue(identity, ("top",), name="top")
            left = pool.queue(identity, ("left",), deps=[top], name="left")
            right = pool.queue(identity, ("right",), deps=[top], name="right")
            chain = [pool.queue(identity, ("bottom",), deps=[left, right], name="bottom")]
            for i in range(5):
                chain.append(pool.queue(identity, (f"c{i}",), deps=[chain[-1]], name=f"chain{i}"))
            group_a = tuple(pool.queue(identity, (f"a{i}",), name=f"a{i}") for i in range(10))
            group_b = [pool.queue(identity, (f"b{i}",), deps=group_a, name=f"b{i}")
                       for i in range(10)]
        pool.execute()
    if not world.main:
        return
    jobs = pool.jobs
    assert recorder.stream_problems(jobs) == []
    assert recorder.order_problems(jobs) == []
    assert all(job.status is SUCCESS for job in [*chain, *group_b])

@mpi_matrix(1, 2, 3, 4)
def test_a_failure_cancels_every_dependent_transitively(world):
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            root = pool.queue(boom, name="root")
            child = pool.queue(identity, ("child",), deps=[root], name="child")
            grandchild = pool.queue(identity, ("gc",), deps=[child], name="grandchild")
            free = pool.queue(identity, ("free",), name="free")
            mixed = pool.queue(identity, ("mixed",), deps=[free, grandchild], name="mixed")
            group = tuple([root] + [pool.queue(identity, (i,), name=f"g{i}") for i in range(9)])
            after = [pool.queue(identity, (i,), deps=group, name=f"h{i}") for i in range(3)]
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if not world.main:
        return
    assert summary_of(error) == (
        "1 of 17 jobs failed, 6 jobs cancelled:\n"
        f"  job 'root' failed on rank {root.rank}: ValueError: boom"
    )
    assert [type(e) for e in error.exceptions] == [ValueError]
    cancelled = [child, grandchild, mixed, *after]
    assert [(type(j.error), str(j.error)) for j in cancelled] == [
        (JobCancelledError, f"job {j.name!r} was cancelled: its dependency 'root' failed")
        for j in cancelled
    ]
    assert root.status is FAILED
    assert all(j.status is SUCCESS for j in [free, *group[1:]]), pool.jobs
    assert all(j.started_at is None and j.status is CANCELLED for j in cancelled), cancelled

@mpi_matrix(1, 2, 3)
def test_a_job_depending_on_an_already_failed_job_is_cancelled_at_once(world):
    failed = threading.Event()

    def answer(progress):
        if progress.reason is CHANGE and progress.job.status is FAILED:
            failed.set()

    def fails(node, i):
        raise ValueError("early")

    first = Node(world.network, "first", work=fails)
    late = Node(world.network, "late", depends_on=[first], gate=failed)
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(Recorder(answer))
            pool.schedule([first, late])
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if not world.main:
        return
    assert summary_of(error).startswith("1 of 2 jobs failed, 1 jobs cancelled:")
    assert late.gate_opened
    (job,) = pool.get_submissions_of(late)
    assert job.status is CANCELLED
    assert str(job.error) == "job 'late[0]' was cancelled: its dependency 'first[0]' failed"

# --- many jobs --------------------------------------------------------------------------

@mpi_matrix(1, 2, 3, 4, timeout=60)
def test_every_job_of_b_after_every_job_of_a_with_2000_each(world):
    # Every job of b waits on one shared group of a's jobs: 2000 + 2000 links, not the
    # 2000 x 2000 of one link per pair (what that costs is bench_pool's to measure).
    from neuroscaffold.services.pool import _ledger

    a = Node(world.network, "many_a", jobs=2000, work=nothing)
    b = Node(world.network, "many_b", jobs=2000, depends_on=[a], work=nothing)
    links = []
    real = _ledger.Ledger._add_dep

    def counted(node, dep):
        links.append(None)
        return real(node, dep)

    _ledger.Ledger._add_dep = staticmethod(counted)
    try:
        with world.network.create_job_pool(quiet=True) as pool:
            if world.main:
                a.queue(pool)
                shared = pool.get_submissions_of(a)
                assert shared is pool.get_submissions_of(a)  # one sequence object for every job
                b.queue(pool)  # each of b's jobs gets that same tuple as deps
            pool.execute()
    finally:
        _ledger.Ledger._add_dep = staticmethod(real)
    if not world.main:
        return
    jobs_a, jobs_b = pool.get_submissions_of(a), pool.get_submissions_of(b)
    assert all(job.deps is jobs_a for job in jobs_b)
    assert all(job.status is SUCCESS for job in pool.jobs) and len(pool.jobs) == 4000
    assert max(job.ended_at for job in jobs_a) <= min(job.started_at for job in jobs_b)
    assert 2000 <= len(links) <= 4000, f"{len(links)} dependency links for 2000 x 2000 jobs"