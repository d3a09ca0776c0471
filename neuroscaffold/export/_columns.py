"""Contiguous HDF5 datasets allocated in advance, written by any rank at their offset.

The main rank creates a SONATA file with every large dataset *allocated* (its bytes
reserved at a known offset, never filled); then each rank writes its share of the rows
with ``pwrite`` straight into those bytes, as the storage merge does. No rank holds a
whole column, no HDF5 file is opened for writing by two processes, and what the file
holds does not depend on which rank wrote which rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = ["Column", "allocate", "ColumnWriter", "plain_group"]


@dataclass(frozen=True)
class Column:
    """Where the rows of one allocated dataset are: ``file`` at byte ``offset``
    (None when the dataset has no rows), ``width`` values of ``dtype`` per row."""

    file: str
    offset: int | None
    dtype: str
    width: int = 1

    @property
    def row_bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * self.width


def _creation_list(kind: Any) -> Any:
    plist = h5py.h5p.create(kind)
    plist.set_obj_track_times(False)  # no timestamps: the same network, the same bytes
    return plist


def plain_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A new group without timestamps."""
    group_id = h5py.h5g.create(parent.id, name.encode(), gcpl=_creation_list(h5py.h5p.GROUP_CREATE))
    return h5py.Group(group_id)


def allocate(group: h5py.Group, name: str, rows: int, dtype: str, width: int = 1) -> Column:
    """A contiguous, uncompressed dataset of ``rows`` rows whose bytes are reserved now
    and never filled (every byte is written later, at the returned column's offset)."""
    dcpl = _creation_list(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    shape = (rows,) if width == 1 else (rows, width)
    space = h5py.h5s.create_simple(shape)
    dataset = h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(np.dtype(dtype)),
                              space, dcpl=dcpl)
    offset = dataset.get_offset() if rows else None
    return Column(str(Path(group.file.filename).resolve()), offset, dtype, width)


class ColumnWriter:
    """Writes rows into allocated columns (one open descriptor per file)."""

    def __init__(self) -> None:
        self._files: dict[str, int] = {}

    def write(self, column: Column, first_row: int, values: np.ndarray) -> None:
        """Write ``values`` as the rows of ``column`` from ``first_row`` on."""
        if not len(values):
            return
        if column.offset is None:
            raise ValueError(f"writing rows into an empty dataset of {column.file}")
        data = np.ascontiguousarray(values, dtype=np.dtype(column.dtype))
        view = memoryview(data.reshape(-1).view(np.uint8))
        fd = self._files.get(column.file)
        if fd is None:
            fd = self._files[column.file] = os.open(column.file, os.O_WRONLY)
        at = column.offset + first_row * column.row_bytes
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], at + done)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def __enter__(self) -> "ColumnWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
