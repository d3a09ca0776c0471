"""neuroscaffold: build large network models in parallel.

General layout: ``services/`` is the parallel machinery (the MPI service, the MPI lock
service and the job pool); the model layer beside it (``config``, ``network``,
``storage``, ``placement``, ``connectivity``) splits a model's work into pool jobs;
``progress`` shows and records what the pool does; ``cli`` is the command line.

Public names are loaded on first access, so ``import neuroscaffold`` stays fast and never
fails for lack of an optional dependency (mpi4py, mpilock).
"""

from __future__ import annotations

import importlib as _importlib

__version__ = "0.1.0"

# public name -> module that defines it (None: the attribute is the module itself)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "from_storage": ("neuroscaffold.network", "from_storage"),
    "Network": ("neuroscaffold.network", "Network"),
    "Scaffold": ("neuroscaffold.network", "Scaffold"),
    "Configuration": ("neuroscaffold.configuration", "Configuration"),
    "config": ("neuroscaffold.config", None),
    "PlacementStrategy": ("neuroscaffold.placement", "PlacementStrategy"),
    "ConnectionStrategy": ("neuroscaffold.connectivity", "ConnectionStrategy"),
    "pool_cache": ("neuroscaffold.services.pool", "pool_cache"),
    "MPI": ("neuroscaffold.services", "MPI"),
    "JobStatus": ("neuroscaffold.services.pool", "JobStatus"),
    "PoolStatus": ("neuroscaffold.services.pool", "PoolStatus"),
    "PoolProgressReason": ("neuroscaffold.services.pool", "PoolProgressReason"),
}
from . import exceptions as _exceptions

for _name in _exceptions.__all__:
    _EXPORTS[_name] = ("neuroscaffold.exceptions", _name)

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module_name, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'neuroscaffold' has no attribute {name!r}") from None
    module = _importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
