"""Spikes: what a simulation returns, and the SONATA spike file it is written to.

The file follows the SONATA spike format, so libsonata's ``SpikeReader``, BMTK and
any HDF5 tool read it::

    /spikes                       attrs: magic, version (root); duration, simulation
    /spikes/<cell type>           attrs: sorting (HDF5 enum none/by_id/by_time), node_count
    /spikes/<cell type>/timestamps  float64, ms (attr units = "ms")
    /spikes/<cell type>/node_ids    uint64, the 0-based index within the cell type
    /spikes/<cell type>/recorded_node_ids  uint64, only when a recorder sampled a
                                  ``fraction`` of the cells: which ones it recorded

A node id is the cell's index in ``network.get_placement_set(cell_type)``, the index
connection sets use. The datasets are never compressed (libsonata 0.2 cannot read
compressed data). Spikes are sorted by time, then by node id, so that the same
simulation gives the same file byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import StorageError

__all__ = ["SimulationResult", "SpikeTrains", "read_spike_file", "write_spike_file"]

#: SONATA's ``sorting`` enum of a spike population
SORTING = {"none": 0, "by_id": 1, "by_time": 2}
_MAGIC = 0x0A7A  # SONATA's magic number


@dataclass(frozen=True)
class SpikeTrains:
    """The spikes of one cell type: parallel arrays, sorted by time then node id."""

    node_ids: np.ndarray  #: uint64, index of the cell within its type
    timestamps: np.ndarray  #: float64, ms
    node_count: int  #: how many cells the type has
    #: the indices of the recorded cells (silent ones too) when a recorder's
    #: ``fraction`` sampled them; None when every cell of the type was recorded
    recorded: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = np.ascontiguousarray(self.node_ids, dtype=np.uint64)
        times = np.ascontiguousarray(self.timestamps, dtype=np.float64)
        if ids.shape != times.shape or ids.ndim != 1:
            raise ValueError("node_ids and timestamps must be 1-D arrays of the same length")
        order = np.lexsort((ids, times))
        object.__setattr__(self, "node_ids", ids[order])
        object.__setattr__(self, "timestamps", times[order])
        if self.recorded is not None:
            object.__setattr__(self, "recorded", np.asarray(self.recorded, dtype=np.uint64))

    @property
    def recorded_count(self) -> int:
        """How many cells were recorded (silent ones too)."""
        return self.node_count if self.recorded is None else int(len(self.recorded))

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def rates(self, duration: float) -> np.ndarray:
        """Each recorded cell's rate over ``duration`` ms (Hz): ``(node_count,)``, or
        one per cell of :attr:`recorded` when the recorder sampled them."""
        counts = np.bincount(self.node_ids.astype(np.int64), minlength=self.node_count)
        counts = counts[: self.node_count]
        if self.recorded is not None:
            counts = counts[self.recorded.astype(np.int64)]
        return counts / (duration / 1000.0)

    def mean_rate(self, duration: float) -> float:
        """The mean rate of the recorded cells over ``duration`` ms (Hz)."""
        return len(self) / max(self.recorded_count, 1) / (duration / 1000.0)

    @classmethod
    def empty(cls, node_count: int, recorded: np.ndarray | None = None) -> "SpikeTrains":
        return cls(np.empty(0, np.uint64), np.empty(0, np.float64), node_count, recorded)

    @classmethod
    def concatenate(cls, parts: list["SpikeTrains"]) -> "SpikeTrains":
        """The spikes of several ranks' parts of one cell type, as one."""
        if not parts:
            raise ValueError("nothing to concatenate")
        return cls(np.concatenate([p.node_ids for p in parts]),
                   np.concatenate([p.timestamps for p in parts]),
                   max(p.node_count for p in parts), parts[0].recorded)


@dataclass
class SimulationResult(Mapping):
    """What :meth:`Network.simulate` returns: a mapping of each recorded cell type to
    its :class:`SpikeTrains` (every spike on the main rank; under MPI the other ranks
    get at most their own), and how the simulation went.

    ``adapter`` is the simulator adapter: the simulator's kernel still holds the
    network (``nest.GetConnections()`` works), and ``adapter.populations`` maps each
    cell type to the simulator's own handle of its cells.
    """

    simulation: str
    simulator: str
    duration: float  #: ms
    spikes: dict[str, SpikeTrains]
    #: phase -> seconds on this rank: read, prepare, cells, connect, devices, simulate, collect
    timings: dict[str, float] = field(default_factory=dict)
    #: connections made on this rank: the stored pairs' synapses, and the devices'
    connections: int = 0
    device_connections: int = 0
    adapter: Any = None
    complete: bool = True  #: False on a rank that holds only its own spikes

    def __getitem__(self, cell_type: str) -> SpikeTrains:
        return self.spikes[cell_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.spikes)

    def __len__(self) -> int:
        return len(self.spikes)

    def mean_rates(self) -> dict[str, float]:
        """Cell type -> mean rate of its cells (Hz)."""
        return {name: trains.mean_rate(self.duration) for name, trains in self.spikes.items()}

    def write(self, path: str | os.PathLike) -> Path:
        """Write the spikes as a SONATA spike file (see :func:`write_spike_file`)."""
        return write_spike_file(path, self.spikes, duration=self.duration,
                                simulation=self.simulation)


