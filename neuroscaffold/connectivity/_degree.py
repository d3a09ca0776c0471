"""Fixed in-degree: every postsynaptic cell gets exactly N presynaptic partners."""

from __future__ import annotations

import numpy as np

from .. import config
from ..config import types
from ..chunks import Chunk, chunk_indices_in_box
from ..placement import CellEstimates
from ._cells import CellSelection
from ._strategy import ConnectionStrategy

__all__ = ["FixedIndegree"]


@config.node
class FixedIndegree(ConnectionStrategy):
    """Each postsynaptic cell gets exactly ``indegree`` presynaptic partners, drawn
    uniformly among the presynaptic cells within ``radius`` (or among all of them).

    Without ``multapses`` the partners are distinct; without ``autapses`` a cell is
    never its own partner. **Shortage rule:** when a cell has fewer candidates than
    ``indegree`` (and multapses are off), the job fails with one line saying how many
    of its cells were short and the fewest candidates one had: a network with fewer
    connections than configured is never stored silently. Allow ``multapses``, widen
    the ``radius`` or lower ``indegree``.
    """

    indegree = config.attr(type=types.integer(min=1), required=True,
                           doc="presynaptic partners of every postsynaptic cell")
    radius = config.attr(type=types.positive,
                         doc="largest distance to a partner (µm); none: any presynaptic cell")
    multapses = config.attr(type=bool, default=False,
                            doc="let a pair connect more than once (partners drawn with replacement)")

    def presynaptic_chunks(self, chunk: Chunk):
        if self.radius is None:
            return None
        grid = self.scaffold_chunk_size()
        return chunk_indices_in_box(chunk.ldc - self.radius, chunk.mdc + self.radius, grid)

    def connect(self, pre: CellSelection, post: CellSelection) -> np.ndarray:
        same = self.presynaptic.name == self.postsynaptic.name and not self.autapses
        if self.radius is None:
            candidates = [np.arange(len(pre))] * len(post)
        else:
            from scipy.spatial import cKDTree  # here: loading scipy.spatial costs every command 0.5 s
            candidates = cKDTree(pre.positions).query_ball_point(post.positions, self.radius)
        rng = self.rng()
        n = self.indegree
        chosen, short, fewest = [], 0, None
        for cell, found in enumerate(candidates):  # post cells in stored order
            found = np.sort(np.asarray(found, dtype=np.int64))
            if same:
                found = found[pre.indices[found] != post.indices[cell]]
            if len(found) == 0 or (len(found) < n and not self.multapses):
                short += 1
                fewest = len(found) if fewest is None else min(fewest, len(found))
                continue
            chosen.append(np.column_stack([
                rng.choice(found, size=n, replace=self.multapses),
                np.full(n, cell, dtype=np.int64)]))
        if short:
            where = f"within {self.radius:g} µm" if self.radius is not None else "in the network"
            raise ValueError(
                f"{short:,} of {len(post):,} postsynaptic cells have fewer than "
                f"indegree={n} presynaptic cells {where} (the fewest: {fewest}); allow "
                "multapses, widen the radius or lower indegree")
        return np.concatenate(chosen) if chosen else np.empty((0, 2), dtype=np.int64)

    def estimate_connections(self, chunk: Chunk, cells: CellEstimates) -> float | None:
        count = cells.in_chunk(self.postsynaptic.name, chunk)
        return None if count is None else count * self.indegree


