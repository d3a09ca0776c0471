"""Writing a network: opening a session (what the path holds, what a compile may do),
and ending it on every rank at once, whatever happened on each.

A compile is a *writing run*: the main rank opens the session (:func:`open_compile`),
every rank writes its jobs' results through its shard, and the run passes agreement
points (:mod:`._agreement`): after each phase, and before the merge. Every rank arrives
at each one with how its part ended, and leaves with the worst outcome of all, so that
the ranks merge together, or stop together, keeping what was committed. An interrupt
during the merge is held back until the merge has ended (it is short), so that no rank
leaves a collective the others are in.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable

from . import _signals
from ._text import short_text
from ._agreement import COLLECTIVES, Outcome, agree, collect, held_interrupts, outcomes, share
from .exceptions import (CompileInterrupted, DamagedFileError, DiskFullError,
                         NeuroscaffoldError, NeuroscaffoldWarning, ParallelError, StorageError,
                         WorkflowError)
from .storage import HDF5Storage, NetworkState

if TYPE_CHECKING:
    from .network import Network

__all__ = ["WritingRun", "appendable", "on_main", "open_compile", "open_pool_session",
           "planned_jobs"]

#: Seconds a rank that failed waits for the others to agree (they may be gone).
FAILED_WAIT = 5.0
#: Seconds a rank that succeeded waits for the others at an agreement point (they
#: left the same pool at the same time: only their last commit is still to come).
OK_WAIT = 120.0


class _Disagreed(Exception):
    """Another rank did not end its part of a step well (its error is its own)."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.name)
        self.outcome = outcome


class WritingRun:
    """One rank's side of a writing run on ``network``: its agreement points and its
    ending."""

    def __init__(self, network: "Network"):
        self.network = network
        self.storage: HDF5Storage = network.storage

    def checkpoint(self) -> None:
        """An agreement point: return if every rank's step ended well."""
        outcome = agree(Outcome.OK, OK_WAIT)
        if outcome is not Outcome.OK:
            raise _Disagreed(outcome)

    def finish(self, configuration: str) -> None:
        """Every rank, after the last pool: agree that every rank committed all its
        work, then write the finished network. An interrupt now comes too late to save
        anything: it is held back and dropped (a second one is not), since a rank that
        left now would leave the others inside a collective, and every rank ends alike."""
        with held_interrupts():
            self.checkpoint()
            self.storage.merge(COLLECTIVES, configuration, connection_meta(self.network))

    def abandon(self, error: BaseException) -> BaseException:
        """Stop writing after ``error``: commit what this rank finished, learn how the
        other ranks ended, keep the parts for a resume; return what to raise."""
        storage = self.storage
        try:
            storage.flush()
        except StorageError:
            pass
        if isinstance(error, CompileInterrupted):
            storage.end_session()
            return error
        from .services import MPI

        main = MPI.get_rank() == 0
        if isinstance(error, _Disagreed):
            outcome = error.outcome
        else:
            every = outcomes(_outcome_of(error), FAILED_WAIT)
            outcome = Outcome.UNREACHABLE if every is None else max(every)
            if not main and every is not None and every[0] is Outcome.OK \
                    and not _is_interrupt(error):
                # The main rank reports that the run failed on another rank: this
                # rank's error is its own, and only this rank can say it.
                _print_own_error(error, MPI.get_rank())
        storage.end_session()

        def committed() -> str:
            progress = storage.progress()
            return f"{progress.committed} of {progress.total} jobs committed"

        if _is_interrupt(error) or outcome is Outcome.INTERRUPTED:
            if not main:
                return CompileInterrupted("interrupted")
            if not storage.parts.exists():
                return CompileInterrupted("interrupted before the compile started: nothing "
                                          "was written")
            return CompileInterrupted(f"interrupted: {committed()}; resume with --resume")
        full = _storage_failure(error)
        if full is not None:
            return StorageError(f"{full}; {committed()}: make room, then finish with --resume"
                                if main else full)
        if isinstance(error, _Disagreed):
            if outcome is Outcome.UNREACHABLE:
                return ParallelError("another rank did not answer in time (it may have died); "
                                     + (f"{committed()}; finish with --resume" if main else ""))
            return NeuroscaffoldError("the compile failed on another rank (its error is "
                                      "printed with its rank); "
                                      + (f"{committed()}; finish with --resume" if main else ""))
        return error

    def end_pool_session(self, error: BaseException | None) -> None:
        """Every rank, as a pool that is a session of its own closes: merge what its
        jobs committed into the network file (job failures too: nothing finished is
        lost), unless a rank was interrupted or broke; then the parts stay, and the
        next pool session on the network merges them."""
        storage = self.storage
        try:
            committed = storage.flush()
        except StorageError:
            storage.end_session()
            raise
        mine = Outcome.OK if error is None or isinstance(error, WorkflowError) \
            else _outcome_of(error)
        outcome = agree(mine, OK_WAIT if mine is Outcome.OK else FAILED_WAIT)
        if outcome is not Outcome.OK:
            storage.end_session()
            return
        wrote = collect(committed)
        if share(wrote is not None and (sum(wrote) > 0 or storage.committed_jobs() > 0)):
            with held_interrupts():
                storage.merge(COLLECTIVES, self.network.configuration.to_json(),
                              connection_meta(self.network))
        else:
            on_main(storage.parts.remove)
            storage.end_session()


