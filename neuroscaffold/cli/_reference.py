"""``neuroscaffold reference [-o docs/configuration.md]``: the reference of every
built-in configuration key, generated from the code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reference",
        help="print (or write) the reference of every built-in configuration key",
        description="Generate docs/configuration.md from the configuration attributes' "
        "own documentation: every partition, placement and connection strategy with its "
        "keys, types, defaults and units.",
    )
    parser.add_argument("-o", "--output", metavar="FILE", type=Path,
                        help="write it to FILE instead of printing it")
    parser.add_argument("--check", action="store_true",
                        help="with -o: exit 1 if FILE is not current, without writing it")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..configuration import build_reference

    text = build_reference()
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    if args.check:
        current = args.output.read_text() if args.output.exists() else None
        if current != text:
            print(f"neuroscaffold: error: {args.output} is not current; regenerate it with "
                  f"`neuroscaffold reference -o {args.output}`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"reference written to {args.output}")
    return 0
