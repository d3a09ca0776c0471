"""``strategy: poisson_disk``: cells that do not overlap, seamless across chunks.

No two cells this strategy places are closer than the sum of their radii, whatever
their types, also across the borders of chunks that different ranks place:

* **Colours.** A job region gets one of 8 colours from the parity of its index
  (``i % 2 + 2 (j % 2) + 4 (k % 2)``), so two regions that touch (by a face, an edge or
  a corner) never share a colour. A job waits for the jobs of the touching regions of
  lower colour (pool dependencies) and treats the cells they placed near the border as
  fixed. Regions of one colour never touch, so they run at once on any rank.
* **What a job sees.** A job returns the cells it placed within the halo (twice the
  largest radius) of its faces; the jobs that wait for it get them with their
  arguments (:class:`NeighbourCells` gathers its dependencies' results when the job
  is sent to a rank). Neighbours committed by an earlier attempt (``--resume``) are
  read from storage instead. Either way a job sees exactly the lower-colour cells near
  it, so every region's cells are the same at any rank count and after a resume.
* **Regions.** A job's region is at least the halo wide (the network's chunks, or
  a block of them when they are smaller: :meth:`PoissonDiskPlacement.region_size`).
* **Counts.** The strategy places exactly as many cells as ``random`` would (the
  cell type's or the strategy's ``density`` or ``count``, spread over the chunks at
  random): the density is exact, never lowered. A density that cannot be packed is
  refused when the configuration loads, naming the largest one that can.
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np

from .. import config
from ..chunks import Chunk
from ..config._node import config_root, raise_at
from ..exceptions import PackingError
from ._builtins import RandomPlacement
from ._chunked import dependency_jobs
from ._disk import MAX_VOLUME_FRACTION, sample_disk, sphere_volume
from ._indicators import Indicators, first_given
from ._partitions import union_boxes, union_volume

__all__ = ["NeighbourCells", "PoissonDiskPlacement"]

_OFFSETS = [o for o in itertools.product((-1, 0, 1), repeat=3) if o != (0, 0, 0)]


def colour(index: Sequence[int]) -> int:
    """The colour of a job region: regions that touch never share one."""
    return int(index[0] % 2 + 2 * (index[1] % 2) + 4 * (index[2] % 2))


def _near_faces(points: np.ndarray, region: Chunk, halo: float) -> np.ndarray:
    """The ``points`` of ``region`` within ``halo`` of one of its faces."""
    inner = np.all((points >= region.ldc + halo) & (points < region.mdc - halo), axis=1)
    return points[~inner]


def _around(points: np.ndarray, region: Chunk, halo: float) -> np.ndarray:
    """The ``points`` within ``halo`` of ``region``'s box, in a fixed order."""
    close = np.all((points >= region.ldc - halo) & (points < region.mdc + halo), axis=1)
    points = points[close]
    return points[np.lexsort(points.T[::-1])]


def _carried(halos: list[dict[str, np.ndarray]], stored: list[Chunk]) -> "NeighbourCells":
    """A :class:`NeighbourCells` as it arrives on a rank: its jobs' results in hand."""
    cells = NeighbourCells([], stored)
    cells._halos = halos
    return cells


class NeighbourCells:
    """A job's argument: the cells of its lower-colour neighbours, from the ``jobs``
    that placed them in this compile (their results, gathered when the job is sent:
    the jobs have ended by then) and the ``stored`` regions an earlier attempt placed."""

    def __init__(self, jobs: list, stored: list[Chunk]):
        self.jobs = jobs
        self.stored = stored
        self._halos: list[dict[str, np.ndarray]] | None = None

    def halos(self) -> list[dict[str, np.ndarray]]:
        if self._halos is None:
            return [job.result for job in self.jobs]
        return self._halos

    def __reduce__(self):
        return (_carried, (self.halos(), self.stored))

    def fixed(self, strategy: "PoissonDiskPlacement", network: Any, region: Chunk,
              halo: float) -> list[tuple[float, np.ndarray]]:
        """``(radius, points)`` of the neighbours' cells near ``region``, per type."""
        radii = {ct.name: float(ct.radius) for ct in strategy.cell_types}
        gathered: dict[str, list[np.ndarray]] = {name: [] for name in radii}
        for halo_cells in self.halos():
            for name, points in halo_cells.items():
                gathered[name].append(points)
        if self.stored:
            grid = strategy.scaffold_chunk_size()
            for name in radii:
                table = network.storage.cells(name)
                for neighbour in self.stored:
                    wanted = [c.index for c in neighbour.subchunks(grid)]
                    numbers = [n for n in table.select(wanted)
                               if table.blocks[n].strategy == strategy.name]
                    rows, _ = table.read(numbers)
                    gathered[name].append(_near_faces(rows, neighbour, halo))
        return [(radii[name], _around(np.concatenate(pieces), region, halo))
                for name, pieces in gathered.items() if pieces]


