"""The job pool in one process: schedule(): background scheduling, failing schedulers.

Split from the former ``test_pool_serial.py``; helpers in ``_pool_fixtures.py``.
Nothing sleeps: orders are forced with events, pings run on a fake clock.
"""

from __future__ import annotations

import threading

import pytest

from neuroscaffold import (
    JobSchedulingError,
    WorkflowError,
)

from tests.services._pool_fixtures import (
    Recorder,
    workflow_message,
    Node,
    ADDED,
    CHANGE,
    SUCCESS,
    SCHEDULING,
    EXECUTING,
    CLOSING,
    WAIT,
)

pytestmark = pytest.mark.timeout(60)


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


