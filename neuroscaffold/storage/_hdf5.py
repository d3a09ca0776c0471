"""The embedded storage: one HDF5 file per network, through h5py.

Layout::

    /configuration                        the configuration, as JSON (scalar string)
    /placement/<cell type>/<run>/<chunk>/<strategy>   positions, (n, 3) float64
    /connectivity/<set>/<run>/<chunk>                 (pre, post) index pairs, (m, 2) int64
    root attributes: format, format_version, runs, sessions

``<chunk>`` is ``i_j_k``; a set is read in (run, chunk, strategy) order, so its order,
and so every index, is independent of which rank wrote what. A file is never kept
open: each operation opens it. Writes, and the reads of running jobs, hold the MPI lock
(made by the first pool), so any rank may write its jobs' results while the others wait
their turn. Reads outside of jobs take no lock: the lock needs the main rank to still
be in MPI, and outside of a pool nothing writes. Every dataset
records the session (pool) that wrote it: a second write in one session is an error,
a write in a later session replaces the old data.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import h5py
import numpy as np

from ..exceptions import StorageError
from ..placement._chunks import chunk_key, parse_chunk_key

__all__ = ["HDF5Storage", "PlacementEntry"]

FORMAT = "neuroscaffold"
FORMAT_VERSION = 1


class PlacementEntry(NamedTuple):
    """One stored block of cells: written in ``run`` for ``chunk`` by ``strategy``."""

    run: int
    chunk: tuple[int, int, int]
    strategy: str
    count: int


class HDF5Storage:
    """A network stored in the HDF5 file at ``path`` (created when first needed)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = None
        # The MPI lock counts re-entry per process, not per thread, and the main rank
        # may run two jobs at once (dispatcher and executor thread): threads take turns.
        self._thread_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<HDF5Storage {str(self.path)!r}>"

    # --- opening --------------------------------------------------------------------

    def _open(self, mode: str) -> h5py.File:
        try:
            # HDF5's own file locks would refuse a second process outright; the MPI
            # lock orders the ranks instead.
            return h5py.File(self.path, mode, locking=False)
        except FileNotFoundError:
            raise StorageError(f"{self.path}: no such file") from None
        except OSError as error:
            if self.path.is_dir():
                raise StorageError(f"{self.path}: is a directory") from None
            if mode == "r" and self.path.exists():
                raise StorageError(f"{self.path}: not an HDF5 file") from None
            raise StorageError(f"{self.path}: cannot open ({error})") from None

    @contextlib.contextmanager
    def _reading(self, locked: bool = False) -> Iterator[h5py.File]:
        with self._locked("read") if locked else contextlib.nullcontext():
            with self._open("r") as file:
                yield file

    @contextlib.contextmanager
    def _writing(self) -> Iterator[h5py.File]:
        with self._locked("write"), self._open("a") as file:
            yield file

    @contextlib.contextmanager
    def _locked(self, kind: str) -> Iterator[None]:
        with self._thread_lock:
            if self._lock is None:
                yield
            else:
                with getattr(self._lock, kind)():
                    yield

    def init_lock(self) -> None:
        """Create the MPI lock that orders writes (collective: call on every rank)."""
        if self._lock is None:
            from ..services import MPILock

            self._lock = MPILock.sync()

    def close_lock(self) -> None:
        """Free the MPI lock (collective); the next pool makes a new one."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- the file as a whole (main rank, outside of jobs) ---------------------------

    def exists(self) -> bool:
        return self.path.exists()

    def check_format(self) -> None:
        """Raise :class:`StorageError` unless the file is a neuroscaffold network."""
        with self._open("r") as file:
            if file.attrs.get("format") != FORMAT or "configuration" not in file:
                raise StorageError(f"{self.path}: not a neuroscaffold network file")

    def create(self, configuration_json: str) -> None:
        """Make a new, empty network file with this configuration (replaces any file)."""
        if self.path.parent and not self.path.parent.exists():
            raise StorageError(f"{self.path}: directory {str(self.path.parent)!r} does not exist")
        with self._open("w") as file:
            file.attrs["format"] = FORMAT
            file.attrs["format_version"] = FORMAT_VERSION
            file.attrs["runs"] = 0
            file.attrs["sessions"] = 0
            file.create_dataset("configuration", data=configuration_json)
            file.create_group("placement")
            file.create_group("connectivity")

    def read_configuration(self) -> dict[str, Any]:
        self.check_format()
        with self._open("r") as file:
            return json.loads(file["configuration"][()].decode())

    def write_configuration(self, configuration_json: str) -> None:
        with self._open("a") as file:
            del file["configuration"]
            file.create_dataset("configuration", data=configuration_json)

    def has_data(self) -> bool:
        """Whether any cells or connections were stored (even empty chunks count)."""
        with self._open("r") as file:
            return any(len(file[section]) for section in ("placement", "connectivity"))

    def start_run(self) -> int:
        """Begin a new run (a compile that appends) and return its index."""
        with self._open("a") as file:
            file.attrs["runs"] = int(file.attrs["runs"]) + 1
            return int(file.attrs["runs"]) - 1

    def begin_session(self) -> tuple[int, int]:
        """Begin a session (one pool's writes): ``(run, session)``; the run is the
        latest one, started if there is none."""
        with self._open("a") as file:
            if int(file.attrs["runs"]) == 0:
                file.attrs["runs"] = 1
            file.attrs["sessions"] = int(file.attrs["sessions"]) + 1
            return int(file.attrs["runs"]) - 1, int(file.attrs["sessions"])

    # --- job side: any rank -----------------------------------------------------------

    def write_placement(self, run: int, session: int, strategy: str,
                        data: dict[str, dict[tuple, np.ndarray]]) -> None:
        """Store the cells a placement job made: ``{cell type: {chunk: positions}}``."""
        with self._writing() as file:
            for cell_type, chunks in data.items():
                for chunk, positions in chunks.items():
                    group = file.require_group(f"placement/{cell_type}/{run}/{chunk_key(chunk)}")
                    self._replace(group, strategy, session, positions.astype(np.float64),
                                  f"cells of '{cell_type}' in chunk {chunk_key(chunk)}")

    def write_connections(self, run: int, session: int, name: str, pre: str, post: str,
                          data: dict[tuple, np.ndarray]) -> None:
        """Store the pairs a connectivity job made: ``{postsynaptic chunk: pairs}``."""
        with self._writing() as file:
            group = file.require_group(f"connectivity/{name}")
            group.attrs["presynaptic"], group.attrs["postsynaptic"] = pre, post
            runs = group.require_group(str(run))
            for chunk, pairs in data.items():
                self._replace(runs, chunk_key(chunk), session, pairs.astype(np.int64),
                              f"connections of '{name}' in chunk {chunk_key(chunk)}")

    def _replace(self, group: h5py.Group, name: str, session: int, data: np.ndarray,
                 what: str) -> None:
        if name in group:
            if int(group[name].attrs["session"]) == session:
                raise StorageError(f"{self.path}: {what} written twice")
            del group[name]
        group.create_dataset(name, data=data)
        group[name].attrs["session"] = session

    def placement_entries(self, cell_type: str) -> list[PlacementEntry]:
        """The stored blocks of ``cell_type``, in the order of its placement set."""
        with self._reading() as file:
            return _entries(file, cell_type)

    def read_placement(self, cell_type: str, entries: list[PlacementEntry]) -> np.ndarray:
        """The positions of ``entries`` (of :meth:`placement_entries`), concatenated."""
        with self._reading() as file:
            return _positions(file, cell_type, entries)

    def load_placement(self, cell_type: str, locked: bool = False
                       ) -> tuple[list[PlacementEntry], np.ndarray]:
        """Every stored block of ``cell_type`` and all its positions, in one read
        (``locked``: inside a job, while other ranks may write)."""
        with self._reading(locked) as file:
            entries = _entries(file, cell_type)
            return entries, _positions(file, cell_type, entries)

    # --- reading sets -------------------------------------------------------------------

    def cell_type_names(self) -> list[str]:
        with self._reading() as file:
            return sorted(file["placement"])

    def connectivity_names(self) -> list[str]:
        with self._reading() as file:
            return sorted(file["connectivity"])

    def read_connections(self, name: str) -> tuple[np.ndarray, dict[str, str]]:
        """All pairs of connectivity set ``name`` in (run, chunk) order, and its
        pre/post cell types."""
        with self._reading() as file:
            if name not in file["connectivity"]:
                raise StorageError(f"{self.path}: no connectivity set '{name}'")
            group = file[f"connectivity/{name}"]
            meta = {key: str(value) for key, value in group.attrs.items()}
            arrays = [group[f"{run}/{key}"][()] for run, key in _chunk_datasets(group)]
        pairs = np.concatenate(arrays) if arrays else np.empty((0, 2), dtype=np.int64)
        return pairs, meta

    def summary(self) -> dict[str, Any]:
        """Counts for a quick look: cells per type, pairs per set, chunks, runs."""
        with self._reading() as file:
            cells = {ct: sum(e.count for e in _entries(file, ct)) for ct in sorted(file["placement"])}
            chunks = {e.chunk for ct in file["placement"] for e in _entries(file, ct)}
            connections = {}
            for name in sorted(file["connectivity"]):
                group = file[f"connectivity/{name}"]
                connections[name] = (
                    str(group.attrs.get("presynaptic")),
                    str(group.attrs.get("postsynaptic")),
                    sum(group[f"{run}/{key}"].shape[0] for run, key in _chunk_datasets(group)),
                )
            runs = int(file.attrs.get("runs", 0))
        return {"cells": cells, "connections": connections, "chunks": len(chunks),
                "runs": runs, "size": self.path.stat().st_size}


def _chunk_datasets(group: h5py.Group) -> list[tuple[str, str]]:
    """(run, chunk key) of each dataset under ``group``, in run then chunk order."""
    return [
        (run, key)
        for run in sorted(group, key=int)
        for key in sorted(group[run], key=parse_chunk_key)
    ]


def _positions(file: h5py.File, cell_type: str, entries: list[PlacementEntry]) -> np.ndarray:
    base = f"placement/{cell_type}"
    arrays = [file[f"{base}/{e.run}/{chunk_key(e.chunk)}/{e.strategy}"][()] for e in entries]
    return np.concatenate(arrays) if arrays else np.empty((0, 3))


def _entries(file: h5py.File, cell_type: str) -> list[PlacementEntry]:
    if cell_type not in file["placement"]:
        return []
    group = file[f"placement/{cell_type}"]
    return [
        PlacementEntry(int(run), parse_chunk_key(key), strategy,
                       group[f"{run}/{key}/{strategy}"].shape[0])
        for run, key in _chunk_datasets(group)
        for strategy in sorted(group[f"{run}/{key}"])
    ]
