""":class:`HDF5Storage`: a network file and its parts directory, as the network uses them.

Reading (any rank, any time) goes to the finished file. Writing happens in a
*session* (a compile, or one pool opened on a network): the main rank opens it
(:meth:`HDF5Storage.open_session`: lock, manifest, stub), every rank writes its jobs'
rows through its own :class:`ShardWriter`, and :meth:`HDF5Storage.merge` (collective)
turns the committed work into the finished file.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .._text import short_text
from ..exceptions import CorruptDataError, StorageError
from ._blocks import BlockTable, recent_blocks
from ._layout import Header, NetworkFile, read_header, write_stub
from ._merge import merge
from ._parts import PartsDir, WriterLock, parts_path, storage_error
from ._writer import ShardWriter

__all__ = ["HDF5Storage", "NetworkState", "SessionInfo", "configuration_hash"]


class NetworkState(enum.Enum):
    """What is at a network path."""

    MISSING = "missing"  #: nothing
    COMPLETE = "complete"  #: a finished network
    INCOMPLETE = "incomplete"  #: the stub of an unfinished network


#: top-level configuration keys that do not change the network a compile builds (how it
#: is simulated): a resume accepts a configuration that differs only there
UNBUILT_KEYS = ("simulations",)


def configuration_hash(configuration: str, *, built_only: bool = False) -> str:
    """A digest of a configuration's JSON text, to recognise it in a parts directory
    (``built_only``: of what the compile builds, :data:`UNBUILT_KEYS` left out)."""
    data = json.loads(configuration)
    if built_only and isinstance(data, dict):
        data = {key: value for key, value in data.items() if key not in UNBUILT_KEYS}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class SessionInfo:
    """A writing session as every rank needs to know it (sent from the main rank)."""

    mode: str  #: "compile" (new, clear, resume or append) or "pool" (one pool)
    attempt: int
    base: str | None  #: the finished network the session starts from, if any
    #: on the main rank: keys of jobs already committed, and strategies not to run
    done: frozenset = field(default_factory=frozenset)
    skip: frozenset = field(default_factory=frozenset)
    total_jobs: int = 0


class HDF5Storage:
    """A network stored in the HDF5 file at ``path``; see :mod:`neuroscaffold.storage`."""

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        # A symbolic link is followed: the network, its parts and its temporary files
        # live next to the file it points to, which is replaced atomically; the link
        # stays a link (to the new network).
        self.path = Path(os.path.realpath(path)) if path.is_symlink() else path
        self.parts = PartsDir(parts_path(self.path))
        #: the folder of the configuration file being compiled, recorded in the stub
        #: and the network file (``Header.folder``); set by the network that writes
        self.source_folder: str | None = None
        self._lock: WriterLock | None = None  # held by the main rank while writing
        self._writer: ShardWriter | None = None
        self._session: SessionInfo | None = None
        self._readable: dict | None = None  # placement blocks committed before this phase

    def __repr__(self) -> str:
        return f"<HDF5Storage {str(self.path)!r}>"

    # --- what is there ----------------------------------------------------------------

    def exists(self) -> bool:
        return self.path.exists()

    def state(self) -> NetworkState:
        """What the network path holds (one-line errors for what is not a network)."""
        if not self.path.exists():
            return NetworkState.MISSING
        header = read_header(self.path)
        return NetworkState.COMPLETE if header.complete else NetworkState.INCOMPLETE

    def header(self) -> Header:
        return read_header(self.path)

    def read_configuration(self) -> dict[str, Any]:
        """The stored configuration (of a finished or an unfinished network); a
        one-line :class:`StorageError` when it is not a JSON mapping a reader can walk."""
        try:
            configuration = json.loads(read_header(self.path).configuration)
        except RecursionError:
            raise StorageError(f"{self.path}: a damaged network file (its stored "
                               "configuration is nested too deeply to read)") from None
        except ValueError as error:
            raise StorageError(f"{self.path}: a damaged network file (its stored "
                               f"configuration is not JSON: {short_text(str(error), 80)})"
                               ) from None
        if not isinstance(configuration, dict):
            raise StorageError(f"{self.path}: a damaged network file (its stored "
                               "configuration is not a mapping)")
        return configuration

    def _finished(self) -> NetworkFile:
        """The finished network (to open with ``with``), or, on entering it, a
        one-line error saying why there is none."""
        return NetworkFile(self.path, incomplete=lambda: self.progress().describe())

    # --- reading a finished network -----------------------------------------------------

    def cell_type_names(self) -> list[str]:
        with self._finished() as file:
            return file.names("placement")

    def connectivity_names(self) -> list[str]:
        with self._finished() as file:
            return file.names("connectivity")

    def placement_table(self, cell_type: str) -> BlockTable | None:
        """The blocks of ``cell_type`` (None when none were stored)."""
        with self._finished() as file:
            if cell_type not in file.names("placement"):
                return None
            return file.table("placement", cell_type)

    def connectivity_table(self, name: str) -> BlockTable:
        """The blocks of connection set ``name``, one per postsynaptic chunk."""
        with self._finished() as file:
            if name not in file.names("connectivity"):
                raise StorageError(f"{self.path}: no connectivity set '{name}'")
            return file.table("connectivity", name)

    def load_positions(self, cell_type: str) -> np.ndarray:
        with self._finished() as file:
            if cell_type not in file.names("placement"):
                return np.empty((0, 3))
            return file.data("placement", cell_type)

    def count_cells(self, cell_type: str) -> int:
        with self._finished() as file:
            if cell_type not in file.names("placement"):
                return 0
            return file.count("placement", cell_type)

    def read_connections(self, name: str) -> tuple[np.ndarray, dict[str, str]]:
        """All pairs of connection set ``name`` and its pre/post cell types; raises
        :class:`CorruptDataError` when a pair's index lies outside its population."""
        with self._finished() as file:
            if name not in file.names("connectivity"):
                raise StorageError(f"{self.path}: no connectivity set '{name}'")
            pairs, meta = file.data("connectivity", name), file.meta(name)
            _check_pairs(self.path, name, pairs, 0, _populations(file, meta))
            return pairs, meta

    def iter_rows(self, kind: str, name: str, rows: int, start: int = 0,
                  stop: int | None = None) -> Iterator[np.ndarray]:
        """The rows ``start:stop`` of a set (default: all), ``rows`` at a time (one read
        each): bounded memory. Connections are checked like :meth:`read_connections`'s."""
        with self._finished() as file:
            if name not in file.names(kind):
                raise StorageError(f"{self.path}: no {kind} set '{name}'")
            dataset = file.dataset(kind, name)
            sizes = _populations(file, file.meta(name)) if kind == "connectivity" else None
            end = dataset.shape[0] if stop is None else min(stop, dataset.shape[0])
            for first in range(max(start, 0), end, rows):
                piece = dataset[first:min(first + rows, end)]
                if sizes is not None:
                    _check_pairs(self.path, name, piece, first, sizes)
                yield piece

    def connectivity_meta(self, name: str) -> tuple[int, dict[str, str]]:
        with self._finished() as file:
            if name not in file.names("connectivity"):
                raise StorageError(f"{self.path}: no connectivity set '{name}'")
            return file.count("connectivity", name), file.meta(name)

    def summary(self) -> dict[str, Any]:
        """Counts for a quick look: cells per type, pairs per set, chunks, size."""
        with self._finished() as file:
            cells, chunks = {}, set()
            for name in file.names("placement"):
                cells[name] = file.count("placement", name)
                chunks.update(file.table("placement", name).chunks())
            connections = {}
            for name in file.names("connectivity"):
                file.table("connectivity", name)  # checked against its data
                meta = file.meta(name)
                connections[name] = (meta.get("presynaptic"), meta.get("postsynaptic"),
                                     file.count("connectivity", name))
        return {"cells": cells, "connections": connections, "chunks": len(chunks),
                "size": self.path.stat().st_size}

    # --- an unfinished network ----------------------------------------------------------

    def progress(self) -> "Progress":
        """What an unfinished compile of this network has done so far."""
        if not self.parts.exists():
            return Progress(self.path, None, {}, {}, False)
        manifest = self.parts.manifest()
        commits = self.parts.commits(kinds=())
        done: dict[str, int] = {}
        for key in commits.jobs:
            strategy = key.split(":", 1)[0]
            done[strategy] = done.get(strategy, 0) + 1
        return Progress(self.path, manifest, manifest.get("jobs", {}), done,
                        self.parts.being_written())

    # --- writing (sessions) ---------------------------------------------------------------

    def open_session(self, mode: str, configuration: str, jobs: dict[str, int] | None = None,
                     resume: bool = False, base: bool = False, stub: bool = True
                     ) -> SessionInfo:
        """Main rank: start writing (lock, parts directory, manifest, stub).

        Args:
            mode: ``"compile"`` or ``"pool"``.
            configuration: the configuration's JSON text.
            jobs: strategy node name -> number of jobs planned (compiles).
            resume: continue the unfinished compile in the parts directory (its
                configuration must be the same but for :data:`UNBUILT_KEYS`; the new
                one is the network's).
            base: the session adds to the finished network at the path (an append, or
                a pool on a network), which stays until the new file replaces it.
            stub: mark the path as an unfinished network now (not when a finished
                network there must stay until the new one replaces it).
        """
        folder = self.parts.path
        if folder.exists() and not folder.is_dir():
            raise StorageError(f"{folder}: exists and is not a directory; move it away")
        try:
            folder.mkdir(exist_ok=True)
        except OSError as error:
            if not self.path.parent.exists():
                raise StorageError(f"{self.path}: directory {str(self.path.parent)!r} "
                                   "does not exist") from None
            raise storage_error(folder, error, "creating the parts directory") from None
        lock = self.parts.lock(self.path)
        lock.acquire()
        try:
            done: frozenset = frozenset()
            digest = configuration_hash(configuration)
            if resume:
                manifest = self.parts.manifest()
                if manifest.get("configuration_hash") != digest:
                    started = manifest.get("configuration")
                    if started is None or configuration_hash(started, built_only=True) != \
                            configuration_hash(configuration, built_only=True):
                        raise StorageError(_different_configuration(self.path, manifest,
                                                                    configuration))
                    # only the simulations changed: the network finishes with the new ones
                    manifest.update(configuration=configuration, configuration_hash=digest)
                    self.parts.write_manifest(manifest)
                # Committed rows are checked before they are reused: a job whose rows
                # are missing, short or changed since runs again (its new blocks
                # replace the damaged ones in every reader and in the merge).
                verified = self.parts.verify()
                done = frozenset(verified.intact)
                if verified.damaged:
                    print(f"neuroscaffold: note: {self.path}: {verified.describe()}",
                          file=sys.stderr, flush=True)
                base = bool(manifest.get("base"))
                jobs = manifest.get("jobs", jobs)
            else:
                self._clear_parts()
                self.parts.create({
                    "format": "neuroscaffold-parts", "version": 1, "mode": mode,
                    "configuration": configuration, "configuration_hash": digest,
                    "jobs": jobs or {}, "base": base,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                })
            self._remove_leftovers()
            if stub and not base:
                write_stub(self.path, configuration, self.parts.path.name, self.source_folder)
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return SessionInfo(mode, self.parts.next_attempt(), str(self.path) if base else None,
                           done, frozenset(), sum((jobs or {}).values()))

    def _clear_parts(self) -> None:
        for entry in os.scandir(self.parts.path):
            if entry.name != "lock":
                os.unlink(entry.path)

    def _remove_leftovers(self) -> None:
        """Half-written files of an interrupted merge or stub (ours: we hold the lock)."""
        for leftover in self.leftovers():
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    def leftovers(self) -> list[Path]:
        """What killed writers left next to the network: the new file of a merge killed
        before it replaced the network (``.NET.merge-PID``), a stub being written
        (``.NET.tmp-PID``), a parts directory being removed (``.NET.parts.removing-PID``).
        Hidden, and never read; the next session on the path removes them."""
        prefixes = tuple(f".{self.path.name}.{kind}-" for kind in ("merge", "tmp"))
        removing = f".{self.parts.path.name}.removing-"
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return []
        return sorted(Path(entry.path) for entry in entries
                      if entry.name.startswith(prefixes) or entry.name.startswith(removing))

    def sweep_leftovers(self) -> list[tuple[Path, int]] | None:
        """Remove :meth:`leftovers` now, if no process writes the network (its writer
        lock is free; it is held meanwhile, so that no writer starts while they go);
        return what was removed and its size, or None when a writer holds the lock or
        there is no lock to take (nothing is removed then)."""
        found = self.leftovers()
        if not found:
            return []
        with WriterLock.free(self.parts.path / "lock") as free:
            if not free:
                return None
            removed = []
            for leftover in found:
                size = _size_of(leftover)
                try:
                    if leftover.is_dir() and not leftover.is_symlink():
                        shutil.rmtree(leftover)
                    else:
                        leftover.unlink()
                except FileNotFoundError:
                    continue
                except OSError:
                    return None if not removed else removed
                removed.append((leftover, size))
            return removed

    def attach(self, session: SessionInfo) -> None:
        """Every rank: take part in ``session`` (writes go to this rank's shard)."""
        self._session = session
        self._writer = None
        self._readable = None
        recent_blocks.clear()  # a new session may reuse the names of old shard files

    @property
    def session(self) -> SessionInfo | None:
        return self._session

    def writer(self) -> ShardWriter:
        """This rank's shard writer in the current session."""
        if self._session is None:
            raise StorageError(f"{self.path}: results can only be written by the jobs of a "
                               "pool opened with network.create_job_pool()")
        if self._writer is None:
            from ..services import MPI

            data, journal = self.parts.shard(self._session.attempt, MPI.get_rank())
            self._writer = ShardWriter(data, journal, self.path)
        return self._writer

    def flush(self) -> int:
        """Every rank: commit what this rank wrote; the number of jobs it committed.
        (Called when a pool ends: the next phase reads what every rank committed.)"""
        self._readable = None
        if self._writer is None:
            return 0
        self._writer.flush()
        return self._writer.committed

    def cells(self, cell_type: str) -> BlockTable:
        """The blocks of ``cell_type`` that a job of this session can read: the base
        network's, replaced by those committed in the parts directory."""
        blocks = []
        base = self._session.base if self._session is not None else None
        if base is not None:
            with NetworkFile(Path(base)) as file:
                if cell_type in file.names("placement"):
                    blocks.extend(file.table("placement", cell_type).blocks)
        if self._readable is None:
            self._readable = self.parts.commits(kinds=("placement",)).blocks \
                if self.parts.path.is_dir() else {}
        blocks.extend(self._readable.get(("placement", cell_type), []))
        return BlockTable("placement", cell_type, blocks)

    def committed_jobs(self) -> int:
        return len(self.parts.commits(kinds=()).jobs)

    def merge(self, mpi: Any, configuration: str, meta: dict[str, dict[str, str]]) -> None:
        """Collective: write the finished network and end the session."""
        session = self._session
        base = Path(session.base) if session and session.base else None
        try:
            if self._writer is not None:
                self._writer.close()
            merge(mpi, self.path, self.parts, configuration, base, meta,
                  on_main_done=self._end_on_main, folder=self.source_folder)
        finally:
            self._writer = None
            self._session = None
            recent_blocks.clear()

    def _end_on_main(self) -> None:
        # The lock file went away with the parts directory: unlinking ``parts/lock``
        # now could remove the lock of a writer that started since.
        self.release(remove=False)

    def end_session(self) -> None:
        """Every rank: stop writing without merging (the parts stay for a resume)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except StorageError:
                pass
        self._writer = None
        self._session = None
        recent_blocks.clear()
        self.release()

    def release(self, remove: bool | None = None) -> None:
        """Main rank: release the writer lock (if held), and remove its file if
        ``remove`` (by default: when no parts directory is left)."""
        if self._lock is not None:
            self._lock.release(remove=not self.parts.exists() if remove is None else remove)
            self._lock = None


def _size_of(path: Path) -> int:
    """Bytes in the file or directory tree at ``path`` (0 for what cannot be read)."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def _populations(file: NetworkFile, meta: dict[str, str]) -> tuple[int, int]:
    """The cell counts of a connection set's pre- and postsynaptic types."""
    names = file.names("placement")
    return tuple(file.count("placement", meta[side]) if meta.get(side) in names else 0
                 for side in ("presynaptic", "postsynaptic"))  # type: ignore[return-value]


