"""Signals while a pool executes: SIGINT/SIGTERM end every rank, SIGUSR1 reports stalls.

While ``execute()`` runs in the main thread, :class:`SignalGuard` replaces the SIGINT
and SIGTERM handlers (and restores the previous ones after). A signal is remembered;
it is raised as :class:`PoolInterrupted` at once if this thread is inside a job (the
job is interrupted, as Ctrl-C would), else at the next turn of the rank's loop, where
the pool's state is consistent. The rank that got it then tells the others (see
``_protocol``: INTERRUPTED to the main rank, STOP with the interrupt to the workers),
so every rank leaves ``execute()`` with :class:`PoolInterrupted` within a few seconds.

SIGUSR1 prints the Python stack of every thread (:mod:`faulthandler`) and this rank's
running jobs. The dump is made from the Python-level handler, in the main thread with
the interpreter lock held, so that no thread moves while its stack is read (dumping
from the C-level handler, as ``faulthandler.register`` does, crashed one run in ten
here while other threads ran). A job stuck in C code delays the report until it
returns to Python.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
from typing import Any, Callable

from ... import _signals
from ...exceptions import PoolInterrupted
from ._run import in_job, running_jobs

__all__ = ["SignalGuard"]

_STOPS = tuple(sig.name for sig in _signals.STOPS)  # SIGINT, SIGTERM, SIGHUP


class SignalGuard:
    """Install the pool's signal handlers for the time of a ``with`` block.

    Does nothing outside the main thread (Python only delivers signals there).
    ``report`` is called from the SIGUSR1 handler and returns the lines to print.
    """

    def __init__(self, rank: int, report: Callable[[], list[str]] | None = None):
        self.rank = rank
        self.report = report
        self.signal_name: str | None = None
        #: called after this rank printed its report on SIGUSR1 (the pool sets it:
        #: the other ranks are asked to print theirs)
        self.on_report: Callable[[], None] | None = None
        self.report_requested = False  # SIGUSR1 came: the rank's loop asks the others
        self._last_report = -1e9
        self._saved: dict[int, Any] = {}
        self._main = threading.main_thread().ident

    def __enter__(self) -> "SignalGuard":
        if threading.get_ident() != self._main:
            return self
        for name in _STOPS:
            signum = getattr(signal, name)
            self._saved[signum] = signal.signal(signum, self._on_stop)
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is not None:
            self._saved[usr1] = signal.signal(usr1, self._on_report)
        # a stop signal that came before the pool and was deferred stops it now
        pending = _signals.take()
        if pending is not None and self.signal_name is None:
            self.signal_name = pending
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._saved.items():
            try:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (TypeError, ValueError):
                pass
        self._saved.clear()

    @property
    def interrupted(self) -> bool:
        return self.signal_name is not None

    def check(self) -> None:
        """Raise :class:`PoolInterrupted` if a stop signal came."""
        if self.signal_name is not None:
            raise PoolInterrupted(self.rank, self.signal_name)

    def settle(self) -> None:
        """The pool's work ended well on every rank; deal with a stop signal that came
        after this rank's last turn of its loop.

        That signal belongs to what the run does next. When the run defers stop
        signals (a parallel compile), it is handed back as pending and acted on at the
        run's next agreement point, on every rank alike: raised here, it would stop
        only the ranks it reached before their pool ended, while the others, reached a
        moment later, go on into the next collective step and wait there for ranks
        that left. Otherwise it is raised (:class:`PoolInterrupted`), never swallowed.
        """
        if self.signal_name is None:
            return
        if _signals.deferring():
            _signals.defer_pending(self.signal_name)
            self.signal_name = None
            return
        self.check()

    def _on_stop(self, signum: int, frame: Any) -> None:
        first = self.signal_name is None
        if first:
            self.signal_name = signal.Signals(signum).name
        if in_job(frame):
            # A job runs in this (main) thread: interrupt it, as Ctrl-C would.
            raise PoolInterrupted(self.rank, self.signal_name)

    def _on_report(self, signum: int, frame: Any) -> None:
        self.print_report()
        self.report_requested = True
        if self.on_report is not None:
            try:
                self.on_report()
            except Exception:  # never let a report break the run
                pass

    def print_report(self, unless_within: float = 0.0) -> None:
        """Print this rank's thread stacks and running jobs (and, on the main rank,
        every rank's running jobs); skipped if one was printed ``unless_within``
        seconds ago (SIGUSR1 on ``mpiexec`` reaches every rank anyway)."""
        now_mono = time.monotonic()
        if now_mono - self._last_report < unless_within:
            return
        self._last_report = now_mono
        try:
            sys.stderr.write(f"### rank {self.rank}: thread stacks\n")
            sys.stderr.flush()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        except (OSError, ValueError, RuntimeError, AttributeError):
            pass  # no usable stderr: the lines below still try
        lines = [f"### rank {self.rank}: stall report (thread stacks above)"]
        now = time.time()
        here = list(running_jobs().items())
        for ident, job in here:
            lines.append(
                f"rank {self.rank}: thread {ident:#x} runs job {job.label!r}"
                f" for {now - job.started:.1f} s"
            )
        if not here:
            lines.append(f"rank {self.rank}: no job running")
        if self.report is not None:
            try:
                lines += self.report()
            except Exception as exc:  # a report must never break the run
                lines.append(f"rank {self.rank}: stall report failed: {exc!r}")
        try:
            sys.stderr.write("".join(line + "\n" for line in lines))
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
