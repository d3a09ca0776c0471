"""Fixed in-degree (convergence) and fixed out-degree (divergence): every postsynaptic
(in-degree) or presynaptic (out-degree) cell gets exactly N partners.

Both follow one rule when a cell has too few candidates (:meth:`_FixedDegree._check`):
the job fails with one line, a :class:`~neuroscaffold.exceptions.ShortfallError` that
says how many of its cells were short, so a network with fewer connections than
configured is never stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import config
from ..config import types
from ..chunks import Chunk, chunk_indices_in_box
from ..exceptions import ShortfallError
from ..placement import CellEstimates
from ..placement._chunked import job_key
from ._cells import CellSelection
from ._strategy import ConnectionStrategy

__all__ = ["FixedIndegree", "FixedOutdegree"]


class _FixedDegree(ConnectionStrategy):
    """What the two rules share: the optional radius, multapses, how candidates are
    found and drawn, and the shortage rule. A cell's candidates are the cells of the
    other type within ``radius`` (all of them without one), never itself unless
    ``autapses``: so excluding autapses never makes a degree short of N."""

    radius = config.attr(type=types.positive,
                         doc="largest distance to a partner (µm); none: any cell of the "
                         "partner type")
    multapses = config.attr(type=bool, default=False,
                            doc="let a pair connect more than once (partners drawn with replacement)")

    #: the side whose degree is fixed, and the side its partners are drawn from
    _fixed, _partners = "postsynaptic", "presynaptic"

    def degree(self) -> int:
        """N: the partners of every cell of the fixed side."""
        raise NotImplementedError

    def _drops_self(self) -> bool:
        """Whether a cell may not be its own partner (same type, no autapses)."""
        return self.presynaptic.name == self.postsynaptic.name and not self.autapses

    def _candidates(self, cells: CellSelection, others: CellSelection) -> tuple[np.ndarray, np.ndarray]:
        """Every candidate within ``radius`` of each of ``cells`` among ``others``, as
        (owner, found): indices into ``cells`` (ascending) and into ``others``
        (ascending for each owner, which is the order of the placement set)."""
        from scipy.spatial import cKDTree  # here: loading scipy.spatial costs every command 0.5 s

        close = cKDTree(cells.positions).sparse_distance_matrix(
            cKDTree(others.positions), self.radius, output_type="ndarray")
        owner, found = close["i"].astype(np.int64), close["j"].astype(np.int64)
        order = np.lexsort((found, owner))
        owner, found = owner[order], found[order]
        if self._drops_self():
            keep = others.indices[found] != cells.indices[owner]
            owner, found = owner[keep], found[keep]
        return owner, found

    def _self_in(self, cells: CellSelection, others: CellSelection) -> np.ndarray:
        """The position of each of ``cells`` among ``others`` when it may not be its own
        partner, -1 otherwise (or when it is not among them)."""
        if not self._drops_self():
            return np.full(len(cells), -1, dtype=np.int64)
        return _positions_of(others.indices, cells.indices)

    def _check(self, counts: np.ndarray) -> None:
        """The shortage rule: raise when a cell of the fixed side has fewer candidates
        (``counts``) than the degree, or none at all with multapses (which can repeat
        a partner, but not make one)."""
        n = self.degree()
        short = counts < (1 if self.multapses else n)
        if not short.any():
            return
        where = f"within {self.radius:g} µm" if self.radius is not None else "in the network"
        key = {"postsynaptic": "indegree", "presynaptic": "outdegree"}[self._fixed]
        head = f"{int(short.sum()):,} of {len(counts):,} {self._fixed} cells have"
        if self.multapses:
            raise ShortfallError(f"{head} no {self._partners} cell {where}; widen the radius")
        raise ShortfallError(
            f"{head} fewer than {key}={n} {self._partners} cells {where} (the fewest: "
            f"{int(counts.min())}); allow multapses, widen the radius or lower {key}")

    def _draw_within(self, owner: np.ndarray, found: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The drawn (owner, partner) of candidates from :meth:`_candidates`."""
        rows = _draw(owner, self.degree(), self.multapses, rng)
        return owner[rows], found[rows]

    def _draw_from_all(self, skip: np.ndarray, total: int,
                       rng: np.random.Generator) -> np.ndarray:
        """``(len(skip), degree)`` partners among ``range(total)``, each row without its
        ``skip`` (the cell itself; -1: none)."""
        n, cells = self.degree(), len(skip)
        available = total - (skip >= 0)
        if self.multapses:
            chosen = rng.integers(0, available[:, None], size=(cells, n))
        elif cells:
            chosen = np.stack([rng.choice(int(a), n, replace=False) for a in available])
        else:
            chosen = np.empty((0, n), dtype=np.int64)
        chosen += (skip[:, None] >= 0) & (chosen >= skip[:, None])
        return chosen.astype(np.int64)