def _check_pairs(path: Path, name: str, pairs: np.ndarray, first: int,
                 sizes: tuple[int, int]) -> None:
    """Raise :class:`CorruptDataError` when a pair's index is outside its population
    (``first``: the index of ``pairs``' first row in the set, for the message)."""
    if not len(pairs):
        return
    for column, (side, size) in enumerate(zip(("presynaptic", "postsynaptic"), sizes)):
        values = pairs[:, column]
        bad = np.flatnonzero((values < 0) | (values >= size))
        if len(bad):
            row = int(bad[0])
            raise CorruptDataError(
                f"{path}: a damaged network file (connectivity set '{name}', pair "
                f"{first + row:,}: {side} index {int(values[row]):,} is outside its "
                f"{size:,} cells; {len(bad):,} such pairs here); compile it again with "
                "--clear")


@dataclass
class Progress:
    """How far an unfinished compile got: per strategy, jobs planned and committed."""

    path: Path
    manifest: dict | None
    planned: dict[str, int]
    done: dict[str, int]
    running: bool

    @property
    def total(self) -> int:
        return sum(self.planned.values())

    @property
    def committed(self) -> int:
        return sum(min(self.done.get(name, 0), n) for name, n in self.planned.items()) \
            if self.planned else sum(self.done.values())

    def describe(self) -> str:
        """One line: what the unfinished network is and what to do about it."""
        if self.manifest is None:
            return (f"an unfinished network whose parts directory "
                    f"({self.path.name}.parts) is missing; compile it again with --clear")
        state = "being compiled now" if self.running else "an unfinished compile"
        return (f"{state}: {self.committed} of {self.total} jobs committed; "
                "finish it with `neuroscaffold compile CONFIG -o "
                f"{self.path} --resume`")


def _different_configuration(path: Path, manifest: dict, configuration: str) -> str:
    old, new = json.loads(manifest.get("configuration", "{}")), json.loads(configuration)
    for data in (old, new):  # name a difference that matters
        for key in UNBUILT_KEYS:
            data.pop(key, None)
    where = _first_difference(old, new) or "the configuration"
    return (f"{path}: the unfinished compile was started from a different configuration "
            f"(it differs at {where}); resume with the same configuration, or start over "
            "with --clear")


def _first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if old.get(key) != new.get(key):
                deeper = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
                return deeper or f"{prefix}{key}"
        return None
    return None if old == new else prefix.rstrip(".") or None
