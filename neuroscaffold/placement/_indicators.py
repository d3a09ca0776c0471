"""Indicators: how many cells of a type a placement strategy puts in each chunk."""

from __future__ import annotations

from typing import Any

import zlib

import numpy as np

from ..config._node import config_root, raise_at
from ..chunks import Chunk

__all__ = ["CellIndicator", "Indicators", "build_indicators"]


class CellIndicator:
    """Estimates the number of cells of one type that one strategy places.

    The numbers come from a density (cells/µm³) or a total count (the total is exact),
    spread over the strategy's chunks at random, each cell in a chunk with a chance in
    proportion to the volume of the strategy's partitions there (see :func:`_spread`,
    seeded by the network seed, the strategy and the cell type). So the chunking never
    shapes the tissue: a type with fewer cells than chunks lands anywhere, not in the
    first chunks, and the numbers are the same on every rank.
    """

    def __init__(self, strategy: Any, cell_type: Any, per_chunk: dict[tuple, int] | None):
        self.strategy = strategy
        self.cell_type = cell_type
        self._per_chunk = per_chunk

    @property
    def density(self) -> float | None:
        return first_given(self.strategy.density, self.cell_type.density)

    @property
    def count(self) -> int | None:
        return first_given(self.strategy.count, self.cell_type.count)

    def guess(self, chunk: Chunk | None = None) -> int:
        """The number of cells in ``chunk`` (a network chunk or a region of several),
        or in the whole network when ``chunk`` is None."""
        if self._per_chunk is None:
            raise_at(self.strategy, None, f"cell type '{self.cell_type.name}' needs a "
                                          "density or a count to be placed")
        if chunk is None:
            return sum(self._per_chunk.values())
        grid = self.strategy.scaffold_chunk_size()
        if tuple(chunk.size) == tuple(grid):
            return self._per_chunk.get(chunk.index, 0)
        return sum(self._per_chunk.get(sub.index, 0) for sub in chunk.subchunks(grid))

    def __repr__(self) -> str:
        return f"<CellIndicator {self.cell_type.name} of {self.strategy.get_node_name()}>"


class Indicators(dict):
    """Cell type name -> :class:`CellIndicator` (a dict that can be weakly referenced)."""


def first_given(*values):
    return next((v for v in values if v is not None), None)


def build_indicators(strategy: Any) -> Indicators:
    """The indicators of every cell type that ``strategy`` places."""
    chunks = strategy.get_chunks()
    volumes = [strategy.volume_in(chunk) for chunk in chunks]
    total_volume = sum(volumes)
    indicators = Indicators()
    for cell_type in strategy.cell_types:
        density = first_given(strategy.density, cell_type.density)
        count = first_given(strategy.count, cell_type.count)
        if count is not None:
            total = count
        elif density is not None:
            total = int(round(density * total_volume))
        else:
            indicators[cell_type.name] = CellIndicator(strategy, cell_type, None)
            continue
        shares = _spread(strategy, cell_type.name, volumes, total)
        per_chunk = {chunk.index: n for chunk, n in zip(chunks, shares)}
        indicators[cell_type.name] = CellIndicator(strategy, cell_type, per_chunk)
    return indicators


def _spread(strategy: Any, cell_type: str, volumes: list[float], total: int) -> list[int]:
    """``total`` cells spread over chunks of the given ``volumes`` at random, the same
    on every rank (seeded by the network seed, the strategy and the type).

    A multinomial draw (each cell independently in a chunk, by volume), unless the
    strategy has ``even_counts``: then each chunk gets its expected count rounded down,
    and the cells left over go to chunks drawn at random by their remainders, so every
    chunk is within one cell of its share (a hard-core packing has no room for the
    fluctuations of independent cells) and a sparse type still lands anywhere.
    """
    volume = float(sum(volumes))
    if not volumes or volume <= 0:
        return [0] * len(volumes)
    entropy = [int(config_root(strategy).seed), zlib.crc32(strategy.get_node_name().encode()),
               zlib.crc32(cell_type.encode())]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    shares = np.asarray(volumes, dtype=float) / volume
    if not getattr(strategy, "even_counts", False):
        return [int(n) for n in rng.multinomial(total, shares)]
    expected = shares * total
    counts = np.floor(expected).astype(np.int64)
    missing = int(total - counts.sum())
    remainders = expected - counts
    if missing > 0:
        weights = remainders + 1e-12 * (remainders.max() + 1)  # every chunk can be drawn
        counts[rng.choice(len(counts), size=missing, replace=False,
                          p=weights / weights.sum())] += 1
    elif missing < 0:  # float rounding overshot
        counts[np.argsort(remainders, kind="stable")[:-missing]] -= 1
    return [int(n) for n in counts]
