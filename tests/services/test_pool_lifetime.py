"""A finished pool is freed as soon as it is dropped; its jobs keep their results. The
bodies decorated with ``mpi_matrix`` run in this process and under ``mpiexec``."""

from __future__ import annotations

import gc
import weakref

import pytest

from neuroscaffold import WorkflowError
from neuroscaffold.network import Network
from tests._mpi import mpi_matrix


@mpi_matrix(1, 2, 3)
def test_pool_is_freed_without_the_cycle_collector(world):
    gc.disable()
    try:
        with world.network.create_job_pool(quiet=True) as pool:
            if pool.is_main():
                for i in range(2000):
                    pool.queue(lambda network, i: i * 2, (i,))
            pool.execute()
        ref = weakref.ref(pool)
        jobs = pool.jobs
        del pool
        assert ref() is None
        assert [job.result for job in jobs[:3]] == ([0, 2, 4] if world.main else [])
    finally:
        gc.enable()


@mpi_matrix(1, 2, 3)
def test_cancel_after_the_pool_is_gone_raises(world):
    with world.network.create_job_pool(quiet=True) as pool:
        if world.main:
            job = pool.queue(lambda network: 1)
            other = pool.queue(lambda network: 2)
            other.cancel()
        pool.execute()
    del pool
    if world.main:
        assert job.result == 1
        with pytest.warns(RuntimeWarning, match=r"^cannot cancel job .*: it is success$"):
            assert job.cancel() is False


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


@mpi_matrix(2, 3)
def test_a_job_queueing_on_a_worker_rank_fails_clearly(world):
    network = world.network
    with network.create_job_pool(quiet=True, main_executes=False) as pool:
        network.current_pool = pool  # the network travels by name: each rank sees its own
        if pool.is_main():
            pool.queue(lambda net: net.current_pool.queue(lambda net: None), name="spawner")
        with pytest.raises(WorkflowError) as info:
            pool.execute()
    spawner_rank = world.bcast(pool.jobs[0].rank if world.main else None)
    assert info.value.message == (
        f"1 of 1 jobs failed:\n  job 'spawner' failed on rank {spawner_rank}: JobPoolError: "
        f"cannot queue jobs on rank {spawner_rank} while the pool executes: jobs are queued "
        "on the main rank (rank 0)"
    )
