"""Built-in connection strategies: all-to-all and distance-based."""

from __future__ import annotations

import numpy as np

from .. import config
from ..config import types
from ..chunks import Chunk, chunk_indices_in_box
from ..placement import CellEstimates, partner_estimate
from ._cells import CellSelection
from ._kernels import optional_kernel
from ._strategy import ConnectionStrategy

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

    def connect(self, pre: CellSelection, post: CellSelection) -> np.ndarray:
        from scipy.spatial import cKDTree  # here: loading scipy.spatial costs every command 0.5 s
        close = cKDTree(post.positions).sparse_distance_matrix(
            cKDTree(pre.positions), self.radius, output_type="ndarray"
        )
        pairs = np.column_stack([close["j"], close["i"]]).astype(np.int64)
        order = np.lexsort((pairs[:, 0], pairs[:, 1]))
        pairs = pairs[order]
        if self.kernel is not None:
            return pairs[self.rng().random(len(pairs)) < self.chance(close["v"][order])]
        if self.probability < 1:
            pairs = pairs[self.rng().random(len(pairs)) < self.probability]
        return pairs
