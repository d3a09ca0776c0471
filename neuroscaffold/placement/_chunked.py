"""What placement and connection strategies share: jobs on chunks of the network."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..config._node import Node, config_root
from ..chunks import Chunk, chunk_rng

__all__ = ["ChunkedStrategy", "dependency_jobs", "job_key", "job_regions", "strategy_cpu_seconds"]


def job_key(node: Any, region: Chunk) -> str:
    """The name of ``node``'s job on ``region`` in journals: the same on every rank
    and in every run, so a resumed compile knows which jobs are done."""
    size = "x".join(f"{v:g}" for v in region.size)
    return f"{node.get_node_name()}:{region.key}:{size}"


def dependency_jobs(node: Any, pool: Any) -> list:
    """The jobs that ``node``'s ``depends_on`` nodes submitted to ``pool``."""
    return [job for dependency in node.depends_on for job in pool.get_submissions_of(dependency)]


@dataclass
class _RunningJob:
    strategy: Any
    chunk: Chunk
    collected: dict[str, list[np.ndarray]] = field(default_factory=dict)


# CPU seconds this process spent inside strategies' own code (list.append is atomic).
_strategy_cpu: list[float] = []


def strategy_cpu_seconds() -> float:
    """CPU seconds this process spent in strategies' ``place``/``connect`` (for
    benchmarks: the rest of a compile's CPU is the framework's)."""
    return float(sum(_strategy_cpu))


# The job each thread runs. A rank may run two jobs of one strategy at once (the main
# rank runs jobs in the dispatcher and in a thread), so job state is never kept on the
# strategy itself.
_running = threading.local()


class ChunkedStrategy(Node):
    """What placement and connection strategies share: a name, the network's chunk
    grid, and random numbers seeded per chunk."""

    @property
    def name(self) -> str:
        return self._config_key

    def scaffold_chunk_size(self) -> tuple[float, float, float]:
        """The chunk size of the network this strategy belongs to."""
        return tuple(config_root(self).network.chunk_size)

    def rng(self, chunk: Chunk | None = None) -> np.random.Generator:
        """The random generator of this strategy's job on ``chunk`` (default: the
        chunk of the job running now), the same on every rank."""
        if chunk is None:
            job = self._current_job()
            if job is None:
                raise ValueError("rng() needs a chunk outside of a job")
            chunk = job.chunk
        return chunk_rng(config_root(self).seed, self.get_node_name(), chunk)

    @contextlib.contextmanager
    def _job(self, chunk: Chunk) -> Iterator[_RunningJob]:
        """Run the strategy's own code (``place``, ``connect``) for ``chunk``; its CPU
        time is counted in :func:`strategy_cpu_seconds`."""
        previous = getattr(_running, "job", None)
        _running.job = _RunningJob(self, chunk)
        started = time.thread_time()
        try:
            yield _running.job
        finally:
            _running.job = previous
            _strategy_cpu.append(time.thread_time() - started)

    def pending(self, regions: list[Chunk]) -> list[Chunk]:
        """The ``regions`` whose jobs still have to run: all, except in a resumed
        compile (committed ones) or an append (strategies the network has)."""
        network = self.scaffold
        return [r for r in regions if not network.job_done(job_key(self, r), self)]

    def _current_job(self) -> _RunningJob | None:
        job = getattr(_running, "job", None)
        return job if job is not None and job.strategy is self else None


def job_regions(chunks: list[Chunk], grid, chunk_size) -> list[Chunk]:
    """The job regions of size ``chunk_size`` (None: the chunks themselves) that cover
    ``chunks``, in index order; ``chunk_size`` must be a whole multiple of ``grid``."""
    if chunk_size is None:
        return chunks
    chunk_size = tuple(float(v) for v in np.broadcast_to(chunk_size, (3,)))
    ratio = np.divide(chunk_size, grid)
    if np.any(ratio < 1) or not np.allclose(ratio, np.rint(ratio)):
        raise ValueError(f"chunk_size {list(chunk_size)} is not a whole multiple of the "
                         f"network's chunk size {list(grid)}")
    ratio = np.rint(ratio).astype(int)
    indices = {tuple(int(v) for v in np.floor_divide(c.index, ratio)) for c in chunks}
    return [Chunk(index, chunk_size) for index in sorted(indices)]
