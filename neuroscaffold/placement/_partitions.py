"""Partitions: the regions of space that cells are placed in (axis-aligned boxes)."""

from __future__ import annotations

import numpy as np

from .. import config
from ..config import types
from ..config._node import Node, config_root, raise_at
from ..chunks import Chunk, box_overlap, chunks_in_box

__all__ = ["Partition", "Layer", "Box", "check_shared_partitions", "describe_box", "partition_overlap", "union_boxes", "union_volume"]

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


def union_boxes(partitions, chunk: Chunk) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The part of ``chunk`` inside any of ``partitions``, as disjoint boxes (corners
    and volume, none empty), in a fixed order.

    A strategy's partitions are a union: where two overlap, the volume counts once, so
    a density is placed once there (never doubled). The boxes come from cutting the
    chunk at every partition face inside it and keeping the pieces that some partition
    covers.
    """
    pieces = [p.overlap(chunk) for p in partitions]
    pieces = [(lo, hi) for lo, hi, volume in pieces if volume > 0]
    if len(pieces) <= 1:
        return [(lo, hi, float(np.prod(hi - lo))) for lo, hi in pieces]
    cuts = [np.unique(np.concatenate([[lo[a], hi[a]] for lo, hi in pieces])) for a in range(3)]
    lows = np.stack(np.meshgrid(*[c[:-1] for c in cuts], indexing="ij"), axis=-1).reshape(-1, 3)
    highs = np.stack(np.meshgrid(*[c[1:] for c in cuts], indexing="ij"), axis=-1).reshape(-1, 3)
    middle = (lows + highs) / 2
    covered = np.zeros(len(middle), dtype=bool)
    for lo, hi in pieces:
        covered |= np.all((middle > lo) & (middle < hi), axis=1)
    return [(lo, hi, float(np.prod(hi - lo))) for lo, hi in zip(lows[covered], highs[covered])]


def union_volume(partitions, geometry) -> float:
    """The volume of the union of ``partitions`` in a network of ``geometry`` (µm³)."""
    whole = Chunk((0, 0, 0), (float(geometry.x), float(geometry.y), float(geometry.z)))
    return float(sum(volume for *_, volume in union_boxes(partitions, whole)))


def partition_overlap(first: Partition, second: Partition) -> tuple[np.ndarray, np.ndarray] | None:
    """The box two partitions share (corners), or None when they share no volume."""
    lo, hi, volume = box_overlap(*first.bounds(), *second.bounds())
    return (lo, hi) if volume > 0 else None


def describe_box(lo, hi) -> str:
    """``x 0..400, y 150..200, z 0..400`` (µm)."""
    return ", ".join(f"{axis} {a:g}..{b:g}" for axis, a, b in zip("xyz", lo, hi))


def check_shared_partitions(placement: dict) -> None:
    """Refuse two placement strategies that fill one cell type's density (or count)
    into partitions that overlap: each would place the type's density there, doubling
    it silently. (Within one strategy, overlapping partitions are a union: see
    :func:`union_boxes`.) Strategies that do not fill a density (``fills_density``
    false: a lattice, fixed positions, most of a user's own) are not concerned."""
    strategies = [s for s in placement.values() if getattr(s, "fills_density", False)]
    for i, first in enumerate(strategies):
        for second in strategies[i + 1:]:
            shared_types = {c.name for c in first.cell_types} & {c.name for c in second.cell_types}
            if not shared_types or not first.partitions or not second.partitions:
                continue
            for a in first.partitions:
                for b in second.partitions:
                    box = partition_overlap(a, b)
                    if box is not None:
                        raise_at(second, "partitions", f"cell type '{sorted(shared_types)[0]}' "
                                 f"is placed by '{first.name}' in partition '{a.name}' and by "
                                 f"'{second.name}' in partition '{b.name}', which overlap "
                                 f"({describe_box(*box)}): the cells there would be placed "
                                 "twice; list both partitions in one strategy (their union is "
                                 "filled once) or make them disjoint")
