"""Writing a compiled network as a SONATA circuit: collective, streamed, rank-shared.

The main rank checks the request and creates the files with every large dataset
allocated (:mod:`._columns`); every rank then writes its share of the rows of each
population and connection set, read block by block from the network file, and builds
its share of the edge indices (:mod:`._index`). Everything is written into a staging
directory next to ``DIR``, which replaces ``DIR`` only when it is complete: an export
that fails or is interrupted leaves ``DIR`` as it was.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import h5py
import numpy as np

from .._agreement import collect, share
from .._writing import on_main
from ..exceptions import NeuroscaffoldError, ParallelError, StorageError
from ..storage import HDF5Storage, NetworkState
from ._columns import Column, ColumnWriter, allocate, plain_group
from ._index import (Buckets, RunCounter, RunSpiller, blocks_with_previous, write_bucket,
                     write_lookup)

__all__ = ["EdgeSet", "NodeSet", "export_sonata", "CIRCUIT_CONFIG"]

T = TypeVar("T")

CIRCUIT_CONFIG = "circuit_config.json"
NETWORK = "network"  #: the folder of the circuit's own files
ROWS = 1 << 18  #: rows per block read and written
DIRECTIONS = ("source_to_target", "target_to_source")


@dataclass(frozen=True)
class NodeSet:
    """One node population: a cell type (with positions) or a virtual population."""

    name: str
    count: int
    type_id: int
    virtual: bool = False
    folder: str = NETWORK

    @property
    def file(self) -> str:
        return f"{self.folder}/nodes_{self.name}.h5"


@dataclass(frozen=True)
class EdgeSet:
    """One edge population: a stored connection set, or the one-to-one edges from a
    virtual population (``source_offset`` + i -> i, or -> ``target_cells[i]``)."""

    name: str
    pre: str
    post: str
    count: int
    type_id: int
    pre_count: int
    post_count: int
    stored: str | None = None  #: the connection set the pairs are read from
    source_offset: int = 0
    folder: str = NETWORK
    #: the target cells of virtual edges when not all of a population (sorted; edge i
    #: goes from virtual node ``source_offset + i`` to cell ``target_cells[i]``)
    target_cells: np.ndarray | None = field(default=None, compare=False)

    @property
    def file(self) -> str:
        return f"{self.folder}/edges_{self.name}.h5"

    def blocks(self, storage: HDF5Storage, start: int, stop: int) -> Iterator[np.ndarray]:
        """The pairs of rows ``start:stop``, block by block."""
        if self.stored is not None:
            yield from storage.iter_rows("connectivity", self.stored, ROWS, start, stop)
            return
        for first in range(start, stop, ROWS):
            rows = np.arange(first, min(first + ROWS, stop), dtype=np.int64)
            targets = rows if self.target_cells is None else self.target_cells[rows]
            yield np.stack([rows + self.source_offset, targets], axis=1)


@dataclass
class Request:
    """What the main rank decided; sent to every rank."""

    staging: str
    nodes: list[NodeSet]
    edges: list[EdgeSet]
    extra: Any = None  #: what the simulation part writes at the end (main rank)
    columns: dict[str, dict[str, Column]] = field(default_factory=dict)


def share_of(count: int, rank: int, size: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of ``count`` that ``rank`` of ``size`` handles."""
    return count * rank // size, count * (rank + 1) // size


def _together(work: Callable[[], T]) -> T:
    """Run ``work`` on every rank; if it failed on any rank, every rank raises (the
    failing rank its own error, the others a one-line error naming it)."""
    from ..services import MPI

    error: BaseException | None = None
    result = None
    try:
        result = work()
    except Exception as exc:  # handed to every rank below
        error = exc
    failures = collect(None if error is None else f"rank {MPI.get_rank()}: {_line(error)}")
    first = share(next((f for f in failures if f), None) if failures else None)
    if error is not None:
        raise error
    if first is not None:
        raise ParallelError(f"the export failed on {first}")
    return result  # type: ignore[return-value]


