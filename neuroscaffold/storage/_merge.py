"""The final file: every rank copies its share of the blocks into one new network file.

Collective (every rank calls :func:`merge`). The main rank plans: it reads the block
tables (the journals, and the network the session started from), creates the new file
with each set's dataset allocated at a known byte offset (:func:`create_network_file`),
and gives each rank a share of the copies, balanced by bytes. Each rank copies its
share with ``copy_file_range`` (the kernel moves the bytes; no rank holds them), makes
it durable, and reports. Then the main rank renames the new file over the network path
and renames the parts directory away, and the ranks share out its removal (freeing a
large file, and the network replaced, takes the file system tens of milliseconds). A
failure anywhere leaves the network path as it was, the parts complete, and raises the
same one-line error on every rank.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from ..exceptions import DiskFullError, StorageError
from ._blocks import BlockTable
from ._layout import NetworkFile, create_network_file, fsync_path
from ._parts import PartsDir, storage_error
from ._writeback import Writeback

__all__ = ["Copy", "merge", "plan_tables"]

_PIECE = 8 << 20  # bytes per pread/pwrite when copy_file_range cannot be used
_WRITEBACK = 4 << 20  # copied bytes handed to the disk writeback at a time (see Writeback)
_LARGE = 1 << 20  # a file this large is removed by a rank of its own share


class Copy(NamedTuple):
    """``size`` bytes from ``source`` at ``source_offset`` to the new file at ``offset``."""

    source: str
    source_offset: int
    offset: int
    size: int


def plan_tables(parts: PartsDir, base: Path | None) -> dict[tuple[str, str], BlockTable]:
    """Every set's block table: the base network's blocks, then the committed ones
    (which replace the base's blocks of the same chunk and strategy)."""
    blocks: dict[tuple[str, str], list] = {}
    if base is not None:
        with NetworkFile(base) as file:
            for kind in ("placement", "connectivity"):
                for name in file.names(kind):
                    blocks[(kind, name)] = list(file.table(kind, name).blocks)
    for key, committed in parts.commits().blocks.items():
        blocks.setdefault(key, []).extend(committed)
    return {key: BlockTable(*key, found) for key, found in blocks.items()}


class Failure(NamedTuple):
    """A rank's failure in the merge, as it travels to the others: its text, and
    whether the disk was full (so that every rank raises the same typed error)."""

    text: str
    disk_full: bool

    @classmethod
    def of(cls, error: StorageError) -> "Failure":
        return cls(str(error), isinstance(error, DiskFullError))

    def error(self) -> StorageError:
        return (DiskFullError if self.disk_full else StorageError)(self.text)


def _shares(copies: list[Copy], ranks: int) -> list[list[Copy]]:
    """``copies`` cut into ``ranks`` runs of about equal bytes, in order."""
    total = sum(copy.size for copy in copies) or 1
    shares: list[list[Copy]] = [[] for _ in range(ranks)]
    done = 0
    for copy in copies:
        shares[min(ranks - 1, done * ranks // total)].append(copy)
        done += copy.size
    return shares


def _copy(target: Path, copies: Sequence[Copy]) -> None:
    """Copy ``copies`` into ``target`` and make them durable."""
    if not copies:
        return
    out = os.open(target, os.O_WRONLY)
    sources: dict[str, int] = {}
    try:
        written = Writeback(out, _WRITEBACK, drop=True)  # nobody reads it meanwhile
        for copy in copies:
            fd = sources.get(copy.source)
            if fd is None:
                fd = sources[copy.source] = os.open(copy.source, os.O_RDONLY)
            _copy_range(fd, out, copy)
            written.add(copy.offset, copy.size)
        written.flush()
        os.fdatasync(out)
    finally:
        os.close(out)
        for fd in sources.values():
            os.close(fd)


def _copy_range(source: int, out: int, copy: Copy) -> None:
    done = 0
    while done < copy.size:
        try:
            moved = os.copy_file_range(source, out, copy.size - done,
                                       copy.source_offset + done, copy.offset + done)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            moved = 0
        if moved == 0:  # no kernel copy here, or an unexpected end: copy by hand
            piece = os.pread(source, min(_PIECE, copy.size - done), copy.source_offset + done)
            if not piece:
                raise OSError(errno.EIO, f"{copy.source} is shorter than its journal says")
            moved = os.pwrite(out, piece, copy.offset + done)
        done += moved


def merge(mpi: Any, path: Path, parts: PartsDir, configuration: str, base: Path | None,
          meta: dict[str, dict[str, str]], on_main_done=None,
          folder: str | None = None) -> dict[tuple[str, str], int]:
    """Write the complete network at ``path`` (collective); return its set sizes.

    Args:
        mpi: ``get_rank()``, ``get_size()``, ``share(value)`` (the main rank's value on
            every rank) and ``collect(value)`` (every rank's value on the main rank),
            waited for without spinning.
        base: the network the new one starts from (an append, or a pool session on a
            network); None for a new network.
        meta: connection set -> its attributes.
        folder: the configuration's folder, recorded in the file (see ``Header.folder``).
        on_main_done: called on the main rank at the end, once the new file is in
            place and the parts are removed.
    """
    rank, size = mpi.get_rank(), mpi.get_size()
    target = path.with_name(f".{path.name}.merge-{os.getpid()}")
    plan: tuple[str | None, Failure | None, list[list[Copy]]] = (None, None, [])
    sizes: dict[tuple[str, str], int] = {}
    if rank == 0:
        try:
            tables = plan_tables(parts, base)
            sizes = {key: len(table) for key, table in tables.items()}
            offsets = create_network_file(target, configuration, tables, meta, folder)
            _reserve(target)
            copies = [
                Copy(block.path, block.offset,
                     offsets[key] + int(start) * table.row_bytes, block.count * table.row_bytes)
                for key, table in sorted(tables.items())
                for block, start in zip(table.blocks, table.starts[:-1])
                if block.count
            ]
            plan = (str(target), None, _shares(copies, size))
        except StorageError as error:
            plan = (None, Failure.of(error), [[] for _ in range(size)])
        except OSError as error:
            plan = (None, Failure.of(storage_error(path, error, "creating the network file")),
                    [[] for _ in range(size)])
    # the copies are small records: (file, offsets, size)
    name, failure, shares = mpi.share(plan)
    mine = shares[rank]
    if failure is None and name is not None:
        try:
            _copy(Path(name), mine)
        except OSError as error:
            failure = Failure.of(storage_error(path, error, f"merging on rank {rank}"))
    failures = mpi.collect(failure)
    outcome: Failure | None = None
    trash: Path | None = None
    doomed: list[list[str]] = [[] for _ in range(size)]
    if rank == 0:
        outcome = next((f for f in failures if f is not None), None)
        if outcome is None:
            try:
                parts.keep_aside(path)
                os.replace(target, path)
                fsync_path(path.parent)
                trash = parts.retire()
                doomed = _removals(trash, size)
            except OSError as error:
                outcome = Failure.of(storage_error(path, error, "replacing the network file"))
        if target.exists():
            target.unlink()
    outcome, doomed = mpi.share((outcome, doomed))
    if outcome is not None:
        raise outcome.error()
    # The network is in place; what is left is freeing the parts (and the network it
    # replaced): tens of milliseconds of file system work per large file, shared out.
    for name in doomed[rank]:
        try:
            os.unlink(name)
        except OSError:
            pass  # what is left is removed below, or swept by the next session
    mpi.collect(None)
    if rank == 0:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        if on_main_done is not None:
            on_main_done()
    return sizes


def _removals(trash: Path | None, ranks: int) -> list[list[str]]:
    """The large files in ``trash``, shared out over ``ranks`` by size (largest first,
    each to the least loaded rank)."""
    shares: list[list[str]] = [[] for _ in range(ranks)]
    files = []
    try:
        for entry in os.scandir(trash) if trash is not None else ():
            files.append((entry.stat().st_size, entry.path))
    except OSError:  # gone meanwhile (swept): the network is in place all the same
        return shares
    load = [0] * ranks
    for size, name in sorted(files, reverse=True):
        if size < _LARGE:
            break  # small files go with the directory
        least = load.index(min(load))
        shares[least].append(name)
        load[least] += size
    return shares


def _reserve(target: Path) -> None:
    """Reserve the new file's whole size now: a full disk fails here, cleanly."""
    fd = os.open(target, os.O_RDWR)
    try:
        length = os.fstat(fd).st_size
        if length:
            try:
                os.posix_fallocate(fd, 0, length)
            except OSError as error:
                if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    return  # a file system without fallocate: errors come at copy time
                raise
    finally:
        os.close(fd)