@config.node
class FixedIndegree(_FixedDegree):
    """Each postsynaptic cell gets exactly ``indegree`` presynaptic partners, drawn
    uniformly among the presynaptic cells within ``radius`` (or among all of them).

    Without ``multapses`` the partners are distinct; without ``autapses`` a cell is
    never its own partner. **Shortage rule** (the same as ``fixed_outdegree``'s): when
    a cell has fewer candidates than ``indegree`` (none at all, with multapses), the job
    fails with one line saying how many of its cells were short and the fewest
    candidates one had: a network with fewer connections than configured is never
    stored silently. Allow ``multapses``, widen the ``radius`` or lower ``indegree``.
    """

    indegree = config.attr(type=types.integer(min=1), required=True,
                           doc="presynaptic partners of every postsynaptic cell")

    def degree(self) -> int:
        return self.indegree

    def presynaptic_chunks(self, chunk: Chunk):
        if self.radius is None:
            return None
        grid = self.scaffold_chunk_size()
        return chunk_indices_in_box(chunk.ldc - self.radius, chunk.mdc + self.radius, grid)

    def connect(self, pre: CellSelection, post: CellSelection) -> np.ndarray:
        rng = self.rng()
        if self.radius is None:
            skip = self._self_in(post, pre)
            self._check(len(pre) - (skip >= 0))
            chosen = self._draw_from_all(skip, len(pre), rng)
            return np.column_stack([chosen.ravel(),
                                    np.repeat(np.arange(len(post)), self.indegree)])
        owner, found = self._candidates(post, pre)
        self._check(np.bincount(owner, minlength=len(post)))
        owner, found = self._draw_within(owner, found, rng)
        return np.column_stack([found, owner])

    def estimate_connections(self, chunk: Chunk, cells: CellEstimates) -> float | None:
        count = cells.in_chunk(self.postsynaptic.name, chunk)
        return None if count is None else count * self.indegree