def _line(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if isinstance(error, NeuroscaffoldError) else f"{type(error).__name__}: {text}"


def check_finished(storage: HDF5Storage) -> None:
    """A one-line error unless ``storage`` holds a finished network."""
    state = storage.state()
    if state is NetworkState.MISSING:
        raise StorageError(f"{storage.path}: no such network file")
    if state is NetworkState.INCOMPLETE:
        raise StorageError(f"{storage.path}: cannot export an unfinished network: "
                           f"{storage.progress().describe()}")


def check_target(directory: Path, force: bool) -> None:
    """``directory`` may be written: missing, empty, or replaced with ``force``."""
    if directory.exists() and not directory.is_dir():
        raise StorageError(f"{directory}: exists and is not a directory; choose another "
                           "directory for the SONATA export")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise StorageError(f"{directory}: exists and is not empty; use --force to replace "
                           "it, or choose another directory")
    if not directory.parent.resolve().is_dir():
        raise StorageError(f"{directory}: directory {str(directory.parent)!r} does not exist")


def circuit_sets(storage: HDF5Storage) -> tuple[list[NodeSet], list[EdgeSet]]:
    """A node population per stored cell type and an edge population per stored
    connection set, with their type ids (cell types first, in name order)."""
    summary = storage.summary()
    nodes = [NodeSet(name, count, number) for number, (name, count)
             in enumerate(summary["cells"].items())]
    sizes = summary["cells"]
    edges = []
    for number, (name, (pre, post, count)) in enumerate(summary["connections"].items()):
        edges.append(EdgeSet(name, pre, post, count, number, sizes.get(pre, 0),
                             sizes.get(post, 0), stored=name))
    return nodes, edges


def export_sonata(network: Any, directory: str | os.PathLike, simulation: str | None = None,
                  *, force: bool = False) -> Path:
    """Write the finished network ``network`` (a :class:`~neuroscaffold.Network`, an
    :class:`~neuroscaffold.storage.HDF5Storage` or a file path) as a SONATA circuit in
    ``directory``; with ``simulation``, also what BMTK's PointNet needs to run that
    simulation of the network's configuration (see ``docs/sonata.md``).

    Collective under MPI: every rank writes its share. Returns ``directory``.

    Raises:
        StorageError: the network is unfinished (the message says how to resume it),
            or ``directory`` exists and is not empty (pass ``force`` to replace it).
        ConfigurationError: no simulation ``simulation``, or one that is not exportable.
    """
    from ..services import MPI
    from ._simulation import plan_simulation, write_simulation

    storage = _storage_of(network)
    directory = Path(directory)
    rank, size = MPI.get_rank(), MPI.get_size()

    def prepare() -> Request:
        check_finished(storage)
        check_target(directory, force)
        if storage.path.resolve().is_relative_to(directory.resolve()):
            raise StorageError(f"{directory}: holds the network {storage.path}; export to "
                               "another directory")
        nodes, edges = circuit_sets(storage)
        extra = None
        if simulation is not None:
            extra = plan_simulation(storage, simulation, nodes, edges)
            nodes, edges = nodes + extra.nodes, edges + extra.edges
        remove_abandoned(directory)
        staging = _beside(directory, "export")
        for folder in {item.folder for item in [*nodes, *edges]} | {".scratch"}:
            (staging / folder).mkdir(parents=True, exist_ok=True)
        request = Request(str(staging), nodes, edges, extra)
        for node_set in nodes:
            request.columns[node_set.file] = _create_nodes(staging, node_set)
        return request

    request = on_main(prepare)
    staging = Path(request.staging)
    try:
        for edge_set in request.edges:
            request.columns[edge_set.file] = _together(
                lambda: _count_and_create(storage, staging, edge_set, rank, size))
        _together(lambda: _write_rows(storage, request, rank, size))
        _together(lambda: _write_buckets(request, rank, size))
        if rank == 0:
            shutil.rmtree(staging / ".scratch")
            write_circuit(staging, request.nodes, request.edges, simulation is not None)
            if request.extra is not None:
                write_simulation(staging, storage, request.extra)
            _publish(staging, directory)
        _together(lambda: None)
    except BaseException:
        if rank == 0:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _storage_of(network: Any) -> HDF5Storage:
    if isinstance(network, HDF5Storage):
        return network
    storage = getattr(network, "storage", None)
    if isinstance(storage, HDF5Storage):
        return storage
    return HDF5Storage(network)


# --- the files ----------------------------------------------------------------------------


def _create_nodes(staging: Path, node_set: NodeSet) -> dict[str, Column]:
    """Main rank: a node file with its columns allocated."""
    with h5py.File(staging / node_set.file, "w", locking=False, track_order=False) as file:
        population = plain_group(plain_group(file, "nodes"), node_set.name)
        group = plain_group(population, "0")
        n = node_set.count
        columns = {
            "node_id": allocate(population, "node_id", n, "<u8"),  # BMTK needs it
            "node_type_id": allocate(population, "node_type_id", n, "<i8"),
            "node_group_id": allocate(population, "node_group_id", n, "<u4"),
            "node_group_index": allocate(population, "node_group_index", n, "<u8"),
        }
        if not node_set.virtual:
            for axis in "xyz":
                columns[axis] = allocate(group, axis, n, "<f8")
    return columns


def _count_and_create(storage: HDF5Storage, staging: Path, edge_set: EdgeSet, rank: int,
                      size: int) -> dict[str, Any]:
    """Pass 1 of one edge set (every rank counts the runs in its rows); then the main
    rank creates its file with the index sizes known, writes the lookups, and sends
    the columns and the bucket cuts to every rank."""
    start, stop = share_of(edge_set.count, rank, size)
    counters = (RunCounter(edge_set.pre_count), RunCounter(edge_set.post_count))
    if stop > start:
        blocks = edge_set.blocks(storage, start - 1 if start else 0, stop)
        for _, pairs, previous in blocks_with_previous(blocks, start, start > 0):
            for column, counter in enumerate(counters):
                counter.add(pairs[:, column], None if previous is None else previous[column])
    gathered = collect((counters[0].counts, counters[1].counts))
    layout: dict[str, Any] | None = None
    if rank == 0:
        totals = [sum(parts[d] for parts in gathered) for d in range(2)]  # type: ignore[union-attr]
        del gathered
        layout = _create_edges(staging, edge_set, [Buckets(t) for t in totals])
    return share(layout)


def _create_edges(staging: Path, edge_set: EdgeSet, buckets: list[Buckets]) -> dict[str, Any]:
    with h5py.File(staging / edge_set.file, "w", locking=False) as file:
        population = plain_group(plain_group(file, "edges"), edge_set.name)
        plain_group(population, "0")
        m = edge_set.count
        columns: dict[str, Any] = {
            "source_node_id": allocate(population, "source_node_id", m, "<u8"),
            "target_node_id": allocate(population, "target_node_id", m, "<u8"),
            "edge_type_id": allocate(population, "edge_type_id", m, "<i8"),
            "edge_group_id": allocate(population, "edge_group_id", m, "<u4"),
            "edge_group_index": allocate(population, "edge_group_index", m, "<u8"),
        }
        population["source_node_id"].attrs["node_population"] = edge_set.pre
        population["target_node_id"].attrs["node_population"] = edge_set.post
        indices = plain_group(population, "indices")
        lookups = []
        for direction, cut in zip(DIRECTIONS, buckets):
            index = plain_group(indices, direction)
            lookups.append(allocate(index, "node_id_to_ranges", len(cut.counts), "<u8", 2))
            columns[f"{direction}/range_to_edge_id"] = allocate(index, "range_to_edge_id",
                                                                cut.total, "<u8", 2)
            # BMTK reads the lookup under this name, libsonata under the other one
            index["node_id_to_range"] = index["node_id_to_ranges"]
            columns[f"{direction}/buckets"] = cut.compact()
    with ColumnWriter() as writer:
        for cut, lookup in zip(buckets, lookups):
            write_lookup(cut, lookup, writer)
    return columns


def _write_rows(storage: HDF5Storage, request: Request, rank: int, size: int) -> None:
    """Pass 2: this rank's rows of every population and set, and its runs spilled
    into the index buckets' scratch files."""
    scratch = Path(request.staging) / ".scratch"
    with ColumnWriter() as writer:
        for node_set in request.nodes:
            _write_nodes(storage, node_set, request.columns[node_set.file], writer, rank, size)
        for edge_set in request.edges:
            _write_edges(storage, edge_set, request.columns[edge_set.file], writer, scratch,
                         rank, size)


def _write_nodes(storage: HDF5Storage, node_set: NodeSet, columns: dict[str, Column],
                 writer: ColumnWriter, rank: int, size: int) -> None:
    start, stop = share_of(node_set.count, rank, size)
    for first in range(start, stop, ROWS):
        end = min(first + ROWS, stop)
        writer.write(columns["node_type_id"], first, np.full(end - first, node_set.type_id))
        writer.write(columns["node_group_id"], first, np.zeros(end - first))
        writer.write(columns["node_id"], first, np.arange(first, end))
        writer.write(columns["node_group_index"], first, np.arange(first, end))
    if not node_set.virtual and stop > start:
        first = start
        for positions in storage.iter_rows("placement", node_set.name, ROWS, start, stop):
            for axis, name in enumerate("xyz"):
                writer.write(columns[name], first, positions[:, axis])
            first += len(positions)


def _scratch(scratch: Path, edge_set: EdgeSet, direction: str, bucket: int, rank: int) -> Path:
    return scratch / f"{edge_set.name}.{direction}.{bucket}.r{rank}"


def _write_edges(storage: HDF5Storage, edge_set: EdgeSet, columns: dict[str, Any],
                 writer: ColumnWriter, scratch: Path, rank: int, size: int) -> None:
    start, stop = share_of(edge_set.count, rank, size)
    if stop <= start:
        return
    spillers = []
    for direction in DIRECTIONS:
        cut: Buckets = columns[f"{direction}/buckets"]
        spillers.append(RunSpiller(cut, [_scratch(scratch, edge_set, direction, b, rank)
                                         for b in range(len(cut))]))
    last = None
    blocks = edge_set.blocks(storage, start - 1 if start else 0, stop)
    for first, pairs, previous in blocks_with_previous(blocks, start, start > 0):
        n = len(pairs)
        writer.write(columns["source_node_id"], first, pairs[:, 0])
        writer.write(columns["target_node_id"], first, pairs[:, 1])
        writer.write(columns["edge_type_id"], first, np.full(n, edge_set.type_id))
        writer.write(columns["edge_group_id"], first, np.zeros(n))
        writer.write(columns["edge_group_index"], first, np.arange(first, first + n))
        for column, spiller in enumerate(spillers):
            spiller.add(first, pairs[:, column], None if previous is None else previous[column])
        last = pairs[-1]
    assert last is not None
    for column, spiller in enumerate(spillers):
        spiller.finish(_run_end(storage, edge_set, stop, column, int(last[column])))


def _run_end(storage: HDF5Storage, edge_set: EdgeSet, stop: int, column: int, node: int) -> int:
    """The row where the run of ``node`` that reaches row ``stop - 1`` ends: the
    first row from ``stop`` on with another node (it may lie in other ranks' rows)."""
    row = stop
    for pairs in edge_set.blocks(storage, stop, edge_set.count):
        other = np.flatnonzero(pairs[:, column] != node)
        if len(other):
            return row + int(other[0])
        row += len(pairs)
    return edge_set.count


def _write_buckets(request: Request, rank: int, size: int) -> None:
    """Pass 3: the buckets of every index, shared out over the ranks by size (the same
    sharing computed on every rank)."""
    scratch = Path(request.staging) / ".scratch"
    tasks = []
    for edge_set in request.edges:
        columns = request.columns[edge_set.file]
        for direction in DIRECTIONS:
            cut: Buckets = columns[f"{direction}/buckets"]
            for bucket in range(len(cut)):
                first, end = cut.rows(bucket)
                tasks.append((end - first, edge_set, direction, bucket))
    load = [0] * size
    with ColumnWriter() as writer:
        for rows, edge_set, direction, bucket in sorted(
                tasks, key=lambda task: (-task[0], task[1].name, task[2], task[3])):
            owner = load.index(min(load))
            load[owner] += rows + 1
            if owner != rank:
                continue
            columns = request.columns[edge_set.file]
            parts = [_scratch(scratch, edge_set, direction, bucket, r) for r in range(size)]
            write_bucket(columns[f"{direction}/buckets"], bucket, parts,
                         columns[f"{direction}/range_to_edge_id"], writer)


def write_circuit(staging: Path, nodes: list[NodeSet], edges: list[EdgeSet],
                  simulation: bool) -> None:
    """Main rank: ``circuit_config.json`` and the type tables of the circuit (the
    network's own populations; a simulation adds its own config, see ._simulation)."""
    own_nodes = [n for n in nodes if n.folder == NETWORK]
    own_edges = [e for e in edges if e.folder == NETWORK]
    write_table(staging / NETWORK / "node_types.csv", ["node_type_id", "pop_name"],
                [[n.type_id, n.name] for n in own_nodes])
    write_table(staging / NETWORK / "edge_types.csv", ["edge_type_id", "pop_name"],
                [[e.type_id, e.name] for e in own_edges])
    write_json(staging / CIRCUIT_CONFIG, circuit_config(own_nodes, own_edges, NETWORK))


def circuit_config(nodes: list[NodeSet], edges: list[EdgeSet], types: str,
                   components: dict[str, str] | None = None) -> dict[str, Any]:
    """A SONATA circuit config listing ``nodes`` and ``edges`` (paths relative to the
    config's folder), with the type tables in folder ``types``."""
    config: dict[str, Any] = {
        "manifest": {"$BASE_DIR": "."},
        "networks": {
            "nodes": [{"nodes_file": f"$BASE_DIR/{n.file}",
                       "node_types_file": f"$BASE_DIR/{types}/"
                                          f"{'virtual_' if n.virtual else ''}node_types.csv",
                       "populations": {n.name: {"type": "virtual" if n.virtual else "point_neuron"}}}
                      for n in nodes],
            "edges": [{"edges_file": f"$BASE_DIR/{e.file}",
                       "edge_types_file": f"$BASE_DIR/{types}/edge_types.csv",
                       "populations": {e.name: {}}} for e in edges],
        },
    }
    if components:
        config["components"] = components
    return config


def write_table(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """A space-separated SONATA type table (values must not contain spaces)."""
    lines = [" ".join(header)] + [" ".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _beside(directory: Path, kind: str) -> Path:
    """This process's own working directory next to ``directory``: ``kind`` is
    ``export`` (the staging directory) or ``old`` (the export it replaces, for a moment)."""
    return directory.parent / f".{directory.name}.{kind}-{socket.gethostname()}-{os.getpid()}"


def remove_abandoned(directory: Path) -> list[Path]:
    """Remove the working directories that exports killed outright (SIGKILL, a lost
    node) left next to ``directory``: those of processes of this host that no longer
    run. Another host's, or a running export's, are never touched. Returns them."""
    pattern = re.compile(rf"\.{re.escape(directory.name)}\.(?:export|old)-"
                         rf"{re.escape(socket.gethostname())}-(\d+)")
    removed = []
    for path in directory.parent.glob(f".{glob.escape(directory.name)}.*"):
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not _running(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def _publish(staging: Path, directory: Path) -> None:
    """Put the finished staging directory at ``directory`` (replacing what is there,
    which was checked to be empty or given up with ``force``)."""
    old = None
    if directory.exists():
        old = _beside(directory, "old")
        os.replace(directory, old)
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
