"""Strategies with the mistakes that used to give a silently wrong network."""

from __future__ import annotations

import numpy as np

from neuroscaffold import PlacementStrategy, config


@config.node
class ReturnsPositions(PlacementStrategy):
    """Returns its positions instead of calling place_cells."""

    def place(self, chunk, indicators):
        return self.rng().uniform(chunk.ldc, chunk.mdc, size=(5, 3))


@config.node
class GlobalRandom(PlacementStrategy):
    """Draws from numpy's global generator instead of self.rng()."""

    def place(self, chunk, indicators):
        for cell_type in self.cell_types:
            points = chunk.ldc + np.random.random((3, 3)) * chunk.size
            self.place_cells(cell_type, points, chunk)


@config.node
class BugInEveryChunk(PlacementStrategy):
    """Raises the same error in every chunk."""

    def place(self, chunk, indicators):
        raise ValueError("my bug")
