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
        "file. Run it under `mpiexec -n K` to spread the jobs over K ranks. Until it "
        "ends, OUT says it is unfinished; an interrupted compile (Ctrl-C, SIGTERM, a "
        "killed rank, a full disk) keeps every committed job and finishes with --resume, "
        "on any number of ranks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="What OUT may already hold:\n"
        "  nothing         a new network is compiled.\n"
        "  a network       refused, unless you choose:\n"
        "    --clear       rebuild it from CONFIG; the old network stays until the new\n"
        "                  one is complete, then the new one replaces it.\n"
        "    --append      add to it the strategies of CONFIG that it does not have yet\n"
        "                  (say, a new connection set), keeping every stored cell and\n"
        "                  connection: use it when you extend a model and do not want\n"
        "                  to place and connect everything again. CONFIG must agree with\n"
        "                  the stored network on everything already compiled, and may\n"
        "                  not place more cells of a type that already has cells.\n"
        "  an unfinished network (interrupted):\n"
        "    --resume      run only the jobs that were not committed (same CONFIG),\n"
        "    --clear       or start over.\n"
        "Any other file is never overwritten.",
    )
    parser.add_argument("config", metavar="CONFIG", help="configuration file (YAML or JSON)")
    parser.add_argument("-o", "--output", metavar="OUT", type=Path,
                        help="HDF5 file to write (default: CONFIG's name with .hdf5)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--clear", action="store_true",
                          help="replace what OUT already holds")
    existing.add_argument("--append", action="store_true",
                          help="add the strategies of CONFIG that OUT does not have yet")
    existing.add_argument("--resume", action="store_true",
                          help="finish an interrupted compile of OUT (same CONFIG)")
    parser.add_argument("--trace", metavar="PATH", type=Path,
                        help="write a Chrome trace of the jobs to PATH")
    parser.add_argument("-q", "--quiet", action="store_true", help="show no progress")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (phases, strategies, jobs and chunks, expected "
                        "cells, memory and file size) and write nothing")
    parser.add_argument("--force", action="store_true",
                        help="compile even if the plan's estimates exceed this machine's "
                        "limits (never overrides geometry errors)")
    parser.set_defaults(run=run, collective=True)


def _is_main() -> bool:
    from ..services import MPI

    return MPI.get_rank() == 0


#: seconds the ranks wait for each other once each has loaded the configuration
_PREPARED_WAIT = 120.0


def _settle(error: BaseException | None) -> None:
    """Every rank, once it loaded the configuration (or failed to): go on together,
    or stop together (collective, bounded). A rank that failed where the main rank
    did not prints its own error, headed ``[rank R]``; when the main rank failed, it
    prints its error; an interrupt on any rank stops every rank with one line."""
    from . import FailedAlone, FailedElsewhere
    from .._agreement import Outcome, outcomes
    from ..exceptions import CompileInterrupted, ParallelError
    from ..services import MPI

    if MPI.get_size() == 1:
        if error is not None:
            raise error
        return
    rank = MPI.get_rank()
    mine = Outcome.OK if error is None else (
        Outcome.INTERRUPTED if isinstance(error, KeyboardInterrupt) else Outcome.FAILED)
    every = outcomes(mine, _PREPARED_WAIT)
    if every is None:  # a rank did not come: it died, or hangs
        if error is not None:
            raise FailedAlone(rank, error) if rank else error
        raise ParallelError("another rank did not answer in time (it may have died)")
    if Outcome.FAILED in every:
        if every[0] is Outcome.FAILED:
            if rank == 0 and error is not None:
                raise error
            raise FailedElsewhere()
        if isinstance(error, Exception):
            raise FailedAlone(rank, error)
        raise FailedElsewhere()
    if Outcome.INTERRUPTED in every:
        raise CompileInterrupted("interrupted before the compile started: nothing was "
                                 "written")


def run(args: argparse.Namespace) -> int:
    from . import work_saved
    from .._text import short_text
    from ..configuration import Configuration
    from ..exceptions import StorageError
    from ..network import Network
    from ..services import MPI

    output = args.output or Path(Path(args.config).stem + ".hdf5")
    failure: BaseException | None = None
    try:
        if Path(args.config).exists() and output.exists() and output.samefile(args.config):
            raise StorageError(f"{output}: is the configuration file; choose another "
                               "output path")
        configuration = Configuration.from_file(args.config)
        network = None if args.dry_run else Network(configuration, output)
    except BaseException as error:  # noqa: B036 - every rank learns how each one did
        failure = error
    _settle(failure)
    if args.dry_run:
        return _dry_run(configuration, output, args.force)
    if args.trace is not None:
        _check_writable(args.trace)
    assert network is not None
    listeners = []
    if args.trace is not None:
        from ..progress import TraceRecorder

        recorder = TraceRecorder()
        listeners.append(recorder)
    start = time.perf_counter()
    network.compile(clear=args.clear, append=args.append, resume=args.resume,
                    quiet=args.quiet, listeners=listeners, force=args.force)
    work_saved()  # the network is complete: a late Ctrl-C must not make this a failure
    elapsed = time.perf_counter() - start
    if MPI.get_rank() == 0:
        if args.trace is not None:
            recorder.write(args.trace)
        summary = network.storage.summary()
        cells = sum(summary["cells"].values())
        pairs = sum(count for *_, count in summary["connections"].values())
        ranks = MPI.get_size()
        print(f"compiled '{short_text(configuration.name, 80)}' into {output} in {elapsed:.2f} s on "
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
    from .._writing import on_main as _on_main

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
