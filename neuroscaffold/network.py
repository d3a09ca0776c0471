"""The network: a configuration, the storage it compiles into, and the job pools.

Every rank builds its own :class:`Network` from the same configuration; the pools send
configuration nodes between ranks by name (:meth:`Network.resolve_node`), so a job runs
on the receiving rank's own copy of its strategy. Collective calls (``compile``,
``create_job_pool``) must be made on every rank, in the same order.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import Configuration
from .exceptions import CompileInterrupted, StorageError, WorkflowError
from .services.pool import JobPool
from .storage import ConnectivitySet, HDF5Storage, NetworkState, PlacementSet

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
            raise StorageError(f"{self.storage.path}: no cell type '{name}'")
        return PlacementSet(self.storage, name)

    def get_connectivity_set(self, name: str) -> ConnectivitySet:
        """The stored connections of strategy ``name``: (pre, post) index pairs."""
        if name not in self._stored(self.storage.connectivity_names):
            raise StorageError(f"{self.storage.path}: no connectivity set '{name}'")
        return ConnectivitySet(self.storage, name)

    def _stored(self, names: Callable[[], list[str]]) -> list[str]:
        return names() if self.storage.exists() else []

    # --- compiling ------------------------------------------------------------------

    def compile(self, clear: bool = False, append: bool = False, resume: bool = False,
                quiet: bool = False, listeners: Iterable[Callable] = ()) -> None:
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

        Raises:
            StorageError: the path already holds a network and no choice was made (it
                is never overwritten silently), or the path holds something else.
            CompileInterrupted: Ctrl-C or SIGTERM; the committed work is kept.
        """
        from .services import MPI
        from .services.pool import Workflow

        chosen = [name for name, on in (("clear", clear), ("append", append),
                                        ("resume", resume)) if on]
        if len(chosen) > 1:
            raise ValueError(f"choose one of clear, append and resume, not {' and '.join(chosen)}")
        if self.storage.session is not None:
            raise StorageError(f"{self.storage.path}: a compile or pool is already writing "
                               "this network")
        configuration = self.configuration.to_json()
        session = _on_main(lambda: open_compile(self, configuration, chosen[0] if chosen else None))
        self.storage.attach(session)
        try:
            workflow = Workflow(list(PHASES))
            for number, section in enumerate((self.placement, self.connectivity)):
                if number:
                    workflow.next_phase()
                with self.create_job_pool(quiet=quiet, workflow=workflow,
                                          listeners=tuple(listeners)) as pool:
                    if pool.is_main():
                        pool.schedule(_in_dependency_order(section))
                    pool.execute()
            workflow.next_phase()
            self.storage.merge(MPI, configuration, self._connection_meta())
        except BaseException as error:
            replacement = self._abandon(error)
            if replacement is error:
                raise
            raise replacement from None

    def _abandon(self, error: BaseException) -> BaseException:
        """Stop writing after ``error``: commit what this rank finished, keep the parts
        for a resume, and say how far the compile got."""
        storage = self.storage
        try:
            storage.flush()
        except StorageError:
            pass
        _bounded_barrier(5.0)  # the others commit too, unless they are gone
        storage.end_session()
        if not _is_interrupt(error):
            return error
        line = "interrupted"
        from .services import MPI

        if MPI.get_rank() == 0:
            progress = storage.progress()
            line = (f"interrupted: {progress.committed} of {progress.total} jobs committed; "
                    "resume with --resume")
        return CompileInterrupted(line)

    def job_done(self, key: str, node: Any) -> bool:
        """Whether the job ``key`` of ``node`` need not run in this session: committed
        before an interrupt, or of a strategy an append keeps (main rank)."""
        session = self.storage.session
        if session is None:
            return False
        return node.get_node_name() in session.skip or key in session.done

    def _connection_meta(self) -> dict[str, dict[str, str]]:
        return {name: {"presynaptic": strategy.presynaptic.name,
                       "postsynaptic": strategy.postsynaptic.name}
                for name, strategy in self.connectivity.items()}

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
        from .services import MPI

        storage = self.storage
        try:
            committed = storage.flush()
        except StorageError:
            if own_session:
                storage.end_session()
            raise
        if not own_session:
            if error is None and MPI.get_size() > 1:
                MPI.barrier()  # a phase boundary: every rank's results are committed
            return
        if error is not None and (_is_interrupt(error) or not isinstance(error, Exception)):
            _bounded_barrier(5.0)
            storage.end_session()  # the parts stay: the next pool session merges them
            return
        wrote = committed if MPI.get_size() == 1 else sum(MPI.allgather(committed))
        if wrote or _on_main(lambda: storage.committed_jobs() > 0):
            storage.merge(MPI, self.configuration.to_json(), self._connection_meta())
        else:
            _on_main(storage.parts.remove)
            storage.end_session()


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


