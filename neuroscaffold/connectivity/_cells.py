"""Cells as connection strategies see them: positions with their global indices."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = ["CellIndex", "CellSelection"]


def _made(value: Any) -> Any:
    return value() if callable(value) else value


class CellSelection:
    """Some cells of one type: ``positions`` (n, 3), their ``indices`` in the type's
    placement set, and the network chunk each lies in (``chunks``, (n, 3) ints).

    Each of the three may be given as a function that makes it when first asked for: a
    rule that never looks at them does not pay for them. ``trees``: KD-trees over
    consecutive runs of the cells, as ``(first cell, scipy cKDTree)``, when they were
    built already (the distance rule keeps one per chunk on each rank); empty otherwise.
    """

    def __init__(self, cell_type: Any, positions: np.ndarray | Callable[[], np.ndarray],
                 indices: np.ndarray | Callable[[], np.ndarray],
                 chunks: np.ndarray | Callable[[], np.ndarray], *, count: int | None = None,
                 trees: Sequence[tuple[int, Any]] = ()):
        self.cell_type = cell_type
        self._positions, self._indices, self._chunks = positions, indices, chunks
        self._count = len(self.indices) if count is None else int(count)
        self.trees = tuple(trees)

    @property
    def positions(self) -> np.ndarray:
        self._positions = _made(self._positions)
        return self._positions

    @property
    def indices(self) -> np.ndarray:
        self._indices = _made(self._indices)
        return self._indices

    @property
    def chunks(self) -> np.ndarray:
        self._chunks = _made(self._chunks)
        return self._chunks

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        name = getattr(self.cell_type, "name", self.cell_type)
        return f"CellSelection({name!r}, {len(self):,} cells)"


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
