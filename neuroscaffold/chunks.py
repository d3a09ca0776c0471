"""The chunk grid: arithmetic shared by placement, connectivity and storage.

Space is cut into a regular grid of boxes, the chunks; chunk ``(i, j, k)`` of size
``s`` spans ``[i*s_x, (i+1)*s_x) x ...``. Jobs work on one chunk (or on a region of
several), and storage keeps each chunk's cells apart, so the order of the stored data
never depends on which rank ran which job.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "Chunk",
    "apportion",
    "box_overlap",
    "chunk_indices_in_box",
    "chunk_key",
    "chunk_rng",
    "chunks_in_box",
    "parse_chunk_key",
]


@dataclass(frozen=True, order=True)
class Chunk:
    """A box of the chunk grid: its integer ``index`` and its ``size`` (µm)."""

    index: tuple[int, int, int]
    size: tuple[float, float, float]

    @property
    def ldc(self) -> np.ndarray:
        """Lower corner."""
        return np.multiply(self.index, self.size)

    @property
    def mdc(self) -> np.ndarray:
        """Upper corner (excluded)."""
        return np.multiply(np.add(self.index, 1), self.size)

    @property
    def key(self) -> str:
        """The storage name of the chunk, ``i_j_k``."""
        return chunk_key(self.index)

    def subchunks(self, size: Sequence[float]) -> list["Chunk"]:
        """The chunks of grid ``size`` that tile this one (its size is a multiple)."""
        ratio = np.rint(np.divide(self.size, size)).astype(int)
        first = np.multiply(self.index, ratio)
        return [
            Chunk(tuple(int(v) for v in first + offset), tuple(size))
            for offset in np.ndindex(*ratio)
        ]

    def __str__(self) -> str:
        return "({}, {}, {})".format(*self.index)


def chunk_key(index: Iterable[int]) -> str:
    """The storage name of chunk ``index``: ``"i_j_k"``."""
    return "_".join(str(int(v)) for v in index)


def parse_chunk_key(key: str) -> tuple[int, int, int]:
    """The index of the chunk stored under ``key`` (inverse of :func:`chunk_key`)."""
    i, j, k = (int(v) for v in key.split("_"))
    return (i, j, k)


def box_overlap(lo1, hi1, lo2, hi2) -> tuple[np.ndarray, np.ndarray, float]:
    """The intersection of two boxes: its corners and its volume (0 when empty)."""
    lo = np.maximum(lo1, lo2)
    hi = np.minimum(hi1, hi2)
    extent = np.clip(np.subtract(hi, lo), 0, None)
    return lo, hi, float(np.prod(extent))


def chunk_indices_in_box(lo, hi, size: Sequence[float]) -> np.ndarray:
    """The indices ``(n, 3)`` of the chunks of grid ``size`` that overlap box
    ``[lo, hi)`` with positive volume, in index order.

    Chunk ``i`` overlaps ``[lo, hi)`` along an axis exactly when
    ``floor(lo/s) <= i < ceil(hi/s)``, so the answer is a block of the grid: no chunk
    needs testing one by one.
    """
    size = np.asarray(size, dtype=float)
    first = np.floor(np.divide(lo, size)).astype(np.int64)
    last = np.ceil(np.divide(hi, size)).astype(np.int64)
    extent = np.maximum(last - first, 0)
    if not np.all(extent) or np.any(np.less_equal(hi, lo)):  # no volume: no chunk
        return np.empty((0, 3), dtype=np.int64)
    return np.ascontiguousarray(np.indices(tuple(extent.tolist()), dtype=np.int64).reshape(3, -1).T + first)


def chunks_in_box(lo, hi, size: Sequence[float]) -> list[Chunk]:
    """The chunks of grid ``size`` that overlap box ``[lo, hi)`` with positive volume,
    in index order (see :func:`chunk_indices_in_box`)."""
    size = tuple(float(s) for s in size)
    return [Chunk((int(i), int(j), int(k)), size)
            for i, j, k in chunk_indices_in_box(lo, hi, size).tolist()]


def apportion(expected: Sequence[float], total: int) -> list[int]:
    """Whole numbers close to ``expected`` that add up to ``total``.

    Largest-remainder rounding: each share gets its floor, then the largest remainders
    get one more (ties go to the earlier share), so the result is deterministic.
    """
    expected = np.asarray(expected, dtype=float)
    if expected.size == 0:
        return []
    if expected.sum() <= 0:
        return [0] * expected.size
    scaled = expected / expected.sum() * total
    shares = np.floor(scaled).astype(np.int64)
    missing = int(total - shares.sum())
    remainders = scaled - shares
    if missing > 0:
        shares[np.argsort(-remainders, kind="stable")[:missing]] += 1
    elif missing < 0:  # float rounding overshot: take back from the smallest remainders
        shares[np.argsort(remainders, kind="stable")[:-missing]] -= 1
    return [int(v) for v in shares]


def chunk_rng(seed: int, node_name: str, chunk: Chunk) -> np.random.Generator:
    """The random generator of one node's job on one chunk.

    Seeded from the network seed, the node's name and the chunk index, so a chunk gets
    the same numbers whichever rank runs it, in whatever order.
    """
    # SeedSequence entropy must be non-negative: shift chunk indices by 2**31.
    entropy = [int(seed), zlib.crc32(node_name.encode()), *(int(v) + 2**31 for v in chunk.index)]
    return np.random.default_rng(np.random.SeedSequence(entropy))