@config.node
class FixedOutdegree(_FixedDegree):
    """Each presynaptic cell gets exactly ``outdegree`` postsynaptic partners, drawn
    uniformly among the postsynaptic cells within ``radius`` (or among all of them).

    ``multapses``, ``autapses`` and the shortage rule are those of ``fixed_indegree``.
    One job per presynaptic chunk: it reads the postsynaptic cells within ``radius`` of
    its chunk (all of them without a radius), draws its cells' partners from the random
    stream of each presynaptic network chunk, and stores each pair in the block of the
    chunk of its postsynaptic cell, which may be another job's chunk: the blocks are
    tagged with the job's chunk, so that several jobs add to a chunk and none replaces
    another's, and the stored order never depends on which rank ran which job.
    """

    outdegree = config.attr(type=types.integer(min=1), required=True,
                            doc="postsynaptic partners of every presynaptic cell")
    _fixed, _partners = "presynaptic", "postsynaptic"

    def degree(self) -> int:
        return self.outdegree

    def job_cell_type(self) -> Any:
        return self.presynaptic

    def postsynaptic_chunks(self, chunk: Chunk) -> np.ndarray | None:
        """The network chunks whose postsynaptic cells the job of ``chunk`` draws from
        (None: all of them)."""
        if self.radius is None:
            return None
        grid = self.scaffold_chunk_size()
        return chunk_indices_in_box(chunk.ldc - self.radius, chunk.mdc + self.radius, grid)

    def connect_chunk(self, network: Any, chunk: Chunk) -> None:
        """Job: the partners of the presynaptic cells of ``chunk``, stored per chunk of
        their postsynaptic cells."""
        grid = self.scaffold_chunk_size()
        cells = self.get_cells()
        own = [c.index for c in chunk.subchunks(grid)]
        pre = cells[self.presynaptic.name].select(own)
        post = cells[self.postsynaptic.name].select(
            self.postsynaptic_chunks(chunk) if len(pre) else [])
        reached = [tuple(c) for c in np.unique(post.chunks.reshape(-1, 3), axis=0).tolist()]
        blocks = [block for block in self._pair_blocks(chunk, pre, post, reached, chunk.key)
                  if len(block[4])]
        # a job that made no pair still records a block: the set exists, the job is done
        blocks = blocks or [("connectivity", self.name, chunk.key, own[0],
                             np.empty((0, 2), dtype=np.int64))]
        network.storage.writer().write_job(job_key(self, chunk), blocks)

    def connect(self, pre: CellSelection, post: CellSelection) -> np.ndarray:
        grid = self.scaffold_chunk_size()
        if self.radius is None:
            skip = self._self_in(pre, post)
            self._check(len(post) - (skip >= 0))
        else:
            owner, found = self._candidates(pre, post)
            self._check(np.bincount(owner, minlength=len(pre)))
        # Drawn per network chunk of the presynaptic cells, from that chunk's stream: the
        # same partners whatever the job's region and rank.
        unique, inverse = np.unique(pre.chunks.reshape(-1, 3), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        pieces = []
        for number, index in enumerate(unique.tolist()):
            rng = self.rng(Chunk(tuple(index), grid))
            if self.radius is None:
                members = np.flatnonzero(inverse == number)
                chosen = self._draw_from_all(skip[members], len(post), rng)
                pieces.append(np.column_stack([np.repeat(members, self.outdegree),
                                               chosen.ravel()]))
            else:
                mine = inverse[owner] == number
                drawn = self._draw_within(owner[mine], found[mine], rng)
                pieces.append(np.column_stack(drawn))
        return np.concatenate(pieces) if pieces else np.empty((0, 2), dtype=np.int64)

    def estimate_connections(self, chunk: Chunk, cells: CellEstimates) -> float | None:
        count = cells.in_chunk(self.presynaptic.name, chunk)
        return None if count is None else count * self.outdegree


def _draw(owner: np.ndarray, n: int, multapses: bool, rng: np.random.Generator) -> np.ndarray:
    """The rows of candidates drawn: ``n`` per owner (``owner``: the cell each
    candidate belongs to, ascending), uniformly, with replacement (``multapses``) or
    without it (then every owner has at least ``n``)."""
    if not len(owner):
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    counts = np.diff(np.r_[starts, len(owner)])
    if multapses:
        return np.repeat(starts, n) + rng.integers(0, np.repeat(counts, n))
    # a uniform sample without replacement: each owner's n candidates of smallest random key
    order = np.lexsort((rng.random(len(owner)), owner))
    rank = np.arange(len(owner)) - np.repeat(starts, counts)
    return np.sort(order[rank < n])


def _positions_of(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """The position in ``haystack`` (distinct values) of each of ``needles``; -1 for
    one not in it."""
    if not len(haystack):
        return np.full(len(needles), -1, dtype=np.int64)
    sorter = np.argsort(haystack, kind="stable")
    at = np.minimum(np.searchsorted(haystack, needles, sorter=sorter), len(haystack) - 1)
    found = sorter[at]
    return np.where(haystack[found] == needles, found, -1).astype(np.int64)
