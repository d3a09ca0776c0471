"""One measured compile, serially or under ``mpiexec -n K`` (used by ``bench_compile.py``).

    python bench/compile_run.py CONFIG OUT

Compiles CONFIG into OUT (``--clear``), exactly as ``neuroscaffold compile`` does, and
prints one JSON line from the main rank with, per rank: CPU seconds of the compile,
CPU seconds inside the strategies' own ``place``/``connect``, max RSS, and the bytes
the main rank received from the others (the pool's messages), plus the MPI lock
acquisitions (a compile takes none) and the seconds of the final merge.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def _count_received() -> list[int]:
    """Count the bytes of every pool message this rank receives (benchmark only)."""
    from neuroscaffold.services.pool import _wire

    received = [0]
    poll = _wire.Inbox.poll

    def counting_poll(self):
        message = poll(self)
        if message is not None:
            received[0] += len(message[1])
        return message

    _wire.Inbox.poll = counting_poll
    return received


def _count_locks() -> list[int]:
    from neuroscaffold import services

    taken = [0]
    lock = services.MPILock

    class Counting:
        def sync(self, *args, **kwargs):
            taken[0] += 1
            return lock.sync(*args, **kwargs)

    services.register_service("MPILock", Counting())
    return taken


def _time_merge() -> list[float]:
    """Time the final merge of the shards into the network file (benchmark only)."""
    from neuroscaffold.storage import HDF5Storage

    spent = [0.0]
    merge = HDF5Storage.merge

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return merge(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    HDF5Storage.merge = timed
    return spent


def _peak_rss_mb(usage) -> float:
    """This process's peak resident memory. ``ru_maxrss`` is not it on Linux: it keeps
    the peak of the process before ``exec``, the fork of the bench, which holds what it
    read to compare files (a 90 MB network: the 8x compile then showed 128 MB instead
    of its own 103 MB). ``VmHWM`` is the peak of this program's own memory."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return usage.ru_maxrss / 1024


def main() -> None:
    config, output = sys.argv[1], sys.argv[2]
    from neuroscaffold import Configuration, Network
    from neuroscaffold._writing import planned_jobs as _planned_jobs
    from neuroscaffold.placement._chunked import strategy_cpu_seconds
    from neuroscaffold.services import MPI

    received, locks, merge = _count_received(), _count_locks(), _time_merge()
    network = Network(Configuration.from_file(config), output)
    # Under mpiexec, MPI starts here (a serial run never starts it): its start-up is a
    # cost of the launch, counted in the whole command's time, not in the compile's.
    MPI.get_rank()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    network.compile(clear=True, quiet=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    mine = {
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "strategy_cpu": strategy_cpu_seconds(),
        "max_rss_mb": _peak_rss_mb(after),
        "received": received[0],
        "locks": locks[0],
    }
    ranks = MPI.gather(mine)
    if MPI.get_rank() == 0:
        summary = network.storage.summary()
        print(json.dumps({
            "compile_s": elapsed,
            "merge_s": merge[0],
            "ranks": ranks,
            "jobs": sum(_planned_jobs(network, set()).values()),
            "cells": sum(summary["cells"].values()),
            "connections": sum(c for *_, c in summary["connections"].values()),
            "size": summary["size"],
        }), flush=True)


if __name__ == "__main__":
    main()
