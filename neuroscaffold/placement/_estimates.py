"""Expected cells, as the plan of a compile sees them before anything is placed.

A placement strategy says how many cells it expects per chunk
(:meth:`~neuroscaffold.PlacementStrategy.estimate_cells`); :class:`CellEstimates`
gathers those answers per cell type, so that a connection strategy's
:meth:`~neuroscaffold.ConnectionStrategy.estimate_connections` can ask how many cells
of a type a chunk holds, or their density at any point, without a cell being placed.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..chunks import Chunk

__all__ = ["CellEstimates", "partner_estimate"]

#: Points of the fixed quadrature that :func:`partner_estimate` uses: post positions per
#: chunk and offsets within the radius (a fixed seed: the plan is the same every time).
POST_POINTS, BALL_POINTS = 32, 192


class CellEstimates:
    """Expected cells of every type, per chunk, from the placement strategies.

    Built by the plan from the strategies' ``estimate_cells`` answers (each asked once
    per chunk, and only when needed). A type that a strategy cannot estimate is unknown:
    its methods return None.
    """

    def __init__(self, strategies: Iterable[Any], grid: Sequence[float],
                 totals: dict[str, float | None] | None = None):
        #: the boxes that densities are looked up in: the network's chunks, or (in
        #: networks of very many chunks) regions of several of them
        self.grid = tuple(float(v) for v in grid)
        self._placing: dict[str, list] = {}
        for strategy in strategies:
            for cell_type in strategy.cell_types:
                self._placing.setdefault(cell_type.name, []).append(strategy)
        self._totals = dict(totals or {})
        self._asked: dict[tuple[str, tuple, tuple], dict | None] = {}
        self._boxes: dict[str, list] = {}
        self._densities: dict[tuple[str, str, tuple], float | None] = {}

    def total(self, name: str) -> float | None:
        """Expected cells of type ``name`` in the whole network (None: unknown)."""
        return self._totals.get(name, 0.0 if name not in self._placing else None)

    def in_chunk(self, name: str, chunk: Chunk) -> float | None:
        """Expected cells of type ``name`` in ``chunk`` (a network chunk or a region)."""
        count = 0.0
        for strategy in self._placing.get(name, ()):
            answer = self._ask(strategy, chunk)
            if answer is None:
                return None
            count += float(answer.get(name, 0.0))
        return count

    def density_at(self, name: str, points: np.ndarray) -> np.ndarray | None:
        """Expected cells/µm³ of type ``name`` at ``points`` ((n, 3), µm): each
        strategy's cells spread evenly over its partitions' part of each chunk."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        density = np.zeros(len(points))
        grid = np.array(self.grid)
        chunk_volume = float(np.prod(grid))
        indices = np.floor(points / grid).astype(np.int64)
        # the points of one question lie in a few grid boxes: a table over the boxes
        # of their bounding span, indexed by one integer per point (no sort)
        low = indices.min(axis=0)
        span = tuple((indices.max(axis=0) - low + 1).tolist())
        keys = np.ravel_multi_index(tuple((indices - low).T), span)
        present = np.flatnonzero(np.bincount(keys, minlength=int(np.prod(span))))
        boxes = (np.column_stack(np.unravel_index(present, span)) + low).tolist()
        for strategy in self._placing.get(name, ()):
            table = np.zeros(int(np.prod(span)))
            for n, index in zip(present.tolist(), boxes):
                value = self._chunk_density(strategy, name, tuple(index), chunk_volume)
                if value is None:
                    return None
                table[n] = value
            per_point = table[keys]
            inside = self._inside(strategy, points)
            density += np.where(inside, per_point, 0.0)
        return density

    def _chunk_density(self, strategy: Any, name: str, index: tuple,
                       chunk_volume: float) -> float | None:
        """Cells/µm³ of type ``name`` that ``strategy`` places in the grid box at
        ``index`` (spread over its partitions' part of it); asked once per box. The
        plan looks densities up at some 6,000 points per job region, in a few boxes
        each: computing the partitions' volume in a box anew every time was half of
        a 4x network's plan."""
        key = (strategy.get_node_name(), name, index)
        if key not in self._densities:
            chunk = Chunk(index, self.grid)
            answer = self._ask(strategy, chunk)
            cells = None if answer is None else float(answer.get(name, 0.0))
            self._densities[key] = None if cells is None else (
                cells / (_volume_in(strategy, chunk) or chunk_volume) if cells else 0.0)
        return self._densities[key]

    def _ask(self, strategy: Any, chunk: Chunk) -> dict | None:
        key = (strategy.get_node_name(), chunk.index, tuple(chunk.size))
        if key not in self._asked:
            self._asked[key] = strategy.estimate_cells(chunk)
        return self._asked[key]

    def _inside(self, strategy: Any, points: np.ndarray) -> np.ndarray:
        """Which ``points`` lie in the strategy's partitions (all, when it has none or
        they cannot say where they are)."""
        name = strategy.get_node_name()
        if name not in self._boxes:
            try:
                self._boxes[name] = [tuple(np.asarray(v, dtype=float) for v in p.bounds())
                                     for p in strategy.partitions]
            except Exception:  # a user partition without bounds: spread over the chunk
                self._boxes[name] = []
        boxes = self._boxes[name]
        if not boxes:
            return np.ones(len(points), dtype=bool)
        inside = np.zeros(len(points), dtype=bool)
        for lo, hi in boxes:
            inside |= np.all((points >= lo) & (points < hi), axis=1)
        return inside


def _volume_in(strategy: Any, chunk: Chunk) -> float:
    try:
        return float(strategy.volume_in(chunk))
    except Exception:
        return 0.0


def partner_estimate(cells: CellEstimates, chunk: Chunk, around: str, partners: str,
                     radius: float | None,
                     per_cell: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float | None:
    """Expected value, summed over the cells of type ``around`` in ``chunk``, of
    ``per_cell(distances, densities)``: for each cell, the distances to points spread
    evenly in the ball of ``radius`` around it ((k,) array) and the density of
    ``partners`` cells at those points ((m, k) over m cells); it returns (m,) values.

    Without a radius the partners are the whole population (``per_cell`` gets the
    total count as its density and no distances). A fixed quadrature with a fixed
    seed: the same plan every time, within a few per cent of the counts a compile makes.
    """
    count = cells.in_chunk(around, chunk)
    if count is None:
        return None
    if count == 0:
        return 0.0
    rng = np.random.default_rng(0)
    centres = rng.uniform(chunk.ldc, chunk.mdc, size=(POST_POINTS, 3))
    weights = cells.density_at(around, centres)
    if weights is None:
        return None
    if weights.sum() == 0:  # cells the density cannot locate: spread them evenly
        weights = np.ones(len(centres))
    if radius is None:
        total = cells.total(partners)
        if total is None:
            return None
        values = per_cell(np.empty(0), np.full((len(centres), 1), float(total)))
    else:
        directions = rng.normal(size=(BALL_POINTS, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        distances = radius * rng.random(BALL_POINTS) ** (1 / 3)
        offsets = directions * distances[:, None]
        density = cells.density_at(partners, (centres[:, None, :] + offsets).reshape(-1, 3))
        if density is None:
            return None
        values = per_cell(distances, density.reshape(len(centres), BALL_POINTS))
    return float(count * np.sum(weights * values) / np.sum(weights))


def ball_volume(radius: float) -> float:
    """The volume of a ball of ``radius`` (µm³)."""
    return 4.0 / 3.0 * np.pi * radius ** 3
