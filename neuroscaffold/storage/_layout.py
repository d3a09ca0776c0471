"""The network file: its layout, the stub of an unfinished network, and reading it.

Layout (format version 2)::

    attrs: format = "neuroscaffold", format_version = 2, complete = True | False
           parts = "<name>.parts" (a stub: where the unfinished work is)
    /configuration                       the configuration, as JSON (scalar string)
    /placement/<cell type>/positions     (n, 3) float64, contiguous, in set order
    /placement/<cell type>/blocks        one row per (chunk, strategy): chunk (3 int64),
                                         strategy (index into attrs["strategies"]), count
    /connectivity/<set>/pairs            (m, 2) int64 (pre index, post index)
    /connectivity/<set>/blocks           one row per (postsynaptic chunk, tag): chunk,
                                         tag (index into attrs["strategies"]), count
        attrs: presynaptic, postsynaptic (and strategies: "" for a set written by one
        job per postsynaptic chunk; a fixed_outdegree set, written by one job per
        presynaptic chunk, tags each block with that chunk)
    (a set with more than 1,000 tags keeps them in a dataset "strategies" instead of
    the attribute: an attribute must fit HDF5's 64 KiB object header)

Sets are read with one read each; the block tables say which rows are which chunk's.
A finished file is never modified: a later compile or pool session writes a new file
that replaces it (see :mod:`._merge`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from ..exceptions import DamagedFileError, StorageError
from ._blocks import ROW, Block, BlockTable

__all__ = ["FORMAT", "FORMAT_VERSION", "Header", "NetworkFile", "create_network_file",
           "read_header", "write_stub"]

FORMAT = "neuroscaffold"
FORMAT_VERSION = 2
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_DATA = {"placement": "positions", "connectivity": "pairs"}
BLOCK_DTYPE = np.dtype([("chunk", "<i8", (3,)), ("strategy", "<i4"), ("count", "<i8")])


@dataclass(frozen=True)
class Header:
    """What a network file says about itself."""

    complete: bool
    configuration: str  #: JSON text
    parts: str | None  #: name of the parts directory of an unfinished network
    #: the folder of the configuration file the network was compiled from (where the
    #: modules of its own strategies are looked for when its jobs run again), if any
    folder: str | None = None


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            # the superblock is at 0, 512, 1024, 2048, ... bytes
            for offset in (0, 512, 1024, 2048, 4096):
                file.seek(offset)
                if file.read(8) == _HDF5_SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def open_file(path: Path) -> h5py.File:
    """Open a network file for reading, or raise a one-line :class:`StorageError`
    that says what the file is."""
    if not path.exists():
        raise StorageError(f"{path}: no such file")
    if path.is_dir():
        raise StorageError(f"{path}: is a directory")
    if not path.is_file():  # a FIFO would block the read below, a device never end
        raise StorageError(f"{path}: not a regular file")
    if not _is_hdf5(path):
        raise StorageError(f"{path}: not an HDF5 file")
    try:
        # HDF5's file locks stay off: finished files are never written again.
        return h5py.File(path, "r", locking=False)
    except OSError as error:
        raise DamagedFileError(f"{path}: a damaged HDF5 file ({_short(error)})") from None


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _check_format(file: h5py.File, path: Path) -> bool:
    """Whether the open network file is complete; a one-line :class:`StorageError`
    when it is not a network file this version reads."""
    if file.attrs.get("format") != FORMAT or "configuration" not in file:
        raise StorageError(f"{path}: not a neuroscaffold network file")
    version = int(file.attrs.get("format_version", 0))
    if version != FORMAT_VERSION:
        raise StorageError(f"{path}: a network file of format version {version}; "
                           f"this neuroscaffold reads version {FORMAT_VERSION}")
    return bool(file.attrs.get("complete", False))


def read_header(path: Path) -> Header:
    """The header of the network file at ``path`` (one-line errors otherwise)."""
    with open_file(path) as file:
        try:
            complete = _check_format(file, path)
            configuration = file["configuration"][()]
            parts = file.attrs.get("parts")
            folder = file.attrs.get("configuration_folder")
            return Header(complete,
                          configuration.decode() if isinstance(configuration, bytes)
                          else str(configuration),
                          str(parts) if parts else None,
                          str(folder) if folder else None)
        except StorageError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            raise DamagedFileError(f"{path}: a damaged network file ({_short(error)})") from None


def _replace_atomically(path: Path, write) -> None:
    """Write a new file next to ``path`` with ``write(file)``, make it durable, and
    rename it over ``path``: readers see the old file or the new one, never half."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(temporary, "w", locking=False) as file:
            write(file)
        fsync_path(temporary)
        os.replace(temporary, path)
        fsync_path(path.parent)
    finally:
        if temporary.exists():
            temporary.unlink()


