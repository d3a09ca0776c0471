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


def uneven(network, folder, i):
    """A job 10 times slower on the main rank than elsewhere; it leaves a mark per run."""
    from neuroscaffold import MPI

    rank = MPI.get_rank()
    time.sleep(0.005 if rank == 0 else 0.0005)
    (folder / f"ran-{i}-{rank}-{time.monotonic_ns()}").touch()
    return i


@mpi_matrix(2, 3, 4)
def test_the_main_ranks_unstarted_jobs_go_to_ranks_that_ran_dry(world):
    """At the end of a pool, the main rank's queued jobs are given to the ranks that ran
    dry (instead of running alone while they wait), and none of them runs twice."""
    from neuroscaffold.services.pool import _dispatch

    folder = world.tmp_path / "runs"
    if world.main:
        folder.mkdir()
    world.bcast(None)
    given = []
    real = _dispatch._Dispatcher.rebalance

    def counting(self):
        before = len(self.local.jobs)
        moved = real(self)
        given.append(before - len(self.local.jobs))
        return moved

    _dispatch._Dispatcher.rebalance = counting
    try:
        with world.network.create_job_pool(quiet=True) as pool:
            if pool.is_main():
                jobs = [pool.queue(uneven, (folder, i)) for i in range(300)]
            pool.execute()
    finally:
        _dispatch._Dispatcher.rebalance = real
    if world.main:
        assert [job.result for job in jobs] == list(range(300))
        runs = sorted(int(name.split("-")[1]) for name in (p.name for p in folder.iterdir()))
        assert runs == list(range(300)), "a job ran twice, or not at all"
        if world.size > 1:
            assert sum(given) > 0, "the main rank kept its queue while the others ran dry"
            on_main = sum(job.rank == 0 for job in jobs)
            assert on_main < 300 / world.size, on_main  # slower: it ran less than its share
