"""The pool's wire protocol: message kinds, (de)serialisation and remote errors.

::

    main rank (rank 0)                                  worker rank r (r > 0)
    ──────────────────                                  ─────────────────────
    ready queue ── BATCH(job ids | reset?, granted?, new fns, tasks) ─▶ task deque
                ── GRANT(batch, [job ids] | all) ─────────────────────▶ may start these
                ── FREE([node keys]) ─────────────────────────────────▶ drop pool_cache values
                ── DRAIN ─────────────────────────────────────────────▶ drop unstarted tasks
                ── CANCEL([job ids]) ─────────────────────────────────▶ drop these, if unstarted
                ── RECALL([job ids]) (own tag) ───────────────────────▶ give back these, if unstarted
                ── DUMP (own tag) ────────────────────────────────────▶ print stacks, running jobs
                ── STOP(Summary) ─────────────────────────────────────▶ leave execute()
    job states ◀── CLAIM(batch) ── before it starts a batch not granted with it
               ◀── STARTED(job id, t0) ── first job of a batch, or a slow stretch
               ◀── RESULTS([(job id, ok, t0, t1)] | values) ── flushed per batch / 20 ms
               ◀── DROPPED([job ids]) ── answer to DRAIN and CANCEL
               ◀── RECALLED([job ids]) ── answer to RECALL: the ids really given back
               ◀── BATCH_FAILED([job ids], error) ── a batch that could not be unpickled
               ◀── WORKER_FAILED(text) ── this rank raised outside a job; it waits for STOP
               ◀── INTERRUPTED(signal name) ── SIGINT/SIGTERM here; it waits for STOP
               ◀── REPORT ── SIGUSR1 here (sent from the handler): every rank prints

Every message is one ``(kind, number)`` header and a body, sent as raw bytes with a
nonblocking send on the pool's own duplicated communicator. A BATCH body is two blobs:
the job ids, plainly pickled (so a worker that cannot unpickle the rest still names
the jobs it failed), then the new functions, cloudpickled, and the tasks (function
ids, arguments), plainly pickled when every argument is a plain scalar, else
cloudpickled. Results of plain scalars are plainly pickled too. Main to worker
messages use one tag, worker to main another: MPI keeps messages of one (source, tag)
in order, which the protocol relies on (a FREE is never overtaken by the STOP after
it).

A job sent to a rank runs there unless that rank says it dropped it: CANCEL, DRAIN and
RECALL are requests, and only the ids a worker answers with (DROPPED, RECALLED) change
state on the main rank. Nothing is assumed about when a request arrives. RECALL (take
back the jobs queued behind an overrunning job, or on a rank that went silent) and DUMP
have their own tags: a worker's side thread takes them even while a job holds its main
thread, and a task is taken under one lock, by the job loop to run it or by the side
thread to give it back, never both. A rank that is stopped (SIGSTOP) or hung answers
nothing. So a worker starts only the jobs of a batch the main rank *granted*: a batch
sent to a rank with nothing else to run, or of cheap jobs (a few ms of measured work),
is granted with it; any other is claimed
(CLAIM) by the worker once it is one of the next two batches in its queue, so the
grant comes back while the batch before it runs. Until it is claimed, a batch can be
taken back without asking (it cannot have started): a rank that went silent, or runs
an overrunning job, loses its unclaimed batches at once, and the GRANT that answers a
late claim names only the jobs still its own (none, for a batch taken back). A
stopped rank thus keeps the job it runs, the batch it claimed ahead (whose jobs it may
have started just before it stopped) and its cheap batches (a few ms of work in all);
the rest runs elsewhere meanwhile.

Functions travel once per worker (a table of ids, reset when it grows past a bound, so
per-job closures are not kept for the pool's whole life); configuration nodes and the
network travel by name and are resolved on the receiving rank
(``network.resolve_node``), so a job runs on that rank's own instance of its node,
with that rank's ``pool_cache``.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import socket
import traceback
from enum import IntEnum
from typing import Any, NamedTuple

import cloudpickle

from ...exceptions import DiskFullError, JobPoolError, RemoteJobError

TAG_TO_WORKER = 7301
TAG_TO_MAIN = 7302
TAG_DUMP = 7303  # DUMP has its own tag: a worker's side thread receives it mid-job
TAG_RECALL = 7304  # so has RECALL (see above)


class Kind(IntEnum):
    """What a message is (see the diagram above)."""

    BATCH = 1
    FREE = 2
    DRAIN = 3
    STOP = 4
    CANCEL = 5
    RECALL = 6
    DUMP = 7
    GRANT = 8
    STARTED = 11
    RESULTS = 12
    DROPPED = 13
    BATCH_FAILED = 14
    WORKER_FAILED = 15
    INTERRUPTED = 16
    REPORT = 17
    RECALLED = 18
    CLAIM = 19


class Cause(IntEnum):
    """What made a failed job fail, as STOP tells it (the workers only get text)."""

    ERROR = 0  #: the job raised
    DISK_FULL = 1  #: its results found the disk full (:class:`DiskFullError`)
    INTERRUPT = 2  #: it was interrupted (:class:`KeyboardInterrupt`)

    @classmethod
    def of(cls, error: BaseException | None) -> "Cause":
        for candidate in (error, getattr(error, "__cause__", None)):
            if isinstance(candidate, DiskFullError):
                return cls.DISK_FULL
            if isinstance(candidate, KeyboardInterrupt):
                return cls.INTERRUPT
        return cls.ERROR

    def error(self, line: str) -> Exception:
        """A member of the worker's :class:`WorkflowError` for ``line``, typed."""
        if self is Cause.DISK_FULL:
            return DiskFullError(line)
        member = JobPoolError(line)
        if self is Cause.INTERRUPT:
            member.__cause__ = KeyboardInterrupt()
        return member


