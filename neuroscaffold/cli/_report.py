"""``neuroscaffold report TRACE.json -o OUT.html|OUT.png``: draw a run's timeline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to the CLI's subparsers; returns its parser.

    The parser's defaults hold ``run=run``, the function that carries it out (the CLI
    calls ``args.run(args)``).
    """
    parser = subparsers.add_parser(
        "report",
        help="draw a report (Gantt chart, utilisation, slowest jobs) of a --trace file",
        description=(
            "Draw a per-rank Gantt chart of the jobs coloured by strategy, the utilisation "
            "of each rank over time and tables of the slowest strategies and jobs, from a "
            "trace written by `neuroscaffold compile ... --trace run.json`."
        ),
    )
    parser.add_argument("trace", type=Path, help="the trace file (Chrome trace event JSON)")
    parser.add_argument(
        "-o", "--output", type=Path, required=True,
        help="the report to write: .html (one self-contained file) or .png",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the report; returns the exit code (0, or 1 with a message on stderr)."""
    from ..progress import build_report

    if args.output.suffix.lower() not in (".html", ".htm", ".png"):
        print(
            "neuroscaffold: error: -o must end in .html or .png, "
            f"not {args.output.name!r}",
            file=sys.stderr,
        )
        return 1
    try:
        written = build_report(args.trace, args.output)
    except FileNotFoundError as exc:
        missing = exc.filename if exc.filename is not None else args.trace
        print(f"neuroscaffold: error: {missing}: no such file", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"neuroscaffold: error: {exc}", file=sys.stderr)
        return 1
    print(f"report written to {written}")
    return 0
