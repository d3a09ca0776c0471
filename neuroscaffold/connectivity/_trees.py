"""KD-trees of one cell type, one per network chunk, kept on a rank while a strategy's
jobs run, and the pairs of cells within a distance found with them.

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

from ._cells import CellIndex, CellSelection

__all__ = ["TREE_BYTES_PER_CELL", "TREE_CACHE_BYTES", "ChunkTrees", "kd_tree", "pairs_within", "radix_order"]

#: Bytes of trees (with their cells) a store keeps, at most.
TREE_CACHE_BYTES = 16 << 20
#: Bytes of one tree node, for the store's accounting: scipy's ``ckdtreenode`` is 9
#: words; measured with its share of the vector, ~107 bytes.
_NODE_BYTES = 120
#: Bytes a store holds per cell: position, index, the tree's index and its nodes (one
#: node per ~5.6 cells with scipy's default leaf size of 16).
TREE_BYTES_PER_CELL = 24 + 8 + 8 + _NODE_BYTES // 5


def kd_tree(positions: np.ndarray) -> Any:
    """A KD-tree over ``positions``, split at the midpoint of the cells' extent and
    without shrinking its boxes: about twice as fast to build as scipy's default (which
    splits at the median) and as fast to search, for cells spread through a chunk."""
    from scipy.spatial import cKDTree  # here: loading scipy.spatial costs every command 0.5 s

    return cKDTree(positions, balanced_tree=False, compact_nodes=False)


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
    jobs at once): a chunk that two threads miss together is built once.
    """

    def __init__(self, cells: CellIndex, budget: int | None = None):
        self.cells = cells
        self.budget = TREE_CACHE_BYTES if budget is None else budget
        self.size = 0
        self._kept: OrderedDict[tuple[int, int, int], _ChunkCells] = OrderedDict()
        self._lock = threading.Lock()  # the dictionaries; never held while building
        self._building: dict[tuple[int, int, int], threading.Lock] = {}
        self.built = 0  # trees built (a store's own count, for tests and benchmarks)

    def select(self, chunks: Iterable[Any]) -> CellSelection:
        """The cells of the network chunks ``chunks`` (indices, as a list or an (n, 3)
        array), chunk after chunk, by the set index of each chunk's first cell."""
        rows = np.asarray(chunks, dtype=np.int64).reshape(-1, 3).tolist()
        parts = [part for part in map(self._chunk, map(tuple, rows)) if part.tree is not None]
        # in placement-set order where the chunks' cells do not interleave (the usual
        # case): pairs_within then orders the pairs without looking the indices up
        parts.sort(key=lambda part: int(part.indices[0]))
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

    def _kept_part(self, chunk: tuple[int, int, int]) -> _ChunkCells | None:
        with self._lock:
            part = self._kept.get(chunk)
            if part is not None:
                self._kept.move_to_end(chunk)
            return part

    def _chunk(self, chunk: tuple[int, int, int]) -> _ChunkCells:
        part = self._kept_part(chunk)
        if part is not None:
            return part
        with self._lock:
            building = self._building.setdefault(chunk, threading.Lock())
        with building:  # a chunk another thread is building is waited for, not rebuilt
            part = self._kept_part(chunk)
            if part is not None:
                return part
            positions, indices = self.cells.table.read(self.cells.table.select([chunk]))
            tree = kd_tree(positions) if len(positions) else None
            part = _ChunkCells(chunk, tree, indices)
            with self._lock:
                self._building.pop(chunk, None)
                self.built += tree is not None
                self._kept[chunk] = part
                self.size += part.nbytes
                while self.size > self.budget and len(self._kept) > 1:
                    self.size -= self._kept.popitem(last=False)[1].nbytes
        return part


def pairs_within(pre: CellSelection, post: CellSelection, radius: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of a ``pre`` and a ``post`` cell no farther apart than ``radius``:
    ``(pre rows, post rows, distances)``, ordered by post row, then by the pre cell's
    index in the placement set. The order depends on the cells only, never on the
    trees that found them (so neither do the pairs a draw per pair keeps).

    Uses ``pre.trees`` when the selection has them, else builds one tree over ``pre``.
    """
    post_tree = kd_tree(post.positions)
    found = [(start, post_tree.sparse_distance_matrix(tree, radius, output_type="ndarray"))
             for start, tree in pre.trees or [(0, kd_tree(pre.positions))]]
    post_of = np.concatenate([close["i"] for _, close in found])
    pre_of = np.concatenate([close["j"] + start for start, close in found])
    indices = pre.indices
    if len(indices) > 1 and not np.all(indices[1:] > indices[:-1]):
        rank = np.empty(len(indices), dtype=np.int64)  # each row's place in set order
        rank[np.argsort(indices)] = np.arange(len(indices))
        order = radix_order(post_of, rank[pre_of])
    else:
        order = radix_order(post_of, pre_of)
    distances = np.concatenate([close["v"] for _, close in found])[order]
    return pre_of[order], post_of[order], distances


def radix_order(*keys: np.ndarray) -> np.ndarray:
    """The order that sorts rows by ``keys`` (non-negative integer arrays, the most
    significant first), ties kept in place.

    Least significant 16 bits first, each pass numpy's stable sort of ``uint16``
    values, which is a radix sort: linear, several times faster than sorting one
    combined 64-bit key (the distance rule's jobs spent a fifth of their time there).
    """
    order = np.arange(len(keys[0]) if keys else 0)
    for key in reversed(keys):
        key = np.asarray(key)
        if not len(key):
            continue
        top, shift = int(key.max()), 0
        while True:
            digit = (key[order] >> shift).astype(np.uint16)  # the wrap keeps the low bits
            order = order[np.argsort(digit, kind="stable")]
            shift += 16
            if top >> shift == 0:
                break
    return order