class Summary(NamedTuple):
    """What STOP tells a worker about how the pool ended (plainly pickled).

    ``message`` is None when every job succeeded (or its failure was handled);
    ``interrupted`` is ``(rank, signal name)`` when a signal stopped the pool;
    ``causes`` says, line by line, what kind of failure each of ``lines`` is.
    """

    message: str | None = None
    lines: tuple[str, ...] = ()
    interrupted: tuple[int | None, str] | None = None
    causes: tuple[Cause, ...] = ()


_PLAIN_TYPES = frozenset(
    {int, float, str, bytes, bool, type(None), tuple, list, dict, set, frozenset, complex}
)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with the network and its nodes replaced by their names."""

    def __init__(self, file, network):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._network = network

    def persistent_id(self, obj):
        cls = type(obj)
        if cls in _PLAIN_TYPES:
            return None
        if obj is self._network:
            return ("network",)
        if hasattr(cls, "get_node_name") and not isinstance(obj, type):
            if getattr(obj, "scaffold", None) is self._network:
                return ("node", obj.get_node_name())
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, network):
        super().__init__(file)
        self._network = network

    def persistent_load(self, pid):
        if pid[0] == "network":
            return self._network
        return self._network.resolve_node(pid[1])


def dumps(obj: Any, network: Any) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, network).dump(obj)
    return buffer.getvalue()


def loads(data, network: Any) -> Any:
    return _Unpickler(io.BytesIO(data), network).load()


# --- what may travel ------------------------------------------------------------------
# Jobs must behave the same whatever rank runs them, so jobs run on the main rank (or
# serially) are held to what travelling needs: a function, arguments and a result that
# pickle. Plain values are recognised without pickling them.

_SCALARS = frozenset({int, float, bool, str, bytes, type(None), complex, range})
SCALARS = _SCALARS  #: types whose values always travel (hot paths test these inline)


def _plainly_travels(obj, depth: int = 0) -> bool:
    cls = type(obj)
    if cls in _SCALARS:
        return True
    if (cls is tuple or cls is list) and depth < 3 and len(obj) <= (32 if depth < 2 else 8):
        for item in obj:  # a loop, not all(...): this runs for every job
            if type(item) not in _SCALARS and not _plainly_travels(item, depth + 1):
                return False
        return True
    if cls is dict and depth < 3 and len(obj) <= (32 if depth < 2 else 8):
        return all(
            type(key) in _SCALARS and _plainly_travels(value, depth + 1)
            for key, value in obj.items()
        )
    dtype = getattr(obj, "dtype", None)
    if dtype is not None:
        return cls.__module__ == "numpy" and not dtype.hasobject
    if depth < 3 and _pickles_by_state(cls):
        # An instance of a plain class (a dataclass such as a chunk): it travels when
        # its attributes do; the class itself was pickled once.
        state = obj.__dict__
        if len(state) > 32:
            return False
        for key, value in state.items():
            if type(key) is not str or not _plainly_travels(value, depth + 1):
                return False
        return True
    return False


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python
_BY_STATE: dict[type, bool] = {}  # classes whose instances pickle as (class, __dict__)
_MAX_BY_STATE = 256


def _pickles_by_state(cls: type) -> bool:
    """Whether instances of ``cls`` pickle as a reference to ``cls`` (which pickles)
    and their ``__dict__``, and nothing else: Python classes with the default pickling
    and no slots, that are not nodes (nodes travel by name). Checked once per class."""
    known = _BY_STATE.get(cls)
    if known is not None:
        return known
    known = (
        all(base.__flags__ & _HEAPTYPE for base in cls.__mro__[:-1])
        and cls.__mro__[-1] is object
        and not issubclass(cls, type)
        and not any(base.__dict__.get("__slots__") for base in cls.__mro__)
        and cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and cls.__getstate__ is object.__getstate__  # type: ignore[attr-defined]
        and not hasattr(cls, "__getnewargs_ex__")
        and not hasattr(cls, "__getnewargs__")
        and not hasattr(cls, "get_node_name")
        and cls not in copyreg.dispatch_table
    )
    if known:
        try:
            dumps(cls, None)
        except BaseException:  # noqa: B036 - whatever stops it, it is not plain
            known = False
    if len(_BY_STATE) >= _MAX_BY_STATE:
        _BY_STATE.clear()  # bounded: classes made per job come and go
    _BY_STATE[cls] = known
    return known


def pickling_error(obj: Any, network: Any) -> Exception | None:
    """Why ``obj`` cannot travel to another rank, or None when it can.

    Never raises: whatever goes wrong while looking at ``obj`` (a ``dtype`` property
    that raises, a ``__reduce__`` that exits...) is the reason it cannot travel.
    """
    try:
        if _plainly_travels(obj):
            return None
    except Exception:
        pass  # looking at it failed: let pickling decide
    try:
        dumps(obj, network)
    except Exception as exc:
        return exc
    except BaseException as exc:  # noqa: B036 - e.g. SystemExit from a __reduce__
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = JobPoolError(f"pickling raised {exc!r}")
        error.__cause__ = exc
        return error
    return None


def unsent_error(job: Any, cause: Exception) -> JobPoolError:
    """The error of a job whose function or arguments cannot travel to a rank."""
    error = JobPoolError(
        f"job {job.name!r} cannot be sent to another rank: {type(cause).__name__}: {cause}"
    )
    error.__cause__ = cause
    return error


def result_error(cause: Exception) -> JobPoolError:
    """The error of a job whose result cannot travel back to the main rank."""
    error = JobPoolError(
        f"the job's result cannot be sent to another rank: {type(cause).__name__}: {cause}"
    )
    error.__cause__ = cause
    return error


# --- remote errors -------------------------------------------------------------------


class RemoteTraceback(Exception):
    """The traceback of an error raised on another rank, set as the error's cause."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def format_remote(exc: BaseException, rank: int, size: int) -> str:
    head = f"\n### rank {rank} of {size} on {socket.gethostname()}\n"
    return head + "".join(traceback.format_exception(exc))


def pack_error(exc: BaseException, rank: int, size: int, network: Any) -> tuple:
    """An error ready to travel: the exception itself when it pickles, else its text."""
    text = format_remote(exc, rank, size)
    exc.__traceback__ = None  # tracebacks don't pickle; the text keeps it
    try:
        blob = dumps(exc, network)
        loads(blob, network)  # some exceptions pickle but fail to unpickle
    except Exception:
        blob = None
    return (blob, f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), text)


def unpack_error(packed: tuple, network: Any) -> BaseException:
    blob, type_name, message, text = packed
    exc = None
    if blob is not None:
        try:
            exc = loads(blob, network)
        except Exception:
            exc = None
    if exc is None:
        exc = RemoteJobError(f"{type_name}: {message}")
    exc.__cause__ = RemoteTraceback(text)
    return exc
