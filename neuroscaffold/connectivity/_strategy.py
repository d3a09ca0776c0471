"""The base of connection strategies: one pool job per postsynaptic chunk."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import config
from ..config._node import config_root
from ..chunks import Chunk
from ..placement._chunked import ChunkedStrategy, dependency_jobs, job_key, job_regions
from ..services.pool import pool_cache
from ..placement import CellEstimates
from ._cells import CellIndex, CellSelection
from ._checks import check_pairs

__all__ = ["ConnectionStrategy"]


@config.dynamic(
    "strategy",
    builtins={
        "all_to_all": "neuroscaffold.connectivity._builtins.AllToAll",
        "distance": "neuroscaffold.connectivity._builtins.DistanceConnectivity",
        "fixed_indegree": "neuroscaffold.connectivity._degree.FixedIndegree",
        "fixed_outdegree": "neuroscaffold.connectivity._degree.FixedOutdegree",
    },
)
class ConnectionStrategy(ChunkedStrategy):
    """Connects cells of the ``presynaptic`` type to cells of the ``postsynaptic`` type.

    Each job takes the postsynaptic cells of one chunk and the presynaptic cells of
    :meth:`presynaptic_chunks` and calls :meth:`connect`; the pairs are stored as
    (pre, post) indices into the two placement sets, grouped by the chunk of their
    postsynaptic cell (a rule whose jobs run on presynaptic chunks, ``fixed_outdegree``,
    overrides :meth:`job_cell_type` and :meth:`connect_chunk`). The jobs wait for the placement
    of both cell types and for the strategies in ``depends_on``.
    """

    presynaptic = config.ref("cell_types", required=True, doc="cell type the connections start from")
    postsynaptic = config.ref("cell_types", required=True, doc="cell type the connections end on")
    depends_on = config.reflist("connectivity", doc="connection strategies whose jobs must end first")
    autapses = config.attr(type=bool, default=False,
                           doc="let a cell connect to itself (same pre and post type)")

    # --- scheduling ---------------------------------------------------------------

    def queue(self, pool: Any, chunk_size: Sequence[float] | None = None) -> None:
        """Submit one :meth:`connect_chunk` job per postsynaptic chunk (or region of
        ``chunk_size``)."""
        placing = self._placement_strategies()
        deps = dependency_jobs(self, pool) + [
            job for strategy in placing for job in pool.get_submissions_of(strategy)
        ]
        for chunk in self.pending(self.get_chunks(chunk_size)):
            pool.queue(self.connect_chunk, args=(chunk,), deps=deps,
                       name=f"connect {self.name} {chunk}", phase="connectivity")

    def get_chunks(self, chunk_size: Sequence[float] | None = None) -> list[Chunk]:
        """The chunks that can hold cells of :meth:`job_cell_type`, from the placement
        strategies of that type."""
        grid = self.scaffold_chunk_size()
        name = self.job_cell_type().name
        chunks = {
            chunk
            for strategy in self._placement_strategies()
            if name in {ct.name for ct in strategy.cell_types}
            for chunk in strategy.get_chunks()
        }
        return job_regions(sorted(chunks), grid, chunk_size)

    def job_cell_type(self) -> Any:
        """The cell type whose chunks the jobs run on: the postsynaptic one (a rule
        that works from the presynaptic cells, like ``fixed_outdegree``, says so)."""
        return self.postsynaptic

    # --- the plan -----------------------------------------------------------------

    def estimate_connections(self, chunk: Chunk, cells: CellEstimates) -> float | None:
        """The plan's hook: how many connections the job of ``chunk`` is expected to
        make; None when the strategy cannot say (the plan then shows ``?``).

        ``cells`` (:class:`~neuroscaffold.placement.CellEstimates`) gives the expected
        cells of each type before anything is placed: ``cells.total(name)``,
        ``cells.in_chunk(name, chunk)`` and ``cells.density_at(name, points)``. Called
        once per job region (or a sample of them in very large networks); it must be
        cheap and draw no random numbers from :meth:`rng`. The size guard refuses a
        compile whose estimate would not fit in memory, so an estimate should not be
        far below what the strategy makes.
        """
        return None

    def estimate_cache_memory(self, cells: CellEstimates) -> float:
        """The plan's hook: bytes each rank keeps for this strategy between its jobs
        (its ``pool_cache`` values), from the expected ``cells``; 0 by default."""
        return 0.0

    def presynaptic_chunks(self, chunk: Chunk) -> "np.ndarray | list[tuple[int, int, int]] | None":
        """The network chunks whose presynaptic cells the job of ``chunk`` considers
        (None: all of them), as a list of indices or an (n, 3) array. Override to limit
        the search, as distance rules do."""
        return None

    def presynaptic_cells(self, chunk: Chunk) -> CellSelection:
        """The presynaptic cells the job of ``chunk`` considers: those of
        :meth:`presynaptic_chunks`. A rule may override it to reuse, on each rank, what
        it built for earlier jobs (the distance rule keeps a KD-tree per chunk)."""
        return self.get_cells()[self.presynaptic.name].select(self.presynaptic_chunks(chunk))

    def _placement_strategies(self) -> list:
        types = {self.presynaptic.name, self.postsynaptic.name}
        return [
            strategy
            for strategy in config_root(self).placement.values()
            if types & {ct.name for ct in strategy.cell_types}
        ]

    # --- the job ------------------------------------------------------------------

    @pool_cache
    def get_cells(self) -> dict[str, CellIndex]:
        """Where the pre- and postsynaptic cells are (block tables, a few kB), read once
        per rank while this strategy's jobs run; jobs read only the cells they need."""
        storage = self.scaffold.storage
        return {ct.name: CellIndex(ct, storage.cells(ct.name))
                for ct in (self.presynaptic, self.postsynaptic)}

    def connect_chunk(self, network: Any, chunk: Chunk) -> None:
        """Job: connect the postsynaptic cells of ``chunk`` and store the pairs."""
        grid = self.scaffold_chunk_size()
        cells = self.get_cells()
        post_chunks = [c.index for c in chunk.subchunks(grid)]
        post = cells[self.postsynaptic.name].select(post_chunks)
        pre = self.presynaptic_cells(chunk) if len(post) \
            else cells[self.presynaptic.name].select([])
        network.storage.writer().write_job(job_key(self, chunk),
                                           self._pair_blocks(chunk, pre, post, post_chunks))

    def _pair_blocks(self, chunk: Chunk, pre: CellSelection, post: CellSelection,
                     post_chunks: list, tag: str = "") -> list:
        """Run :meth:`connect` for the job of ``chunk`` and cut its pairs into one block
        per chunk of ``post_chunks`` (the chunks of the ``post`` cells), stored under
        ``tag`` (a set whose chunks several jobs write to tells their blocks apart)."""
        with self._job(chunk):
            found = self.connect(pre, post) if len(pre) and len(post) else ()
        local = check_pairs(self, chunk, found, len(pre), len(post))  # int (m, 2), in range
        pairs = np.column_stack([pre.indices[local[:, 0]], post.indices[local[:, 1]]])
        slot_of_pair = _slots(post.chunks, post_chunks)[local[:, 1]]
        if self.presynaptic.name == self.postsynaptic.name and not self.autapses:
            keep = pairs[:, 0] != pairs[:, 1]
            pairs, slot_of_pair = pairs[keep], slot_of_pair[keep]
        cells = self.get_cells()
        spans = (len(cells[self.presynaptic.name]), len(cells[self.postsynaptic.name]))
        return [("connectivity", self.name, tag, index, rows) for index, rows in
                _by_post_chunk(pairs, slot_of_pair, post_chunks, spans).items()]

    def connect(self, pre: CellSelection, post: CellSelection) -> np.ndarray:
        """The pairs to connect, as an ``(m, 2)`` array of (index into ``pre``, index
        into ``post``). Called only when both selections hold cells."""
        raise NotImplementedError(f"{type(self).__name__} must implement connect(pre, post)")


