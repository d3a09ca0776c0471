"""Strategies that return bad output, for the checks of strategy output."""

from __future__ import annotations

import numpy as np

from neuroscaffold import ConnectionStrategy, PlacementStrategy, config


@config.node
class NaNPlacement(PlacementStrategy):
    """Uniform cells, one of which (row ``bad_row``) has a NaN coordinate."""

    bad_row = config.attr(type=int, default=3)

    def place(self, chunk, indicators):
        for name, indicator in indicators.items():
            positions = self.rng().uniform(chunk.ldc, chunk.mdc, size=(indicator.guess(chunk), 3))
            positions[min(self.bad_row, len(positions) - 1), 1] = np.nan
            self.place_cells(name, positions, chunk)


@config.node
class OutsidePlacement(PlacementStrategy):
    """Cells in the chunk, but row 2 is shifted 500 µm up."""

    def place(self, chunk, indicators):
        for name, indicator in indicators.items():
            positions = self.rng().uniform(chunk.ldc, chunk.mdc, size=(indicator.guess(chunk), 3))
            positions[2, 1] += 500
            self.place_cells(name, positions, chunk)


@config.node
class BadPairs(ConnectionStrategy):
    """``connect()`` returns what ``kind`` says."""

    kind = config.attr(type=str, required=True)

    def connect(self, pre, post):
        n_pre, n_post = len(pre), len(post)
        if self.kind == "minus_one":
            return np.array([[0, 0], [-1, 0]])
        if self.kind == "three_columns":
            return np.zeros((4, 3), dtype=int)
        if self.kind == "floats":
            return np.array([[0.5, 0.0]])
        if self.kind == "too_big":
            return np.array([[0, 0], [0, n_post]])
        if self.kind == "good":
            return np.array([[n_pre - 1, n_post - 1]])
        raise ValueError(self.kind)


@config.node
class Shouting(PlacementStrategy):
    """Raises an error whose message holds a whole array."""

    def place(self, chunk, indicators):
        values = np.arange(200_000)
        raise ValueError(f"cannot use {values.tolist()}")  # the raising line


@config.node
class WrongChunk(PlacementStrategy):
    """Places cells in the chunk next to its own, and says so."""

    def place(self, chunk, indicators):
        from neuroscaffold.placement import Chunk

        other = Chunk(tuple(i + 1 for i in chunk.index), chunk.size)
        for name in indicators:
            self.place_cells(name, self.rng().uniform(other.ldc, other.mdc, (5, 3)), other)
