"""Writes from several ranks at once: under ``mpiexec -n 4`` nothing is lost or doubled."""

from __future__ import annotations

import pytest

from tests._mpi import run_script

SCRIPT = """
import sys
import numpy as np
from neuroscaffold import Configuration, Network, StorageError
from neuroscaffold.services import MPI
from neuroscaffold.storage import HDF5Storage

rank, size = MPI.get_rank(), MPI.get_size()
folder = sys.argv[1]

# 1. every rank hammers the file at once, each with its own chunks
storage = HDF5Storage(folder + "/direct.hdf5")
if rank == 0:
    storage.create("{}")
MPI.barrier()
storage.init_lock()
for i in range(rank, 120, size):
    storage.write_placement(0, 1, "s", {"a": {(i, 0, 0): np.full((i % 5 + 1, 3), float(i))}})
MPI.barrier()
# a chunk another rank already wrote in this session is refused, not doubled
doubled = None
try:
    storage.write_placement(0, 1, "s", {"a": {((rank + 1) % size, 0, 0): np.zeros((1, 3))}})
except StorageError as error:
    doubled = str(error)
MPI.barrier()
assert doubled is not None and doubled.endswith("written twice"), doubled
if rank == 0:
    entries = storage.placement_entries("a")
    assert [e.chunk[0] for e in entries] == list(range(120)), entries
    assert [e.count for e in entries] == [i % 5 + 1 for i in range(120)]
    positions = storage.read_placement("a", entries)
    expected = np.concatenate([np.full((i % 5 + 1, 3), float(i)) for i in range(120)])
    assert np.array_equal(positions, expected)
    print("DIRECT OK")

# 2. pool jobs write from whichever rank runs them
network = Network(Configuration.default(), folder + "/pool.hdf5")
def write_chunk(net, i):
    run, session = net.storage_session()
    net.storage.write_placement(run, session, "job", {"a": {(0, i, 0): np.full((2, 3), float(i))}})
    return MPI.get_rank()
with network.create_job_pool(quiet=True) as pool:
    if pool.is_main():
        jobs = [pool.submit(write_chunk, i) for i in range(80)]
    results = pool.execute(return_results=True)
if rank == 0:
    entries = network.storage.placement_entries("a")
    assert [e.chunk[1] for e in entries] == list(range(80)), entries
    assert all(e.count == 2 for e in entries)
    ranks = {results[job] for job in jobs}
    print("POOL OK", sorted(ranks))
"""


@pytest.mark.mpi
def test_concurrent_writes_lose_nothing_and_double_nothing(tmp_path):
    result = run_script(SCRIPT, n=4, timeout=90, args=[str(tmp_path)], tmp_path=tmp_path).check()
    assert result.lines("DIRECT OK") == [""]
    (ranks,) = result.lines("POOL OK")
    assert len(eval(ranks)) >= 2, result.describe()  # jobs really ran on several ranks
