"""The plan of a compile, computed before any job is queued: chunks and jobs per
strategy, the expected cells of every type, estimates of memory and file size.

:func:`build_plan` never enumerates more than :data:`MAX_CHUNKS` chunks, so an absurd
model is refused in a fraction of a second. :meth:`Plan.check` raises a one-line
:class:`~neuroscaffold.exceptions.ConfigurationError` that names the value:

* geometry errors, always: a partition (or fixed position) outside the network, a
  chunk grid of more than :data:`MAX_CHUNKS` chunks;
* estimate errors, unless ``force``: more than :data:`MAX_JOBS` jobs, a job or a rank
  that would need more memory than the machine has available, a file larger than the
  free disk space.

``neuroscaffold compile --dry-run`` prints :meth:`Plan.format`; ``--force`` skips the
estimate errors (never the geometry errors).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ConfigurationError
from .placement import CellEstimates

__all__ = [
    "MAX_CHUNKS",
    "MAX_JOBS",
    "Plan",
    "StrategyPlan",
    "available_memory",
    "build_plan",
    "in_dependency_order",
]

#: Chunks of the network grid beyond which a compile is refused, ``--force`` or not
#: (every chunk is a Python object and a job; more cannot be scheduled in sane time).
MAX_CHUNKS = 10_000_000
#: Jobs of a compile beyond which it is refused unless forced.
MAX_JOBS = 1_000_000
#: Networks of up to this many chunks have their strategies' chunks enumerated for
#: the plan; larger ones are counted from the partitions' bounds (an upper bound).
EXACT_CHUNKS = 20_000
#: Bytes per stored cell (3 float64) and per stored connection (2 int64).
CELL_BYTES, PAIR_BYTES = 24, 16
#: Bytes a job needs per cell it places (positions, a temporary copy, binning masks).
PLACE_BYTES_PER_CELL = 64
#: Bytes a rank keeps per cell a connection strategy reads (positions, chunk, index).
CACHE_BYTES_PER_CELL = 56
#: Bytes a connection job needs per pair it finds (search result, pairs, sorting).
CONNECT_BYTES_PER_PAIR = 72
#: Bytes of a compiling process before any data: the interpreter with numpy, scipy,
#: h5py and the pool loaded (measured: 86 MB for the 1x example serially, of which the
#: data is ~2 MB), and what a rank adds under mpiexec (MPI's buffers: 104 MB per rank).
PROCESS_BYTES, MPI_RANK_BYTES = 80 * 2**20, 17 * 2**20
#: Bytes a rank holds per cell of the network while it compiles (block tables, the
#: merge's index; measured: 103 MB at 8x, 770,272 cells, serially).
NETWORK_BYTES_PER_CELL = 24

_AXES = "xyz"


def available_memory() -> int | None:
    """Bytes of memory available on this machine (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _local_ranks() -> int:
    """Ranks on this machine, from the launcher's environment (1 when unknown)."""
    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def size_text(size: float) -> str:
    """Bytes as ``12.3 MB`` / ``22.4 GiB``-style text (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _count(value: float | None) -> str:
    if value is None:
        return "?"
    if value >= 1e15:
        return f"{value:.3g}"
    return f"{int(round(value)):,}"


@dataclass
class StrategyPlan:
    """What one strategy will do: its ``jobs`` over ``chunks`` network chunks, the
    cells it places per type (placement) or the connections it should make
    (connectivity; None when unknown), and the memory its largest job needs."""

    name: str
    phase: str
    kind: str
    chunks: int
    jobs: int
    cells: dict[str, float | None] = field(default_factory=dict)
    connections: float | None = None
    job_memory: float = 0.0
    cache_memory: float = 0.0
    #: the configured value the estimate follows from, for messages (path, text)
    source: tuple[str, str] | None = None


@dataclass
class Plan:
    """The plan of a network's compile (see :func:`build_plan`)."""

    name: str
    size: tuple[float, float, float]
    chunk_size: tuple[float, float, float]
    chunks: float
    strategies: list[StrategyPlan] = field(default_factory=list)
    geometry_errors: list[str] = field(default_factory=list)
    estimate_errors: list[str] = field(default_factory=list)
    memory_available: int | None = None
    disk_free: int | None = None
    local_ranks: int = 1

    @property
    def jobs(self) -> int:
        return sum(s.jobs for s in self.strategies)

    @property
    def cells(self) -> dict[str, float | None]:
        """Expected cells per type (None: a strategy that does not say)."""
        totals: dict[str, float | None] = {}
        for strategy in self.strategies:
            for name, count in strategy.cells.items():
                if count is None or (name in totals and totals[name] is None):
                    totals[name] = None
                else:
                    totals[name] = totals.get(name, 0) + count
        return totals

    @property
    def connections(self) -> float | None:
        values = [s.connections for s in self.strategies if s.phase == "connectivity"]
        return None if any(v is None for v in values) else float(sum(values))

    @property
    def file_size(self) -> float:
        """Estimated bytes of the network file."""
        cells = sum(v for v in self.cells.values() if v is not None)
        pairs = sum(s.connections or 0 for s in self.strategies)
        return cells * CELL_BYTES + pairs * PAIR_BYTES + 4096 * self.jobs

    @property
    def rank_memory(self) -> float:
        """Estimated peak bytes of one rank, as its process uses them: the process
        itself (:data:`PROCESS_BYTES`, and :data:`MPI_RANK_BYTES` under mpiexec), what
        it holds per cell of the network, and its largest job."""
        cells = sum(v for v in self.cells.values() if v is not None)
        base = PROCESS_BYTES + (MPI_RANK_BYTES if self.local_ranks > 1 else 0)
        return (base + cells * NETWORK_BYTES_PER_CELL
                + max([s.job_memory + s.cache_memory for s in self.strategies] or [0.0]))

    def check(self, force: bool = False) -> None:
        """Raise a one-line :class:`ConfigurationError` for the first problem: a
        geometry error always, an estimate error unless ``force``."""
        if self.geometry_errors:
            raise ConfigurationError(self.geometry_errors[0])
        if self.estimate_errors and not force:
            raise ConfigurationError(f"{self.estimate_errors[0]} (if you are sure, "
                                     "compile with --force or compile(force=True))")

    def format(self) -> str:
        """The text of ``neuroscaffold compile --dry-run``."""
        size = " x ".join(f"{v:g}" for v in self.size)
        grid = " x ".join(f"{v:g}" for v in self.chunk_size)
        lines = [f"plan of '{self.name}': {size} µm, {_count(self.chunks)} chunks of {grid} µm"]
        for error in self.geometry_errors:
            lines.append(f"error: {error}")
        for error in self.estimate_errors:
            lines.append(f"refused unless forced: {error}")
        if self.geometry_errors:
            return "\n".join(lines)
        width = max([len(s.name) for s in self.strategies] + [8])
        kind_width = max([len(s.kind) for s in self.strategies] + [10])
        for phase in ("placement", "connectivity"):
            members = [s for s in self.strategies if s.phase == phase]
            jobs = sum(s.jobs for s in members)
            lines.append(f"{phase}: {len(members)} strateg{'y' if len(members) == 1 else 'ies'}, "
                         f"{jobs:,} jobs")
            for s in members:
                if phase == "placement":
                    what = ", ".join(f"{name} {_count(n)}" for name, n in s.cells.items())
                    what = f"cells: {what}" if what else "no cells"
                else:
                    what = f"~{_count(s.connections)} connections"
                lines.append(f"  {s.name:<{width}}  {s.kind:<{kind_width}}  {s.jobs:>7,} jobs "
                             f"{s.chunks:>7,} chunks  {what}")
        cells = self.cells
        total = None if any(v is None for v in cells.values()) else sum(cells.values())
        lines.append("expected cells: " + ", ".join(f"{k} {_count(v)}" for k, v in cells.items())
                     + f"; total {_count(total)}")
        memory = f"~{size_text(self.rank_memory)} per rank"
        if self.memory_available is not None:
            memory += f" ({size_text(self.memory_available)} available"
            memory += f", {self.local_ranks} ranks here)" if self.local_ranks > 1 else ")"
        disk = f"file ~{size_text(self.file_size)}"
        if self.disk_free is not None:
            disk += f" ({size_text(self.disk_free)} free)"
        lines.append(f"estimates: memory {memory}, {disk}, "
                     f"~{_count(self.connections)} connections")
        return "\n".join(lines)


# --- building the plan ----------------------------------------------------------------


def _grid_counts(lo, hi, chunk_size) -> np.ndarray:
    """Chunks along each axis that box ``[lo, hi)`` overlaps (floats: may be huge)."""
    lo, hi, size = (np.asarray(v, dtype=float) for v in (lo, hi, chunk_size))
    with np.errstate(all="ignore"):
        counts = np.ceil(hi / size) - np.floor(lo / size)
    return np.where(hi > lo, np.maximum(counts, 0), 0)


def _check_geometry(configuration: Any, plan: Plan) -> None:
    size = np.array(plan.size)
    grid = np.array(plan.chunk_size)
    per_axis = _grid_counts(np.zeros(3), size, grid)
    plan.chunks = float(np.prod(per_axis))
    if plan.chunks > MAX_CHUNKS:
        worst = int(np.argmax(per_axis))
        if per_axis[worst] > MAX_CHUNKS:  # one axis alone: name that size
            path, value = f"network.{_AXES[worst]}", f"{size[worst]:g} µm"
        else:
            path = "network.chunk_size"
            value = "[" + ", ".join(f"{v:g}" for v in grid) + "] µm"
        plan.geometry_errors.append(
            f"{path}: {value} makes {_count(plan.chunks)} chunks of "
            f"{' x '.join(f'{v:g}' for v in grid)} µm in a {' x '.join(f'{v:g}' for v in size)}"
            f" µm network; at most {MAX_CHUNKS:,} are allowed (use larger chunks or a "
            "smaller network)")
        return
    slack = 1e-9 * np.maximum(size, 1.0)
    for name, partition in configuration.partitions.items():
        try:
            lo, hi = (np.asarray(v, dtype=float) for v in partition.bounds())
        except Exception:  # a user partition that cannot say: nothing to check
            continue
        outside = (lo < -slack) | (hi > size + slack)
        if outside.any():
            axis = int(np.flatnonzero(outside)[0])
            a = _AXES[axis]
            if hi[axis] <= 0 or lo[axis] >= size[axis]:
                how = "lies outside"
            else:
                how = "runs past"
            plan.geometry_errors.append(
                f"partitions.{name}: {type(partition).__name__.lower()} from {a}={lo[axis]:g} "
                f"to {a}={hi[axis]:g} µm {how} the network, which spans {a}=0 to "
                f"{size[axis]:g} µm (network.{a})")
    from .placement._builtins import FixedPositions

    for name, strategy in configuration.placement.items():
        if isinstance(strategy, FixedPositions) and strategy.positions:
            points = np.asarray(strategy.positions, dtype=float).reshape(-1, 3)
            bad = np.flatnonzero(np.any((points < -slack) | (points >= size + slack), axis=1))
            if len(bad):
                row = ", ".join(f"{v:g}" for v in points[bad[0]])
                plan.geometry_errors.append(
                    f"placement.{name}.positions: {len(bad):,} of {len(points):,} positions lie "
                    f"outside the network (0 to {', '.join(f'{v:g}' for v in size)} µm); the "
                    f"first is row {bad[0]}: [{row}]")


#: Job regions a strategy's estimate hook is asked about at most; a strategy with more
#: is estimated from an even sample of them, scaled up.
SAMPLE_CHUNKS = 500


#: The same for connection strategies in networks too large to enumerate their chunks
#: (their estimates cost more).
SAMPLE_CONNECT_CHUNKS = 16


def _sample(chunks: list, limit: int = SAMPLE_CHUNKS) -> tuple[list, float]:
    """At most ``limit`` of ``chunks``, evenly spread, and the factor that scales
    their sum to all of them."""
    if len(chunks) <= limit:
        return chunks, 1.0
    picks = np.linspace(0, len(chunks) - 1, limit).round().astype(int)
    return [chunks[n] for n in picks], len(chunks) / limit


def _box_sample(strategies: list, grid, limit: int) -> tuple[list, int]:
    """An even sample of the chunks the partitions of ``strategies`` overlap, and how
    many there are, without enumerating them (for networks of very many chunks)."""
    from .chunks import Chunk

    blocks = []
    for strategy in strategies:
        for partition in strategy.partitions:
            lo, hi = partition.bounds()
            first = np.floor(np.divide(lo, grid)).astype(np.int64)
            extent = _grid_counts(lo, hi, grid).astype(np.int64)
            blocks.append((first, extent))
    total = int(sum(int(np.prod(extent)) for _, extent in blocks))
    chunks = set()
    for first, extent in blocks:
        size = int(np.prod(extent))
        if size == 0:
            continue
        share = max(1, round(limit * size / max(total, 1)))
        for flat in np.unique(np.linspace(0, size - 1, min(share, size)).round().astype(np.int64)):
            index = np.unravel_index(int(flat), tuple(extent.tolist()))
            chunks.add(Chunk(tuple(int(v) for v in first + np.array(index)), tuple(grid)))
    return sorted(chunks), total


def _job_regions(strategy: Any, grid, exact: bool, placing: list,
                 limit: int = SAMPLE_CHUNKS) -> tuple[list, float, int]:
    """The job regions whose estimates the plan asks for, the factor that scales their
    sum to the whole strategy, and the strategy's number of jobs. ``placing``: the
    placement strategies whose partitions bound the jobs, when they are not enumerated."""
    if exact or not placing or not all(s.partitions for s in placing):
        chunks = strategy.get_chunks()
        sample, factor = _sample(chunks, limit)
        return sample, factor, len(chunks)
    sample, total = _box_sample(placing, grid, limit)
    return sample, total / max(len(sample), 1), total


def _placement_plan(strategy: Any, grid, exact: bool) -> StrategyPlan:
    regions, factor, jobs = _job_regions(strategy, grid, exact, [strategy])
    plan = StrategyPlan(strategy.name, "placement", _kind(strategy), jobs, jobs)
    answers = [strategy.estimate_cells(region) for region in regions]
    if any(answer is None for answer in answers):
        plan.cells = {ct.name: None for ct in strategy.cell_types}
        return plan
    plan.cells = {ct.name: factor * sum(float(a.get(ct.name, 0.0)) for a in answers)
                  for ct in strategy.cell_types}
    largest = max((sum(a.values()) for a in answers), default=0.0)
    plan.job_memory = largest * PLACE_BYTES_PER_CELL
    from .placement import PlacementStrategy

    own_hook = type(strategy).estimate_cells is not PlacementStrategy.estimate_cells
    for cell_type in () if own_hook else strategy.cell_types:  # the value they follow
        for key in ("count", "density"):
            own, of_type = getattr(strategy, key), getattr(cell_type, key)
            value = own if own is not None else of_type
            if value is not None and plan.source is None:
                where = "placement." + strategy.name if own is not None else "cell_types." + cell_type.name
                text = f"{value:,}" if key == "count" else f"{value:g} cells/µm³"
                plan.source = (f"{where}.{key}", text)
    return plan


def _connectivity_plan(strategy: Any, cells: Any, grid, exact: bool) -> StrategyPlan:
    job_type = strategy.job_cell_type().name
    placing = [s for s in strategy._placement_strategies()
               if job_type in {ct.name for ct in s.cell_types}]
    regions, factor, jobs = _job_regions(strategy, grid, exact, placing,
                                         SAMPLE_CHUNKS if exact else SAMPLE_CONNECT_CHUNKS)
    plan = StrategyPlan(strategy.name, "connectivity", _kind(strategy), jobs, jobs)
    answers = [strategy.estimate_connections(region, cells) for region in regions]
    if any(answer is None for answer in answers):
        return plan
    plan.connections = factor * float(sum(answers))
    # a job holds its pairs and the cells it read: its own, and those it pairs them with
    largest = int(np.argmax(answers)) if answers else 0
    own = cells.in_chunk(job_type, regions[largest]) if regions else 0.0
    plan.job_memory = (max(answers, default=0.0) * CONNECT_BYTES_PER_PAIR
                       + (own or 0.0) * CACHE_BYTES_PER_CELL)
    plan.cache_memory = strategy.estimate_cache_memory(cells)
    radius = getattr(strategy, "radius", None)
    if isinstance(radius, (int, float)):
        plan.source = (f"connectivity.{strategy.name}.radius", f"{radius:g} µm")
    return plan


def _kind(strategy: Any) -> str:
    from .config._classes import class_reference

    builtins = type(strategy)._config_dynamic
    for klass in type(strategy).__mro__:
        spec = vars(klass).get("_config_dynamic")
        if spec is not None:
            builtins = spec[1]
            break
    reference = class_reference(type(strategy), builtins or {})
    return reference.rsplit(".", 1)[-1]


def in_dependency_order(section: Any) -> list:
    """The strategies of ``section`` in the order a compile schedules them: each after
    those in its ``depends_on``."""
    ordered: list = []
    seen: set[int] = set()

    def visit(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        for dependency in node.depends_on:
            visit(dependency)
        ordered.append(node)

    for node in section.values():
        visit(node)
    return ordered


def _unknown(strategy: Any, phase: str) -> StrategyPlan:
    """The plan of a strategy whose numbers cannot be estimated: its jobs only (its
    own errors, if any, come when its jobs are queued)."""
    try:
        chunks = len(strategy.get_chunks())
    except Exception:
        chunks = 0
    return StrategyPlan(strategy.name, phase, _kind(strategy), chunks, chunks)


def build_plan(network: Any, output: str | os.PathLike | None = None) -> Plan:
    """The plan of compiling ``network`` (a :class:`~neuroscaffold.Network`, or a
    :class:`~neuroscaffold.Configuration`); ``output``: the file it would write
    (default: the network's storage path), for the free disk space."""
    configuration = getattr(network, "configuration", network)
    geometry = configuration.network
    plan = Plan(
        name=configuration.name,
        size=(geometry.x, geometry.y, geometry.z),
        chunk_size=tuple(float(v) for v in geometry.chunk_size),
        chunks=0.0,
        memory_available=available_memory(),
        local_ranks=_local_ranks(),
    )
    if output is None:
        output = getattr(getattr(network, "storage", None), "path", None)
    if output is not None:
        try:
            plan.disk_free = shutil.disk_usage(Path(output).resolve().parent).free
        except OSError:
            plan.disk_free = None
    _check_geometry(configuration, plan)
    if plan.geometry_errors:
        return plan
    grid = plan.chunk_size
    exact = plan.chunks <= EXACT_CHUNKS  # else count chunks without building them
    for strategy in in_dependency_order(configuration.placement):
        try:
            plan.strategies.append(_placement_plan(strategy, grid, exact))
        except Exception:  # a user strategy or partition the plan cannot estimate
            plan.strategies.append(_unknown(strategy, "placement"))
            plan.strategies[-1].cells = {ct.name: None for ct in strategy.cell_types}
    # densities are looked up per chunk, or in regions of several in a huge grid
    scale = 1.0 if exact else float(np.ceil((plan.chunks / EXACT_CHUNKS) ** (1 / 3)))
    cells = CellEstimates(configuration.placement.values(), tuple(v * scale for v in grid),
                          plan.cells)
    for strategy in in_dependency_order(configuration.connectivity):
        try:
            plan.strategies.append(_connectivity_plan(strategy, cells, grid, exact))
        except Exception:
            plan.strategies.append(_unknown(strategy, "connectivity"))
    _check_estimates(plan)
    return plan


def _check_estimates(plan: Plan) -> None:
    if plan.jobs > MAX_JOBS:
        worst = max(plan.strategies, key=lambda s: s.jobs)
        plan.estimate_errors.append(
            f"the compile would run {plan.jobs:,} jobs ({worst.phase}.{worst.name}: "
            f"{worst.jobs:,}), more than {MAX_JOBS:,}; use a larger network.chunk_size")
    available = plan.memory_available
    if available is not None:
        budget = available / plan.local_ranks
        for s in plan.strategies:  # placement first: its values drive the rest
            need = s.job_memory + s.cache_memory
            if need <= budget:
                continue
            source = f" ({s.source[0]}: {s.source[1]})" if s.source else ""
            if s.phase == "placement":
                cells = sum(v for v in s.cells.values() if v is not None)
                what = f"{_count(cells)} cells"
            else:
                what = f"~{_count(s.connections)} connections"
            plan.estimate_errors.append(
                f"{s.phase}.{s.name}: {what}{source} would need about {size_text(need)} "
                f"of memory per rank, more than the {size_text(budget)} available"
                + (f" to each of {plan.local_ranks} ranks here" if plan.local_ranks > 1 else ""))
            break
    if plan.disk_free is not None and plan.file_size > plan.disk_free:
        plan.estimate_errors.append(
            f"the network file would take about {size_text(plan.file_size)}, more than the "
            f"{size_text(plan.disk_free)} free on its disk")
