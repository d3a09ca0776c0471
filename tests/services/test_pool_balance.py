"""Work spreads over every rank: slow jobs never queue up behind each other on rank 0."""

from __future__ import annotations

import time

from tests._mpi import mpi_matrix


def cheap(network, i):
    return i


def slow(network, i):
    time.sleep(0.2)
    return i


@mpi_matrix(2, 3, 4)
def test_slow_jobs_ready_together_go_to_different_ranks(world):
    with world.network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            first = tuple(pool.queue(cheap, (i,)) for i in range(300))
            # Ready together, right after many cheap jobs: one per rank, none run inline.
            slow_jobs = [pool.queue(slow, (i,), deps=first) for i in range(world.size)]
        pool.execute()
    if world.main:
        assert sorted(job.rank for job in slow_jobs) == list(range(world.size))
        assert any(job.rank == 0 for job in first)
