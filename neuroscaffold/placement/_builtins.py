"""Built-in placement strategies: uniform random, fixed positions, a regular lattice."""

from __future__ import annotations

import numpy as np

from .. import config
from ..config import types
from ..config._node import raise_at
from ..chunks import Chunk
from ._indicators import Indicators
from ._chunked import job_regions
from ._partitions import describe_box, partition_overlap, union_boxes
from ._strategy import PlacementStrategy

__all__ = ["FixedPositions", "LatticePlacement", "RandomPlacement"]


def uniform_in(rng: np.random.Generator, boxes: list, n: int) -> np.ndarray:
    """``n`` points drawn uniformly and independently over disjoint ``boxes`` (each
    lands in a box with a chance in proportion to its volume)."""
    volumes = np.array([volume for *_, volume in boxes], dtype=float)
    if n == 0 or not len(boxes) or volumes.sum() <= 0:
        return np.empty((0, 3))
    shares = rng.multinomial(n, volumes / volumes.sum())
    return np.concatenate([rng.uniform(lo, hi, size=(k, 3))
                           for (lo, hi, _), k in zip(boxes, shares)])


def _require_partitions(strategy: PlacementStrategy) -> None:
    if not strategy.partitions:
        raise_at(strategy, None, "missing required key 'partitions'")


@config.node
class RandomPlacement(PlacementStrategy):
    """Cells at uniformly random positions in the partitions; as many per chunk as the
    indicators guess."""

    #: places its cell types' density (or count) over its partitions: two such
    #: strategies may not fill one type into overlapping partitions
    fills_density = True

    def validate(self) -> None:
        super().validate()
        _require_partitions(self)
        for cell_type in self.cell_types:
            if (self.density, self.count, cell_type.density, cell_type.count) == (None,) * 4:
                raise_at(self, None, f"cell type '{cell_type.name}' needs a density or a "
                                     "count to be placed")

    def place(self, chunk: Chunk, indicators: Indicators) -> None:
        rng = self.rng(chunk)
        boxes = union_boxes(self.partitions, chunk)
        for name, indicator in indicators.items():
            self.place_cells(name, uniform_in(rng, boxes, indicator.guess(chunk)), chunk)


@config.node
class FixedPositions(PlacementStrategy):
    """Cells at the given ``positions`` (a list of ``[x, y, z]``)."""

    positions = config.attr(type=types.list_of(types.vector(3)), required=True,
                            doc="the cells' positions, a list of [x, y, z] (µm) inside the network")

    def get_chunks(self, chunk_size=None) -> list[Chunk]:
        grid = self.scaffold_chunk_size()
        points = np.array(self.positions, dtype=float).reshape(-1, 3)
        indices = {tuple(int(v) for v in i) for i in np.floor(points / np.array(grid))}
        return job_regions([Chunk(i, grid) for i in sorted(indices)], grid, chunk_size)

    def volume_in(self, chunk: Chunk) -> float:
        return 0.0

    def estimate_cells(self, chunk: Chunk) -> dict[str, float]:
        points = np.array(self.positions, dtype=float).reshape(-1, 3)
        inside = int(np.count_nonzero(np.all((points >= chunk.ldc) & (points < chunk.mdc), axis=1)))
        return {cell_type.name: float(inside) for cell_type in self.cell_types}

    def place(self, chunk: Chunk, indicators: Indicators) -> None:
        points = np.array(self.positions, dtype=float).reshape(-1, 3)
        inside = np.all((points >= chunk.ldc) & (points < chunk.mdc), axis=1)
        for cell_type in self.cell_types:
            self.place_cells(cell_type.name, points[inside], chunk)


@config.node
class LatticePlacement(PlacementStrategy):
    """Cells on a regular grid with the given ``spacing``, filling each partition
    (the first point sits half a spacing in from the partition's lower corner)."""

    spacing = config.attr(type=types.list_of(types.positive, size=3), required=True,
                          doc="distance between neighbouring lattice points along x, y, z (µm)")

    def validate(self) -> None:
        super().validate()
        _require_partitions(self)
        for i, first in enumerate(self.partitions):
            for second in self.partitions[i + 1:]:
                shared = partition_overlap(first, second)
                if shared is not None:
                    raise_at(self, "partitions", f"partitions '{first.name}' and "
                             f"'{second.name}' overlap ({describe_box(*shared)}): a lattice "
                             "fills each partition on its own grid, so the cells there would "
                             "be doubled; give partitions that do not overlap")

    def estimate_cells(self, chunk: Chunk) -> dict[str, float]:
        spacing = np.array(self.spacing, dtype=float)
        points = sum(len(_lattice_in(p.bounds(), spacing, chunk)) for p in self.partitions)
        return {cell_type.name: float(points) for cell_type in self.cell_types}

    def place(self, chunk: Chunk, indicators: Indicators) -> None:
        spacing = np.array(self.spacing, dtype=float)
        points = [_lattice_in(p.bounds(), spacing, chunk) for p in self.partitions]
        for cell_type in self.cell_types:
            self.place_cells(cell_type.name, np.concatenate(points), chunk)


def _lattice_in(bounds, spacing: np.ndarray, chunk: Chunk) -> np.ndarray:
    """The lattice points of a partition that fall in ``chunk``.

    Point ``k`` along an axis sits at ``lo + (k + 0.5) * spacing``; the index range of
    a chunk comes from the same expression on both sides of every chunk border, so
    each point belongs to exactly one chunk.
    """
    lo, hi = bounds

    def first_index(limit):
        return np.ceil((limit - lo) / spacing - 0.5).astype(int)

    start = np.maximum(first_index(chunk.ldc), 0)
    stop = np.minimum(first_index(chunk.mdc), first_index(hi))
    if np.any(stop <= start):
        return np.empty((0, 3))
    axes = [lo[a] + (np.arange(start[a], stop[a]) + 0.5) * spacing[a] for a in range(3)]
    grid = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in grid], axis=1)
