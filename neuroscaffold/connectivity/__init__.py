"""Connectivity: which cells connect. Strategies pair presynaptic with postsynaptic
cells, one pool job per chunk of postsynaptic cells (``fixed_outdegree``: of
presynaptic cells).

Built-in strategies (``strategy:`` in a configuration): ``all_to_all``
(:class:`AllToAll`), ``distance`` (:class:`DistanceConnectivity`), ``fixed_indegree``
(:class:`FixedIndegree`), ``fixed_outdegree`` (:class:`FixedOutdegree`); any other by
import path.
"""

from __future__ import annotations

from ._builtins import AllToAll, DistanceConnectivity
from ._cells import CellSelection
from ._degree import FixedIndegree, FixedOutdegree
from ._strategy import ConnectionStrategy

__all__ = ["AllToAll", "CellSelection", "ConnectionStrategy", "DistanceConnectivity", "FixedIndegree",
           "FixedOutdegree"]
