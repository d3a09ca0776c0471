"""A finished pool is freed as soon as it is dropped; its jobs keep their results."""

from __future__ import annotations

import gc
import weakref

import pytest

from neuroscaffold.network import Network
from tests._mpi import run_script


def _run_pool(n):
    with Network().create_job_pool(quiet=True) as pool:
        for i in range(n):
            pool.queue(lambda network, i: i * 2, (i,))
        pool.execute()
    return pool


def test_pool_is_freed_without_the_cycle_collector():
    gc.disable()
    try:
        pool = _run_pool(100)
        ref = weakref.ref(pool)
        jobs = pool.jobs
        del pool
        assert ref() is None
        assert [job.result for job in jobs[:3]] == [0, 2, 4]
    finally:
        gc.enable()


def test_cancel_after_the_pool_is_gone_raises():
    with Network().create_job_pool(quiet=True) as pool:
        job = pool.queue(lambda network: 1)
        other = pool.queue(lambda network: 2)
        other.cancel()
        pool.execute()
    assert job.result == 1
    with pytest.warns(RuntimeWarning, match=r"^cannot cancel job .*: it is success$"):
        assert job.cancel() is False


SCRIPT = r"""
import gc, weakref
from neuroscaffold.network import Network
gc.disable()
with Network().create_job_pool(quiet=True) as pool:
    if pool.is_main():
        for i in range(2000):
            pool.queue(lambda network, i: i, (i,))
    pool.execute()
ref = weakref.ref(pool)
kept = [job.result for job in pool.jobs[:2]]
del pool
print(f"RANK freed={ref() is None} kept={kept}", flush=True)
"""


@pytest.mark.parametrize("ranks", [2, 3])
def test_pool_is_freed_under_mpi(ranks, tmp_path):
    result = run_script(SCRIPT, ranks, timeout=60, tmp_path=tmp_path).check()
    lines = sorted(result.lines("RANK "))
    assert lines == sorted(["freed=True kept=[0, 1]"] + ["freed=True kept=[]"] * (ranks - 1))


def test_gc_threshold_is_raised_while_pools_are_open_and_restored_after():
    before = gc.get_threshold()
    first = Network().create_job_pool(quiet=True)
    second = Network().create_job_pool(quiet=True)
    with first:
        assert gc.get_threshold()[0] >= 50_000
        with second:
            second.execute()
        assert gc.get_threshold()[0] >= 50_000
        first.execute()
    assert gc.get_threshold() == before


QUEUE_FROM_JOB = r"""
from neuroscaffold.network import Network
from neuroscaffold.exceptions import WorkflowError

network = Network()
with network.create_job_pool(quiet=True, main_executes=False) as pool:
    network.current_pool = pool  # the network travels by name: each rank sees its own
    if pool.is_main():
        pool.queue(lambda net: net.current_pool.queue(lambda net: None), name="spawner")
    try:
        pool.execute()
        print(f"RANK {pool.rank} ok", flush=True)
    except WorkflowError as exc:
        print(f"RANK {pool.rank} " + exc.message.replace(chr(10), " | "), flush=True)
"""


def test_a_job_queueing_on_a_worker_rank_fails_clearly(tmp_path):
    result = run_script(QUEUE_FROM_JOB, 2, timeout=60, tmp_path=tmp_path).check()
    expected = (
        "1 of 1 jobs failed: |   job 'spawner' failed on rank 1: JobPoolError: cannot queue "
        "jobs on rank 1 while the pool executes: jobs are queued on the main rank (rank 0)"
    )
    assert sorted(result.lines("RANK ")) == [f"0 {expected}", f"1 {expected}"]
