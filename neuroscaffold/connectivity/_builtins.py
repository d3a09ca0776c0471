"""Built-in connection strategies: all-to-all and distance-based."""

from __future__ import annotations

import numpy as np

from .. import config
from ..config import types
from ..chunks import Chunk, chunk_indices_in_box
from ..placement import CellEstimates, partner_estimate
from ..services.pool import pool_cache
from ._cells import CellSelection
from ._kernels import optional_kernel
from ._strategy import ConnectionStrategy
from . import _trees
from ._trees import ChunkTrees, pairs_within

__all__ = ["AllToAll", "DistanceConnectivity"]


@config.node
class AllToAll(ConnectionStrategy):
    """Every presynaptic cell to every postsynaptic cell."""

    def connect(self, pre: CellSelection, post: CellSelection) -> np.ndarray:
        # post-major, pre within: the stored (post, pre) order, so nothing is sorted
        pairs = np.empty((len(post), len(pre), 2), dtype=np.int64)
        pairs[:, :, 0] = np.arange(len(pre))
        pairs[:, :, 1] = np.arange(len(post))[:, None]
        return pairs.reshape(-1, 2)

    def estimate_connections(self, chunk: Chunk, cells: CellEstimates) -> float | None:
        pre, post = cells.total(self.presynaptic.name), cells.in_chunk(self.postsynaptic.name, chunk)
        if pre is None or post is None:
            return None
        if self.presynaptic.name == self.postsynaptic.name and not self.autapses:
            return post * max(pre - 1, 0.0)
        return pre * post


@config.node
class DistanceConnectivity(ConnectionStrategy):
    """Pairs no farther apart than ``radius`` (µm), each kept with ``probability``,
    times ``kernel.probability(d)`` when a distance ``kernel`` is given.

    A job looks for presynaptic cells only in the chunks within ``radius`` of its own,
    with a KD-tree over them.
    """

    radius = config.attr(type=types.positive, required=True,
                         doc="largest distance between connected cells (µm)")
    probability = config.attr(type=types.number(min=0, max=1), default=1.0,
                              doc="chance that a pair within the radius is connected")
    kernel = optional_kernel(doc="distance-dependent chance, multiplied with "
                         "'probability': {type: gaussian, sigma: µm, peak: p} or "
                         "{type: exponential, scale: µm, peak: p}; 'radius' stays the cut-off")

    def chance(self, distances: np.ndarray) -> np.ndarray:
        """The chance that a pair at each of ``distances`` (within the radius) connects."""
        chance = np.full(np.shape(distances), float(self.probability))
        if self.kernel is not None:
            chance *= self.kernel.probability(distances)
        return chance

    def presynaptic_chunks(self, chunk: Chunk) -> np.ndarray:
        grid = self.scaffold_chunk_size()
        return chunk_indices_in_box(chunk.ldc - self.radius, chunk.mdc + self.radius, grid)

    def estimate_connections(self, chunk: Chunk, cells: CellEstimates) -> float | None:
        volume = 4.0 / 3.0 * np.pi * self.radius ** 3

        def partners(distances: np.ndarray, density: np.ndarray) -> np.ndarray:
            return volume * (density * self.chance(distances)).mean(axis=1)

        return partner_estimate(cells, chunk, self.postsynaptic.name, self.presynaptic.name,
                                self.radius, partners)

    def estimate_cache_memory(self, cells: CellEstimates) -> float:
        total = cells.total(self.presynaptic.name)
        return min(_trees.TREE_CACHE_BYTES, (total or 0.0) * _trees.TREE_BYTES_PER_CELL)

    @pool_cache
    def presynaptic_trees(self) -> ChunkTrees:
        """The presynaptic cells of each chunk with their KD-tree, built once per rank
        (a job uses the trees of up to 27 chunks, its neighbours' jobs the same ones)."""
        return ChunkTrees(self.get_cells()[self.presynaptic.name])

    def presynaptic_cells(self, chunk: Chunk) -> CellSelection:
        return self.presynaptic_trees().select(self.presynaptic_chunks(chunk))

    def connect(self, pre: CellSelection, post: CellSelection) -> np.ndarray:
        """Every pair within the radius, in (post, pre) order, each kept with its chance
        (one draw per pair, in that order: the same pairs whatever found them)."""
        pre_of, post_of, distances = pairs_within(pre, post, self.radius)
        pairs = np.column_stack([pre_of, post_of])
        if self.kernel is not None:
            return pairs[self.rng().random(len(pairs)) < self.chance(distances)]
        if self.probability < 1:
            pairs = pairs[self.rng().random(len(pairs)) < self.probability]
        return pairs
