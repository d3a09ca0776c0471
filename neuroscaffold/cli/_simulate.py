"""``neuroscaffold simulate NET SIM -o spikes.h5``: run a simulation of a compiled
network and write its spikes as a SONATA spike file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a compiled network (a simulation of its simulations: section)",
        description="Run the simulation SIM of the compiled network NET (the "
        "`simulations:` section of its configuration) and write every recorded spike to "
        "OUT in the SONATA spike format. NEST runs on one process with the simulation's "
        "`threads:`; NEURON runs under `mpiexec -n K` on K ranks. Ctrl-C stops it on "
        "every rank; nothing is written then.",
    )
    parser.add_argument("network", metavar="NET", type=Path, help="a compiled network (HDF5)")
    parser.add_argument("simulation", metavar="SIM", help="the name of a simulation of NET")
    parser.add_argument("-o", "--output", metavar="OUT", type=Path,
                        help="spike file to write (default: SIM.spikes.h5); an existing "
                        "spike file is replaced, any other file never")
    parser.add_argument("--config", metavar="CONFIG", type=Path,
                        help="take the simulations: section from CONFIG instead of the one "
                        "stored in NET (to change a simulation without compiling again)")
    parser.add_argument("-q", "--quiet", action="store_true", help="show no progress")
    parser.set_defaults(run=run, report_errors=_is_main)


def _is_main() -> bool:
    from ..services import MPI

    return MPI.get_rank() == 0


def run(args: argparse.Namespace) -> int:
    from . import exit_without_teardown, work_saved
    from ..exceptions import SimulationInterrupted, StorageError
    from ..services import MPI
    from ..simulation import optional_imports_left_out

    if not args.network.exists():
        raise StorageError(f"{args.network}: no such network file")
    output = args.output or Path(f"{args.simulation}.spikes.h5")
    network = _open(args.network, args.config)
    started = time.perf_counter()
    try:
        # this process never asks the simulator for pandas output or plots
        with optional_imports_left_out():
            result = network.simulate(args.simulation, quiet=args.quiet, output=output)
    except SimulationInterrupted as interrupt:
        if _is_main():
            print(f"neuroscaffold: {interrupt}", file=sys.stderr, flush=True)
        return 130
    work_saved()
    exit_without_teardown()
    if MPI.get_rank() == 0:
        elapsed = time.perf_counter() - started
        spikes = sum(len(trains) for trains in result.values())
        rates = ", ".join(f"{name} {rate:.1f} Hz" for name, rate in result.mean_rates().items())
        print(f"simulated '{args.simulation}' ({result.duration:g} ms, {result.simulator}) in "
              f"{elapsed:.2f} s: {spikes:,} spikes into {output}"
              + (f"; mean rates: {rates}" if rates else ""), flush=True)
    return 0


def _open(path: Path, config: Path | None):
    """The stored network, with the simulations of ``config`` if given."""
    from ..configuration import Configuration
    from ..config._parse import load_file
    from ..network import Network
    from ..storage import HDF5Storage

    storage = HDF5Storage(path)
    stored = storage.read_configuration()
    if config is not None:
        stored["simulations"] = load_file(config).get("simulations") or {}
    return Network(Configuration(stored), storage)
