"""SIGINT or SIGTERM on any rank during execute(): every rank raises PoolInterrupted.

The contract: whichever rank gets the signal (the main rank, one worker, one rank by
``kill -TERM``, or every rank at once as when ``mpiexec`` forwards a Ctrl-C), every
rank's ``execute()`` ends within seconds with :class:`PoolInterrupted` naming that
rank and signal; no rank hangs, MPI prints nothing at exit; jobs that ended keep their
status, the others are ABORTED; the previous signal handlers are back afterwards.
"""

from __future__ import annotations

import pytest

from tests._mpi import run_script

pytestmark = pytest.mark.timeout(120)

SCRIPT = r"""
import os, signal, sys, time
from neuroscaffold.network import Network
from neuroscaffold.exceptions import PoolInterrupted, WorkflowError
from neuroscaffold.services import MPI
from neuroscaffold.services.pool import JobStatus, PoolProgressReason

TARGET, SIGNAL = sys.argv[1], getattr(signal, sys.argv[2])
pids = MPI.allgather(os.getpid())
size = len(pids)
victims = {"main": [0], "worker": [size - 1], "all": list(range(size))}[TARGET]

def slow(network, i):
    time.sleep(0.01)
    return i

def interrupt_after_five(event):
    if event.reason is PoolProgressReason.JOB_STATUS_CHANGE and event.job.status is JobStatus.SUCCESS:
        done = sum(job.status is JobStatus.SUCCESS for job in event.jobs)
        if done == 5:
            for rank in victims:
                os.kill(pids[rank], SIGNAL)

before = signal.getsignal(SIGNAL)
pool = Network().create_job_pool(quiet=True)
outcome = "returned"
started = time.monotonic()
try:
    with pool:
        if pool.is_main():
            pool.add_listener(interrupt_after_five)
            for i in range(400):
                pool.queue(slow, (i,))
        pool.execute()
except PoolInterrupted as exc:
    outcome = f"PoolInterrupted {exc.rank} {exc.signal_name} KeyboardInterrupt={isinstance(exc, KeyboardInterrupt)}"
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {exc}"
took = time.monotonic() - started
print(f"RANK {pool.rank} {outcome}", flush=True)
print(f"RANK {pool.rank} restored {signal.getsignal(SIGNAL) is before} quick {took < 20}", flush=True)
if pool.is_main():
    statuses = {s: sum(j.status is s for j in pool.jobs) for s in JobStatus}
    print(f"RANK 0 aborted {statuses[JobStatus.ABORTED]} success {statuses[JobStatus.SUCCESS]} "
          f"other {len(pool.jobs) - statuses[JobStatus.ABORTED] - statuses[JobStatus.SUCCESS]}", flush=True)
MPI.barrier()  # the world is still usable
"""

CASES = [
    # (ranks, who gets the signal, signal)
    (None, "main", "SIGINT"),
    (None, "main", "SIGTERM"),
    (2, "main", "SIGINT"),
    (3, "main", "SIGINT"),
    (2, "worker", "SIGINT"),
    (3, "worker", "SIGINT"),
    (2, "worker", "SIGTERM"),
    (3, "worker", "SIGTERM"),
    (3, "main", "SIGTERM"),
    (2, "all", "SIGINT"),
    (3, "all", "SIGINT"),
]


@pytest.mark.parametrize(
    "ranks, target, signal_name",
    CASES,
    ids=[f"{'serial' if n is None else f'n{n}'}-{t}-{s}" for n, t, s in CASES],
)
def test_a_signal_on_any_rank_ends_every_rank(ranks, target, signal_name, tmp_path):
    result = run_script(SCRIPT, ranks, timeout=60, tmp_path=tmp_path, args=[target, signal_name])
    result.check()
    assert "Abort" not in result.stderr and "leaked" not in result.stderr.lower(), result.describe()
    assert result.stderr.strip() == "", result.describe()
    lines = result.lines("RANK ")
    size = ranks or 1
    signalled = {"main": [0], "worker": [size - 1], "all": list(range(size))}[target]
    for rank in range(size):
        line = next(line for line in lines if line.startswith(f"{rank} Pool") or line.startswith(f"{rank} ") and "restored" not in line and "aborted" not in line)
        assert line.startswith(f"{rank} PoolInterrupted "), result.describe()
        _, _, who, name, kbi = line.split()
        assert name == signal_name and kbi == "KeyboardInterrupt=True", result.describe()
        # The rank that got the signal names itself; the others name one that got it.
        if rank in signalled:
            assert int(who) == rank, result.describe()
        else:
            assert int(who) in signalled, result.describe()
        assert f"{rank} restored True quick True" in lines, result.describe()
    summary = next(line for line in lines if line.startswith("0 aborted"))
    _, _, aborted, _, success, _, other = summary.split()
    assert int(success) >= 5 and int(aborted) > 0 and int(other) == 0, result.describe()
