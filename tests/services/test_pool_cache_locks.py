"""``pool_cache`` computes under a lock per value, never under the store's lock
(issue 11.10): freeing values, which the main rank does while it feeds every rank,
never waits on a user's computation."""

from __future__ import annotations

import threading
import time

import pytest

from neuroscaffold.services.pool import _cache, pool_cache

pytestmark = pytest.mark.timeout(30)


class Node:
    def __init__(self, name, gate):
        self.name = name
        self.gate = gate
        self.calls = 0

    def get_node_name(self):
        return self.name

    @pool_cache
    def slow_value(self):
        self.calls += 1
        self.gate.wait(10)
        return self.name.upper()


@pytest.fixture
def store():
    store = _cache._CacheStore()
    _cache.activate(store)
    yield store
    _cache.activate(None)


def test_freeing_never_waits_on_a_computation(store):
    gate = threading.Event()
    busy = Node("root.busy", gate)
    other = Node("root.other", threading.Event())
    other.gate.set()
    assert other.slow_value() == "ROOT.OTHER"
    thread = threading.Thread(target=busy.slow_value)
    thread.start()
    while busy.calls == 0:
        time.sleep(0.001)
    started = time.monotonic()
    store.free("root.other")  # the old store-wide lock made this wait for busy
    store.free("root.busy")
    assert store.keys() == set()
    assert time.monotonic() - started < 0.5
    gate.set()
    thread.join(5)
    assert not thread.is_alive()


def test_a_value_is_computed_once_by_concurrent_callers(store):
    gate = threading.Event()
    node = Node("root.node", gate)
    results = []
    threads = [threading.Thread(target=lambda: results.append(node.slow_value())) for _ in range(4)]
    for thread in threads:
        thread.start()
    while node.calls == 0:
        time.sleep(0.001)
    time.sleep(0.05)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert results == ["ROOT.NODE"] * 4
    assert node.calls == 1
    assert store.keys() == {("root.node", "slow_value")}
