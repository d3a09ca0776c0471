"""Block tables: where each chunk's rows of one set are, and reading only some of them.

A *set* is a cell type's positions (rows of 3 float64, µm) or a connection set's pairs
(rows of 2 int64). Its rows are stored in *blocks*, one per (network chunk, strategy):
a run of ``count`` rows at byte ``offset`` of some file (a rank's shard, or the
contiguous dataset of a finished network file). The order of a set is its blocks
sorted by (chunk, strategy); a row's index in the set is its block's start plus its
row in the block, on every rank and whichever rank wrote it.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Iterable, NamedTuple, Sequence

import numpy as np

__all__ = ["Block", "BlockTable", "ROW", "read_rows"]

#: Row layout of each kind of set: (numpy dtype, values per row).
ROW = {"placement": (np.dtype("<f8"), 3), "connectivity": (np.dtype("<i8"), 2)}


class Block(NamedTuple):
    """``count`` rows of one set in one chunk, at ``offset`` bytes into ``path``;
    ``crc`` is the CRC-32 of its bytes when known (committed blocks of a shard)."""

    chunk: tuple[int, int, int]
    strategy: str
    count: int
    path: str
    offset: int
    crc: int | None = None


class BlockTable:
    """The blocks of one set, in set order, with each block's first row index.

    Args:
        kind: ``"placement"`` or ``"connectivity"``.
        name: the cell type or connection set.
        blocks: the blocks, any order; a later block with the same (chunk, strategy)
            replaces an earlier one (a later attempt, or a session over a network).
    """

    def __init__(self, kind: str, name: str, blocks: Iterable[Block]):
        self.kind = kind
        self.name = name
        self.dtype, self.width = ROW[kind]
        latest: dict[tuple, Block] = {}
        for block in blocks:
            latest[(block.chunk, block.strategy)] = block
        self.blocks: list[Block] = [latest[key] for key in sorted(latest)]
        counts = np.fromiter((b.count for b in self.blocks), dtype=np.int64, count=len(self.blocks))
        self.counts = counts
        self.chunk_array = np.array([b.chunk for b in self.blocks], dtype=np.int64).reshape(-1, 3)
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._by_chunk: dict[tuple, list[int]] = {}
        for number, block in enumerate(self.blocks):
            self._by_chunk.setdefault(block.chunk, []).append(number)
        # Each block's key in :data:`recent_blocks`, so that a read looks its blocks up
        # in one pass of C code rather than block by block in Python.
        self.keys = np.fromiter((recent_blocks.key(b.path, b.offset) for b in self.blocks),
                                dtype=np.int64, count=len(self.blocks))

    def __len__(self) -> int:
        """The number of rows."""
        return int(self.starts[-1])

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * self.width

    def chunks(self) -> list[tuple[int, int, int]]:
        """The chunks that have a block (even an empty one), in order."""
        return sorted(self._by_chunk)

    def strategies(self) -> list[str]:
        return sorted({block.strategy for block in self.blocks})

    def select(self, chunks: Iterable[Sequence[int]] | None = None) -> list[int]:
        """The numbers of the blocks in ``chunks`` (all when None), in set order."""
        if chunks is None:
            return list(range(len(self.blocks)))
        if isinstance(chunks, np.ndarray):
            wanted = set(map(tuple, chunks.astype(np.int64).reshape(-1, 3).tolist()))
        else:
            wanted = {tuple(int(v) for v in chunk) for chunk in chunks}
        return sorted(n for chunk in wanted for n in self._by_chunk.get(chunk, ()))

    def read(self, numbers: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The rows of blocks ``numbers`` and each row's index in the set.

        Blocks read recently by this process come from :data:`recent_blocks`; the
        others are read with one ``pread`` each, and kept there.
        """
        numbers = np.asarray(numbers, dtype=np.int64)
        counts = self.counts[numbers]
        total = int(counts.sum())
        if total:
            full = numbers[counts > 0]
            keys = self.keys[full].tolist()
            pieces = list(map(recent_blocks.get, keys))
            for at in [at for at, piece in enumerate(pieces) if piece is None]:
                block = self.blocks[int(full[at])]
                piece = np.empty((block.count, self.width), dtype=self.dtype)
                read_rows(piece, [block], self.row_bytes)
                piece.flags.writeable = False  # shared by later reads
                recent_blocks.put(keys[at], piece)
                pieces[at] = piece
            rows = np.concatenate(pieces)
        else:
            rows = np.empty((0, self.width), dtype=self.dtype)
        # row r of block n is set row starts[n] + r
        first_out = np.cumsum(counts) - counts
        indices = np.arange(total, dtype=np.int64) + np.repeat(self.starts[numbers] - first_out,
                                                               counts)
        return rows, indices

    def chunks_of(self, numbers: Sequence[int]) -> np.ndarray:
        """The chunk of each row of blocks ``numbers`` (``(n, 3)`` int64)."""
        numbers = np.asarray(numbers, dtype=np.int64)
        return np.repeat(self.chunk_array[numbers], self.counts[numbers], axis=0)


class _RecentBlocks:
    """The blocks this process read last (as read-only arrays), up to
    :data:`CACHE_BYTES`; the oldest stored goes first.

    Neighbouring connectivity jobs read mostly the same chunks (a distance rule reads
    the chunks around its own), so most reads are served from here. Bounded, so that
    no rank's memory grows with the network. Stored blocks never change while they are
    readable: a block is its file and offset, which :meth:`key` makes one integer.
    Lookups take no lock (a dict lookup is atomic in CPython); storing does.
    """

    _OFFSET_BITS = 44  # 16 TB per file

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self._blocks: dict[int, np.ndarray] = {}
        self._order: deque[int] = deque()
        self._files: dict[str, int] = {}
        self._lock = threading.Lock()
        self.get = self._blocks.get

    def key(self, path: str, offset: int) -> int:
        """The key of the block at ``offset`` of ``path``."""
        number = self._files.get(path)
        if number is None:
            with self._lock:
                number = self._files.setdefault(path, len(self._files))
        return (number << self._OFFSET_BITS) | offset

    def put(self, key: int, block: np.ndarray) -> None:
        if block.nbytes > self.limit // 8:
            return
        with self._lock:
            if key in self._blocks:
                return
            self._blocks[key] = block
            self._order.append(key)
            self.size += block.nbytes
            while self.size > self.limit:
                self.size -= self._blocks.pop(self._order.popleft()).nbytes

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._order.clear()
            self._files.clear()
            self.size = 0


#: Recently read blocks kept per process, at most this many bytes.
CACHE_BYTES = 32 << 20
recent_blocks = _RecentBlocks(CACHE_BYTES)


def read_rows(out: np.ndarray, blocks: Sequence[Block], row_bytes: int) -> None:
    """Fill ``out`` with the rows of ``blocks``, one after the other (one ``pread``
    per block)."""
    view = memoryview(out.reshape(-1).view(np.uint8))
    at = 0
    descriptors: dict[str, int] = {}
    try:
        for block in blocks:
            size = block.count * row_bytes
            fd = descriptors.get(block.path)
            if fd is None:
                fd = descriptors[block.path] = os.open(block.path, os.O_RDONLY)
            done = 0
            while done < size:
                got = os.preadv(fd, [view[at + done:at + size]], block.offset + done)
                if got <= 0:
                    raise OSError(f"{block.path}: {size} bytes expected at byte "
                                  f"{block.offset}, the file is shorter")
                done += got
            at += size
    finally:
        for fd in descriptors.values():
            os.close(fd)
