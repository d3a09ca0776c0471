"""The network: what a model's components build, and the owner of job pools.

Minimal for now (the pool's owner); the model layer extends it with configuration,
storage and compilation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Network", "Scaffold"]


class Network:
    """A network model. Every rank creates its own; pools run jobs against it."""

    def __init__(self, config: Any = None, storage: Any = None):
        self.configuration = config
        self.storage = storage

    def create_job_pool(self, fail_fast: bool = False, quiet: bool = False, **kwargs):
        """Create a :class:`~neuroscaffold.services.pool.JobPool` that runs jobs on
        this network. Use it as a context manager on every rank."""
        from .services.pool import create_job_pool

        return create_job_pool(self, fail_fast=fail_fast, quiet=quiet, **kwargs)

    def resolve_node(self, name: str):
        """Return the configuration node called ``name`` (see ``get_node_name()``)."""
        raise KeyError(f"no configuration node named {name!r} in this network")


Scaffold = Network
