"""One measured compile, serially or under ``mpiexec -n K`` (used by ``bench_compile.py``).

    python bench/compile_run.py CONFIG OUT

Compiles CONFIG into OUT (``--clear``), exactly as ``neuroscaffold compile`` does, and
prints one JSON line from the main rank with, per rank: CPU seconds of the compile,
CPU seconds inside the strategies' own ``place``/``connect``, CPU seconds of the
built-in ``distance`` jobs, max RSS, and the bytes the main rank received from the
others (the pool's messages), plus the MPI lock acquisitions (a compile takes none), the
seconds of the final merge and, serially, the CPU seconds of the distance sets' floor
(:func:`distance_floor`), measured in the same process right after the compile.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
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


def _timed(cls: type, name: str, clock=time.perf_counter, only=None) -> list[float]:
    """Replace method ``name`` of ``cls`` by one that adds its seconds on ``clock`` (of
    calls on instances of exactly ``only``, when given) to the returned list's one
    value (benchmark only)."""
    spent = [0.0]
    method = getattr(cls, name)

    def timed(self, *args, **kwargs):
        if only is not None and type(self) is not only:
            return method(self, *args, **kwargs)
        start = clock()
        try:
            return method(self, *args, **kwargs)
        finally:
            spent[0] += clock() - start

    setattr(cls, name, timed)
    return spent


def _time_merge() -> list[float]:
    """Time the final merge of the shards into the network file (benchmark only)."""
    from neuroscaffold.storage import HDF5Storage

    return _timed(HDF5Storage, "merge")


def _time_distance_jobs() -> list[float]:
    """CPU seconds of this rank's jobs of the built-in ``distance`` rule, whole jobs:
    reading the cells, the search, the draws, writing the pairs (benchmark only).
    Thread CPU time: the main rank runs two jobs at once, and a loaded machine delays
    a job's wall time, not its CPU time."""
    from neuroscaffold.connectivity import ConnectionStrategy, DistanceConnectivity

    return _timed(ConnectionStrategy, "connect_chunk", time.thread_time, DistanceConnectivity)


def distance_floor(network, folder: str) -> tuple[float, int]:
    """The least work the built-in ``distance`` sets of ``network`` need, in CPU
    seconds, and the pairs it writes: per set, one KD-tree pair search over the whole
    populations (both trees built), a draw per pair where a pair has a chance below 1,
    and the kept pairs written to an HDF5 file in ``folder``. The cells are read before
    the clock starts. A compile's jobs do this work chunk by chunk, plus reading the
    cells, sorting, checking and journaling the pairs."""
    import h5py
    import numpy as np
    from scipy.spatial import cKDTree

    from neuroscaffold.connectivity import DistanceConnectivity

    sets = [s for s in network.connectivity.values() if type(s) is DistanceConnectivity]
    positions = {}
    for name in {ct.name for s in sets for ct in (s.presynaptic, s.postsynaptic)}:
        positions[name] = network.storage.load_positions(name)
    written = 0
    start = time.thread_time()
    with h5py.File(f"{folder}/floor.hdf5", "w") as file:
        for s in sets:
            pre, post = positions[s.presynaptic.name], positions[s.postsynaptic.name]
            close = cKDTree(post).sparse_distance_matrix(cKDTree(pre), s.radius,
                                                         output_type="ndarray")
            pairs = np.column_stack([close["j"], close["i"]]).astype(np.int64)
            if s.kernel is not None or s.probability < 1:
                pairs = pairs[np.random.default_rng(0).random(len(pairs)) < s.chance(close["v"])]
            file.create_dataset(s.name, data=pairs)
            written += len(pairs)
    return time.thread_time() - start, written


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
    distance = _time_distance_jobs()
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
        "distance_cpu": distance[0],
    }
    ranks = MPI.gather(mine)
    if MPI.get_rank() == 0:
        summary = network.storage.summary()
        floor = None
        if MPI.get_size() == 1:  # back to back with the compile, in the same process
            with tempfile.TemporaryDirectory(prefix="floor-") as folder:
                floor = distance_floor(network, folder)[0]
        print(json.dumps({
            "compile_s": elapsed,
            "merge_s": merge[0],
            "ranks": ranks,
            "jobs": sum(_planned_jobs(network, set()).values()),
            "cells": sum(summary["cells"].values()),
            "connections": sum(c for *_, c in summary["connections"].values()),
            "size": summary["size"],
            "floor_cpu": floor,
        }), flush=True)


if __name__ == "__main__":
    main()
