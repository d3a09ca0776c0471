"""Configuration: typed, named trees of nodes, loaded from YAML or JSON or built in Python.

Use ``@config.node`` on a class and declare its attributes with ``config.attr``,
``config.ref`` / ``config.reflist`` (references to other nodes by name),
``config.dict`` and ``config.list``. Errors name the path of the bad value
(``placement.granule.density: expected a number, got 'abc'``).

This package is the generic machinery only, below the model layer: the strategy and
partition classes are written with it. The root of a network's tree, whose sections are
typed by those classes, is :class:`neuroscaffold.Configuration`, defined above them in
:mod:`neuroscaffold.configuration`; nothing here imports it (``tests/test_layers.py``).
"""

from __future__ import annotations

from . import types
from ._attrs import attr, dict, list, ref, reflist
from ._classes import import_object
from ._node import Node, dynamic, node, raise_at, walk_nodes

__all__ = [
    "Node",
    "attr",
    "dict",
    "dynamic",
    "import_object",
    "list",
    "node",
    "raise_at",
    "ref",
    "reflist",
    "types",
    "walk_nodes",
]

# Where the root schema went, so an old spelling gets a pointer instead of a bare error.
_MOVED = frozenset({"CellType", "Configuration", "NetworkGeometry", "from_file"})


def __getattr__(name: str):
    if name in _MOVED:
        raise AttributeError(
            f"neuroscaffold.config.{name} is now neuroscaffold.configuration.{name} (the root "
            "of a configuration sits above the strategies; neuroscaffold.Configuration is the "
            "same class)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
