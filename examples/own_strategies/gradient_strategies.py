"""Your own strategies: the example of docs/strategies.md.

``DepthGradient`` places cells whose density changes linearly with depth (y) through
its partitions; ``GaussianConnectivity`` connects pairs with a probability that falls
off with distance. ``model.yaml``, next to this file, uses both:

    neuroscaffold compile examples/own_strategies/model.yaml -o own.hdf5

(no PYTHONPATH needed: the configuration's folder is on the import path while it loads).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from neuroscaffold import ConnectionStrategy, PlacementStrategy, config, pool_cache
from neuroscaffold.config import types
from neuroscaffold.placement import apportion, chunks_in_box


@config.node
class DepthGradient(PlacementStrategy):
    """Cells whose density goes linearly from ``bottom_density`` (at the bottom of each
    partition) to ``top_density`` (at its top), along y."""

    bottom_density = config.attr(type=types.number(min=0), required=True,
                                 doc="cells/µm³ at the bottom (lowest y) of each partition")
    top_density = config.attr(type=types.number(min=0), required=True,
                              doc="cells/µm³ at the top (highest y) of each partition")

    def _density_integral(self, lo, hi, p_lo, p_hi) -> float:
        """Expected cells in box [lo, hi) of a partition spanning y p_lo..p_hi."""
        area = (hi[0] - lo[0]) * (hi[2] - lo[2])
        slope = (self.top_density - self.bottom_density) / (p_hi - p_lo)

        def antiderivative(y):
            return self.bottom_density * y + slope * (y - p_lo) ** 2 / 2

        return area * (antiderivative(hi[1]) - antiderivative(lo[1]))

    @pool_cache
    def cells_per_chunk(self) -> dict:
        """How many cells each chunk gets: computed once per rank (not once per job)
        over the whole strategy, so the rounded counts add up to the expected total."""
        grid = self.scaffold_chunk_size()
        expected = {}
        for partition in self.partitions:
            p_lo, p_hi = partition.bounds()
            for chunk in chunks_in_box(p_lo, p_hi, grid):
                lo, hi, volume = partition.overlap(chunk)
                if volume > 0:
                    expected[chunk.index] = expected.get(chunk.index, 0.0) + \
                        self._density_integral(lo, hi, p_lo[1], p_hi[1])
        keys = sorted(expected)
        total = round(sum(expected.values()))
        return dict(zip(keys, apportion([expected[k] for k in keys], total)))

    def place(self, chunk, indicators):
        rng = self.rng()  # seeded by the chunk: the same cells on any number of ranks
        n = self.cells_per_chunk().get(chunk.index, 0)
        positions = []
        for partition in self.partitions:
            lo, hi, volume = partition.overlap(chunk)
            if volume <= 0:
                continue
            p_lo, p_hi = (b[1] for b in partition.bounds())
            top = max(self.bottom_density, self.top_density)
            found = np.empty((0, 3))
            while len(found) < n:  # rejection sampling of the linear profile
                points = rng.uniform(lo, hi, size=(2 * n + 8, 3))
                depth = (points[:, 1] - p_lo) / (p_hi - p_lo)
                density = self.bottom_density + depth * (self.top_density - self.bottom_density)
                keep = rng.uniform(0, top, size=len(points)) < density
                found = np.concatenate([found, points[keep]])
            positions.append(found[:n])
            break  # this example's strategies use one partition per chunk
        for cell_type in self.cell_types:
            self.place_cells(cell_type, np.concatenate(positions or [np.empty((0, 3))]), chunk)


@config.node
class GaussianConnectivity(ConnectionStrategy):
    """Each pair closer than ``3 * sigma`` connects with probability
    ``peak * exp(-d² / (2 sigma²))``."""

    sigma = config.attr(type=types.positive, required=True,
                        doc="width of the Gaussian fall-off of the probability (µm)")
    peak = config.attr(type=types.number(min=0, max=1), default=1.0,
                       doc="probability of connecting two cells at distance 0")

    def presynaptic_chunks(self, chunk):
        """Only chunks within 3 sigma of the job's chunk can hold partners."""
        reach = 3 * self.sigma
        near = chunks_in_box(chunk.ldc - reach, chunk.mdc + reach, self.scaffold_chunk_size())
        return [c.index for c in near]

    def connect(self, pre, post):
        close = cKDTree(post.positions).sparse_distance_matrix(
            cKDTree(pre.positions), 3 * self.sigma, output_type="ndarray")
        chance = self.peak * np.exp(-close["v"] ** 2 / (2 * self.sigma ** 2))
        keep = self.rng().random(len(close)) < chance
        # local indices: row of `pre`, row of `post`, as an (m, 2) integer array
        return np.column_stack([close["j"][keep], close["i"][keep]]).astype(np.int64)
