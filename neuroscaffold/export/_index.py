"""The SONATA edge indices, built block by block in bounded memory, on any rank count.

An index maps each node to the edges it is the source (``source_to_target``) or the
target (``target_to_source``) of: ``node_id_to_ranges[n]`` is a range of rows of
``range_to_edge_id``, whose rows are ranges of edge ids. A *run* is a maximal range of
consecutive edges with the same node; each run is one row of ``range_to_edge_id``, and
a node's rows are its runs in edge order. The stored pairs are grouped by postsynaptic
chunk, so targets come in a few long runs and sources in about one run per edge: that
side of the index is an (external) sort of the edges by source.

Built in three passes, none holding a whole set:

1. every rank counts the runs of each node in its share of the rows (a run belongs to
   the rank where it starts, so the counts do not depend on the split);
2. with the summed counts, each node's rows in ``range_to_edge_id`` are known; the
   nodes are cut into *buckets* of at most :data:`BUCKET_RANGES` rows, and every rank
   appends the runs it finds, as (node, first edge, end edge) records, to one scratch
   file per bucket;
3. each bucket is sorted (by node, then edge) by one rank and written in one piece.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from ._columns import Column, ColumnWriter

__all__ = ["BUCKET_RANGES", "Buckets", "RunCounter", "RunSpiller", "blocks_with_previous",
           "run_starts", "write_bucket", "write_lookup"]

#: the most ``range_to_edge_id`` rows one bucket holds (16 bytes each, plus its records)
BUCKET_RANGES = 1 << 19
_RECORD = np.dtype("<i8")  # records are (node, start, end) rows of int64


def run_starts(ids: np.ndarray, previous: int | None) -> np.ndarray:
    """The positions in ``ids`` where a run begins; ``previous`` is the id of the row
    before ``ids[0]`` (None: ``ids[0]`` is the first row of the set)."""
    change = np.empty(len(ids), dtype=bool)
    if len(ids):
        change[0] = previous is None or ids[0] != previous
        np.not_equal(ids[1:], ids[:-1], out=change[1:])
    return np.flatnonzero(change)


class RunCounter:
    """Pass 1: the number of runs of each node among the rows given."""

    def __init__(self, nodes: int):
        self.counts = np.zeros(nodes, dtype=np.int64)

    def add(self, ids: np.ndarray, previous: int | None) -> None:
        starts = run_starts(ids, previous)
        if len(starts):
            self.counts += np.bincount(ids[starts], minlength=len(self.counts))


class Buckets:
    """The nodes cut into runs of nodes whose ranges fit in one bucket, from the run
    count of every node."""

    def __init__(self, counts: np.ndarray, budget: int | None = None):
        budget = budget or BUCKET_RANGES
        self.counts = counts
        self.ends = np.cumsum(counts)  # range rows up to and including each node
        self.firsts = self.ends - counts  # each node's first range row
        self.total = int(self.ends[-1]) if len(counts) else 0
        cuts = [0]
        while len(counts):
            base = int(self.firsts[cuts[-1]])
            after = int(np.searchsorted(self.ends, base + budget, side="right"))
            after = max(after, cuts[-1] + 1)  # a node with more runs than the budget: alone
            if after >= len(counts):
                break
            cuts.append(after)
        #: the first node of each bucket (none when there are no nodes)
        self.first_nodes = np.asarray(cuts if len(counts) else [], dtype=np.int64)
        #: the first row of each bucket in ``range_to_edge_id``, and the total
        self.bounds = np.append(self.firsts[self.first_nodes], self.total).astype(np.int64)

    def __len__(self) -> int:
        return len(self.first_nodes)

    def rows(self, bucket: int) -> tuple[int, int]:
        """The rows ``[first, end)`` of ``range_to_edge_id`` that bucket holds."""
        return int(self.bounds[bucket]), int(self.bounds[bucket + 1])

    def compact(self) -> "Buckets":
        """The same cut without the per-node arrays (to send to every rank)."""
        small = object.__new__(Buckets)
        small.first_nodes, small.bounds, small.total = self.first_nodes, self.bounds, self.total
        return small

    def of(self, nodes: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.first_nodes, nodes, side="right") - 1


class RunSpiller:
    """Pass 2: the runs in a rank's share of the rows, appended to each bucket's
    scratch file as (node, start, end) records. Rows come in order, block by block;
    :meth:`finish` gives the end of the last run (the row where its node changes,
    which may lie in the next rank's share)."""

    def __init__(self, buckets: Buckets, paths: list[Path]):
        self.buckets = buckets
        self._paths = paths
        self._files: dict[int, BinaryIO] = {}
        self._pending: tuple[int, int] | None = None  # (node, start) of the open run

    def add(self, first_row: int, ids: np.ndarray, previous: int | None) -> None:
        starts = run_starts(ids, previous)
        if not len(starts):
            return
        begins = starts + first_row
        nodes = ids[starts].astype(np.int64)
        ends = np.empty_like(begins)
        ends[:-1] = begins[1:]
        if self._pending is not None:  # the open run ends where this block's first begins
            self._spill(np.array([self._pending[0]]), np.array([self._pending[1]]), begins[:1])
        self._spill(nodes[:-1], begins[:-1], ends[:-1])
        self._pending = (int(nodes[-1]), int(begins[-1]))

    def finish(self, end: int) -> None:
        if self._pending is not None:
            self._spill(np.array([self._pending[0]]), np.array([self._pending[1]]),
                        np.array([end]))
            self._pending = None
        self.close()

    def _spill(self, nodes: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> None:
        if not len(nodes):
            return
        records = np.stack([nodes, begins, ends], axis=1).astype(_RECORD)
        owner = self.buckets.of(nodes)
        order = np.argsort(owner, kind="stable")
        records, owner = records[order], owner[order]
        cuts = np.flatnonzero(np.diff(owner)) + 1
        for piece in np.split(records, cuts):
            bucket = int(self.buckets.of(piece[:1, 0])[0])
            file = self._files.get(bucket)
            if file is None:
                file = self._files[bucket] = open(self._paths[bucket], "ab")
            file.write(piece.tobytes())

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()


def write_bucket(buckets: Buckets, bucket: int, parts: Iterable[Path], column: Column,
                 writer: ColumnWriter) -> None:
    """Pass 3: sort the records of one bucket (from every rank's scratch file, given
    in rank order) and write them as rows of ``range_to_edge_id``."""
    first, end = buckets.rows(bucket)
    pieces = [np.fromfile(path, dtype=_RECORD).reshape(-1, 3) for path in parts
              if path.exists()]
    records = np.concatenate(pieces) if pieces else np.empty((0, 3), dtype=_RECORD)
    if len(records) != end - first:
        raise RuntimeError(f"index bucket {bucket}: {len(records)} runs found, "
                           f"{end - first} counted")
    # every rank's records are in edge order and the ranks' rows follow each other, so
    # a stable sort by node alone gives each node's runs in edge order
    order = np.argsort(records[:, 0], kind="stable")
    writer.write(column, first, records[order, 1:])


def write_lookup(buckets: Buckets, column: Column, writer: ColumnWriter,
                 rows: int = 1 << 19) -> None:
    """``node_id_to_ranges``: each node's ``[first, end)`` rows of ``range_to_edge_id``
    (an empty range for a node without edges)."""
    for start in range(0, len(buckets.counts), rows):
        stop = min(start + rows, len(buckets.counts))
        writer.write(column, start, np.stack([buckets.firsts[start:stop],
                                              buckets.ends[start:stop]], axis=1))


def blocks_with_previous(blocks: Iterator[np.ndarray], first_row: int,
                         has_previous: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(first row, rows, the row before them or None) for rows read from
    ``first_row - 1`` when ``has_previous`` (that row is only looked at)."""
    previous = None
    row = first_row
    for block in blocks:
        if has_previous and previous is None and row == first_row:
            previous, block = block[0], block[1:]
            if not len(block):
                continue
        yield row, block, previous
        previous = block[-1]
        row += len(block)
