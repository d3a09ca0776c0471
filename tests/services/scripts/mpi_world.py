"""Exercise the MPI service on every rank of whatever world this runs in.

Each rank prints ``R<rank> <case>: <outcome>`` lines, then everyone meets at a
barrier, and the last rank calls ``MPI.abort(7)`` while the others wait at a second
barrier that can only end by the abort.
"""

import sys

import neuroscaffold
import neuroscaffold.services
from neuroscaffold.services import MPI

assert neuroscaffold.MPI is MPI and neuroscaffold.services.MPILock is not None
before_use = "mpi4py.MPI" in sys.modules
rank, size = MPI.get_rank(), MPI.get_size()
last = size - 1


def out(case, text):
    # One write per line: the launcher interleaves the ranks' output write by write.
    sys.stdout.write(f"R{rank} {case}: {text}\n")
    sys.stdout.flush()


def outcome(block):
    try:
        block()
    except BaseException as error:
        notes = " | ".join(getattr(error, "__notes__", ()))
        return f"{type(error).__name__}: {error}" + (f" [{notes}]" if notes else "")
    return "ok"


class Unpicklable(Exception):
    def __init__(self, text):
        super().__init__(text)
        self.callback = lambda: None


def try_all(fail_on, **kwargs):
    def block():
        with MPI.try_all(**kwargs):
            if rank in fail_on:
                raise ValueError(f"boom on {rank}")

    return block


def try_main(fail_on, error=ValueError):
    def block():
        with MPI.try_main():
            if rank in fail_on:
                raise error(f"boom on {rank}")

    return block


out("import", f"mpi4py.MPI imported before use {before_use}, after {'mpi4py.MPI' in sys.modules}")
out("world", f"{MPI.Get_rank() == rank} {MPI.Get_size() == size} {type(MPI.get_communicator()).__name__}")
out("started", str("mpi4py.MPI" in sys.modules))
out("bcast", MPI.bcast(f"from {rank}"))
out("bcast root last", MPI.bcast(rank, root=last))
out("gather", MPI.gather(rank))
out("allgather", MPI.allgather(rank * 10))
out("scatter", MPI.scatter([f"to {r}" for r in range(size)] if rank == 0 else None))
MPI.barrier()
MPI.Barrier()
out("try_all none", outcome(try_all(())))
out("try_all last", outcome(try_all({last})))
out("try_all first and last", outcome(try_all({0, last})))
out("try_all every", outcome(try_all(range(size))))
out("try_all default", outcome(try_all({last}, default_exception=LookupError("elsewhere"))))
out("try_main none", outcome(try_main(())))
out("try_main main", outcome(try_main({0}, RuntimeError)))
out("try_main last", outcome(try_main({last})))
out("try_main unpicklable", outcome(try_main({0}, Unpicklable)))
out("done", "ok")
MPI.barrier()
if rank == last:
    MPI.abort(7)
MPI.barrier()
out("after abort", "should never print")
