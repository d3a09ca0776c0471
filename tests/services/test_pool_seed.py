"""The seed snippets (services.txt), adapted: a network, nodes with ``queue(pool)``.
Every body runs in this process and under ``mpiexec`` (``mpi_matrix``)."""

from __future__ import annotations

import re
import time

from neuroscaffold import pool_cache
from neuroscaffold.services.pool import PoolProgressReason, PoolStatus
from tests._mpi import mpi_matrix
from tests._pool_support import PENDING, SUCCESS, Node


@mpi_matrix(1, 2, 3, 4)
def test_seed_queue_each_component_then_execute(world):
    components = {name: Node(world.network, name, jobs=world.size)
                  for name in ("granule", "purkinje")}
    with world.network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            # Only the main node needs to schedule the jobs
            for component in components.values():
                component.queue(pool)
        # But everyone needs to partake in the execute call
        pool.execute()
    if world.main:
        assert sorted(job.result for job in pool.jobs) == [
            (name, i) for name in ("granule", "purkinje") for i in range(world.size)]


@mpi_matrix(1, 2, 3, 4)
def test_seed_schedule_nodes(world):
    first = Node(world.network, "layer")
    second = Node(world.network, "cells", depends_on=[first])
    with world.network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            pool.schedule([first, second])
        pool.execute()
    if world.main:
        assert [job.result for job in pool.jobs] == [("layer", 0), ("cells", 0)]
        assert pool.jobs[1].deps == (pool.jobs[0],)


@mpi_matrix(1, 2, 3, 4)
def test_seed_listener_reports_time_elapsed(world):
    _t: list = []
    printed: list = []

    def report_time_elapsed(progress):
        if progress.reason == PoolProgressReason.POOL_STATUS_CHANGE:
            if progress.status == PoolStatus.SCHEDULING:
                _t.append(time.time())
            elif progress.status == PoolStatus.CLOSING:
                _t.append(time.time() - _t[0])
                printed.append(f"Pool execution finished. {_t[-1]:.3f} seconds elapsed.")

    with world.network.create_job_pool(quiet=True) as pool:
        pool.add_listener(report_time_elapsed)
        job = pool.submit(lambda scaffold: time.sleep(0.05))
        pool.execute()
    if world.main:
        assert len(_t) == 2 and _t[1] >= 0.05, _t
        assert re.fullmatch(r"Pool execution finished\. \d+\.\d{3} seconds elapsed\.", printed[0])
        assert job.status is SUCCESS
    else:  # listeners and submissions are the main rank's
        assert (_t, job.status) == ([], PENDING)


class MyStrategy(Node):
    @pool_cache
    def heavy_calculations(self):
        self.calls += 1
        return 5 + 5

    def place(self, chunk, indicators):
        # `heavy_calculations` will be called maximum once on each parallel node
        for i in range(1000):
            self.heavy_calculations()
        return self.heavy_calculations() * chunk


def place_chunk(node, i):
    from tests._pool_support import RANK

    return (node.place(i, None), RANK)


@mpi_matrix(1, 2, 3, 4)
def test_seed_pool_cache_heavy_calculations(world):
    strategy = MyStrategy(world.network, "mine", jobs=3 * world.size, work=place_chunk)
    strategy.calls = 0
    with world.network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            strategy.queue(pool)
        results = pool.execute(return_results=True)
    ranks = world.bcast({rank for _, rank in results.values()} if world.main else None)
    assert strategy.calls == int(world.rank in ranks)  # once on each rank that placed
    if world.main:
        assert sorted(value for value, _ in results.values()) == [10 * i for i in range(3 * world.size)]
