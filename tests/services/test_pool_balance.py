"""Work spreads over every rank: slow jobs never queue up behind each other on rank 0."""

from __future__ import annotations

import pytest

from tests._mpi import run_script

SCRIPT = r"""
import time
from neuroscaffold.network import Network

def cheap(network, i):
    return i

def slow(network, i):
    time.sleep(0.2)
    return i

with Network().create_job_pool(quiet=True) as pool:
    if pool.is_main():
        first = tuple(pool.queue(cheap, (i,)) for i in range(300))
        # Ready together, right after many cheap jobs: one per rank, none run inline.
        slow_jobs = [pool.queue(slow, (i,), deps=first) for i in range(SIZE)]
    pool.execute()
    if pool.is_main():
        print("SLOW RANKS", sorted(job.rank for job in slow_jobs), flush=True)
        print("CHEAP ON MAIN", any(job.rank == 0 for job in first), flush=True)
"""


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_slow_jobs_ready_together_go_to_different_ranks(ranks, tmp_path):
    source = SCRIPT.replace("SIZE", str(ranks))
    result = run_script(source, ranks, timeout=60, tmp_path=tmp_path).check()
    assert result.lines("SLOW RANKS") == [str(list(range(ranks)))]
    assert result.lines("CHEAP ON MAIN") == ["True"]
