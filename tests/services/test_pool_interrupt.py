"""Ctrl-C on the main rank ends every rank with a clear error, and nobody hangs."""

from __future__ import annotations

import pytest

from tests._mpi import run_script

SCRIPT = r"""
import signal, time
from neuroscaffold.network import Network
from neuroscaffold.exceptions import WorkflowError
from neuroscaffold.services.pool import JobStatus, PoolProgressReason

def slow(network, i):
    time.sleep(0.01)
    return i

def interrupt_after_five(event):
    # A real SIGINT, delivered to the main thread as during a Ctrl-C.
    if event.reason is PoolProgressReason.JOB_STATUS_CHANGE and event.job.status is JobStatus.SUCCESS:
        done = sum(job.status is JobStatus.SUCCESS for job in event.jobs)
        if done == 5:
            signal.raise_signal(signal.SIGINT)

pool = Network().create_job_pool(quiet=True)
outcome = "returned"
try:
    with pool:
        if pool.is_main():
            pool.add_listener(interrupt_after_five)
            for i in range(200):
                pool.queue(slow, (i,))
        pool.execute()
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
except WorkflowError as exc:
    outcome = "WorkflowError: " + exc.message
print(f"RANK {pool.rank} {outcome}", flush=True)
if pool.is_main():
    statuses = {s: sum(j.status is s for j in pool.jobs) for s in JobStatus}
    print(f"RANK 0 aborted {statuses[JobStatus.ABORTED]} success {statuses[JobStatus.SUCCESS]}", flush=True)
"""


@pytest.mark.parametrize("ranks", [None, 2, 3, 4], ids=["serial", "n2", "n3", "n4"])
def test_interrupt_on_main_rank_ends_every_rank(ranks, tmp_path):
    result = run_script(SCRIPT, ranks, timeout=60, tmp_path=tmp_path)
    result.check()
    lines = result.lines("RANK ")
    size = ranks or 1
    assert "0 KeyboardInterrupt" in lines
    for rank in range(1, size):
        assert f"{rank} WorkflowError: the pool broke on the main rank: KeyboardInterrupt" in lines, result.describe()
    summary = next(line for line in lines if line.startswith("0 aborted"))
    aborted = int(summary.split()[2])
    success = int(summary.split()[4])
    assert success >= 5 and aborted > 0 and aborted + success <= 200
