"""The MPI service: mpi4py's ``COMM_WORLD`` behind a thin proxy, or a one-rank emulator.

Importing this package never starts MPI: ``mpi4py.MPI`` is imported when the service
is first used (see :mod:`neuroscaffold.services._registry`).
"""

from __future__ import annotations

from .._registry import FallbackProvider
from ._base import CommHelpers, ParallelError
from ._emulator import WorldEmulator
from ._guard import (
    IGNORE_VARIABLE,
    check_launcher,
    ignores_launcher,
    launcher_variables,
    maybe_launched,
)
from ._start import Start, start_world
from ._world import WorldProxy, world_from_mpi4py

__all__ = [
    "CommHelpers",
    "IGNORE_VARIABLE",
    "PROVIDER",
    "ParallelError",
    "Start",
    "WorldEmulator",
    "WorldProxy",
    "ignores_launcher",
    "launcher_variables",
    "maybe_launched",
    "start_world",
]


def _emulated_world() -> WorldEmulator:
    check_launcher()
    return WorldEmulator()


PROVIDER = FallbackProvider(
    providers=(world_from_mpi4py,),
    mock=_emulated_world,
    requires="mpi4py",
    install="pip install 'neuroscaffold[mpi]'",
)
"""The MPI service's fallback chain: mpi4py, else the emulator (guarded)."""
