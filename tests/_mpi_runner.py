"""The rank side of :func:`tests._mpi.mpi_matrix`:
``mpiexec -n K python -m tests._mpi_runner OUT MODULE TEST [TEST ...]``.

Every rank imports the test module and runs the named bodies in order, in step with
the other ranks (a fresh test network for each, a barrier after each). For each body a
rank appends to ``OUT/rank<R>.jsonl`` a ``start`` line, then an ``end`` line with the
traceback of what the body raised (``null``: it passed); what the body printed goes to
``OUT/rank<R>.<TEST>.out``. A body that outlives its timeout dumps every thread's stack
there and ends the rank (``faulthandler``), which ends the launch: the parent reports
the body as a hang and launches the bodies after it again.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import sys
import traceback
from pathlib import Path


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr to ``path`` while the block runs: file
    descriptors 1 and 2 (what C code and ``faulthandler`` write) and ``sys.stdout`` /
    ``sys.stderr`` (which pytest's capture points elsewhere)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_files = sys.stdout, sys.stderr
    with open(path, "ab") as file, open(file.fileno(), "w", buffering=1, closefd=False,
                                        errors="replace") as text:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
        sys.stdout = sys.stderr = text
        try:
            yield
        finally:
            text.flush()
            sys.stdout, sys.stderr = saved_files
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])


def run(out: Path, module_name: str, names: list[str]) -> None:
    from neuroscaffold import MPI
    from tests._mpi import World
    from tests._pool_support import TestNetwork

    rank, size = MPI.get_rank(), MPI.get_size()
    module = importlib.import_module(module_name)
    with open(out / f"rank{rank}.jsonl", "a") as log:

        def record(**fields) -> None:
            log.write(json.dumps(fields) + "\n")
            log.flush()

        for name in names:
            test = getattr(module, name)
            record(test=name, event="start")
            error = None
            with output_to(out / f"rank{rank}.{name}.out"):
                faulthandler.dump_traceback_later(test.mpi_timeout, exit=True)
                try:
                    test.mpi_body(World(rank, size, TestNetwork(), out / "tmp" / name))
                except BaseException:  # noqa: B036 - every failure is the body's result
                    error = traceback.format_exc()
                finally:
                    faulthandler.cancel_dump_traceback_later()
            record(test=name, event="end", error=error)
            MPI.barrier()


if __name__ == "__main__":
    run(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
