"""The command line: ``neuroscaffold compile``, ``show``, ``plot``, ``reference`` (and
``report`` when its module is installed).

Errors the user can fix (a bad path, a bad configuration, an existing output file, a
strategy that raised) end the command with a one-line message and exit code 1, not a
traceback; ``-v`` / ``--traceback`` shows the traceback too. Under ``mpiexec`` only the
main rank prints it, once. A closed stdout (``| head``) is not an error: the work is
done, the output is dropped quietly.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import signal
import sys
import time
import traceback
import warnings
from typing import Sequence

from .. import _signals
from ..exceptions import CompileInterrupted, NeuroscaffoldError, NeuroscaffoldWarning

__all__ = ["FailedAlone", "FailedElsewhere", "build_parser", "exit_without_teardown", "main",
           "program"]

_COMMANDS = ("_compile", "_show", "_report", "_plot", "_reference", "_simulate", "_export")
_OPTIONAL = frozenset({"_report", "_plot", "_reference"})  # written separately; registered when present


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per command module."""
    parser = argparse.ArgumentParser(
        prog="neuroscaffold",
        description="Build large network models in parallel.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"neuroscaffold {__version__}")
    parser.add_argument("-v", "--traceback", action="store_true",
                        help="on an error, print the full traceback too")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if name in _OPTIONAL and error.name == f"{__name__}.{name}":
                continue
            raise
        module.register(subparsers)
    for command in subparsers.choices.values():  # -v also after the command
        command.add_argument("-v", "--traceback", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, print the full traceback too")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    code."""
    from ._errors import format_error

    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        if not getattr(args, "collective", False) or not _parallel():
            # only a collective command acts on stop signals at agreement points
            _signals.defer(False)
            _signals.raise_pending()
        code = args.run(args) or 0
        sys.stdout.flush()  # a closed stdout shows here, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except FailedAlone as alone:
        error = alone.error
        lines = []
        if getattr(args, "traceback", False) or not isinstance(error, (NeuroscaffoldError,
                                                                        OSError)):
            lines = "".join(traceback.format_exception(error)).rstrip().splitlines()
        lines.append(f"neuroscaffold: error: {format_error(error)}")
        sys.stderr.write("".join(f"[rank {alone.rank}] {line}\n" for line in lines))
        sys.stderr.flush()
        return 1
    except FailedElsewhere:
        return 1
    except (NeuroscaffoldError, OSError) as error:
        if _reports_errors(args):
            if getattr(args, "traceback", False):
                traceback.print_exception(error)
            print(f"neuroscaffold: error: {format_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        if _reports_errors(args):
            line = str(interrupt) if isinstance(interrupt, CompileInterrupted) else "interrupted"
            print(f"neuroscaffold: {line}", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings as one line (``neuroscaffold: warning: ...``); others as Python
    shows them."""
    if issubclass(category, NeuroscaffoldWarning):
        print(f"neuroscaffold: warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def program() -> None:
    """The ``neuroscaffold`` program: run :func:`main` and exit with its code.

    SIGINT, SIGTERM and SIGHUP (Ctrl-C, a batch system's time limit, ``kill``, a
    closed terminal) interrupt it from its first line: committed work is kept and the
    run ends with one line (see :mod:`neuroscaffold._signals`). Under an MPI launcher,
    MPI starts first, bounded (:func:`~neuroscaffold.services.mpi.start_world`), and
    the ranks agree that none was stopped meanwhile before any of them goes on. Once
    the command's work is saved (:func:`work_saved`), the signals are ignored, so
    that every rank ends alike; a signal that arrived while the interpreter and MPI
    shut down would otherwise kill the process, which ``mpiexec`` reports as a crash.
    """
    _signals.install()
    _signals.defer(True)  # until the ranks agree how their start went
    try:
        code = _start() or main()
    except KeyboardInterrupt:  # before the command could catch it
        code = 130
        if _current_rank() == 0:
            print("neuroscaffold: interrupted", file=sys.stderr)
    for sig in _signals.STOPS:
        signal.signal(sig, signal.SIG_IGN)
    if code and _parallel():
        _leave(code)
    _exit(code)


#: seconds the ranks may take to start MPI together (a rank that never comes died)
STARTUP_WAIT = 120.0
#: seconds the ranks may take to meet once MPI runs on each
_START_AGREE = 30.0


def _start() -> int:
    """Start the ranks together; 0 when they all did, else the exit code (the line
    was printed). The error path never starts MPI."""
    from ..services.mpi import Start, start_world

    main_rank = launcher_rank() in (None, 0)
    started = start_world(lambda: _signals.pending() is not None, STARTUP_WAIT)
    if started is Start.GAVE_UP:  # a rank never came: MPI_Init still waits, leave now
        interrupted = _signals.pending() is not None
        if main_rank:
            print("neuroscaffold: interrupted before the compile started: nothing was "
                  "written" if interrupted else "neuroscaffold: error: another rank did "
                  f"not start within {STARTUP_WAIT:.0f} s (it may have died)",
                  file=sys.stderr)
        from ..services.mpi._base import exit_now

        exit_now(130 if interrupted else 1)
    if not _parallel():
        return 0
    from .._agreement import Outcome, agree

    outcome = agree(Outcome.OK, _START_AGREE)
    if outcome is Outcome.OK:
        return 0
    if _current_rank() == 0:
        print("neuroscaffold: interrupted before the compile started: nothing was written"
              if outcome is Outcome.INTERRUPTED else "neuroscaffold: error: another rank "
              "did not answer in time (it may have died)", file=sys.stderr)
    return 130 if outcome is Outcome.INTERRUPTED else 1


class FailedElsewhere(Exception):
    """Raised on a rank that did not fail when another did and prints its own error."""


class FailedAlone(Exception):
    """Raised on a rank whose error is its own (the others did not fail): it prints
    the error itself, headed ``[rank R]``."""

    def __init__(self, rank: int, error: BaseException):
        super().__init__(str(error))
        self.rank = rank
        self.error = error


_work_saved = False


def work_saved() -> None:
    """Called by a command once its result is on disk: from now on, a Ctrl-C or
    SIGTERM to the program changes nothing (the program ends normally)."""
    global _work_saved
    _work_saved = True
    _signals.defer(True)  # a stop signal from now on is only remembered, never acted on


_quick_exit = False


def exit_without_teardown() -> None:
    """Called by a command whose process holds a simulator's kernel, once its result
    is written: :func:`program` then ends the process without the interpreter's
    teardown. Freeing NEST's kernel (a million connections) and every module's objects
    one by one took 0.35 s of the example's 4 s ``simulate``; the operating system
    frees the process's memory at once. The registered exit functions and
    ``MPI_Finalize`` still run (every rank of a successful run gets here)."""
    global _quick_exit
    _quick_exit = True


def _exit(code: int) -> None:
    if _quick_exit and code == 0:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        atexit._run_exitfuncs()
        mpi = sys.modules.get("mpi4py.MPI")
        if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
            mpi.Finalize()  # mpi4py's own is a C-level exit hook, which os._exit skips
        os._exit(code)
    sys.exit(code)


def _parallel() -> bool:
    """Whether this process is one rank of several, with MPI still running."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not mpi.Is_initialized() or mpi.Is_finalized():
        return False
    return mpi.COMM_WORLD.Get_size() > 1


def _leave(code: int) -> None:
    """End a rank of a run that failed or was interrupted.

    After a failure the ranks may not all be where ``MPI_Finalize`` needs them: a rank
    may have left a collective the others still wait in. So every rank first waits, a
    few seconds at most, until every other rank is here too (the main rank has then
    printed its line). If they all came, the run ends normally, with the library's
    own complaints at ``MPI_Finalize`` (communicators a broken pool could not free)
    sent to ``/dev/null``: the run's error was said already, in one line. If one did
    not come (it died, or hangs), this rank leaves without finalizing, and ``mpiexec``
    ends the run.
    """
    from mpi4py import MPI

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    request = MPI.COMM_WORLD.Ibarrier()
    deadline = time.monotonic() + 10
    pause = 1e-4
    while not request.Test():
        if time.monotonic() > deadline:
            os._exit(code)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    try:
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 2)
    except OSError:
        pass


def _reports_errors(args: argparse.Namespace) -> bool:
    """Whether this process prints the error: the main rank only."""
    return _current_rank() == 0


def _current_rank() -> int:
    """This process's rank, from MPI if it runs, else from the launcher's variables
    (0 when there is none); never starts MPI.

    Under a launcher with mpi4py installed, MPI has started before any command runs;
    without mpi4py, every rank fails alike (the launcher is refused) and the launcher's
    rank 0 speaks for all, unless ``NEUROSCAFFOLD_IGNORE_PARALLEL`` made each process
    run on its own: then each is its own main rank and reports its own errors.
    """
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_rank()
    if mpi is None:
        from ..services.mpi import ignores_launcher

        if ignores_launcher():
            return 0
    return launcher_rank() or 0


def launcher_rank() -> int | None:
    """The rank an MPI launcher gave this process in its environment, if any."""
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK"):
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def _stdout_closed() -> int:
    """stdout was closed by its reader (``| head``): drop further output quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0
