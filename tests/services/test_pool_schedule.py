"""``schedule()``: nodes are scheduled in the background while execute runs; a failing
scheduler is reported and its dependents skipped. Every body runs in this process and
under ``mpiexec`` (``mpi_matrix``)."""

from __future__ import annotations

import threading

from neuroscaffold import JobSchedulingError
from tests._mpi import mpi_matrix
from tests._pool_support import (
    ADDED,
    CHANGE,
    CLOSING,
    EXECUTING,
    SCHEDULING,
    SUCCESS,
    Node,
    Recorder,
    check_workflow_error,
    nothing,
    outcome,
    summary_of,
)


@mpi_matrix(1, 2, 3, 4)
def test_a_failing_scheduler_is_reported_and_its_dependents_skipped(world):
    net = world.network
    broken = Node(net, "broken", fail_schedule=True)
    needs_broken = Node(net, "needs_broken", depends_on=[broken])
    needs_needs = Node(net, "needs_needs", depends_on=[needs_broken])
    fine = Node(net, "fine", jobs=2)
    after_fine = Node(net, "after_fine", depends_on=[fine])
    with net.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.schedule([broken, fine, needs_broken, after_fine, needs_needs])
        error = outcome(pool.execute)
    check_workflow_error(world, error)
    if not world.main:
        return
    assert summary_of(error) == (
        "3 nodes failed to schedule:\n"
        "  scheduling {root}.test.broken failed: RuntimeError: cannot schedule broken\n"
        "  {root}.test.needs_broken was not scheduled: it depends on {root}.test.broken, "
        "which failed to schedule\n"
        "  {root}.test.needs_needs was not scheduled: it depends on {root}.test.needs_broken, "
        "which failed to schedule"
    )
    errors = error.exceptions
    assert all(type(e) is JobSchedulingError for e in errors), errors
    assert isinstance(errors[0].__cause__, RuntimeError)
    assert [(job.name, job.status) for job in pool.jobs] == [
        (name, SUCCESS) for name in ("fine[0]", "fine[1]", "after_fine[0]")]


@mpi_matrix(1, 2, 3, 4)
def test_schedule_goes_on_while_execute_runs(world):
    first_done = threading.Event()

    def answer(progress):
        if progress.reason is CHANGE and progress.job.status is SUCCESS:
            if progress.job.name == "first[0]":
                first_done.set()

    first = Node(world.network, "first", work=nothing)
    second = Node(world.network, "second", depends_on=[first], jobs=2, work=nothing,
                  gate=first_done)
    recorder = Recorder(answer)
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(recorder)
            pool.schedule([first, second])
        pool.execute()
    if not world.main:
        return
    assert second.gate_opened  # second was scheduled only once first's job had run
    first_job, *second_jobs = pool.jobs
    assert recorder.index(first_job, SUCCESS) < min(
        i for i, e in enumerate(recorder.events) if e.reason is ADDED and e.job in second_jobs
    )
    assert all(job.status is SUCCESS for job in pool.jobs)
    assert [s for _, s in recorder.pool_statuses()] == [SCHEDULING, EXECUTING, CLOSING]


@mpi_matrix(1, 2, 3)
def test_schedule_uses_the_given_scheduler_and_sets_the_submitter(world):
    nodes = [Node(world.network, f"n{i}") for i in range(3)]
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.schedule(nodes, scheduler=lambda node: pool.queue(lambda net, name: name,
                                                                   (node.name,)))
        results = pool.execute(return_results=True)
    if world.main:
        assert sorted(results.values()) == ["n0", "n1", "n2"]
        assert [len(pool.get_submissions_of(node)) for node in nodes] == [1, 1, 1]
