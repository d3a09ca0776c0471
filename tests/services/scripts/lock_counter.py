"""Exercise the MPILock service on every rank: ``python lock_counter.py COUNTER_FILE``.

Every rank adds 1 to the number in COUNTER_FILE 200 times inside ``write()``; then
``read()``, ``single_write`` with share/collect, and with a handle. Each rank prints
``R<rank> <case>: <outcome>`` lines.
"""

import sys
from pathlib import Path

from neuroscaffold.services import MPI, MPILock

INCREMENTS = 200
counter = Path(sys.argv[1])
rank, size = MPI.get_rank(), MPI.get_size()
last = size - 1


def out(case, text):
    sys.stdout.write(f"R{rank} {case}: {text}\n")
    sys.stdout.flush()


controller = MPILock.sync()
out("controller", f"{type(controller).__name__} rank {controller.rank} master {controller.master}")

with controller.single_write() as fence:
    fence.guard()
    counter.write_text("0")

for _ in range(INCREMENTS):
    with controller.write():
        counter.write_text(str(int(counter.read_text()) + 1))
MPI.barrier()

with controller.read():
    # Every rank holds a read lock at once here: exclusive reads would deadlock.
    MPI.barrier()
    out("counter", counter.read_text())

for writer in sorted({0, last}):
    with controller.single_write(rank=writer) as fence:
        fence.guard()
        fence.share({"from": rank})
        out(f"wrote as {writer}", "yes")
    out(f"collected from {writer}", fence.collect())

with controller.single_write(handle="the handle") as handle:
    out("handle", handle)

controller.close()
out("closed", controller.closed)
