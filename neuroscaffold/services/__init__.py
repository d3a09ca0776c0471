"""Services: the parallel machinery, each piece provided by whatever is installed.

``MPI`` and ``MPILock`` come from fallback chains (:mod:`._registry`): the real
provider when its package imports, else a working one-rank mock, else an object whose
first use raises a :class:`~neuroscaffold.exceptions.DependencyError` saying what to
install. Nothing here imports mpi4py, mpilock or the job pool until first used.
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

from ._registry import (
    FallbackProvider,
    get_service as _get_service,
    register_service,
    registered_services,
    unregister_service,
)

__all__ = [
    "FallbackProvider",
    "JobPool",
    "MPI",
    "MPILock",
    "WorkflowError",
    "pool_cache",
    "register_service",
    "registered_services",
    "unregister_service",
]

# Re-exports loaded on first access: the pool imports the services, not the reverse.
_LAZY_EXPORTS: dict[str, tuple[str, str]] = {
    "JobPool": ("neuroscaffold.services.pool", "JobPool"),
    "pool_cache": ("neuroscaffold.services.pool", "pool_cache"),
    "WorkflowError": ("neuroscaffold.exceptions", "WorkflowError"),
}
_SUBPACKAGES = frozenset({"mpi", "mpilock", "pool"})


def _default_progress_listener() -> _Any:
    # Looked up by name: the services sit below ``progress`` and never import it.
    return _importlib.import_module("neuroscaffold.progress").default_listener


def _register_builtins() -> None:
    from .mpi import PROVIDER as mpi_provider
    from .mpilock import PROVIDER as mpilock_provider

    register_service("MPI", mpi_provider)
    register_service("MPILock", mpilock_provider)
    # ``ProgressListener(pool)`` makes the listener a pool gets unless ``quiet=True``;
    # register another factory to replace the built-in display everywhere.
    register_service(
        "ProgressListener",
        FallbackProvider(
            (_default_progress_listener,), requires="neuroscaffold.progress", install="(built in)"
        ),
    )


_register_builtins()


def __getattr__(name: str) -> _Any:
    if name in _LAZY_EXPORTS:
        module_name, attr = _LAZY_EXPORTS[name]
        value = getattr(_importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Services are looked up on every access (never cached here), so that a later
    # register_service() is seen by everyone who asks afterwards.
    return _get_service(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | registered_services())
