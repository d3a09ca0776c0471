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
import importlib
import os
import signal
import sys
import time
import traceback
from typing import Sequence

from ..exceptions import CompileInterrupted, NeuroscaffoldError

__all__ = ["build_parser", "main", "program"]

_COMMANDS = ("_compile", "_show", "_report", "_plot", "_reference", "_export")
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
    try:
        code = args.run(args) or 0
        sys.stdout.flush()  # a closed stdout shows here, not at exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
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


def program() -> None:
    """The ``neuroscaffold`` program: run :func:`main` and exit with its code.

    SIGTERM (a batch system's time limit, ``kill``) interrupts it like Ctrl-C, from the
    first moment: committed work is kept and every rank ends with the same line. Once
    the command's work is saved (:func:`work_saved`), both are ignored, so that every
    rank ends alike; a signal that arrived while the interpreter and MPI shut down
    would otherwise kill the process, which ``mpiexec`` reports as a crash.
    """

    def interrupt(signum, frame):
        if not _work_saved:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    try:
        code = main()
    except KeyboardInterrupt:  # before the command could catch it (parsing arguments)
        code = 130
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if code and _parallel():
        _leave(code)
    sys.exit(code)


_work_saved = False


def work_saved() -> None:
    """Called by a command once its result is on disk: from now on, a Ctrl-C or
    SIGTERM to the program changes nothing (the program ends normally)."""
    global _work_saved
    _work_saved = True


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
    """Whether this process prints the error: the main rank only. If asking MPI fails
    (mpi4py missing under a launcher), the launcher's rank variable decides."""
    try:
        return bool(getattr(args, "report_errors", lambda: True)())
    except Exception:
        return launcher_rank() in (None, 0)


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