def fsync_path(path: Path) -> None:
    """Make the file or directory at ``path`` durable (a directory: its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_header(file: h5py.File, configuration: str, complete: bool, parts: str | None,
                  folder: str | None = None):
    file.attrs["format"] = FORMAT
    file.attrs["format_version"] = FORMAT_VERSION
    file.attrs["complete"] = complete
    if parts:
        file.attrs["parts"] = parts
    if folder:
        file.attrs["configuration_folder"] = folder
    file.create_dataset("configuration", data=configuration)


def write_stub(path: Path, configuration: str, parts: str, folder: str | None = None) -> None:
    """Write the stub of an unfinished network at ``path`` (atomically)."""
    _replace_atomically(path, lambda file: _write_header(file, configuration, False, parts,
                                                         folder))


def create_network_file(path: Path, configuration: str, tables: dict[tuple[str, str], BlockTable],
                        meta: dict[str, dict[str, str]],
                        folder: str | None = None) -> dict[tuple[str, str], int]:
    """Create the complete network file ``path`` with every set's dataset allocated
    but not written; return each non-empty dataset's byte offset in the file.

    Args:
        tables: (kind, name) -> the set's block table.
        meta: connection set -> its attributes (presynaptic, postsynaptic).
    """
    offsets = {}
    with h5py.File(path, "w", locking=False) as file:
        _write_header(file, configuration, True, None, folder)
        for kind in ("placement", "connectivity"):
            file.create_group(kind)
        for (kind, name), table in sorted(tables.items()):
            group = file.create_group(f"{kind}/{name}")
            dtype, width = ROW[kind]
            dataset = _allocate(group, _DATA[kind], (len(table), width), dtype)
            if len(table):
                offsets[(kind, name)] = dataset.get_offset()
            strategies = table.strategies()
            number = {strategy: n for n, strategy in enumerate(strategies)}
            rows = np.zeros(len(table.blocks), dtype=BLOCK_DTYPE)
            if table.blocks:
                rows["chunk"] = table.chunk_array
                rows["strategy"] = [number[block.strategy] for block in table.blocks]
                rows["count"] = table.counts
            group.create_dataset("blocks", data=rows)
            _write_strategies(group, strategies)
            for key, value in meta.get(name, {}).items() if kind == "connectivity" else ():
                group.attrs[key] = value
    return offsets


#: The most block tags a set keeps in its ``strategies`` attribute: HDF5 keeps an
#: attribute in its object header, 64 KiB at most (16 bytes a string, so about 4,000
#: tags). More (a fixed_outdegree set tags its blocks by presynaptic chunk) go into a
#: dataset of that name instead.
_TAGS_IN_ATTRIBUTE = 1000


def _write_strategies(group: h5py.Group, strategies: list[str]) -> None:
    """A set's block tags (placement strategies, or connection jobs' chunks)."""
    if len(strategies) <= _TAGS_IN_ATTRIBUTE:
        group.attrs["strategies"] = strategies
    else:
        group.create_dataset("strategies", data=strategies, dtype=h5py.string_dtype())


def _read_strategies(group: h5py.Group) -> list[str]:
    stored = group["strategies"].asstr()[()] if "strategies" in group \
        else group.attrs["strategies"]
    return [str(s) for s in stored]


def _allocate(group: h5py.Group, name: str, shape: tuple, dtype: np.dtype):
    """A contiguous dataset whose space is reserved now and never filled, so that its
    bytes can be written at a known offset by any process."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    space = h5py.h5s.create_simple(shape)
    return h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)


