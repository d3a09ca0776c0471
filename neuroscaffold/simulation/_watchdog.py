"""The stall guard of a distributed simulation: when the ranks stop making progress
(one is stopped, stuck or far slower), the run ends on every rank, within a bounded
time, with one line on standard error and exit status :data:`EXIT_STATUS`.

Why it is built this way (measured with neuron 9.0.2 and the mpich wheel's
``mpiexec``):

* **NEURON's own watchdog ends a stalled run with exit status 0.** ``pc.timeout(s)``
  (20 s by default) arms a ``SIGALRM`` timer during ``psolve``, on rank 0 only; when
  rank 0's simulated time has not moved between two ticks it prints
  ``nrn_timeout t=50.4`` on *stdout* and calls ``MPI_Abort(comm, 0)``: ``mpiexec -n 2``
  exited 0 after 2-3 timeouts, with no spike file. It never fires when rank 0 itself
  is the stopped rank (the signal waits on a stopped process: the run hung until it
  was killed), nor while the ranks wait in the barrier that opens every ``psolve``
  (the timer is armed after it). So the adapter turns it off (``pc.timeout(0)``) and
  this guard replaces it.
* **No Python thread can watch.** ``psolve`` holds the GIL: a Python thread that ticks
  every millisecond ticked once in 7.8 s of ``psolve``. Ranks that wait for a stalled
  one wait inside NEURON's (or MPI's) C code, with the GIL.
* **Each rank has a watchdog process** (:data:`_WATCHDOG`: a small stdlib-only
  ``python -I -S`` child, started once per run: 8-15 ms to start and end it, 25 µs per
  step, under a load of 4.5), told over a pipe when each step starts and how long it
  may take. If a step has not ended by then, the watchdog sends its rank ``SIGUSR2``
  (and ``SIGCONT``, for a stopped rank). Rank 0's writes the line first; the others
  fire :data:`SPREAD` seconds later and say nothing, so there is one line.
* **Every rank ends itself with ``_exit``.** While the guard is on, ``SIGUSR2``'s
  handler is the C library's ``_exit`` itself (installed with :mod:`ctypes`): it needs
  no GIL and runs even while the main thread is deep in NEURON, so the status is
  ``SIGUSR2``'s number, 12. (``SIGUSR1`` is MPICH's own; ``SIGALRM`` is NEURON's,
  which resets its handler in every ``psolve``.) A rank that *exits* with a status
  makes ``mpiexec`` exit with it; a rank *killed* by a signal makes it print a
  ten-line "BAD TERMINATION" banner on stdout and exit 9.
* **No rank is killed by the launcher.** When a rank leaves without finalizing MPI,
  MPICH's hydra proxy kills the others with ``SIGKILL``; it records them as exited
  with 0, but its event loop overwrites that with "killed" when it reaps one while
  another rank's output is still open. With three ranks that gave the banner and exit
  status 9 in 8 of 10 stalled runs (and in 1 of 8 runs of plain mpi4py ranks that all
  called ``os._exit(12)`` at the same moment). The proxy acts when a rank's
  launcher socket (``PMI_FD``) closes, so each watchdog holds a copy of it, and one
  that fired keeps it for :data:`_LINGER` seconds after its rank ended: by then every
  rank has ended by itself, and ``mpiexec`` exits 12 without a banner (10 of 10). A
  watchdog also holds none of its rank's output open (it opens the rank's stderr
  through ``/proc`` when it writes the line). Under another launcher there is no
  ``PMI_FD``; every rank still ends itself.

The deadline of a step (:meth:`StallGuard.deadline`) is the simulation's
``stall_timeout`` (default 60 s), or :data:`PACE_FACTOR` times as long as the step
would take at the pace measured so far, whichever is longer. The pace is the wall
time per simulated ms of the earlier steps together, the first one left out (it
holds NEURON's ``finitialize`` and the first exchange: on the test network 0.1-0.3 s
for 0.7 ms, which made a pace of a few steps 10-50x too slow); the first steps are
one quantum long, so the pace is known early. Taken over all the steps, one step
that a loaded machine held back for a second does not move it. So a small network
is judged by ``stall_timeout`` alone, and a large one, whose healthy steps take
seconds, by its own pace; a slow but healthy run never reaches either, also on a
loaded 2-core machine. Serially (one rank) nothing waits for another rank: no guard.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import stat
import subprocess
import sys
import time
import warnings
from typing import Any, Iterator

from ..exceptions import NeuroscaffoldWarning

__all__ = ["EXIT_STATUS", "PACE_FACTOR", "SPREAD", "StallGuard", "Watchdog", "stall_guard"]

#: how many times as long as the measured pace a step may take
PACE_FACTOR = 10.0
#: the watchdogs of ranks other than 0 fire this many seconds after rank 0's, so that
#: rank 0's has written the line first (the ranks start a step within milliseconds)
SPREAD = 2.0
#: the signal a watchdog ends its rank with; its number is the exit status
_SIGNAL = getattr(signal, "SIGUSR2", None)
#: the exit status of a rank that its watchdog ended (SIGUSR2's number)
EXIT_STATUS = int(_SIGNAL) if _SIGNAL is not None else 1
#: whether a watchdog can open its rank's stderr when it speaks (Linux's /proc), so
#: that it need not hold it open meanwhile (see the module text)
_REOPENS = os.path.isdir("/proc/self/fd")
#: how long a watchdog that fired keeps its rank's launcher socket open after the
#: rank ended (see the module text): longer than SPREAD, so that every rank has
#: ended by itself first
_LINGER = SPREAD + 8.0
#: how long a watchdog waits for its rank to end before it kills it outright
_GRACE = 10.0

#: the watchdog program: ``argv[1]`` is the rank's pid, ``argv[2]`` the signal,
#: ``argv[3]`` how long to wait for the rank to end, ``argv[4]`` how long to linger
#: after it ended. Each line on stdin is ``SECONDS TEXT`` (arm: fire SECONDS from now,
#: writing TEXT, if any) or ``- `` (disarm); at end of input before it fired (the rank
#: ended or died) it leaves at once.
_WATCHDOG = r"""
import os, select, signal, sys, time
for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(stop, signal.SIG_IGN)  # the rank acts on those; end of input ends us
rank, sig, grace, linger = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
deadline, text, pending = None, b"", b""
while True:
    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
    if select.select([0], [], [], wait)[0]:
        chunk = os.read(0, 65536)
        if not chunk:
            sys.exit(0)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            seconds, _, text = line.partition(b" ")
            deadline = None if seconds == b"-" else time.monotonic() + float(seconds)
    elif deadline is not None and time.monotonic() >= deadline:
        break
