"""``neuroscaffold export NET --sonata DIR [--simulation SIM]``: hand a network to other
tools."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write a compiled network in another format (SONATA)",
        description="Write the compiled network NET as a SONATA circuit in DIR: a node "
        "population per cell type, an edge population per connection set (the stored "
        "pairs, in stored order), with the indices libsonata and BMTK read. With "
        "--simulation, also what BMTK's PointNet needs to run that simulation of NET's "
        "configuration (see docs/sonata.md). Run it under `mpiexec -n K` to share the "
        "work over K ranks. No simulator is needed.",
    )
    parser.add_argument("file", metavar="NET", type=Path, help="a network file made by `compile`")
    parser.add_argument("--sonata", metavar="DIR", type=Path, required=True,
                        help="the directory to write the SONATA circuit to")
    parser.add_argument("--simulation", metavar="SIM",
                        help="also export simulation SIM of the network's `simulations:`")
    parser.add_argument("--force", action="store_true",
                        help="replace DIR if it exists and is not empty")
    parser.set_defaults(run=run, report_errors=_is_main)


def _is_main() -> bool:
    from ..services import MPI

    return MPI.get_rank() == 0


def run(args: argparse.Namespace) -> int:
    from . import work_saved
    from ..export import export_sonata
    from ..services import MPI

    start = time.perf_counter()
    written = export_sonata(args.file, args.sonata, args.simulation, force=args.force)
    work_saved()
    if MPI.get_rank() == 0:
        what = f" with simulation '{args.simulation}'" if args.simulation else ""
        print(f"exported {args.file} as SONATA{what} to {written} in "
              f"{time.perf_counter() - start:.2f} s", flush=True)
    return 0
