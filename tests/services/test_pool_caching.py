"""``pool_cache``: computed once per rank, freed on each rank after the node's last job,
at the latest when the pool closes. Every body runs in this process and under
``mpiexec`` (``mpi_matrix``)."""

from __future__ import annotations

from tests._mpi import mpi_matrix
from tests._pool_support import EXECUTING, PING, Node, cached_nodes


@mpi_matrix(1, 2, 3, 4)
def test_pool_cache_is_computed_once_and_freed_when_the_nodes_last_job_ends(world):
    net = world.network
    first = Node(net, "cache_a", jobs=4 * world.size, pause=0.01)
    later = Node(net, "cache_b", jobs=4 * world.size, depends_on=[first], pause=0.005)
    key_a, key_b = first.get_node_name(), later.get_node_name()
    seen = []

    def watch(progress):
        # On every event: A's value is required exactly while one of A's jobs has not
        # ended, and the main rank holds it only then.
        if pool.status is not EXECUTING or progress.reason is PING:
            return
        a_open = any(not job.done() for job in pool.get_submissions_of(first))
        required = (key_a, "heavy") in pool.get_required_cache_items()
        seen.append((required, a_open, key_a in cached_nodes(pool)))

    def later_work(node, i):
        # Runs after every job of A ended: A's value must be gone here, B's own there.
        value = node.heavy()[0]
        return (key_a in cached_nodes(pool), key_b in cached_nodes(pool), value)

    later._work = later_work
    with net.create_job_pool(quiet=True) as pool:
        if world.main:
            pool.add_listener(watch)
            first.queue(pool)
            later.queue(pool)
            assert pool.get_required_cache_items() == {(key_a, "heavy"), (key_b, "heavy")}
        pool.execute()
        assert {key_a, key_b} & cached_nodes(pool) == set()  # freed on every rank
        if world.main:
            assert pool.get_required_cache_items() == set()
    assert pool._cache.values == {}
    ranks = world.bcast(
        [{j.rank for j in pool.get_submissions_of(n)} for n in (first, later)] if world.main else None
    )
    # computed once on each rank that ran the node's jobs
    assert (first.computed, later.computed) == (int(world.rank in ranks[0]), int(world.rank in ranks[1]))
    values = [value for _, value in first.seen]
    assert all(value is values[0] for value in values)  # the very same object on a rank
    if not world.main:
        return
    assert all(required == a_open for required, a_open, _ in seen), seen
    assert all(a_open or not stored for _, a_open, stored in seen), seen
    assert (True, True) in [s[:2] for s in seen] and (False, False) in [s[:2] for s in seen]
    assert [job.result for job in pool.get_submissions_of(later)] == [
        (False, True, "cache_b")] * len(pool.get_submissions_of(later))


@mpi_matrix(1, 2, 3, 4)
def test_pool_cache_is_freed_at_the_latest_when_the_pool_closes(world):
    net = world.network
    owner = Node(net, "owner", jobs=2 * world.size)
    bystander = Node(net, "bystander", jobs=0)  # no jobs: nothing frees its value

    owner._work = lambda node, i: bystander.heavy()
    with net.create_job_pool(quiet=True) as pool:
        if world.main:
            owner.queue(pool)
        pool.execute()
        # kept until closing on the ranks that used it, computed there once
        assert (bystander.get_node_name() in cached_nodes(pool)) == (bystander.computed == 1)
        assert bystander.computed <= 1
        if world.main and world.size == 1:
            assert cached_nodes(pool) == {bystander.get_node_name()}
            assert bystander.heavy() is pool.jobs[0].result  # still cached inside the pool
    assert cached_nodes(pool) == set()
    computed = bystander.computed
    assert bystander.heavy() == ["bystander", computed + 1]  # outside a pool: plainly called
