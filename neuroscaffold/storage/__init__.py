"""Storage: where a compiled network lives. HDF5 through h5py is the embedded default:
one file holds the configuration, the cells of each type and the connections of each
set (see :mod:`neuroscaffold.storage._hdf5` for the layout)."""

from __future__ import annotations

from ._compare import canonical_contents
from ._hdf5 import HDF5Storage, PlacementEntry
from ._sets import ConnectivitySet, PlacementSet

__all__ = [
    "ConnectivitySet",
    "HDF5Storage",
    "PlacementEntry",
    "PlacementSet",
    "canonical_contents",
]
