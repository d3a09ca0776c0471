"""The job pool in one process: the seed snippets (services.txt), adapted.

Split from the former ``test_pool_serial.py``; helpers in ``_pool_fixtures.py``.
Nothing sleeps: orders are forced with events, pings run on a fake clock.
"""

from __future__ import annotations

import re
import time

import pytest

from neuroscaffold import (
    pool_cache,
)
from neuroscaffold.services.pool import PoolProgressReason, PoolStatus

from tests.services._pool_fixtures import (
    Node,
)

pytestmark = pytest.mark.timeout(60)


# --- the seed snippets (services.txt), adapted ------------------------------------------


def test_seed_queue_each_component_then_execute(network):
    components = {name: Node(network, name, jobs=2) for name in ("granule", "purkinje")}
    with network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            for component in components.values():
                component.queue(pool)
        pool.execute()
    assert sorted(job.result for job in pool.jobs) == [
        ("granule", 0),
        ("granule", 1),
        ("purkinje", 0),
        ("purkinje", 1),
    ]


def test_seed_schedule_nodes(network):
    first = Node(network, "layer")
    second = Node(network, "cells", depends_on=[first])
    with network.create_job_pool(quiet=True) as pool:
        if pool.is_main():
            pool.schedule([first, second])
        pool.execute()
    assert [job.result for job in pool.jobs] == [("layer", 0), ("cells", 0)]
    assert pool.jobs[1].deps == (pool.jobs[0],)


def test_seed_listener_reports_time_elapsed(network, capsys):
    started = []

    def report_time_elapsed(progress):
        if progress.reason == PoolProgressReason.POOL_STATUS_CHANGE:
            if progress.status == PoolStatus.SCHEDULING:
                started.append(time.time())
            elif progress.status == PoolStatus.CLOSING:
                print(f"Pool execution finished. {time.time() - started[0]:.3f} seconds elapsed.")

    with network.create_job_pool(quiet=True) as pool:
        pool.add_listener(report_time_elapsed)
        pool.submit(lambda scaffold: time.sleep(0))
        pool.execute()
    assert re.fullmatch(
        r"Pool execution finished\. \d+\.\d{3} seconds elapsed\.\n", capsys.readouterr().out
    )


def test_seed_pool_cache_heavy_calculations(network):
    class MyStrategy(Node):
        calls = 0

        @pool_cache
        def heavy_calculations(self):
            MyStrategy.calls += 1
            return 5 + 5

        def place(self, chunk, indicators):
            return sum(self.heavy_calculations() for _ in range(1000))

    strategy = MyStrategy(network, "mine", jobs=3)
    strategy._work = lambda node, i: node.place(i, None)
    with network.create_job_pool(quiet=True) as pool:
        strategy.queue(pool)
        results = pool.execute(return_results=True)
    assert list(results.values()) == [10000] * 3
    assert MyStrategy.calls == 1