if text:
    try:  # the rank's own stderr, opened now: holding it open would delay the launcher
        out = os.open(f"/proc/{rank}/fd/2", os.O_WRONLY | os.O_APPEND)
    except OSError:
        out = 2  # no /proc: it was inherited
    os.write(out, text + b"\n")
    os.close(out)
for send in (sig, signal.SIGCONT):
    try:
        os.kill(rank, send)
    except OSError:
        sys.exit(0)
end = time.monotonic() + grace
while time.monotonic() < end:  # the rank closes our input as it ends
    if select.select([0], [], [], end - time.monotonic())[0] and not os.read(0, 65536):
        time.sleep(linger)  # with its launcher socket, if we hold it
        sys.exit(0)
try:
    os.kill(rank, signal.SIGKILL)  # its handler was not there: end it all the same
except OSError:
    pass
"""


def _launcher_socket() -> int | None:
    """The rank's socket to its MPICH hydra proxy (``PMI_FD``), if it has one."""
    try:
        fd = int(os.environ["PMI_FD"])
        is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
    except (KeyError, ValueError, OSError):
        return None
    return fd if is_socket else None  # closed, and the number taken by another file


class Watchdog:
    """A watchdog process for this rank (see the module text): :meth:`arm` it for a
    number of seconds with the line to write, :meth:`disarm` it, :meth:`close` it.
    While it exists, ``SIGUSR2`` ends this process at once with :data:`EXIT_STATUS`."""

    def __init__(self) -> None:
        assert _SIGNAL is not None
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
        self._libc.signal.restype = ctypes.c_void_p
        held = _launcher_socket()
        self._process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid()), str(int(_SIGNAL)),
             str(_GRACE), str(_LINGER if held is not None else 0.0)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True,
            stderr=subprocess.DEVNULL if _REOPENS else None,
            pass_fds=() if held is None else (held,))
        exit_now = ctypes.cast(self._libc._exit, ctypes.c_void_p).value
        self._previous: Any = self._libc.signal(int(_SIGNAL), exit_now)  # None: SIG_DFL
        self._installed = True

    def arm(self, seconds: float, line: str) -> None:
        """Fire ``seconds`` from now (unless armed again or disarmed first): write
        ``line`` to standard error (nothing if empty) and end this process."""
        self._send(f"{seconds!r} {' '.join(line.split())}\n")

    def disarm(self) -> None:
        self._send("- \n")

    def _send(self, text: str) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        try:
            process.stdin.write(text.encode())
            process.stdin.flush()
        except OSError:  # it died (killed from outside): the run goes on unguarded
            self._process = None
            warnings.warn(NeuroscaffoldWarning(
                "the watchdog of this rank's simulation ended: a stalled rank would no "
                "longer end the run"), stacklevel=3)

    def close(self) -> None:
        """End the watchdog (it leaves at the end of its input) and give ``SIGUSR2``
        its handler back."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._installed:
            self._libc.signal(int(_SIGNAL), self._previous)  # type: ignore[arg-type]
            self._installed = False


class StallGuard:
    """Guards the steps of one simulation run on this rank: a deadline per step from
    the ``stall_timeout`` and the measured pace (see the module text)."""

    def __init__(self, watchdog: Watchdog | None, name: str, duration: float,
                 stall_timeout: float, rank: int):
        self.watchdog = watchdog
        self.name = name
        self.duration = duration
        self.stall_timeout = stall_timeout
        self.rank = rank
        #: the wall seconds and simulated ms of the steps measured (the first one left out)
        self._seconds = 0.0
        self._ms = 0.0
        self._started = time.perf_counter()

    @property
    def pace(self) -> float:
        """The wall seconds per simulated ms of the steps so far (0 before any)."""
        return self._seconds / self._ms if self._ms > 0 else 0.0

    def deadline(self, start: float, until: float) -> float:
        """The seconds the step from ``start`` to ``until`` ms may take on this rank."""
        return max(self.stall_timeout, PACE_FACTOR * self.pace * max(until - start, 0.0))

    def expect(self, start: float, until: float | None) -> None:
        """The step from ``start`` to ``until`` ms begins (``until`` None: the ranks
        start the simulation at ``start``)."""
        self._started = time.perf_counter()
        if self.watchdog is None:
            return
        seconds = self.deadline(start, until if until is not None else start)
        what = (f"the ranks did not all start the simulation at {start:g} ms"
                if until is None else
                f"the ranks did not all end the step from {start:g} to {until:g} ms "
                f"(of {self.duration:g} ms)")
        line = (f"neuroscaffold: error: simulation '{self.name}' stopped making progress: "
                f"{what} within {seconds:.3g} s (a rank is stopped, stuck or far slower "
                f"than the others; see stall_timeout); no spike file was written")
        if self.rank == 0:
            self.watchdog.arm(seconds, line)
        else:  # rank 0's watchdog speaks, first
            self.watchdog.arm(seconds + SPREAD, "")

    def ended(self, start: float, until: float) -> None:
        """The step from ``start`` to ``until`` ms ended on every rank. The watchdog
        stays armed until the next step re-arms it (or the guard ends): a rank that
        stalls between two steps is caught too."""
        if start > 0 and until > start:  # the first step holds the simulator's start
            self._seconds += time.perf_counter() - self._started
            self._ms += until - start


@contextlib.contextmanager
def stall_guard(name: str, duration: float, stall_timeout: float, rank: int,
                size: int) -> Iterator[StallGuard]:
    """A :class:`StallGuard` for one run, with a watchdog when ``size > 1`` (and this
    system has ``SIGUSR2``); the watchdog is closed at the end of the block."""
    watchdog = None
    if size > 1 and _SIGNAL is not None:
        try:
            watchdog = Watchdog()
        except OSError as error:
            warnings.warn(NeuroscaffoldWarning(
                f"could not start the watchdog of the simulation ({error}): a stalled "
                "rank would not end the run"), stacklevel=3)
    try:
        yield StallGuard(watchdog, name, duration, stall_timeout, rank)
    finally:
        if watchdog is not None:
            watchdog.close()
