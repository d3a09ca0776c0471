"""The job pool in one process: pool_cache: computed once, freed after the node's last job or at close.

Split from the former ``test_pool_serial.py``; helpers in ``_pool_fixtures.py``.
Nothing sleeps: orders are forced with events, pings run on a fake clock.
"""

from __future__ import annotations


import pytest


from tests.services._pool_fixtures import (
    Node,
    cached_nodes,
    PING,
    EXECUTING,
)

pytestmark = pytest.mark.timeout(60)


# --- pool_cache -----------------------------------------------------------------------


def test_pool_cache_is_computed_once_and_freed_when_the_nodes_last_job_ends(network):
    first = Node(network, "cache_a", jobs=4)
    later = Node(network, "cache_b", jobs=3, depends_on=[first])
    key_a, key_b = first.get_node_name(), later.get_node_name()
    checks = []

    def check_cache(progress):
        # On every event: A's value is required (and may be stored) exactly as long as
        # one of A's jobs has not ended.
        if pool.status is not EXECUTING or progress.reason is PING:
            return
        a_open = any(not job.done() for job in pool.get_submissions_of(first))
        required = pool.get_required_cache_items()
        checks.append(((key_a, "heavy") in required, a_open))
        if not a_open:
            assert key_a not in cached_nodes(pool)

    def later_work(node, i):
        return (key_a in cached_nodes(pool), key_b in cached_nodes(pool), node.heavy()[0])

    later._work = later_work
    with network.create_job_pool(quiet=True) as pool:
        pool.add_listener(check_cache)
        first.queue(pool)
        later.queue(pool)
        assert pool.get_required_cache_items() == {(key_a, "heavy"), (key_b, "heavy")}
        pool.execute()
        assert pool.get_required_cache_items() == set()
        assert cached_nodes(pool) == set()
    assert first.computed == 1 and later.computed == 1
    values = [value for _, value in first.seen]
    assert all(value is values[0] for value in values)  # the very same object
    assert all(required == a_open for required, a_open in checks)
    assert (True, True) in checks and (False, False) in checks
    # B's jobs ran after A's last job: A's value was gone, B's own was there.
    assert [job.result for job in pool.get_submissions_of(later)] == [
        (False, False, "cache_b"),
        (False, True, "cache_b"),
        (False, True, "cache_b"),
    ]


def test_pool_cache_is_freed_at_the_latest_when_the_pool_closes(network):
    owner = Node(network, "owner", jobs=2)
    bystander = Node(network, "bystander", jobs=0)  # no jobs: nothing frees its value

    def use_bystander(node, i):
        return bystander.heavy()

    owner._work = use_bystander
    with network.create_job_pool(quiet=True) as pool:
        owner.queue(pool)
        pool.execute()
        assert cached_nodes(pool) == {bystander.get_node_name()}
        assert bystander.heavy() is pool.jobs[0].result  # still cached inside the pool
    assert cached_nodes(pool) == set()
    assert bystander.computed == 1
    assert bystander.heavy() == ["bystander", 2]  # outside a pool: plainly called


