"""The network: a configuration, the storage it compiles into, and the job pools.

Every rank builds its own :class:`Network` from the same configuration; the pools send
configuration nodes between ranks by name (:meth:`Network.resolve_node`), so a job runs
on the receiving rank's own copy of its strategy. Collective calls (``compile``,
``create_job_pool``) must be made on every rank, in the same order.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import Configuration
from .exceptions import StorageError
from .plan import build_plan
from .storage import ConnectivitySet, HDF5Storage, PlacementSet

__all__ = ["Network", "Scaffold", "from_storage"]

PHASES = ("placement", "connectivity")


class Network:
    """A network model. Every rank creates its own; pools run jobs against it.

    Args:
        config: a :class:`Configuration`, a mapping, or the path of a YAML/JSON file;
            None gives an empty default configuration.
        storage: an :class:`~neuroscaffold.storage.HDF5Storage` or the path of an
            HDF5 file; None gives a new file in a temporary directory (then creating
            the network is collective, so every rank uses the same file).
    """

    def __init__(self, config: Any = None, storage: Any = None):
        configuration = _as_configuration(config)
        if configuration._config_scaffold is not None:
            configuration = configuration.copy()  # a tree belongs to one network
        configuration.check()
        configuration._attach(self)
        self.configuration: Configuration = configuration
        self.storage: HDF5Storage = _as_storage(storage)
        self._run: int | None = None
        self._session: int | None = None

    def __repr__(self) -> str:
        return f"<Network {self.configuration.name!r} at {str(self.storage.path)!r}>"

    # --- the model ------------------------------------------------------------------

    @property
    def placement(self):
        """Name -> placement strategy."""
        return self.configuration.placement

    @property
    def connectivity(self):
        """Name -> connection strategy."""
        return self.configuration.connectivity

    @property
    def cell_types(self):
        """Name -> cell type."""
        return self.configuration.cell_types

    @property
    def partitions(self):
        """Name -> partition."""
        return self.configuration.partitions

    def resolve_node(self, name: str):
        """Return the configuration node called ``name`` (see ``get_node_name()``)."""
        return self.configuration.resolve_node(name)

    # --- results --------------------------------------------------------------------

    def get_placement_set(self, cell_type: Any) -> PlacementSet:
        """The stored cells of ``cell_type`` (a name or a cell type);
        ``np.asarray(...)`` gives their positions."""
        name = getattr(cell_type, "name", cell_type)
        if name not in self.cell_types and name not in self._stored(self.storage.cell_type_names):
            raise StorageError(f"{self.storage.path}: no cell type '{name}'"
                               + _did_you_mean(name, [*self.cell_types, *self._stored(self.storage.cell_type_names)]))
        return PlacementSet(self.storage, name)

    def get_connectivity_set(self, name: str) -> ConnectivitySet:
        """The stored connections of strategy ``name``: (pre, post) index pairs."""
        if name not in self._stored(self.storage.connectivity_names):
            raise StorageError(f"{self.storage.path}: no connectivity set '{name}'"
                               + _did_you_mean(name, self._stored(self.storage.connectivity_names)))
        return ConnectivitySet(self.storage, name)

    def _stored(self, names: Callable[[], list[str]]) -> list[str]:
        return names() if self.storage.exists() else []

    # --- compiling ------------------------------------------------------------------

    def compile(self, clear: bool = False, append: bool = False, quiet: bool = False,
                listeners: Iterable[Callable] = (), force: bool = False) -> None:
        """Place the cells, then connect them, into this network's storage.

        Collective: call it on every rank. Each phase runs in its own job pool (with a
        shared :class:`~neuroscaffold.services.pool.Workflow`); a strategy's jobs wait
        for those of its ``depends_on``.

        Args:
            clear: replace whatever the storage file holds.
            append: keep what it holds and add a new run's results to it.
            quiet: no progress display.
            listeners: pool listeners added to every pool of the compile.
            force: compile even if the plan's estimates (jobs, memory, file size)
                exceed this machine's limits; geometry errors are never overridden
                (see :mod:`neuroscaffold.plan`).

        Raises:
            ConfigurationError: the plan of the compile is refused (one line naming
                the value), before any job is queued or anything is written.
            StorageError: the file already holds a network and neither ``clear`` nor
                ``append`` was chosen (it is never overwritten silently).
        """
        from .services.pool import Workflow

        if clear and append:
            raise ValueError("choose clear or append, not both")
        _on_main(lambda: build_plan(self).check(force=force))  # sizes checked before any job
        listeners = tuple(listeners)
        _on_main(lambda: self._begin_compile(clear, append))
        workflow = Workflow(list(PHASES))
        for number, section in enumerate((self.placement, self.connectivity)):
            if number:
                workflow.next_phase()
            with self.create_job_pool(quiet=quiet, workflow=workflow, listeners=listeners) as pool:
                if pool.is_main():
                    pool.schedule(_in_dependency_order(section))
                pool.execute()
        workflow.next_phase()
        # every rank is here once the last pool ended: free the lock's MPI windows
        self.storage.close_lock()

    def _begin_compile(self, clear: bool, append: bool) -> None:
        storage, text = self.storage, self.configuration.to_json()
        if storage.exists():
            try:
                storage.check_format()
            except StorageError:
                if not clear:
                    raise StorageError(f"{storage.path}: exists and is not a neuroscaffold "
                                       "network file; clear it to replace it (--clear)") from None
                storage.create(text)
                return
            has_data = storage.has_data()
            if has_data and not (clear or append):
                raise StorageError(f"{storage.path}: already holds a compiled network; "
                                   "choose to clear or append (--clear or --append)")
            if clear:
                storage.create(text)
                return
            storage.write_configuration(text)
            if has_data:
                storage.start_run()
        else:
            storage.create(text)

    # --- job pools ------------------------------------------------------------------

    def create_job_pool(self, fail_fast: bool = False, quiet: bool = False, **kwargs):
        """Create a :class:`~neuroscaffold.services.pool.JobPool` that runs jobs on
        this network. Use it as a context manager on every rank (collective: it also
        opens a storage session that the pool's jobs write in)."""
        from .services.pool import create_job_pool

        self._prepare_storage()
        return create_job_pool(self, fail_fast=fail_fast, quiet=quiet, **kwargs)

    def storage_session(self) -> tuple[int, int]:
        """``(run, session)`` that jobs write their results under (see
        :mod:`neuroscaffold.storage`)."""
        if self._session is None:
            self._prepare_storage()
        return self._run, self._session

    def _prepare_storage(self) -> None:
        self.storage.init_lock()

        def begin() -> tuple[int, int]:
            if self.storage.exists():
                self.storage.check_format()
            else:
                self.storage.create(self.configuration.to_json())
            return self.storage.begin_session()

        self._run, self._session = _on_main(begin)


Scaffold = Network


def from_storage(path: str | os.PathLike) -> Network:
    """Open the network stored at ``path`` with the configuration stored in it."""
    storage = HDF5Storage(path)
    return Network(Configuration(storage.read_configuration()), storage)


def _as_configuration(config: Any) -> Configuration:
    if config is None:
        return Configuration.default()
    if isinstance(config, Configuration):
        return config
    if isinstance(config, (str, os.PathLike)):
        return Configuration.from_file(config)
    if isinstance(config, dict):
        return Configuration(config)
    raise TypeError(f"expected a Configuration, a mapping or a file path, got {config!r}")


def _as_storage(storage: Any) -> HDF5Storage:
    if isinstance(storage, HDF5Storage):
        return storage
    if storage is None:
        return HDF5Storage(_on_main(_temporary_path))
    if isinstance(storage, (str, os.PathLike)):
        return HDF5Storage(storage)
    raise TypeError(f"expected an HDF5Storage or a file path, got {storage!r}")


def _temporary_path() -> str:
    return str(Path(tempfile.mkdtemp(prefix="neuroscaffold-")) / "network.hdf5")


def _on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the main rank and give its result (or its error) to every rank."""
    from .services import MPI

    outcome = None
    if MPI.get_rank() == 0:
        try:
            outcome = (True, fn())
        except Exception as error:  # handed to every rank, raised below
            outcome = (False, error)
    if MPI.get_size() > 1:
        outcome = MPI.bcast(outcome, root=0)
    ok, value = outcome
    if not ok:
        raise value
    return value


def _did_you_mean(name: Any, known: Iterable[str]) -> str:
    """`` (did you mean 'granule'?)`` for the closest of ``known``, else ``""``."""
    import difflib

    hint = difflib.get_close_matches(str(name), sorted(set(known)), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _in_dependency_order(section: dict) -> list:
    """The nodes of ``section``, each after the nodes of its ``depends_on``."""
    ordered: list = []
    seen: set[int] = set()

    def visit(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        for dependency in node.depends_on:
            visit(dependency)
        ordered.append(node)

    for node in section.values():
        visit(node)
    return ordered
