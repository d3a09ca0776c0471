"""The command line: ``neuroscaffold compile`` and ``neuroscaffold show`` (and
``neuroscaffold report`` when its module is installed).

Errors the user can fix (a bad path, a bad configuration, an existing output file) end
the command with a one-line message and exit code 1, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import Sequence

from ..exceptions import CompileInterrupted, NeuroscaffoldError

__all__ = ["build_parser", "main", "program"]

_COMMANDS = ("_compile", "_show", "_report")
_OPTIONAL = frozenset({"_report"})  # written separately; registered when present


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per command module."""
    parser = argparse.ArgumentParser(
        prog="neuroscaffold",
        description="Build large network models in parallel.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if name in _OPTIONAL and error.name == f"{__name__}.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (NeuroscaffoldError, OSError) as error:
        if getattr(args, "report_errors", lambda: True)():
            print(f"neuroscaffold: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        if getattr(args, "report_errors", lambda: True)():
            line = str(interrupt) if isinstance(interrupt, CompileInterrupted) else "interrupted"
            print(f"neuroscaffold: {line}", file=sys.stderr)
        return 130


def program() -> None:
    """The ``neuroscaffold`` program: run :func:`main` and exit with its code.

    Once the command has ended, SIGINT and SIGTERM are ignored: a Ctrl-C that arrives
    while the interpreter and MPI shut down would otherwise kill the process by the
    signal, which ``mpiexec`` reports as a crash of the application.
    """
    code = main()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)
