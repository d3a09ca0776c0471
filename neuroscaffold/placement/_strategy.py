"""The base of placement strategies: one pool job per chunk, cells stored per chunk."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import config
from ..config import types
from ..config._node import raise_at
from ..exceptions import StrategyError
from ..services.pool import pool_cache
from ._chunked import ChunkedStrategy, dependency_jobs, job_key, job_regions
from ._checks import check_positions
from ..chunks import Chunk
from ._indicators import Indicators, build_indicators, first_given
from ._partitions import union_boxes

__all__ = ["PlacementStrategy"]


@config.dynamic(
    "strategy",
    builtins={
        "random": "neuroscaffold.placement._builtins.RandomPlacement",
        "fixed": "neuroscaffold.placement._builtins.FixedPositions",
        "lattice": "neuroscaffold.placement._builtins.LatticePlacement",
        "poisson_disk": "neuroscaffold.placement._poisson.PoissonDiskPlacement",
    },
)
class PlacementStrategy(ChunkedStrategy):
    """Places cells of ``cell_types`` in ``partitions``, one chunk per job.

    Subclasses implement :meth:`place`, which calls :meth:`place_cells` for each cell
    type. The jobs of a strategy wait for those of the strategies in ``depends_on``.
    Random strategies draw from :meth:`rng`, seeded per chunk, so the network is the
    same whichever rank places which chunk.
    """

    cell_types = config.reflist("cell_types", required=True, doc="the cell types it places")
    partitions = config.reflist("partitions", doc="the partitions it fills")
    depends_on = config.reflist("placement", doc="placement strategies whose jobs must end first")
    density = config.attr(type=types.number(min=0),
                          doc="cells/µm³ for every cell type, instead of the cell type's")
    count = config.attr(type=types.integer(min=0),
                        doc="cells of every cell type, instead of the cell type's")

    def validate(self) -> None:
        if self.density is not None and self.count is not None:
            raise_at(self, None, "give 'density' or 'count', not both")

    # --- scheduling ---------------------------------------------------------------

    def queue(self, pool: Any, chunk_size: Sequence[float] | None = None) -> None:
        """Submit one :meth:`place_chunk` job per chunk (see :meth:`get_chunks`)."""
        deps = dependency_jobs(self, pool)
        for chunk in self.pending(self.get_chunks(chunk_size)):
            pool.queue(self.place_chunk, args=(chunk,), deps=deps,
                       name=f"place {self.name} {chunk}", phase="placement")

    def get_chunks(self, chunk_size: Sequence[float] | None = None) -> list[Chunk]:
        """The chunks this strategy places cells in, in index order.

        Args:
            chunk_size: make each job a region of this size instead of one network
                chunk; it must be a whole multiple of the network's chunk size.
        """
        grid = self.scaffold_chunk_size()
        chunks = sorted({c for p in self.partitions for c in p.chunks(grid)})
        return job_regions(chunks, grid, chunk_size)

    def volume_in(self, chunk: Chunk) -> float:
        """The volume of this strategy's partitions inside ``chunk`` (µm³); where
        partitions overlap, the shared volume counts once (see :func:`union_boxes`)."""
        return sum(volume for *_, volume in union_boxes(self.partitions, chunk))

    # --- the plan -----------------------------------------------------------------

    def estimate_cells(self, chunk: Chunk) -> dict[str, float] | None:
        """The plan's hook: how many cells of each type this strategy expects to place
        in ``chunk`` (the region of one of its jobs), as ``{cell type name: count}``;
        None when it cannot say (the plan then shows ``?``).

        Called before anything is placed, once per job region (or a sample of them in
        very large networks), so it must be cheap and must not draw random numbers.
        The default follows the ``density`` or ``count`` of the strategy or of each
        cell type, in proportion to :meth:`volume_in`; override it when the strategy
        places cells some other way.
        """
        volume = self.volume_in(chunk)
        expected: dict[str, float] = {}
        for cell_type in self.cell_types:
            count = first_given(self.count, cell_type.count)
            density = first_given(self.density, cell_type.density)
            if count is not None:
                total = sum(p.volume() for p in self.partitions)
                expected[cell_type.name] = count * volume / total if total else 0.0
            elif density is not None:
                expected[cell_type.name] = density * volume
            else:
                return None
        return expected

    # --- the job ------------------------------------------------------------------

    @pool_cache
    def get_indicators(self) -> Indicators:
        """The indicator of each cell type (kept for as long as this strategy's jobs
        run, so it is computed once per rank)."""
        return build_indicators(self)

    def place_chunk(self, network: Any, chunk: Chunk) -> None:
        """Job: place the cells of ``chunk`` and write them to the network's storage."""
        with self._job(chunk) as job:
            returned: Any = self.place(chunk, self.get_indicators())  # type: ignore[func-returns-value]
        if returned is not None:  # its cells would be lost without a word
            raise StrategyError(
                f"placement '{self.name}' ({type(self).__name__}): place() returned "
                f"{_describe(returned)} instead of storing it; call "
                "self.place_cells(cell_type, positions, chunk) for each cell type in "
                "place(), which returns nothing")
        self._write(network, job.collected, chunk)

    def place(self, chunk: Chunk, indicators: Indicators) -> None:
        """Place the cells of ``chunk``: call :meth:`place_cells` per cell type.

        Args:
            chunk: the chunk (or region) of this job.
            indicators: cell type name -> :class:`CellIndicator`; ``guess(chunk)``
                says how many cells go in the chunk.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement place(chunk, indicators)")

    def place_cells(self, cell_type: Any, positions: Any, chunk: Chunk) -> None:
        """Record cells of ``cell_type`` (a name, a cell type or an indicator) at
        ``positions`` (an ``(n, 3)`` array) in ``chunk``."""
        name = getattr(getattr(cell_type, "cell_type", cell_type), "name", cell_type)
        if name not in {ct.name for ct in self.cell_types}:
            raise ValueError(f"{self.name} does not place cell type {name!r}")
        positions = check_positions(self, chunk, name, positions)  # finite, (n, 3), in chunk
        job = self._current_job()
        if job is not None:
            job.collected.setdefault(name, []).append(positions)
        else:  # called outside place_chunk: write at once
            self._write(self.scaffold, {name: [positions]}, chunk)

    def _write(self, network: Any, collected: dict[str, list[np.ndarray]], chunk: Chunk):
        """Store the job's cells: one block per cell type and network chunk (an empty
        block for each chunk of the region that the strategy covers)."""
        grid = self.scaffold_chunk_size()
        own = None if tuple(chunk.size) == tuple(grid) else {c.index for c in self.get_chunks()}
        blocks = []
        for cell_type in self.cell_types:
            arrays = collected.get(cell_type.name) or [np.empty((0, 3))]
            binned = _bin_positions(np.concatenate(arrays), chunk, grid, own)
            blocks.extend(("placement", cell_type.name, self.name, index, positions)
                          for index, positions in binned.items())
        network.storage.writer().write_job(job_key(self, chunk), blocks)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)}"
    return f"a {type(value).__name__}"


def _bin_positions(positions: np.ndarray, region: Chunk, grid, own: set | None) -> dict:
    """``positions`` split over the network chunks of ``region`` (every chunk of the
    region that the strategy covers gets an entry, empty or not)."""
    if tuple(region.size) == tuple(grid):
        return {region.index: positions}
    subchunks = region.subchunks(grid)
    first = np.array(subchunks[0].index)
    last = np.array(subchunks[-1].index)
    # cells a float rounding put just outside the region stay in its edge chunks
    cell_chunks = np.clip(np.floor(positions / np.array(grid)).astype(int), first, last)
    binned = {}
    for sub in subchunks:
        mask = np.all(cell_chunks == sub.index, axis=1)
        if sub.index in own or mask.any():
            binned[sub.index] = positions[mask]
    return binned