def _slots(cell_chunks: np.ndarray, chunks: list) -> np.ndarray:
    """The position in ``chunks`` of each cell's chunk (``cell_chunks``, (n, 3))."""
    if len(chunks) == 1:
        return np.zeros(len(cell_chunks), dtype=np.int64)
    slot = {tuple(chunk): n for n, chunk in enumerate(chunks)}
    unique, inverse = np.unique(cell_chunks.reshape(-1, 3), axis=0, return_inverse=True)
    return np.array([slot[tuple(c)] for c in unique.tolist()], dtype=np.int64)[inverse.ravel()]


def _by_post_chunk(pairs: np.ndarray, slot_of_pairs: np.ndarray, chunks: list,
                   spans: tuple[int, int] | None = None) -> dict:
    """``pairs`` split by the chunk of their postsynaptic cell (``slot_of_pairs``: its
    position in ``chunks``), each sorted by (post, pre): the stored order never depends
    on how a strategy found them. ``spans``: bounds of the pre and post indices (the
    sizes of the sets), when known."""
    if not len(pairs):
        return {chunk: pairs for chunk in chunks}
    if spans is None:
        spans = (int(pairs[:, 0].max()) + 1, int(pairs[:, 1].max()) + 1)
    pre_span, post_span = spans
    if len(chunks) * post_span * pre_span < 2**62:
        # one key: (slot, post, pre) packed into an int64; strategies often return
        # their pairs in this order already, which costs one comparison to see
        key = pairs[:, 1] * pre_span
        key += pairs[:, 0]
        if len(chunks) > 1:
            key += slot_of_pairs * (post_span * pre_span)
        order = None if np.all(key[1:] >= key[:-1]) else np.argsort(key)
    else:
        order = np.lexsort((pairs[:, 0], pairs[:, 1], slot_of_pairs))
    if order is not None:
        pairs, slot_of_pairs = pairs[order], slot_of_pairs[order]
    bounds = np.searchsorted(slot_of_pairs, np.arange(len(chunks) + 1))
    return {chunk: pairs[bounds[n]:bounds[n + 1]] for n, chunk in enumerate(chunks)}
