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

from ._allocator import tune_allocator
from ._writing import WritingRun, on_main as _on_main, open_compile, open_pool_session
from .configuration import Configuration
from .exceptions import StorageError
from .services.pool import JobPool
from .plan import build_plan, in_dependency_order
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
        self.storage.source_folder = configuration.folder

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

    def compile(self, clear: bool = False, append: bool = False, resume: bool = False,
                quiet: bool = False, listeners: Iterable[Callable] = (),
                force: bool = False) -> None:
        """Place the cells, then connect them, into this network's storage.

        Collective: call it on every rank. Each phase runs in its own job pool (with a
        shared :class:`~neuroscaffold.services.pool.Workflow`); a strategy's jobs wait
        for those of its ``depends_on``. Every rank writes its jobs' results to its own
        shard; when every job is done the shards become one network file (see
        :mod:`neuroscaffold.storage`). Until then the file says it is unfinished, and
        an interrupted compile can be finished with ``resume=True``.

        Args:
            clear: build the network anew; an existing network at the path stays until
                the new one replaces it.
            append: add the strategies of this configuration that the stored network
                does not have yet (for example a new connection set), keeping every
                stored cell and connection. The configuration must agree with the
                stored one on everything already compiled.
            resume: finish an interrupted compile of the same configuration: run only
                the jobs that were not committed, on any number of ranks.
            quiet: no progress display.
            listeners: pool listeners added to every pool of the compile.
            force: compile even if the plan's estimates (jobs, memory, file size)
                exceed this machine's limits; geometry errors are never overridden
                (see :mod:`neuroscaffold.plan`).

        Raises:
            ConfigurationError: the plan of the compile is refused (one line naming
                the value), before any job is queued or anything is written.
            StorageError: the path already holds a network and no choice was made (it
                is never overwritten silently), or the path holds something else.
            CompileInterrupted: Ctrl-C or SIGTERM; the committed work is kept.
        """
        from .services.pool import Workflow

        self._import_strategies()  # only running their jobs imports them
        # the built-in strategies load scipy.spatial where they use it (0.5 s, which a
        # simulate need not pay); a compile loads it before its first job, not in it
        import scipy.spatial  # noqa: F401
        tune_allocator()  # jobs reuse heap memory instead of faulting in fresh pages
        chosen = [name for name, on in (("clear", clear), ("append", append),
                                        ("resume", resume)) if on]
        if len(chosen) > 1:
            raise ValueError(f"choose one of clear, append and resume, not {' and '.join(chosen)}")
        if self.storage.session is not None:
            raise StorageError(f"{self.storage.path}: a compile or pool is already writing "
                               "this network")
        _on_main(lambda: build_plan(self).check(force=force))  # sizes checked before any job
        configuration = self.configuration.to_json()
        run = WritingRun(self)
        try:
            self.storage.attach(_on_main(
                lambda: open_compile(self, configuration, chosen[0] if chosen else None)))
            workflow = Workflow(list(PHASES))
            for number, section in enumerate((self.placement, self.connectivity)):
                if number:
                    # Every rank's results are committed; the ranks agree that each
                    # ended its pool well (a rank whose last commit failed, or that a
                    # stop signal reached meanwhile, stops them all here) before they
                    # all create the next pool, a collective step.
                    run.checkpoint()
                    workflow.next_phase()
                # Each pool ends on every rank with every rank's results committed: the
                # next phase reads them.
                with self.create_job_pool(quiet=quiet, workflow=workflow,
                                          listeners=tuple(listeners)) as pool:
                    if pool.is_main():
                        pool.schedule(in_dependency_order(section))
                    pool.execute()
            workflow.next_phase()
            run.finish(configuration)
        except BaseException as error:
            replacement = run.abandon(error)
            if replacement is error:
                raise
            raise replacement from None

    def _import_strategies(self) -> None:
        """Import the classes a configuration read from a network file left deferred
        (from its folder, or the import path), before any of their jobs is queued."""
        if self.configuration.deferred():
            configuration = self.configuration.imported()
            configuration._attach(self)
            self.configuration = configuration

    def job_done(self, key: str, node: Any) -> bool:
        """Whether the job ``key`` of ``node`` need not run in this session: committed
        before an interrupt, or of a strategy an append keeps (main rank)."""
        session = self.storage.session
        if session is None:
            return False
        return node.get_node_name() in session.skip or key in session.done

    # --- simulating -----------------------------------------------------------------

    def simulate(self, name: str, *, quiet: bool = False, output: Any = None):
        """Run the simulation ``name`` of the configuration's ``simulations:`` on the
        compiled network, and return its spikes.

        Collective under MPI: call it on every rank. NEST runs on one rank (with the
        simulation's ``threads:``); NEURON spreads the cells over the ranks.

        Args:
            name: a key of ``simulations:``.
            quiet: no progress display (else the build steps, then simulated ms
                against the duration with the time left, on the main rank).
            output: also write the spikes there, as a SONATA spike file.

        Returns:
            A :class:`~neuroscaffold.simulation.SimulationResult`: recorded cell type
            -> :class:`~neuroscaffold.simulation.SpikeTrains` (every spike on the main
            rank, at most their own on the others). The simulator's kernel still
            holds the network afterwards (``nest.GetConnections()``).

        Raises:
            ConfigurationError: no such simulation, or a model or parameter the
                simulator does not have (one line naming the configuration path).
            DependencyError: the simulator is not installed (names the extra).
            StorageError: the network is unfinished (says how to resume it).
            SimulationInterrupted: Ctrl-C or SIGTERM on some rank; nothing written.
        """
        from .simulation import simulate

        return simulate(self, name, quiet=quiet, output=output)

    # --- job pools ------------------------------------------------------------------

    def create_job_pool(self, fail_fast: bool = False, quiet: bool = False, **kwargs):
        """Create a :class:`~neuroscaffold.services.pool.JobPool` that runs jobs on
        this network. Use it as a context manager on every rank (collective).

        Outside of a compile, the pool is a writing session of its own: what its jobs
        store is merged into the network file when the pool closes.
        """
        from .services.pool import create_job_pool

        own = self.storage.session is None
        if own:
            configuration = self.configuration.to_json()
            self.storage.attach(_on_main(lambda: open_pool_session(self.storage, configuration)))
        return create_job_pool(self, fail_fast=fail_fast, quiet=quiet,
                               pool_class=_NetworkPool, **kwargs)._own(own)

    def _pool_closed(self, own_session: bool, error: BaseException | None) -> None:
        """Every rank, as a pool of this network closes: commit this rank's results;
        at the end of a pool's own session, merge them into the network file."""
        if own_session:
            WritingRun(self).end_pool_session(error)
        else:
            self.storage.flush()  # the compile agrees on the phase's end (checkpoint)


class _NetworkPool(JobPool):
    """A network's job pool: when it closes, its results are committed (and merged, if
    the pool is a writing session of its own)."""

    _own_session = False

    def _own(self, own: bool) -> "_NetworkPool":
        self._own_session = own
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            return super().__exit__(exc_type, exc, tb)
        finally:
            self.network._pool_closed(self._own_session, exc)


Scaffold = Network


def from_storage(path: str | os.PathLike) -> Network:
    """Open the network stored at ``path`` with the configuration stored in it.

    Reading runs no code: the modules its strategies name are not imported (a file
    received from someone else, or built with strategies not importable here, reads
    the same); compiling it again imports them (:meth:`Configuration.imported`)."""
    storage = HDF5Storage(path)
    configuration = storage.read_configuration()
    return Network(Configuration.from_stored(configuration, storage.header().folder), storage)


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


def _did_you_mean(name: Any, known: Iterable[str]) -> str:
    """`` (did you mean 'granule'?)`` for the closest of ``known``, else ``""``."""
    import difflib

    hint = difflib.get_close_matches(str(name), sorted(set(known)), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""
