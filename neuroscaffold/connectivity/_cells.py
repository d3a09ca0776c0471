"""Cells as connection strategies see them: positions with their global indices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

__all__ = ["CellIndex", "CellSelection"]


@dataclass
class CellSelection:
    """Some cells of one type: ``positions`` (n, 3), their ``indices`` in the type's
    placement set, and the network chunk each lies in (``chunks``, (n, 3) ints, made
    when first asked for)."""

    cell_type: Any
    positions: np.ndarray
    indices: np.ndarray
    _chunks: Any  # the chunks array, or a function that makes it

    @property
    def chunks(self) -> np.ndarray:
        if callable(self._chunks):
            self._chunks = self._chunks()
        return self._chunks

    def __len__(self) -> int:
        return len(self.indices)


class CellIndex:
    """Every stored cell of one type, selectable by chunk, read only when selected.

    Holds the type's block table (where each chunk's cells are stored, and the index of
    its first cell in the placement set), not the cells: a job reads the cells of its
    chunks, so no rank ever holds a whole population.
    """

    def __init__(self, cell_type: Any, table: Any):
        self.cell_type = cell_type
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def select(self, chunks: Iterable[tuple] | None = None) -> CellSelection:
        """The cells in the network chunks ``chunks`` (every cell when None)."""
        numbers = self.table.select(chunks)
        positions, indices = self.table.read(numbers)
        return CellSelection(self.cell_type, positions, indices,
                             lambda: self.table.chunks_of(numbers))
