"""Exporting a compiled network to other tools: a SONATA circuit (``export_sonata``),
that libsonata reads and, with a simulation, BMTK's PointNet runs (``docs/sonata.md``).

Layout: :mod:`._sonata` writes the circuit (collective: every rank its share of the
rows), :mod:`._columns` the datasets allocated in advance that ranks write into,
:mod:`._index` the edge indices in bounded memory, :mod:`._simulation` what a
``simulations:`` entry adds for BMTK. Exporting needs no simulator.
"""

from __future__ import annotations

from ._simulation import read_simulation
from ._sonata import CIRCUIT_CONFIG, export_sonata

__all__ = ["CIRCUIT_CONFIG", "export_sonata", "read_simulation"]
