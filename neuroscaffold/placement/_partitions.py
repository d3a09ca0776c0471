"""Partitions: the regions of space that cells are placed in (axis-aligned boxes)."""

from __future__ import annotations

import numpy as np

from .. import config
from ..config import types
from ..config._node import Node, config_root, raise_at
from ..chunks import Chunk, box_overlap, chunks_in_box

__all__ = ["Partition", "Layer", "Box"]

_AXES = {"x": 0, "y": 1, "z": 2}


@config.dynamic(
    "type",
    builtins={
        "layer": "neuroscaffold.placement._partitions.Layer",
        "box": "neuroscaffold.placement._partitions.Box",
    },
)
class Partition(Node):
    """A region of the network; subclasses say which box it spans (:meth:`bounds`)."""

    @property
    def name(self) -> str:
        return self._config_key

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The lower and upper corners of the partition (µm)."""
        raise NotImplementedError(f"{type(self).__name__} must implement bounds()")

    def volume(self) -> float:
        lo, hi = self.bounds()
        return float(np.prod(np.subtract(hi, lo)))

    def overlap(self, chunk: Chunk) -> tuple[np.ndarray, np.ndarray, float]:
        """The part of ``chunk`` inside the partition: corners and volume."""
        lo, hi = self.bounds()
        return box_overlap(lo, hi, chunk.ldc, chunk.mdc)

    def chunks(self, chunk_size) -> list[Chunk]:
        """The chunks of grid ``chunk_size`` the partition overlaps, in index order."""
        return chunks_in_box(*self.bounds(), chunk_size)

    def _geometry(self):
        root = config_root(self)
        geometry = getattr(root, "network", None) if root is not self else None
        if geometry is None:
            raise_at(self, None, "a layer needs the network size; add it to a configuration")
        return geometry


@config.node
class Layer(Partition):
    """A slab across the whole network, ``thickness`` thick from ``origin`` along
    ``axis`` (default ``y``)."""

    origin = config.attr(type=float, default=0.0, doc="start of the layer along its axis (µm)")
    thickness = config.attr(type=types.positive, required=True, doc="thickness along the axis (µm); the layer must end inside the network")
    axis = config.attr(type=types.in_(tuple(_AXES)), default="y",
                       doc="axis the layer is stacked along")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        geometry = self._geometry()
        lo = np.zeros(3)
        hi = np.array([geometry.x, geometry.y, geometry.z], dtype=float)
        axis = _AXES[self.axis]
        lo[axis] = self.origin
        hi[axis] = self.origin + self.thickness
        return lo, hi


@config.node
class Box(Partition):
    """A box from ``origin`` (its lower corner) with the given ``size``."""

    origin = config.attr(type=types.vector(3), default=[0.0, 0.0, 0.0],
                         doc="lower corner of the box [x, y, z] (µm)")
    size = config.attr(type=types.list_of(types.positive, size=3), required=True,
                       doc="extent of the box along x, y, z (µm); the box must lie inside the network")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array(self.origin, dtype=float)
        return lo, lo + np.array(self.size, dtype=float)
