"""Bodies for ``test_mpi_matrix.py``, which runs this file in a pytest of its own (the
name does not start with ``test_``, so the suite never collects it): one body passes,
one fails on rank 1 only, one hangs on rank 1, and one after the hang must still run."""

from __future__ import annotations

import time

from tests._mpi import mpi_matrix


@mpi_matrix(1, 2, 3)
def test_passes(world):
    world.same_on_every_rank(world.size)
    assert world.network.create_job_pool(quiet=True) is not None
    assert world.tmp_path.is_dir()


@mpi_matrix(1, 2)
def test_fails_on_rank_1(world):
    print(f"rank {world.rank} was here")
    assert world.rank != 1, "rank 1 refuses"


@mpi_matrix(2, timeout=3)
def test_hangs_on_rank_1(world):
    if world.rank == 1:
        time.sleep(60)


@mpi_matrix(2)
def test_after_the_hang(world):
    world.same_on_every_rank("still in step")
