"""``pool_cache``: values kept on each rank while jobs of their node still need them.

Each rank has one store, owned by the pool it is in. A value is keyed by its node (the
node's name, identical on every rank) and method. The main rank counts the unfinished
jobs of every submitter; when a submitter's count drops to zero it frees that node's
values on every rank (see ``_dispatch``). Whatever is left goes when the pool closes.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Hashable

__all__ = ["pool_cache"]

_active_store: "_CacheStore | None" = None
_methods_by_type: dict[type, tuple[str, ...]] = {}


def node_key(node: Any) -> Hashable:
    """The same key on every rank: the node's name when it is a config node."""
    get_name = getattr(node, "get_node_name", None)
    if get_name is not None:
        return get_name()
    return ("object", id(node))


def cache_methods(cls: type) -> tuple[str, ...]:
    """Names of the ``pool_cache`` methods of ``cls`` (and its bases)."""
    try:
        return _methods_by_type[cls]
    except KeyError:
        names = tuple(
            sorted(
                name
                for name in dir(cls)
                if getattr(getattr(cls, name, None), "_neuroscaffold_pool_cache", False)
            )
        )
        _methods_by_type[cls] = names
        return names


class _CacheStore:
    """This rank's cached values: ``{node_key: {method_name: value}}``.

    Each ``(node, method)`` has its own lock, held while its value is computed, so a
    long computation only blocks the callers of that same method; the store's own
    lock is held only for dictionary updates, so :meth:`free` (called while the main
    rank feeds every rank) never waits on user code.
    """

    def __init__(self):
        self.values: dict[Hashable, dict[str, Any]] = {}
        self.lock = threading.Lock()  # dictionaries only; never held around user code
        self._key_locks: dict[tuple[Hashable, str], threading.RLock] = {}

    def key_lock(self, key: Hashable, name: str) -> threading.RLock:
        """The lock of one cached value (re-entrant: a method may recurse)."""
        with self.lock:
            lock = self._key_locks.get((key, name))
            if lock is None:
                lock = self._key_locks[(key, name)] = threading.RLock()
            return lock

    def store(self, key: Hashable, name: str, value: Any) -> None:
        with self.lock:
            self.values.setdefault(key, {})[name] = value

    def free(self, key: Hashable) -> None:
        with self.lock:
            names = self.values.pop(key, None)
            if names:
                for name in names:
                    self._key_locks.pop((key, name), None)

    def clear(self) -> None:
        with self.lock:
            self.values.clear()
            self._key_locks.clear()

    def keys(self) -> set[tuple[Hashable, str]]:
        with self.lock:
            return {(node, name) for node, names in self.values.items() for name in names}


def activate(store: _CacheStore | None) -> None:
    global _active_store
    _active_store = store


def current_store() -> _CacheStore | None:
    """This rank's active store. A function, not the global itself, in the wrapper:
    cloudpickle then pickles the wrapper of a class defined in a script by value
    without dragging the store (and its lock) along."""
    return _active_store


def pool_cache(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Cache a method's value on each rank for as long as the pool's jobs need it.

    Decorate a method of a ``@config.node`` class that takes no arguments. Inside a
    pool, the first call on a rank computes the value and later calls return it; the
    value is freed on every rank once the last job submitted by this node ended, and at
    the latest when the pool closes. Outside a pool the method is simply called.
    """
    name = method.__name__

    @functools.wraps(method)
    def cached(self):
        store = current_store()
        if store is None:
            return method(self)
        key = node_key(self)
        try:
            return store.values[key][name]
        except KeyError:
            pass
        with store.key_lock(key, name):
            try:  # computed by another thread while this one waited
                return store.values[key][name]
            except KeyError:
                pass
            value = method(self)
            store.store(key, name, value)
            return value

    cached._neuroscaffold_pool_cache = True
    return cached
