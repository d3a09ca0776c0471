"""Cells as connection strategies see them: positions with their global indices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

__all__ = ["CellIndex", "CellSelection"]


@dataclass
class CellSelection:
    """Some cells of one type: ``positions`` (n, 3), their ``indices`` in the type's
    placement set, and the network chunk each lies in (``chunks``, (n, 3) ints)."""

    cell_type: Any
    positions: np.ndarray
    indices: np.ndarray
    chunks: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


class CellIndex:
    """Every stored cell of one type, in placement-set order, selectable by chunk.

    Loaded in one read (see :meth:`load`), so a connection strategy's jobs on a rank
    share it instead of each reading the file; a cell's row is its global index.
    """

    def __init__(self, cell_type: Any, entries: list, positions: np.ndarray):
        self.cell_type = cell_type
        counts = np.array([entry.count for entry in entries], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        self.positions = positions
        self.chunks = np.repeat(np.array([e.chunk for e in entries], dtype=np.int64).reshape(-1, 3),
                                counts, axis=0)
        self._rows: dict[tuple, list[tuple[int, int]]] = {}
        for entry, start, stop in zip(entries, starts[:-1], starts[1:]):
            if stop > start:
                self._rows.setdefault(tuple(entry.chunk), []).append((int(start), int(stop)))

    @classmethod
    def load(cls, storage: Any, cell_type: Any) -> "CellIndex":
        """Read every cell of ``cell_type`` (holding the storage lock: for jobs)."""
        entries, positions = storage.load_placement(cell_type.name, locked=True)
        return cls(cell_type, entries, positions)

    def __len__(self) -> int:
        return len(self.positions)

    def select(self, chunks: Iterable[tuple] | None = None) -> CellSelection:
        """The cells in the network chunks ``chunks`` (every cell when None)."""
        if chunks is None:
            rows = np.arange(len(self.positions), dtype=np.int64)
        else:
            ranges = sorted(r for chunk in set(map(tuple, chunks)) for r in self._rows.get(chunk, ()))
            rows = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges] or
                                  [np.empty(0, dtype=np.int64)])
        return CellSelection(self.cell_type, self.positions[rows], rows, self.chunks[rows])
