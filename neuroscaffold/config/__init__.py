"""Configuration: typed, named trees of nodes, loaded from YAML or JSON or built in Python.

Use ``@config.node`` on a class and declare its attributes with ``config.attr``,
``config.ref`` / ``config.reflist`` (references to other nodes by name),
``config.dict`` and ``config.list``. A :class:`Configuration` is the root of a network's
tree; its errors name the path of the bad value (``placement.granule.density: expected
a number, got 'abc'``).
"""

from __future__ import annotations

import importlib as _importlib

from . import types
from ._attrs import attr, dict, list, ref, reflist
from ._classes import import_object
from ._node import Node, dynamic, node, raise_at, walk_nodes

__all__ = [
    "CellType",
    "Configuration",
    "NetworkGeometry",
    "Node",
    "attr",
    "dict",
    "dynamic",
    "from_file",
    "import_object",
    "list",
    "node",
    "raise_at",
    "ref",
    "reflist",
    "types",
    "walk_nodes",
]

# The root sections use the strategy and partition classes, whose modules import this
# package; so the root is loaded on first use rather than here.
_LAZY = frozenset({"CellType", "Configuration", "NetworkGeometry", "from_file"})


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(_importlib.import_module(f"{__name__}._configuration"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
