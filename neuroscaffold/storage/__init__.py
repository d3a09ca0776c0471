"""Storage: where a compiled network lives, and how many ranks write it at once.

The design, and why
===================

A network is **one HDF5 file** for the user (``cerebellum.hdf5``): it opens with
:func:`neuroscaffold.from_storage`, ``neuroscaffold show`` and any HDF5 tool, and it can
be copied or moved like any file. While it is being written, it has a sibling
**parts directory** (``cerebellum.hdf5.parts/``) that only the writers use::

    cerebellum.hdf5.parts/
        manifest.json        what is being compiled: configuration, mode, jobs planned
        lock                 held (flock) by the main rank of the one writing process
        a0001-r0000.data     rank 0's results of attempt 1: raw rows, appended
        a0001-r0000.journal  one JSON line per committed job: its blocks in .data
        a0001-r0001.data ... every rank its own pair; a resumed run is a new attempt

* **File per process, no lock, no funnel.** HPC codes that write from many processes
  choose between a shared file with collective I/O (MPI-IO, parallel HDF5: the h5py
  wheels are not built for it), subfiling (a few shared files) and a file per process.
  A rank's shard is written by that rank alone: appends to a file it keeps open, no MPI
  lock and nothing sent to the main rank but the pool's own O(1) control messages. The
  chunks' data never passes through another rank.
* **Durable, then committed.** A job's rows are appended to the rank's ``.data`` file;
  every ~0.2 s (and when a pool ends) the rank ``fdatasync``\\ s the data and only then
  appends the jobs' commit lines to its ``.journal`` (one ``write`` per batch, each line
  whole). A commit names the job and, for each block of rows it wrote (one cell type or
  connection set in one network chunk), where the rows are and their CRC-32; the line
  carries a CRC-32 of itself. A resume checks every committed block before it reuses it
  and runs again the jobs whose rows are missing, short or changed. Whatever a killed process
  left after its last commit (rows without a commit, a torn last line) is ignored, so
  the parts are never corrupt, only shorter.
* **Readers at the phase boundary.** When the placement pool has ended on every rank,
  every journal is complete; a connectivity job reads the block tables from the
  journals (a few kB) and then only the rows of the chunks it needs, with ``pread``:
  no rank ever loads a whole population.
* **One file at the end, merged in parallel.** When every job has been committed, the
  main rank creates a new HDF5 file next to the network with one contiguous dataset per
  cell type and per connection set (allocated at once, not filled) plus a small table
  of blocks (chunk, strategy, row count) per set, and hands each rank a share of the
  blocks to copy: ``copy_file_range`` from the shards into the datasets' byte ranges,
  inside the kernel. The file then atomically replaces the network path
  (``os.replace``) and the parts directory is removed. Readers get each set in one
  large read. Rows are ordered by (chunk, strategy), never by which rank wrote them, so
  any number of ranks, and any number of resumed attempts, give the same file.
* **Always says whether it is complete.** The network path holds either a complete
  network (``complete = True``), a small *stub* (``complete = False``: configuration and
  the name of its parts directory) written atomically when a compile starts, or, while
  a ``--clear`` recompile runs, the old network until the new one replaces it. ``show``
  reads the stub and the journals: which strategies are done and how many jobs are
  missing. ``compile --resume`` runs only the jobs that were not committed, at any rank
  count, then merges.
* **One writer.** The main rank holds an exclusive ``flock`` on ``parts/lock`` for the
  whole compile: a second compile of the same path (or a second ``mpiexec`` rank that
  thinks it is alone) is refused with one line. HDF5's own file locking stays off:
  writers never share an HDF5 file, and readers only ever see finished files.

The modules: :mod:`._layout` (the finished file: write and read), :mod:`._parts` (the
parts directory: manifest, lock, journals), :mod:`._writer` (a rank's shard),
:mod:`._blocks` (block tables and reading rows), :mod:`._merge` (the final file),
:mod:`._storage` (:class:`HDF5Storage`, what the network uses).
"""

from __future__ import annotations

from ._blocks import Block, BlockTable
from ._compare import canonical_contents
from ._sets import ConnectivitySet, PlacementSet
from ._storage import HDF5Storage, NetworkState

__all__ = [
    "Block",
    "BlockTable",
    "ConnectivitySet",
    "HDF5Storage",
    "NetworkState",
    "PlacementSet",
    "canonical_contents",
]
