"""The pool's wire protocol: message kinds, (de)serialisation and remote errors.

::

    main rank (rank 0)                                  worker rank r (r > 0)
    ──────────────────                                  ─────────────────────
    ready queue ── BATCH(new fns, [(job id, fn id, args, kwargs)]) ──▶ task deque
                ── FREE([node keys]) ─────────────────────────────────▶ drop pool_cache values
                ── DRAIN ─────────────────────────────────────────────▶ drop unstarted tasks
                ── STOP(summary) ─────────────────────────────────────▶ leave execute()
    job states ◀── STARTED(job id, t0) ── first job of a batch, or a slow stretch
               ◀── RESULTS([(job id, ok, value, t0, t1)]) ── flushed per batch / 20 ms
               ◀── DROPPED([job ids]) ── answer to DRAIN
               ◀── BATCH_FAILED(batch id, error) ── a batch that could not be unpickled
               ◀── WORKER_FAILED(text) ── this rank raised outside a job and leaves

Every message is one pickled ``(kind, payload)`` tuple sent as raw bytes with a
nonblocking send on the pool's own duplicated communicator. Main to worker messages use
one tag, worker to main another: MPI keeps messages of one (source, tag) in order, which
the protocol relies on (a FREE is never overtaken by the STOP after it).

Functions travel once per worker (a table of ids); configuration nodes and the network
travel by name and are resolved on the receiving rank (``network.resolve_node``), so a
job runs on that rank's own instance of its node, with that rank's ``pool_cache``.
"""

from __future__ import annotations

import io
import pickle
import socket
import traceback
from enum import IntEnum
from typing import Any

import cloudpickle

from ...exceptions import JobPoolError, RemoteJobError

TAG_TO_WORKER = 7301
TAG_TO_MAIN = 7302


class Kind(IntEnum):
    BATCH = 1
    FREE = 2
    DRAIN = 3
    STOP = 4
    STARTED = 11
    RESULTS = 12
    DROPPED = 13
    BATCH_FAILED = 14
    WORKER_FAILED = 15


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


def _plainly_travels(obj, depth: int = 0) -> bool:
    cls = type(obj)
    if cls in _SCALARS:
        return True
    if (cls is tuple or cls is list) and depth < 2 and len(obj) <= 32:
        for item in obj:  # a loop, not all(...): this runs for every job
            if type(item) not in _SCALARS and not _plainly_travels(item, depth + 1):
                return False
        return True
    if cls is dict and depth < 2 and len(obj) <= 32:
        return all(
            type(key) in _SCALARS and _plainly_travels(value, depth + 1)
            for key, value in obj.items()
        )
    dtype = getattr(obj, "dtype", None)
    return cls.__module__ == "numpy" and dtype is not None and not dtype.hasobject


def pickling_error(obj: Any, network: Any) -> Exception | None:
    """Why ``obj`` cannot travel to another rank, or None when it can."""
    if _plainly_travels(obj):
        return None
    try:
        dumps(obj, network)
    except Exception as exc:
        return exc
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
