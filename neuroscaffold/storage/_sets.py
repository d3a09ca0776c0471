"""Read views of a finished network: a cell type's positions, a connection set's pairs."""

from __future__ import annotations

from typing import Any, Iterator

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

    def __len__(self) -> int:
        return self._count

    def __array__(self, dtype=None, copy=None):
        pairs = self.load_connections()
        return pairs if dtype is None else pairs.astype(dtype)

    def __repr__(self) -> str:
        return f"<ConnectivitySet {self.name!r} {self.presynaptic} -> {self.postsynaptic}>"