@config.node
class PoissonDiskPlacement(RandomPlacement):
    """Cells at random positions in the partitions, no two closer than the sum of their
    radii (the cell types' ``radius``), also across chunk borders; as many per chunk as
    ``random`` places."""

    #: chunks get their share of cells give or take one (see ``_indicators._spread``)
    even_counts = True

    def validate(self) -> None:
        super().validate()
        root = config_root(self)
        geometry = getattr(root, "network", None) if root is not self else None
        if geometry is None:
            return  # checked again once in a configuration
        volume = union_volume(self.partitions, geometry)
        if volume <= 0:
            return
        fractions = {}
        for cell_type in self.cell_types:
            count = first_given(self.count, cell_type.count)
            density = count / volume if count is not None else first_given(self.density, cell_type.density)
            fractions[cell_type.name] = (float(density or 0.0), sphere_volume(cell_type.radius))
        total = sum(d * v for d, v in fractions.values())
        if total > MAX_VOLUME_FRACTION:
            name, (density, sphere) = max(fractions.items(), key=lambda kv: kv[1][0] * kv[1][1])
            others = total - density * sphere
            largest = max(MAX_VOLUME_FRACTION - others, 0.0) / sphere
            raise_at(self, None, f"cell type '{name}' at {density:.4g} cells/µm³ cannot be packed "
                                 f"at radius {_radius(self, name):g} µm (a volume fraction of "
                                 f"{total:.3f} with the other types here, above the "
                                 f"{MAX_VOLUME_FRACTION:.2f} that poisson_disk packs): the largest "
                                 f"packable density is {largest:.4g} cells/µm³")

    def halo(self) -> float:
        """Twice the largest radius: no cell farther from a border can conflict with
        a neighbour's cell."""
        return 2.0 * max((float(ct.radius) for ct in self.cell_types), default=0.0)

    def region_size(self, chunk_size: Sequence[float] | None = None) -> tuple[float, ...]:
        """The size of a job's region: ``chunk_size`` (default: the network's chunks),
        made a whole multiple of the network's chunks at least :meth:`halo` wide, so
        that regions of one colour are always farther apart than any two cells must be."""
        grid = np.array(self.scaffold_chunk_size(), dtype=float)
        size = grid if chunk_size is None else np.broadcast_to(np.asarray(chunk_size, float), (3,))
        enlarged = np.where(size < self.halo(), grid * np.ceil(self.halo() / grid), size)
        return tuple(float(v) for v in enlarged)

    def queued_regions(self) -> list[Chunk]:
        return self.get_chunks(self.region_size())

    def queue(self, pool: Any, chunk_size: Sequence[float] | None = None) -> None:
        """One job per region, in colour order; each waits for its lower-colour
        neighbours (and for ``depends_on``), see the module's doc."""
        deps = dependency_jobs(self, pool)
        regions = self.get_chunks(self.region_size(chunk_size))
        pending = set(self.pending(regions))
        known = {region.index: region for region in regions}
        jobs: dict[tuple, Any] = {}
        for region in sorted(regions, key=lambda r: (colour(r.index), r.index)):
            if region not in pending:
                continue
            lower = [known[n] for n in _touching(region.index) if n in known
                     and colour(n) < colour(region.index)]
            waits = [jobs[r.index] for r in lower if r.index in jobs]
            stored = [r for r in lower if r.index not in jobs]
            jobs[region.index] = pool.queue(
                self.place_chunk, args=(region, NeighbourCells(waits, stored)),
                deps=[*deps, *waits], name=f"place {self.name} {region}", phase="placement")

    def place_chunk(self, network: Any, chunk: Chunk,  # type: ignore[override]
                    neighbours: NeighbourCells | None = None) -> dict[str, np.ndarray]:
        """Job: place the cells of ``chunk`` clear of its neighbours' cells, store
        them, and return those near its faces (for the neighbours that wait)."""
        halo = self.halo()
        with self._job(chunk) as job:
            fixed = neighbours.fixed(self, network, chunk, halo) if neighbours else []
            self._sample(chunk, self.get_indicators(), fixed)
        self._write(network, job.collected, chunk)
        return {name: _near_faces(np.concatenate(arrays), chunk, halo)
                for name, arrays in job.collected.items()}

    def place(self, chunk: Chunk, indicators: Indicators) -> None:
        """Place the cells of ``chunk`` on its own (no neighbours' cells)."""
        self._sample(chunk, indicators, [])

    def _sample(self, chunk: Chunk, indicators: Indicators, fixed) -> None:
        types = list(self.cell_types)
        wanted = [(float(ct.radius), indicators[ct.name].guess(chunk)) for ct in types]
        try:
            positions = sample_disk(self.rng(chunk), union_boxes(self.partitions, chunk),
                                    wanted, fixed)
        except PackingError as error:
            name = next(ct.name for ct in types if float(ct.radius) == error.radius)
            raise PackingError(error.placed, error.wanted, error.radius,
                               f"placement '{self.name}', cell type '{name}', chunk "
                               f"{chunk}") from None
        for cell_type, points in zip(types, positions):
            self.place_cells(cell_type.name, points, chunk)


def _touching(index: Sequence[int]) -> list[tuple[int, int, int]]:
    return [(index[0] + a, index[1] + b, index[2] + c) for a, b, c in _OFFSETS]


def _radius(strategy: PoissonDiskPlacement, name: str) -> float:
    return next(float(ct.radius) for ct in strategy.cell_types if ct.name == name)
