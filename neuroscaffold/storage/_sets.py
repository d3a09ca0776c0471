"""Read views of a finished network: a cell type's positions, a connection set's pairs."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["ConnectivitySet", "PlacementSet"]


class PlacementSet:
    """The cells of one type: their positions, in a fixed order (chunk, strategy).

    ``np.asarray(placement_set)`` and :meth:`load_positions` give the ``(n, 3)`` array
    (one read); a cell's index in it is the index connectivity sets use.
    """

    def __init__(self, storage: Any, cell_type: str):
        self._storage = storage
        self.cell_type = cell_type

    def load_positions(self) -> np.ndarray:
        """The positions of every cell, ``(n, 3)`` (µm)."""
        return self._storage.load_positions(self.cell_type)

    def chunks(self) -> list[tuple[int, int, int]]:
        """The network chunks that hold (or were given) cells of this type."""
        table = self._storage.placement_table(self.cell_type)
        return table.chunks() if table is not None else []

    def chunk_ranges(self) -> dict[tuple[int, int, int], tuple[int, int]]:
        """Chunk -> ``(start, stop)``: the cells of each chunk are the indices
        ``start .. stop-1`` (a set is ordered by chunk, so each chunk's cells are one
        run). With :meth:`ConnectivitySet.load_incoming`, a process that simulates the
        cells of some chunks reads only what it needs."""
        table = self._storage.placement_table(self.cell_type)
        if table is None:
            return {}
        ranges: dict[tuple[int, int, int], tuple[int, int]] = {}
        for number, block in enumerate(table.blocks):
            start, stop = int(table.starts[number]), int(table.starts[number + 1])
            first = ranges.get(block.chunk, (start, start))[0]
            ranges[block.chunk] = (first, stop)
        return ranges

    def load_positions_in(self, chunks: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """The positions of the cells in ``chunks`` (one read per block, nothing else
        read) and their indices in the set: ``((k, 3) float64, (k,) int64)``."""
        table = self._storage.placement_table(self.cell_type)
        if table is None:
            return np.empty((0, 3)), np.empty(0, dtype=np.int64)
        return table.read(table.select(chunks))

    def __len__(self) -> int:
        return self._storage.count_cells(self.cell_type)

    def __array__(self, dtype=None, copy=None):
        positions = self.load_positions()
        return positions if dtype is None else positions.astype(dtype)

    def __repr__(self) -> str:
        return f"<PlacementSet {self.cell_type!r}>"


class ConnectivitySet:
    """The connections of one strategy: ``(m, 2)`` pairs of (presynaptic index,
    postsynaptic index) into the placement sets of ``presynaptic`` and ``postsynaptic``."""

    def __init__(self, storage: Any, name: str):
        self._storage = storage
        self.name = name
        self._count, meta = storage.connectivity_meta(name)
        self.presynaptic = meta.get("presynaptic")
        self.postsynaptic = meta.get("postsynaptic")

    def load_connections(self) -> np.ndarray:
        """Every pair, ``(m, 2)`` int64, in postsynaptic chunk order (one read)."""
        return self._storage.read_connections(self.name)[0]

    def iter_connections(self, rows: int = 1 << 20) -> Iterator[np.ndarray]:
        """The pairs in the order of :meth:`load_connections`, ``rows`` at a time (one
        read each): for sets too large to hold at once."""
        return self._storage.iter_rows("connectivity", self.name, rows)

    def chunks(self) -> list[tuple[int, int, int]]:
        """The postsynaptic chunks that hold pairs of this set: pairs are stored grouped
        by the chunk of their postsynaptic cell."""
        return self._storage.connectivity_table(self.name).chunks()

    def load_incoming(self, chunks: Iterable[Sequence[int]] | None = None,
                      cells: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """The pairs whose postsynaptic cell is in ``chunks`` (network chunks, as
        :meth:`PlacementSet.chunk_ranges` names them) or among ``cells`` (indices into
        the postsynaptic placement set), ``(k, 2)`` int64, in stored order.

        Only the blocks of those chunks are read (for ``cells``: the chunks that hold
        them), so a process that owns a share of the postsynaptic cells reads a share
        of the set. Give one of the two.
        """
        if (chunks is None) == (cells is None):
            raise TypeError("load_incoming() takes chunks or cells (one of them)")
        table = self._storage.connectivity_table(self.name)
        if chunks is not None:
            return table.read(table.select(chunks))[0]
        wanted = np.unique(np.asarray(cells, dtype=np.int64))
        ranges = PlacementSet(self._storage, self.postsynaptic).chunk_ranges()
        holding = [chunk for chunk, (start, stop) in ranges.items()
                   if np.searchsorted(wanted, start) < np.searchsorted(wanted, stop)]
        rows = table.read(table.select(holding))[0]
        return rows[np.isin(rows[:, 1], wanted)]

    def __len__(self) -> int:
        return self._count

    def __array__(self, dtype=None, copy=None):
        pairs = self.load_connections()
        return pairs if dtype is None else pairs.astype(dtype)

    def __repr__(self) -> str:
        return f"<ConnectivitySet {self.name!r} {self.presynaptic} -> {self.postsynaptic}>"