def check_spike_path(path: str | os.PathLike, network_path: str | os.PathLike | None = None) -> Path:
    """Refuse an output path that holds something other than a spike file (the
    network itself, a configuration), or whose folder is missing; checked before a
    simulation starts, so that a bad ``-o`` never costs a run."""
    target = Path(path)
    if network_path is not None and target.exists() and Path(network_path).exists() and \
            target.samefile(network_path):
        raise StorageError(f"{target}: is the network file; choose another output path")
    if not target.parent.is_dir():
        raise StorageError(f"{target}: its folder {target.parent} does not exist")
    if target.is_dir():
        raise StorageError(f"{target}: is a folder; give a file name such as spikes.h5")
    if target.exists() and not _is_spike_file(target):
        raise StorageError(f"{target}: exists and is not a spike file; it is never "
                           "overwritten: choose another output path")
    if not os.access(target.parent, os.W_OK):
        raise StorageError(f"{target}: cannot write in {target.parent} (permission denied)")
    return target


def _is_spike_file(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return "spikes" in file and set(file.keys()) <= {"spikes"}
    except OSError:
        return False


def write_spike_file(path: str | os.PathLike, spikes: Mapping[str, SpikeTrains], *,
                     duration: float | None = None, simulation: str | None = None) -> Path:
    """Write ``spikes`` (cell type -> :class:`SpikeTrains`) as a SONATA spike file at
    ``path``, atomically: a reader sees the old file or the whole new one."""
    import h5py

    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    sorting = h5py.enum_dtype(SORTING, basetype=np.uint8)
    try:
        with h5py.File(temporary, "w") as file:
            file.attrs["magic"] = np.uint32(_MAGIC)
            file.attrs["version"] = np.array([0, 1], dtype=np.uint32)
            group = file.create_group("spikes")
            if duration is not None:
                group.attrs["duration"] = float(duration)
            if simulation is not None:
                group.attrs["simulation"] = simulation
            for name, trains in spikes.items():
                population = group.create_group(name)
                population.attrs.create("sorting", SORTING["by_time"], dtype=sorting)
                population.attrs["node_count"] = np.uint64(trains.node_count)
                times = population.create_dataset("timestamps", data=trains.timestamps,
                                                  dtype=np.float64)
                times.attrs["units"] = "ms"
                population.create_dataset("node_ids", data=trains.node_ids, dtype=np.uint64)
                if trains.recorded is not None:  # not SONATA: which cells a sample recorded
                    population.create_dataset("recorded_node_ids", data=trains.recorded,
                                              dtype=np.uint64)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def read_spike_file(path: str | os.PathLike) -> SimulationResult:
    """Read a spike file written by :func:`write_spike_file` (or any SONATA spike file
    whose populations are groups under ``/spikes``)."""
    import h5py

    target = Path(path)
    try:
        file = h5py.File(target, "r")
    except OSError as error:
        raise StorageError(f"{target}: not a spike file ({error})") from None
    with file:
        if "spikes" not in file:
            raise StorageError(f"{target}: not a spike file (no /spikes group)")
        group = file["spikes"]
        spikes = {}
        for name, population in group.items():
            ids = np.asarray(population["node_ids"], dtype=np.uint64)
            count = int(population.attrs.get("node_count", int(ids.max()) + 1 if len(ids) else 0))
            recorded = (np.asarray(population["recorded_node_ids"])
                        if "recorded_node_ids" in population else None)
            spikes[name] = SpikeTrains(ids, np.asarray(population["timestamps"]), count, recorded)
        duration = float(group.attrs.get("duration", 0.0)) or _last_spike(spikes)
        simulation = group.attrs.get("simulation", "")
    return SimulationResult(simulation=str(simulation), simulator="", duration=duration,
                            spikes=spikes)


def _last_spike(spikes: Mapping[str, SpikeTrains]) -> float:
    ends = [float(t.timestamps.max()) for t in spikes.values() if len(t)]
    return max(ends, default=0.0)
