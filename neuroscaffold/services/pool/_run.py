"""The one place a job runs: :func:`run_job`, on any rank, in any thread.

Serially, inline in the main rank's dispatcher, in the main rank's executor thread and
on the other ranks, a job runs through :func:`run_job` and nothing else, so a job ends
the same way wherever it ran:

- it returns: the job succeeds, unless its result cannot travel back to the main rank
  (then it fails with a :class:`JobPoolError` naming why);
- it raises an ``Exception``: the job fails with it;
- it raises another ``BaseException`` (``sys.exit(3)``, ``GeneratorExit``...): the job
  fails with a :class:`JobPoolError` naming it (``the job raised SystemExit(3)``); a
  job never ends its rank, so every rank still ends cleanly;
- ``KeyboardInterrupt`` (and :class:`PoolInterrupted`) is the one exception: it is an
  interrupt of the whole pool, not a job outcome, and propagates (see ``_interrupt``).

:func:`running_jobs` finds the jobs running in this process (for the stall report) and
:func:`in_job` whether a signal interrupted one, by looking at the stacks: nothing is
recorded per job.
"""

from __future__ import annotations

import sys
from time import time
from types import FrameType
from typing import Any, Callable, NamedTuple

from ...exceptions import JobPoolError
from ._protocol import SCALARS, pickling_error, result_error

__all__ = ["Outcome", "in_job", "job_failure", "run_job", "running_jobs"]

_EMPTY: dict = {}


class Outcome(NamedTuple):
    """How a job ended where it ran (:func:`run_job` returns a plain tuple of this
    shape: building a named record for every job costs more than the job itself)."""

    ok: bool
    value: Any  #: the result, or the error (an ``Exception``)
    t0: float  #: ``time.time()`` at start
    t1: float  #: ``time.time()`` at end


class RunningHere(NamedTuple):
    """A job running in this process, as the stall report shows it."""

    job_id: int
    fn: Callable
    started: float  #: ``time.time()``

    @property
    def label(self) -> str:
        fn = self.fn
        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        return f"{name}#{self.job_id}"


def running_jobs() -> dict[int, RunningHere]:
    """The jobs running in this process now, by thread ident.

    Found by looking for :func:`run_job` on each thread's stack: nothing is recorded
    per job, so knowing costs nothing until someone asks (SIGUSR1, SIGINT).
    """
    found: dict[int, RunningHere] = {}
    for ident, frame in sys._current_frames().items():
        entry = _job_on_stack(frame)
        if entry is not None:
            found[ident] = entry
    return found


def in_job(frame: FrameType | None) -> bool:
    """Whether ``frame`` (e.g. the one a signal interrupted) is inside a job."""
    return _job_on_stack(frame) is not None


def _job_on_stack(frame: FrameType | None) -> RunningHere | None:
    while frame is not None:
        if frame.f_code is _RUN_JOB_CODE:
            names = frame.f_locals
            return RunningHere(names.get("job_id", -1), names.get("fn"), names.get("t0", 0.0))
        frame = frame.f_back
    return None


def job_failure(exc: BaseException) -> Exception:
    """The error a job fails with when it raised ``exc`` (not a KeyboardInterrupt)."""
    if isinstance(exc, Exception):
        return exc
    error = JobPoolError(f"the job raised {exc!r}; a job cannot end its rank")
    error.__cause__ = exc
    return error


def run_job(
    fn: Callable,
    args: tuple,
    kwargs: dict | None,
    network: Any,
    job_id: int = -1,
    check_result: bool = True,
) -> tuple:
    """Run ``fn(network, *args, **kwargs)`` with the pool's one policy (module doc);
    returns ``(ok, value, t0, t1)`` (the shape of :class:`Outcome`).

    ``check_result=False`` leaves the "can the result travel" check to the caller
    (workers pickle a whole batch of results at once, and check each only on failure).
    """
    t0 = time()
    try:
        value = fn(network, *args, **(kwargs or _EMPTY))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: B036 - the policy: any other exit fails the job
        return (False, job_failure(exc), t0, time())
    t1 = time()
    if check_result and value.__class__ not in SCALARS:  # a plain value: no call at all
        cause = pickling_error(value, network)
        if cause is not None:
            return (False, result_error(cause), t0, t1)
    return (True, value, t0, t1)


_RUN_JOB_CODE = run_job.__code__
