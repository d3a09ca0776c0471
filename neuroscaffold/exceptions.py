"""The whole error tree of neuroscaffold, in one place.

Every error the framework raises on purpose derives from :class:`NeuroscaffoldError`,
so ``except NeuroscaffoldError`` catches all of them and nothing else. Messages are
lowercase, exact, and name what was wrong and where (the job, the rank, the config path).
"""

from __future__ import annotations

__all__ = [
    "NeuroscaffoldError",
    "DependencyError",
    "UnknownServiceError",
    "ConfigurationError",
    "StorageError",
    "CorruptDataError",
    "DiskFullError",
    "DamagedFileError",
    "CompileInterrupted",
    "JobPoolError",
    "JobCancelledError",
    "JobSchedulingError",
    "InvalidStateError",
    "RemoteJobError",
    "WorkflowError",
    "ListenerError",
    "ParallelError",
    "InternalError",
    "PoolInterrupted",
    "PackingError",
    "ShortfallError",
    "StrategyError",
    "NeuroscaffoldWarning",
    "SimulationError",
    "SimulationInterrupted",
]


class NeuroscaffoldError(Exception):
    """Base class of every error raised on purpose by neuroscaffold."""


class DependencyError(NeuroscaffoldError, ImportError):
    """An optional dependency is needed for what was asked and is not installed."""


class UnknownServiceError(NeuroscaffoldError, LookupError):
    """A service was asked for that no provider was registered for."""


class ConfigurationError(NeuroscaffoldError, ValueError):
    """A configuration is invalid; the message starts with the path of the bad value."""


class StorageError(NeuroscaffoldError, OSError):
    """A storage file is missing, unreadable, or would be overwritten without consent."""


class CorruptDataError(StorageError):
    """Stored rows fail their check: committed rows whose checksum no longer matches,
    or connections whose indices lie outside their populations."""


class DiskFullError(StorageError):
    """The device (or the quota) holding a network or its parts is full."""


class DamagedFileError(StorageError):
    """A file at a network path is an HDF5 or network file that cannot be read."""


class JobPoolError(NeuroscaffoldError, RuntimeError):
    """A job pool was misused (submission after execute, result of a failed job, ...)."""


class JobCancelledError(JobPoolError):
    """A job was cancelled: by the user, by fail-fast, or because a dependency failed."""


class JobSchedulingError(JobPoolError):
    """A node's scheduler raised, or a node was skipped because its dependency did."""


class InvalidStateError(JobPoolError):
    """An illegal job or pool state transition was attempted (a bug, or misuse)."""


class RemoteJobError(JobPoolError):
    """An exception raised by a job on another rank that could not travel as itself.

    The original exception could not be pickled; this error carries its type name, its
    text and the remote traceback, so nothing about the failure is lost.
    """


class ListenerError(JobPoolError):
    """A progress listener raised; the pool was stopped on every rank."""


class ParallelError(NeuroscaffoldError, RuntimeError):
    """Raised on a rank because other ranks failed inside ``try_all`` or ``try_main``;
    the message names the ranks that failed and what they raised."""


class InternalError(NeuroscaffoldError, RuntimeError):
    """A bug in neuroscaffold itself. Please report it with the full traceback."""


class WorkflowError(NeuroscaffoldError, ExceptionGroup):
    """One or more jobs (or schedulers) failed; ``exceptions`` holds each error.

    Raised by :meth:`JobPool.execute` on every rank once every job has ended. Each
    member error names its job (``job 'place granule chunk (0, 0, 0)' failed on rank 1:
    ...``). On ranks other than the main rank the members are summaries (text only).
    """

    def __new__(cls, message: str, exceptions):
        return super().__new__(cls, message, list(exceptions))

    def derive(self, excs):
        return WorkflowError(self.message, excs)


class PoolInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached a rank while a pool executed; raised on every rank.

    A :class:`KeyboardInterrupt`, so code that stops on Ctrl-C stops on it too. Jobs
    that had ended keep their status; the others are ABORTED.

    Attributes:
        rank: the rank that got the signal (None if unknown).
        signal_name: the signal's name, e.g. ``"SIGINT"``.
    """

    def __init__(self, rank: int | None = None, signal_name: str = "SIGINT"):
        where = f"rank {rank}" if rank is not None else "an unknown rank"
        super().__init__(f"the pool was interrupted by {signal_name} on {where}")
        self.rank = rank
        self.signal_name = signal_name

    def __reduce__(self):
        return (type(self), (self.rank, self.signal_name))


class CompileInterrupted(KeyboardInterrupt):
    """A compile was interrupted (Ctrl-C, SIGTERM): what was committed is kept, and
    ``compile --resume`` finishes it. The message says how far it got."""


class PackingError(NeuroscaffoldError, ValueError):
    """Cells could not be placed as far apart as their radii ask for (too dense)."""

    def __init__(self, placed: int, wanted: int, radius: float, where: str = ""):
        self.placed, self.wanted, self.radius = placed, wanted, radius
        super().__init__(f"{where}{': ' if where else ''}only {placed:,} of {wanted:,} cells of "
                         f"radius {radius:g} µm fit at their distance; the density is too "
                         "high to pack")


class ShortfallError(NeuroscaffoldError, ValueError):
    """A fixed-degree rule (``fixed_indegree``, ``fixed_outdegree``) found fewer
    candidate partners than its degree for some cells: the network would have fewer
    connections than configured, so nothing of the job is stored. The message says how
    many cells were short and what to change."""


class StrategyError(NeuroscaffoldError, TypeError):
    """A user's strategy broke its contract (for example a ``place()`` that returns its
    positions instead of calling ``place_cells``); the message says what to do."""


class NeuroscaffoldWarning(UserWarning):
    """Something the user asked for was done differently, or looks wrong, but the run
    goes on (the command line prints it as one ``neuroscaffold: warning:`` line)."""


class SimulationError(NeuroscaffoldError, RuntimeError):
    """A simulation could not be built or run: the simulator refused something at run
    time (the message names the simulation and what was refused)."""


class SimulationInterrupted(KeyboardInterrupt):
    """A simulation was interrupted (Ctrl-C, SIGTERM) on some rank; raised on every
    rank once they all stopped. The message says how far it got; nothing was written."""
