"""KD-trees of one cell type, one per network chunk, kept on a rank while a strategy's
jobs run.

A distance rule's job pairs the cells of its chunk with those of every chunk within
the radius: up to 27 chunks (more when the radius exceeds a chunk). A tree over all of
them, built per job, puts each cell into up to 27 trees, and building trees was most of
the rule's time. Here each chunk's tree is built the first time a job of this rank
needs it and kept for the next jobs, up to :data:`TREE_CACHE_BYTES` per store (the
least recently used goes first), so no rank's memory grows with the network.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Iterable, NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from ._cells import CellIndex, CellSelection

__all__ = ["TREE_CACHE_BYTES", "ChunkTrees"]

#: Bytes of trees (with their cells) a store keeps, at most.
TREE_CACHE_BYTES = 48 << 20
#: Bytes of one tree node (scipy's ``ckdtreenode``, 9 words) with its compact bounds
#: (2 x 3 doubles), for the store's accounting.
_NODE_BYTES = 9 * 8 + 2 * 3 * 8


class _ChunkCells(NamedTuple):
    chunk: tuple[int, int, int]
    tree: Any  # a cKDTree over the chunk's positions (its ``data``), None if empty
    indices: np.ndarray  # each cell's index in the placement set

    @property
    def nbytes(self) -> int:
        if self.tree is None:
            return 64
        return (self.tree.data.nbytes + self.tree.indices.nbytes + self.indices.nbytes
                + self.tree.size * _NODE_BYTES)


class ChunkTrees:
    """The cells of one type per network chunk, each with its KD-tree.

    :meth:`select` gives the cells of some chunks as one :class:`CellSelection` whose
    ``trees`` hold each chunk's tree; its positions, indices and chunks are joined only
    if asked for. Safe to share between the threads of a rank (the main rank runs two
    jobs at once); a tree two threads miss together is built twice, one is kept.
    """

    def __init__(self, cells: CellIndex, budget: int = TREE_CACHE_BYTES):
        self.cells = cells
        self.budget = budget
        self.size = 0
        self._kept: OrderedDict[tuple[int, int, int], _ChunkCells] = OrderedDict()
        self._lock = threading.Lock()
        self.built = 0  # trees built (a store's own count, for tests and benchmarks)

    def select(self, chunks: Iterable[Any]) -> CellSelection:
        """The cells of the network chunks ``chunks`` (indices, as a list or an (n, 3)
        array), chunk after chunk in the given order."""
        rows = np.asarray(chunks, dtype=np.int64).reshape(-1, 3).tolist()
        parts = [part for part in map(self._chunk, map(tuple, rows)) if part.tree is not None]
        counts = [part.tree.n for part in parts]
        starts = np.cumsum([0, *counts[:-1]]).tolist()

        def joined(arrays: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
            return np.concatenate(arrays) if arrays else empty

        return CellSelection(
            self.cells.cell_type,
            lambda: joined([p.tree.data for p in parts], np.empty((0, 3))),
            lambda: joined([p.indices for p in parts], np.empty(0, dtype=np.int64)),
            lambda: np.repeat(np.array([p.chunk for p in parts], dtype=np.int64).reshape(-1, 3),
                              counts, axis=0),
            count=sum(counts),
            trees=[(start, part.tree) for start, part in zip(starts, parts)],
        )

    def _chunk(self, chunk: tuple[int, int, int]) -> _ChunkCells:
        with self._lock:
            part = self._kept.get(chunk)
            if part is not None:
                self._kept.move_to_end(chunk)
                return part
        positions, indices = self.cells.table.read(self.cells.table.select([chunk]))
        tree = cKDTree(positions) if len(positions) else None
        part = _ChunkCells(chunk, tree, indices)
        with self._lock:
            self.built += tree is not None
            if chunk not in self._kept:
                self._kept[chunk] = part
                self.size += part.nbytes
                while self.size > self.budget and len(self._kept) > 1:
                    self.size -= self._kept.popitem(last=False)[1].nbytes
        return part