def open_compile(network: Network, configuration: str, choice: str | None):
    """Main rank: check what the path holds against ``choice`` and open the session."""
    storage = network.storage
    path = storage.path
    try:
        state = storage.state()
    except StorageError as error:
        if "damaged" in str(error) and choice == "clear":
            state = NetworkState.MISSING  # replaced as a whole: its stub goes over it
        elif "damaged" in str(error):
            raise StorageError(f"{error}; --clear replaces it") from None
        else:
            raise StorageError(f"{error}; refusing to overwrite it: choose another "
                               "output path") from None
    unfinished = storage.parts.exists()
    if choice == "resume" and unfinished:
        return storage.open_session("compile", configuration, resume=True)
    if choice == "resume" and state is NetworkState.COMPLETE:
        raise StorageError(f"{path}: nothing to resume: the network is complete")
    if choice == "resume" and state is NetworkState.INCOMPLETE:
        raise StorageError(f"{path}: {storage.progress().describe()}")
    if choice is None and state is NetworkState.COMPLETE:
        hint = (" (and an unfinished recompile of it waits in "
                f"{storage.parts.path.name}: --resume finishes it)") if unfinished else ""
        raise StorageError(f"{path}: already holds a compiled network{hint}; choose to "
                           "rebuild it (--clear) or to add the strategies it does not have "
                           "(--append)")
    if choice is None and (state is NetworkState.INCOMPLETE or unfinished):
        raise StorageError(f"{path}: holds an unfinished network ({storage.progress().committed}"
                           f" of {storage.progress().total} jobs committed); finish it "
                           "(--resume) or start over (--clear)")
    if choice == "append":
        if state is not NetworkState.COMPLETE:
            raise StorageError(f"{path}: no complete network to append to"
                               + ("; finish it first (--resume)" if unfinished else ""))
        skip = appendable(network, storage.read_configuration())
        jobs = _planned_jobs(network, skip)
        session = storage.open_session("compile", configuration, jobs, base=True)
        session.skip = frozenset(skip)
        return session
    # new, clear, or resume of nothing: a new network; an old one stays until replaced
    keep = state is NetworkState.COMPLETE
    return storage.open_session("compile", configuration, _planned_jobs(network, set()),
                                stub=not keep)


def open_pool_session(storage: HDF5Storage, configuration: str):
    """Main rank: open the writing session of a pool opened on a network."""
    state = storage.state()
    if storage.parts.exists():
        if storage.parts.manifest().get("mode") != "pool":
            raise StorageError(f"{storage.path}: {storage.progress().describe()}; "
                               "finish it before opening pools on it")
        # an interrupted pool session: its committed work is merged with this one's
        return storage.open_session("pool", configuration, resume=True)
    return storage.open_session("pool", configuration, base=state is NetworkState.COMPLETE,
                                stub=False)


def appendable(network: Network, stored: dict) -> set[str]:
    """The node names of the strategies the stored network already has; raises when
    the configuration does not extend the stored one."""
    new = network.configuration.to_dict()
    path = network.storage.path
    for section in ("network", "seed", "partitions", "cell_types"):
        if stored.get(section) != new.get(section):
            raise StorageError(f"{path}: cannot append: the configuration's '{section}' "
                               "differs from the stored network's; use --clear to rebuild")
    kept = set()
    placed = set()
    for section, nodes in (("placement", network.placement), ("connectivity", network.connectivity)):
        old = stored.get(section) or {}
        for name in old:
            if name not in nodes:
                raise StorageError(f"{path}: cannot append: the stored {section} strategy "
                                   f"'{name}' is missing from the configuration")
            if old[name] != new[section][name]:
                raise StorageError(f"{path}: cannot append: {section}.{name} differs from "
                                   "the stored network's; use --clear to rebuild")
            kept.add(nodes[name].get_node_name())
            if section == "placement":
                placed.update(ct.name for ct in nodes[name].cell_types)
    for name, strategy in network.placement.items():
        if strategy.get_node_name() not in kept:
            again = sorted(placed & {ct.name for ct in strategy.cell_types})
            if again:
                raise StorageError(f"{path}: cannot append placement.{name}: cell type "
                                   f"'{again[0]}' is placed already (more cells would change "
                                   "the indices that stored connections use); use --clear")
    if len(kept) == len(network.placement) + len(network.connectivity):
        raise StorageError(f"{path}: nothing to append: the network already has every "
                           "strategy of the configuration")
    return kept


def _planned_jobs(network: Network, skip: set[str]) -> dict[str, int]:
    """Strategy node name -> number of jobs a compile queues for it."""
    return {node.get_node_name(): len(node.get_chunks())
            for section in (network.placement, network.connectivity)
            for node in section.values() if node.get_node_name() not in skip}


def _is_interrupt(error: BaseException) -> bool:
    if isinstance(error, KeyboardInterrupt):
        return True
    return isinstance(error, WorkflowError) and "KeyboardInterrupt" in str(error)


def _bounded_barrier(seconds: float) -> bool:
    """Wait at most ``seconds`` for every rank to get here (after an error, a rank may
    be gone: never wait forever)."""
    from .services import MPI

    comm = MPI.get_communicator()
    if comm is None or comm.Get_size() == 1:
        return True
    request = comm.Ibarrier()
    deadline = time.monotonic() + seconds
    pause = 1e-4
    while not request.Test():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    return True


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
