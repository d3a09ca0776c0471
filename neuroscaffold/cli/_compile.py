"""``neuroscaffold compile CONFIG -o OUT.hdf5``: place and connect a network."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["register"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compile",
        help="compile a network configuration into an HDF5 file",
        description="Place the cells and connect them as CONFIG says, into an HDF5 "
        "file. Run it under `mpiexec -n K` to spread the jobs over K ranks.",
    )
    parser.add_argument("config", metavar="CONFIG", help="configuration file (YAML or JSON)")
    parser.add_argument("-o", "--output", metavar="OUT", type=Path,
                        help="HDF5 file to write (default: CONFIG's name with .hdf5)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--clear", action="store_true",
                          help="replace what OUT already holds")
    existing.add_argument("--append", action="store_true",
                          help="add a new run to what OUT already holds")
    parser.add_argument("--trace", metavar="PATH", type=Path,
                        help="write a Chrome trace of the jobs to PATH")
    parser.add_argument("-q", "--quiet", action="store_true", help="show no progress")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (phases, strategies, jobs and chunks, expected "
                        "cells, memory and file size) and write nothing")
    parser.add_argument("--force", action="store_true",
                        help="compile even if the plan's estimates exceed this machine's "
                        "limits (never overrides geometry errors)")
    parser.set_defaults(run=run, report_errors=_is_main)


def _is_main() -> bool:
    from ..services import MPI

    return MPI.get_rank() == 0


def run(args: argparse.Namespace) -> int:
    from ..config import Configuration
    from ..network import Network
    from ..services import MPI

    configuration = Configuration.from_file(args.config)
    output = args.output or Path(Path(args.config).stem + ".hdf5")
    if args.dry_run:
        return _dry_run(configuration, output, args.force)
    if args.trace is not None:
        _check_writable(args.trace)
    network = Network(configuration, output)
    listeners = []
    if args.trace is not None:
        from ..progress import TraceRecorder

        recorder = TraceRecorder()
        listeners.append(recorder)
    start = time.perf_counter()
    network.compile(clear=args.clear, append=args.append, quiet=args.quiet, listeners=listeners,
                    force=args.force)
    elapsed = time.perf_counter() - start
    if MPI.get_rank() == 0:
        if args.trace is not None:
            recorder.write(args.trace)
        summary = network.storage.summary()
        cells = sum(summary["cells"].values())
        pairs = sum(count for *_, count in summary["connections"].values())
        ranks = MPI.get_size()
        print(f"compiled '{configuration.name}' into {output} in {elapsed:.2f} s on "
              f"{ranks} rank{'s' if ranks > 1 else ''}: {cells:,} cells, {pairs:,} connections",
              flush=True)
    return 0


def _dry_run(configuration, output: Path, force: bool) -> int:
    """Print the plan on the main rank; nothing is written. Exit code 1 when the
    compile would be refused."""
    from ..plan import build_plan

    if _is_main():
        plan = build_plan(configuration, output)
        print(plan.format(), flush=True)
        print(f"dry run: nothing was written ({output} untouched)", flush=True)
        if plan.geometry_errors or (plan.estimate_errors and not force):
            return 1
    return 0


def _check_writable(path: Path) -> None:
    """Fail now, not after the compile, if the trace cannot be written to ``path``
    (checked on the main rank, which writes it; collective: every rank raises)."""
    from ..network import _on_main

    _on_main(lambda: _try_writing(path))


def _try_writing(path: Path) -> None:
    from ..exceptions import ConfigurationError

    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise ConfigurationError(f"--trace {path}: cannot write there ({reason})") from None
    if not existed:
        path.unlink()