class NetworkFile:
    """Read access to a complete network file (open it with ``with``).

    The file is opened once per ``with`` and its header checked on that handle: a
    simulation reads a few dozen sets, and opening the file again for each check cost
    a tenth of its connect time."""

    def __init__(self, path: Path, incomplete: Callable[[], str] | None = None):
        self.path = path
        #: what to say when the file is the stub of an unfinished network
        self._incomplete = incomplete or (lambda: "the network is not complete")
        self._file: h5py.File | None = None

    def __enter__(self) -> "NetworkFile":
        file = open_file(self.path)
        try:
            complete = _check_format(file, self.path)
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            file.close()
            raise DamagedFileError(f"{self.path}: a damaged network file "
                                   f"({_short(error)})") from None
        except BaseException:
            file.close()
            raise
        if not complete:
            file.close()
            raise StorageError(f"{self.path}: {self._incomplete()}")
        self._file = file
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                pass
            self._file = None
        if exc is not None and not isinstance(exc, StorageError) and isinstance(
                exc, (OSError, KeyError, ValueError, IndexError, RuntimeError, TypeError)):
            # whatever h5py or numpy said of bytes that are not what they should be
            raise self._damaged(exc) from None

    def names(self, kind: str) -> list[str]:
        return sorted(self._file[kind])

    def table(self, kind: str, name: str) -> BlockTable:
        """The block table of a set, each block located in this file's dataset; a
        table that does not fit its dataset is reported as damage."""
        try:
            group = self._file[f"{kind}/{name}"]
            rows = group["blocks"][()]
            strategies = _read_strategies(group)
            dataset = group[_DATA[kind]]
            offset = dataset.id.get_offset() or 0
            length = int(dataset.shape[0])
        except KeyError:
            raise StorageError(f"{self.path}: no {kind} set '{name}'") from None
        except (OSError, ValueError, RuntimeError) as error:
            raise self._damaged(error) from None
        counts = rows["count"] if len(rows) else np.zeros(0, dtype=np.int64)
        if (len(rows) and (counts.min() < 0 or rows["strategy"].min() < 0
                           or rows["strategy"].max() >= len(strategies))) \
                or int(counts.sum()) != length:
            raise self._damaged(f"the block table of {kind} set '{name}' does not match its "
                                "data")
        dtype, width = ROW[kind]
        row_bytes = dtype.itemsize * width
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        path = str(self.path)
        return BlockTable(kind, name, (
            Block(tuple(int(v) for v in row["chunk"]), strategies[int(row["strategy"])],
                  int(row["count"]), path, offset + int(start) * row_bytes)
            for row, start in zip(rows, starts[:-1])))

    def _damaged(self, error: BaseException | str) -> DamagedFileError:
        reason = error if isinstance(error, str) else _short(error)
        return DamagedFileError(f"{self.path}: a damaged network file ({reason})")

    def data(self, kind: str, name: str) -> np.ndarray:
        """The whole set, in one read."""
        try:
            return self._file[f"{kind}/{name}/{_DATA[kind]}"][()]
        except KeyError:
            raise StorageError(f"{self.path}: no {kind} set '{name}'") from None
        except (OSError, ValueError, RuntimeError) as error:
            raise self._damaged(error) from None

    def dataset(self, kind: str, name: str) -> h5py.Dataset:
        return self._file[f"{kind}/{name}/{_DATA[kind]}"]

    def count(self, kind: str, name: str) -> int:
        return int(self._file[f"{kind}/{name}/{_DATA[kind]}"].shape[0])

    def meta(self, name: str) -> dict[str, str]:
        group = self._file[f"connectivity/{name}"]
        return {key: str(group.attrs[key]) for key in ("presynaptic", "postsynaptic")
                if key in group.attrs}

    def configuration(self) -> dict[str, Any]:
        return json.loads(self._file["configuration"][()].decode())
