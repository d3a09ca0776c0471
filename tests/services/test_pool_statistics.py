"""``pool.statistics()`` snapshots, and listeners that ask for no job events. The
bodies decorated with ``mpi_matrix`` run in this process and under ``mpiexec``."""

from __future__ import annotations

import io

from neuroscaffold.exceptions import WorkflowError
from neuroscaffold.network import Network
from neuroscaffold.services.pool import PoolProgressReason, PoolStatus
from neuroscaffold.progress import LogProgress
from tests._mpi import mpi_matrix
from tests._pool_support import Node, outcome


def placement_node(name: str) -> Node:
    return Node(None, name, node_name=f"{{root}}.placement.{name}")


def _fail_on_multiples_of_five(network, i):
    if i % 5 == 0:
        raise ValueError(f"bad {i}")
    return i


@mpi_matrix(1, 2, 3)
def test_statistics_count_every_outcome_per_submitter(world):
    a, b = placement_node("a"), placement_node("b")
    seen = []
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(lambda event: seen.append(pool.statistics()) if event.job is None else None)
            jobs = [pool.queue(_fail_on_multiples_of_five, (i,), submitter=a if i < 10 else b)
                    for i in range(20)]
            pool.queue(lambda network: None, deps=[jobs[0]], submitter=b)  # cancelled: dep fails
        assert isinstance(outcome(pool.execute), WorkflowError)
        stats = pool.statistics()
    if not world.main:
        return
    assert (stats.total, stats.done, stats.failed, stats.cancelled, stats.succeeded) == (21, 21, 4, 1, 16)
    assert [(s.name, s.total, s.done) for s in stats.submitters] == [
        ("{root}.placement.a", 10, 10),
        ("{root}.placement.b", 11, 11),
    ]
    ids = [job.id for job in stats.failures]  # in the order they failed
    assert sorted(ids) == [0, 5, 10, 15] and (world.size > 1 or ids == [0, 5, 10, 15])
    assert stats.running == () and stats.ran == 20 and stats.busy >= 0
    assert stats.ranks == world.size
    scheduling = seen[0]
    assert scheduling.status is PoolStatus.SCHEDULING and scheduling.done == 0


def test_running_jobs_are_listed_while_they_run():
    observed = []

    def look(network):
        observed.append(pool.statistics().running)

    with Network().create_job_pool(quiet=True) as pool:
        job = pool.queue(look)
        pool.execute()
    assert observed == [(job,)]
    assert pool.statistics().running == ()


@mpi_matrix(1, 2, 3)
def test_a_listener_without_job_events_gets_only_pool_events(world):
    class PoolEventsOnly:
        job_events = False

        def __init__(self):
            self.reasons = []

        def __call__(self, event):
            self.reasons.append((event.reason, event.status, event.pool))

    listener = PoolEventsOnly()
    late = PoolEventsOnly()
    pool = world.network.create_job_pool(quiet=True, listeners=[listener])
    with pool:
        if world.main:
            for i in range(50):
                pool.queue(lambda network, i: i, (i,))
            pool.add_listener(late)  # its replay holds no job events either
        pool.execute()
    expected = [
        (PoolProgressReason.POOL_STATUS_CHANGE, PoolStatus.SCHEDULING, pool),
        (PoolProgressReason.POOL_STATUS_CHANGE, PoolStatus.EXECUTING, pool),
        (PoolProgressReason.POOL_STATUS_CHANGE, PoolStatus.CLOSING, pool),
    ] if world.main else []  # listeners are called on the main rank only
    assert listener.reasons == expected
    assert late.reasons == expected


def _fails_now_and_then(network, i):
    if i % 50 == 7:
        raise ValueError(f"bad {i}")
    return i


@mpi_matrix(1, 2, 3)
def test_statistics_and_log_on_every_rank(world):
    log_stream = io.StringIO()
    log = LogProgress(log_stream, interval=3600, heartbeat=False)
    with world.network.create_job_pool(quiet=True, listeners=[log]) as pool:
        if pool.is_main():
            for i in range(400):
                pool.queue(_fails_now_and_then, (i,), name=f"job {i}")
        assert isinstance(outcome(pool.execute), WorkflowError)
        stats = pool.statistics()
    if not world.main:
        return
    assert (stats.total, stats.done, stats.failed, len(stats.running), stats.ranks) == (
        400, 400, 8, 0, world.size)
    lines = log_stream.getvalue().splitlines()
    failures = [line for line in lines if line.startswith("job ")]
    assert len(failures) == 8 and len(set(failures)) == 8  # each failure once
    assert all("failed on rank" in line and "ValueError: bad" in line for line in failures)
    assert lines[-1] == "finished: 400/400 jobs, 8 failed, 0 running, 0 s elapsed"
