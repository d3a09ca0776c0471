"""What placement and connection strategies share: jobs on chunks of the network."""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..config._node import Node, config_root
from ..chunks import Chunk, chunk_rng
from ..exceptions import NeuroscaffoldWarning

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
        time is counted in :func:`strategy_cpu_seconds`, and a draw from numpy's
        global generator is reported (see :func:`_global_draws`)."""
        previous = getattr(_running, "job", None)
        _running.job = _RunningJob(self, chunk)
        started = time.thread_time()
        with _global_draws(self):
            try:
                yield _running.job
            finally:
                _running.job = previous
                _strategy_cpu.append(time.thread_time() - started)

    def queued_regions(self) -> list[Chunk]:
        """The regions a compile queues one job for (the manifest counts them)."""
        return self.get_chunks()  # type: ignore[attr-defined]

    def pending(self, regions: list[Chunk]) -> list[Chunk]:
        """The ``regions`` whose jobs still have to run: all, except in a resumed
        compile (committed ones) or an append (strategies the network has)."""
        network = self.scaffold
        return [r for r in regions if not network.job_done(job_key(self, r), self)]

    def _current_job(self) -> _RunningJob | None:
        job = getattr(_running, "job", None)
        return job if job is not None and job.strategy is self else None


def _state_view() -> np.ndarray | None:
    """A live view of the global MT19937's state (624 key words, then the position),
    read in a microsecond instead of ``np.random.get_state``'s 40."""
    try:
        bit_generator = np.random.mtrand._rand._bit_generator
        words = (ctypes.c_uint32 * 625).from_address(bit_generator.ctypes.state_address)
        return np.ctypeslib.as_array(words)
    except (AttributeError, TypeError, ValueError):
        return None


_STATE = _state_view()


def _global_state() -> tuple:
    """A fingerprint of numpy's global generator (``np.random.*``): any draw or seeding
    changes it."""
    view = _STATE
    if view is not None and np.random.mtrand._rand._bit_generator.ctypes.state_address \
            == view.ctypes.data:
        return (int(view[624]), int(view[0]), int(view[623]))
    state = np.random.get_state(legacy=False)
    key = state["state"]["key"]
    return (state["state"]["pos"], int(key[0]), int(key[-1]))


# Jobs running in this process: a token per job -> (its strategy's name, the names of
# the strategies whose jobs ran alongside it): the main rank runs two jobs at once, and
# either may have drawn.
_alongside: dict[object, tuple[str, set[str]]] = {}
_alongside_lock = threading.Lock()
_warned: set[str] = set()


@contextlib.contextmanager
def _global_draws(strategy: Any) -> Iterator[None]:
    """Warn once per strategy (and process) whose job drew from numpy's global
    generator: its numbers depend on the jobs a rank ran before, so the network would
    differ with the rank count. A change while another strategy's job ran alongside is
    not blamed on either (the next job of the culprit, run alone, is)."""
    name = strategy.get_node_name()
    token = object()
    with _alongside_lock:
        for _, others in _alongside.values():
            others.add(name)
        _alongside[token] = (name, {other for other, _ in _alongside.values()})
    before = _global_state()
    try:
        yield
    finally:
        with _alongside_lock:
            alone = _alongside.pop(token)[1] <= {name}
        if alone and name not in _warned and _global_state() != before:
            _warned.add(name)
            section = name.split(".")[-2] if name.count(".") else "strategy"
            warnings.warn(
                f"{section} '{strategy.name}' ({type(strategy).__name__}) draws from numpy's global random "
                "generator (np.random); its cells or connections then depend on which "
                "jobs each rank ran before, so the network differs with the rank count: "
                "draw from self.rng() instead (seeded per chunk)",
                NeuroscaffoldWarning, stacklevel=2)


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
