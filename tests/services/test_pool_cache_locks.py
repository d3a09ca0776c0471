"""``pool_cache`` computes under a lock per value, never under the store's lock
(issue 11.10): freeing values, which the main rank does while it feeds every rank,
never waits on a user's computation."""

from __future__ import annotations

import threading
import time

import pytest

from neuroscaffold.services.pool import _cache
from tests._pool_support import Node

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def store():
    store = _cache._CacheStore()
    _cache.activate(store)
    yield store
    _cache.activate(None)


def test_freeing_never_waits_on_a_computation(store):
    gate = threading.Event()
    busy = Node(None, "busy", hold=gate)  # its value waits for the gate
    other = Node(None, "other")
    assert other.heavy() == ["other", 1]
    thread = threading.Thread(target=busy.heavy)
    thread.start()
    while busy.computed == 0:
        time.sleep(0.001)
    # The old store-wide lock made freeing wait for busy, which waits for the gate:
    # freeing must end while the gate is still shut.
    freed = threading.Event()

    def free_both():
        store.free(other.get_node_name())
        store.free(busy.get_node_name())
        freed.set()

    freeing = threading.Thread(target=free_both, daemon=True)
    freeing.start()
    ended = freed.wait(10)
    left = store.keys()
    gate.set()
    freeing.join(5)
    assert ended, "freeing waited on a computation"
    assert left == set()
    thread.join(5)
    assert not thread.is_alive()


def test_a_value_is_computed_once_by_concurrent_callers(store):
    gate = threading.Event()
    node = Node(None, "node", hold=gate)
    results = []
    threads = [threading.Thread(target=lambda: results.append(node.heavy())) for _ in range(4)]
    for thread in threads:
        thread.start()
    while node.computed == 0:
        time.sleep(0.001)
    time.sleep(0.05)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == [["node", 1]] * 4
    assert node.computed == 1
    assert store.keys() == {("{root}.test.node", "heavy")}
