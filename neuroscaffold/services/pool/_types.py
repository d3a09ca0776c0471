"""What the pool needs from the objects it is given, as :class:`typing.Protocol`\\ s.

The pool knows nothing of the model layer; it relies on these shapes only (duck
typing, checked statically by mypy, never by ``isinstance`` in the hot path).
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

__all__ = ["PoolNetwork", "PoolNode", "SchedulableNode"]


@runtime_checkable
class PoolNode(Protocol):
    """A configuration node: it travels between ranks by name.

    An object with ``get_node_name()`` whose ``scaffold`` is the pool's network is
    pickled as its name and resolved on the receiving rank
    (:meth:`PoolNetwork.resolve_node`); its ``pool_cache`` values are keyed by that
    name, the same on every rank.
    """

    scaffold: Any

    def get_node_name(self) -> str: ...


@runtime_checkable
class SchedulableNode(PoolNode, Protocol):
    """A node :meth:`JobPool.schedule` can schedule: it queues its own jobs, after
    the nodes it ``depends_on`` (skipped if one of those failed to schedule)."""

    depends_on: Iterable[Any] | None

    def queue(self, pool: Any) -> Any: ...


@runtime_checkable
class PoolNetwork(Protocol):
    """The network jobs run against: every rank has its own, which resolves the
    names of nodes that travelled to that rank."""

    def resolve_node(self, name: str) -> Any: ...
