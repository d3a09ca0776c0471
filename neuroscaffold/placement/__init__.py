"""Placement: where cells go. Strategies place cells of some types in partitions
(regions of space), one pool job per chunk of the network.

Built-in strategies (``strategy:`` in a configuration): ``random``
(:class:`RandomPlacement`), ``poisson_disk`` (:class:`PoissonDiskPlacement`: cells
that do not overlap), ``fixed`` (:class:`FixedPositions`), ``lattice``
(:class:`LatticePlacement`); any other by import path. Built-in partitions (``type:``):
``layer`` (:class:`Layer`), ``box`` (:class:`Box`).
"""

from __future__ import annotations

from ._builtins import FixedPositions, LatticePlacement, RandomPlacement
from ..chunks import Chunk, apportion, chunks_in_box
from ._estimates import CellEstimates, partner_estimate
from ._indicators import CellIndicator, Indicators
from ._partitions import Box, Layer, Partition, union_volume
from ._poisson import PoissonDiskPlacement
from ._strategy import PlacementStrategy

__all__ = [
    "Box",
    "CellEstimates",
    "CellIndicator",
    "Chunk",
    "FixedPositions",
    "Indicators",
    "LatticePlacement",
    "Layer",
    "Partition",
    "PlacementStrategy",
    "PoissonDiskPlacement",
    "RandomPlacement",
    "apportion",
    "chunks_in_box",
    "union_volume",
    "partner_estimate",
]