def _print_own_error(error: BaseException, rank: int) -> None:
    """Print the one line of a rank's own error, headed with its rank (as a pool's
    worker prints a job's), unless it was printed already."""
    if getattr(error, "_neuroscaffold_printed", False):
        return
    text = str(error).strip().splitlines()
    line = short_text(text[0], 400) if text else type(error).__name__
    try:
        sys.stderr.write(f"[rank {rank}] neuroscaffold: error: {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _outcome_of(error: BaseException) -> Outcome:
    return Outcome.INTERRUPTED if _is_interrupt(error) else Outcome.FAILED


def connection_meta(network: "Network") -> dict[str, dict[str, str]]:
    """Connection set -> its pre- and postsynaptic cell types, for the network file."""
    return {name: {"presynaptic": strategy.presynaptic.name,
                   "postsynaptic": strategy.postsynaptic.name}
            for name, strategy in network.connectivity.items()}


def open_compile(network: "Network", configuration: str, choice: str | None):
    """Main rank: check what the path holds against ``choice`` and open the session."""
    storage = network.storage
    path = storage.path
    storage.parts.check_not_busy(path)
    storage.parts.sweep()
    try:
        state = storage.state()
    except DamagedFileError as error:
        if choice != "clear":
            raise DamagedFileError(f"{error}; --clear replaces it") from None
        state = NetworkState.MISSING  # replaced as a whole: its stub goes over it
    except StorageError as error:
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
        jobs = planned_jobs(network, skip)
        session = storage.open_session("compile", configuration, jobs, base=True)
        session.skip = frozenset(skip)
        return session
    # new, clear, or resume of nothing: a new network; an old one stays until replaced
    if choice == "resume":
        warnings.warn(f"{path}: nothing to resume (no unfinished compile there): compiling "
                      "it from the start", NeuroscaffoldWarning, stacklevel=2)
    keep = state is NetworkState.COMPLETE
    return storage.open_session("compile", configuration, planned_jobs(network, set()),
                                stub=not keep)


def open_pool_session(storage: HDF5Storage, configuration: str):
    """Main rank: open the writing session of a pool opened on a network."""
    storage.parts.check_not_busy(storage.path)
    storage.parts.sweep()
    state = storage.state()
    if storage.parts.exists():
        if storage.parts.manifest().get("mode") != "pool":
            raise StorageError(f"{storage.path}: {storage.progress().describe()}; "
                               "finish it before opening pools on it")
        # an interrupted pool session: its committed work is merged with this one's
        return storage.open_session("pool", configuration, resume=True)
    return storage.open_session("pool", configuration, base=state is NetworkState.COMPLETE,
                                stub=False)


def appendable(network: "Network", stored: dict) -> set[str]:
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


def planned_jobs(network: "Network", skip: set[str]) -> dict[str, int]:
    """Strategy node name -> number of jobs a compile queues for it."""
    return {node.get_node_name(): len(node.queued_regions())
            for section in (network.placement, network.connectivity)
            for node in section.values() if node.get_node_name() not in skip}


def _storage_failure(error: BaseException) -> str | None:
    """The storage error (a full disk) that made the jobs of a workflow fail, if any."""
    if isinstance(error, DiskFullError):
        return str(error)
    if not isinstance(error, WorkflowError):
        return None
    for member in error.exceptions:
        for candidate in (member, member.__cause__, getattr(member, "remote", None)):
            if isinstance(candidate, DiskFullError):
                return str(candidate)
    return None


def _is_interrupt(error: BaseException) -> bool:
    if isinstance(error, KeyboardInterrupt):
        return True
    return isinstance(error, WorkflowError) and any(
        isinstance(candidate, KeyboardInterrupt)
        for member in error.exceptions
        for candidate in (member, member.__cause__, getattr(member, "remote", None)))


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on the main rank and give its result, or its error (an interrupt
    too), to every rank, which raises it."""
    from .services import MPI

    outcome: tuple[bool, Any] | None = None
    if MPI.get_rank() == 0:
        try:
            # a stop signal waits until ``fn`` ends: it never cuts a step of the main
            # rank's (a manifest written, its stub not yet) in two
            with held_interrupts(reraise=True):
                outcome = (True, fn())
        except BaseException as error:  # handed to every rank, raised below
            outcome = (False, error)
    ok, value = share(outcome)
    if not ok:
        raise value
    if _signals.deferring():
        # a stop signal deferred on any rank meanwhile stops every rank here, alike
        agreed = agree(Outcome.OK, FAILED_WAIT)
        if agreed is Outcome.INTERRUPTED:
            raise KeyboardInterrupt(_signals.take() or "interrupted")
        if agreed is not Outcome.OK:
            raise ParallelError("another rank did not answer in time (it may have died)")
    return value
