"""``pool.statistics()`` snapshots, and listeners that ask for no job events."""

from __future__ import annotations

import pytest

from neuroscaffold.exceptions import WorkflowError
from neuroscaffold.network import Network
from neuroscaffold.services.pool import PoolProgressReason, PoolStatus
from tests._mpi import run_script


class _Node:
    def __init__(self, name):
        self.name = name

    def get_node_name(self):
        return f"{{root}}.placement.{self.name}"


def _fail_on_multiples_of_five(network, i):
    if i % 5 == 0:
        raise ValueError(f"bad {i}")
    return i


def test_statistics_count_every_outcome_per_submitter():
    a, b = _Node("a"), _Node("b")
    seen = []
    with Network().create_job_pool(quiet=True) as pool:
        pool.add_listener(lambda event: seen.append(pool.statistics()) if event.job is None else None)
        jobs = [pool.queue(_fail_on_multiples_of_five, (i,), submitter=a if i < 10 else b) for i in range(20)]
        pool.queue(lambda network: None, deps=[jobs[0]], submitter=b)  # cancelled: dep fails
        with pytest.raises(WorkflowError):
            pool.execute()
        stats = pool.statistics()
    assert (stats.total, stats.done, stats.failed, stats.cancelled, stats.succeeded) == (21, 21, 4, 1, 16)
    assert [(s.name, s.total, s.done) for s in stats.submitters] == [
        ("{root}.placement.a", 10, 10),
        ("{root}.placement.b", 11, 11),
    ]
    assert [job.id for job in stats.failures] == [0, 5, 10, 15]
    assert stats.running == () and stats.ran == 20 and stats.busy >= 0 and stats.ranks == 1
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


def test_a_listener_without_job_events_gets_only_pool_events():
    class PoolEventsOnly:
        job_events = False

        def __init__(self):
            self.reasons = []

        def __call__(self, event):
            self.reasons.append((event.reason, event.status, event.pool))

    listener = PoolEventsOnly()
    pool = Network().create_job_pool(quiet=True, listeners=[listener])
    with pool:
        for i in range(50):
            pool.queue(lambda network, i: i, (i,))
        late = PoolEventsOnly()
        pool.add_listener(late)  # its replay holds no job events either
        pool.execute()
    expected = [
        (PoolProgressReason.POOL_STATUS_CHANGE, PoolStatus.SCHEDULING, pool),
        (PoolProgressReason.POOL_STATUS_CHANGE, PoolStatus.EXECUTING, pool),
        (PoolProgressReason.POOL_STATUS_CHANGE, PoolStatus.CLOSING, pool),
    ]
    assert listener.reasons == expected
    assert late.reasons == expected


SCRIPT = r"""
import io
from neuroscaffold.network import Network
from neuroscaffold.exceptions import WorkflowError
from neuroscaffold.progress import LogProgress

def job(network, i):
    if i % 50 == 7:
        raise ValueError(f"bad {i}")
    return i

log_stream = io.StringIO()
log = LogProgress(log_stream, interval=3600, heartbeat=False)
with Network().create_job_pool(quiet=True, listeners=[log]) as pool:
    if pool.is_main():
        for i in range(400):
            pool.queue(job, (i,), name=f"job {i}")
    try:
        pool.execute()
    except WorkflowError:
        pass
    stats = pool.statistics()
if pool.is_main():
    ranks = sorted({j.rank for j in stats.failures})
    print(f"STATS total={stats.total} done={stats.done} failed={stats.failed} running={len(stats.running)} ranks={stats.ranks}", flush=True)
    for line in log_stream.getvalue().splitlines():
        print("LOG " + line, flush=True)
"""


@pytest.mark.parametrize("ranks", [2, 3])
def test_statistics_and_log_under_mpi(ranks, tmp_path):
    result = run_script(SCRIPT, ranks, timeout=60, tmp_path=tmp_path).check()
    assert result.lines("STATS ") == [f"total=400 done=400 failed=8 running=0 ranks={ranks}"]
    log = result.lines("LOG ")
    failures = [line for line in log if line.startswith("job ")]
    assert len(failures) == 8 and len(set(failures)) == 8  # each failure once
    assert all("failed on rank" in line and "ValueError: bad" in line for line in failures)
    assert log[-1] == "finished: 400/400 jobs, 8 failed, 0 running, 0 s elapsed"
