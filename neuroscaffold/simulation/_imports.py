"""Importing a simulator, with the optional modules it would load left out on request.

NEST's Python package imports pandas and matplotlib whenever they are installed, only
to offer ``get(output="pandas")`` and its spatial plots: 0.4 s of the 4 s that
``neuroscaffold simulate`` takes for the example (measured: ``import nest`` 0.47 s
with them, 0.06 s without). A process that will never ask the simulator for either,
such as the command line, runs the simulation inside :func:`optional_imports_left_out`.
A program that imports neuroscaffold keeps the simulator whole: it may use those
features afterwards, on the kernel that still holds the network.
"""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

__all__ = ["import_simulator", "optional_imports_left_out"]

#: what a simulator's import loads only for features neuroscaffold never uses
OPTIONAL_MODULES = ("pandas", "matplotlib")

_left_out: tuple[str, ...] = ()


@contextmanager
def optional_imports_left_out(modules: tuple[str, ...] = OPTIONAL_MODULES) -> Iterator[None]:
    """While in the block, a simulator imported by :func:`import_simulator` is
    imported without ``modules`` (unless they are loaded already)."""
    global _left_out
    before, _left_out = _left_out, tuple(modules)
    try:
        yield
    finally:
        _left_out = before


def import_simulator(name: str) -> ModuleType:
    """``import name``; inside :func:`optional_imports_left_out`, the left-out modules
    are seen as not installed during that import only (a ``None`` entry in
    ``sys.modules`` makes ``import`` raise ``ImportError``, which the simulator takes
    as "not installed"), and are importable again right after."""
    if name in sys.modules:
        return sys.modules[name]
    blocked = [module for module in _left_out if module not in sys.modules]
    for module in blocked:
        sys.modules[module] = None  # type: ignore[assignment]
    try:
        return importlib.import_module(name)
    finally:
        for module in blocked:
            if module in sys.modules and sys.modules[module] is None:
                del sys.modules[module]
